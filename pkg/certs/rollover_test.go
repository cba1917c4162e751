package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// These tests drive replicas of the rotator step by step against an API (the fake client,
// which keeps resourceVersions and conflicts like the apiserver) on a clock the test moves,
// and check the invariant of the package comment after every write and every reconcile: each
// replica serves a certificate that every caBundle verifies, including every caBundle an
// API server lagging by up to roLag may still use.

const (
	roNS      = "pgl-system"
	roSecret  = "pgl-certs"
	roService = "pgl"
	roConfig  = "pgl"
	// roLag is how far behind the stored configuration an API server's informer may be: a
	// served certificate must also verify against every caBundle of the last roLag.
	roLag = roGrace - time.Second
)

var roDNSName = roService + "." + roNS + ".svc"

func roCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func roPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// roCluster is the API with the Secret and both configurations, the replicas, and the
// record of every caBundle the configurations held and when.
type roCluster struct {
	t        *testing.T
	ctx      context.Context
	clk      *clocktesting.FakePassiveClock
	api      client.WithWatch
	replicas []*rotator
	dirs     []string
	// conflicts, when set, decides whether the n-th caBundle update (from 1) fails with a
	// conflict before reaching the store.
	conflicts  func(n int) bool
	updates    int
	conflicted int
	history    []roBundles
	violations []string
	checks     int
	reconciles int
}

type roBundles struct {
	from    time.Time
	bundles [][]byte
}

func newROCluster(t *testing.T, now time.Time, data map[string][]byte, bundle []byte, replicas int) *roCluster {
	t.Helper()
	c := &roCluster{t: t, ctx: context.Background(), clk: clocktesting.NewFakePassiveClock(now)}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: roNS, Name: roSecret}, Data: data}
	path := "/mutate-v1-pod"
	cc := admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{Namespace: roNS, Name: roService, Path: &path}, CABundle: bundle,
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: roConfig},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.example.io", ClientConfig: cc}}}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: roConfig},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "workloads.example.io", ClientConfig: *cc.DeepCopy()}}}
	c.api = fake.NewClientBuilder().WithObjects(secret, mwc, vwc).WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			switch obj.(type) {
			case *admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration:
				c.check("before a caBundle write")
				c.updates++
				if c.conflicts != nil && c.conflicts(c.updates) {
					c.conflicted++
					return apierrors.NewConflict(schema.GroupResource{Group: "admissionregistration.k8s.io", Resource: "webhookconfigurations"}, obj.GetName(), errors.New("injected"))
				}
				if err := cl.Update(ctx, obj, opts...); err != nil {
					return err
				}
				c.record()
				c.check("after a caBundle write")
				return nil
			}
			return cl.Update(ctx, obj, opts...)
		},
	}).Build()
	c.record()
	for range replicas {
		dir := t.TempDir()
		c.dirs = append(c.dirs, dir)
		c.replicas = append(c.replicas, roReplica(t, c.api, c.api, dir, c.clk))
	}
	return c
}

// bundles are the caBundles stored now, one per webhook.
func (c *roCluster) bundles() [][]byte {
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.api.Get(c.ctx, types.NamespacedName{Name: roConfig}, &m); err != nil {
		c.t.Fatal(err)
	}
	if err := c.api.Get(c.ctx, types.NamespacedName{Name: roConfig}, &v); err != nil {
		c.t.Fatal(err)
	}
	return [][]byte{m.Webhooks[0].ClientConfig.CABundle, v.Webhooks[0].ClientConfig.CABundle}
}

func (c *roCluster) record() {
	c.history = append(c.history, roBundles{from: c.clk.Now(), bundles: c.bundles()})
}

// served is the certificate in a replica's cert dir, nil before the first write.
func (c *roCluster) served(i int) *x509.Certificate {
	b, err := os.ReadFile(filepath.Join(c.dirs[i], KeyTLSCert))
	if err != nil {
		return nil
	}
	if certs := roCerts(b); len(certs) > 0 {
		return certs[0]
	}
	return nil
}

// check records a violation when a replica serves a certificate that a caBundle in use
// (stored now, or stored within the last roLag) does not verify at the current time.
func (c *roCluster) check(when string) {
	c.checks++
	now := c.clk.Now()
	var inUse []roBundles
	for i, h := range c.history {
		// A version is in use if it is the current one or was replaced less than roLag ago.
		if i == len(c.history)-1 || now.Sub(c.history[i+1].from) < roLag {
			inUse = append(inUse, h)
		}
	}
	for i := range c.replicas {
		cert := c.served(i)
		if cert == nil {
			continue
		}
		for _, h := range inUse {
			for w, b := range h.bundles {
				if len(b) == 0 {
					// Before the first caBundle (bootstrap) no handshake could succeed.
					continue
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(b)
				if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: roDNSName, CurrentTime: now}); err != nil {
					c.violations = append(c.violations, fmt.Sprintf("t+%s %s: replica %d serves %q (issuer %q), webhook %d's caBundle stored at t+%s does not verify it: %v",
						now.Sub(c.history[0].from).Round(time.Millisecond), when, i, cert.Subject.CommonName, cert.Issuer.CommonName, w,
						h.from.Sub(c.history[0].from).Round(time.Millisecond), err))
				}
			}
		}
	}
}

// run reconciles every replica in turn, moving the clock by tick after each round, until
// done is true or rounds are exhausted; it returns the number of rounds.
func (c *roCluster) run(rounds int, tick time.Duration, done func() bool) int {
	c.t.Helper()
	for round := 1; round <= rounds; round++ {
		for i, r := range c.replicas {
			_, err := r.Reconcile(c.ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: roNS, Name: roSecret}})
			c.reconciles++
			if err != nil && !apierrors.IsConflict(err) && !strings.Contains(err.Error(), "injected") {
				c.t.Fatalf("replica %d: Reconcile: %v", i, err)
			}
			c.check(fmt.Sprintf("after replica %d reconciled", i))
		}
		if done != nil && done() {
			return round
		}
		c.clk.SetTime(c.clk.Now().Add(tick))
	}
	return rounds
}

func (c *roCluster) secret() *corev1.Secret {
	var s corev1.Secret
	if err := c.api.Get(c.ctx, types.NamespacedName{Namespace: roNS, Name: roSecret}, &s); err != nil {
		c.t.Fatal(err)
	}
	return &s
}

// allServeFrom reports whether every replica serves a certificate signed by ca.
func (c *roCluster) allServeFrom(ca *x509.Certificate) bool {
	for i := range c.replicas {
		s := c.served(i)
		if s == nil || s.CheckSignatureFrom(ca) != nil {
			return false
		}
	}
	return true
}

func (c *roCluster) report() {
	c.t.Helper()
	c.t.Logf("%d reconciles, %d invariant checks, %d caBundle updates (%d failed with an injected conflict), %d caBundle versions",
		c.reconciles, c.checks, c.updates, c.conflicted, len(c.history))
	for i, v := range c.violations {
		if i == 5 {
			c.t.Errorf("... and %d more", len(c.violations)-5)
			break
		}
		c.t.Error(v)
	}
}

// issuedState is a Secret whose CA (1h) was issued caAge ago, with a fresh serving
// certificate from it, as every replica serves it and the caBundles hold it. With a caAge of
// 41 minutes the CA is in its last third: the moment before a rollover.
func issuedState(t *testing.T, now time.Time, caAge time.Duration) (map[string][]byte, *x509.Certificate) {
	t.Helper()
	ca, caKey, err := newCA(time.Hour, now.Add(-caAge))
	if err != nil {
		t.Fatal(err)
	}
	_, certPEM, keyPEM, err := newServingCert(ca, caKey, ServiceDNSNames(roService, roNS), 9*time.Minute, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{KeyCACert: roPEM(ca), KeyCAKey: caKeyPEM, KeyTLSCert: certPEM, KeyTLSKey: keyPEM}, ca
}

func (c *roCluster) serveFiles(data map[string][]byte) {
	for _, d := range c.dirs {
		for _, k := range []string{KeyTLSCert, KeyTLSKey} {
			if err := os.WriteFile(filepath.Join(d, k), data[k], 0o600); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

// TestRolloverServesOnlyTrusted: two replicas roll the CA over from the moment it enters its
// last third, through the promotion, to the old CA's expiry; without and with conflicts on
// the caBundle writes. At no step does a replica serve a certificate that a caBundle in use
// (also by an API server lagging by roLag) does not verify; the old CA leaves the bundle only
// once it has expired.
func TestRolloverServesOnlyTrusted(t *testing.T) {
	for name, conflicts := range map[string]func(int) bool{
		"no conflicts":                               nil,
		"conflict on every other caBundle write":     func(n int) bool { return n%2 == 1 },
		"conflict on the first five caBundle writes": func(n int) bool { return n <= 5 },
	} {
		t.Run(name, func(t *testing.T) {
			now := time.Now()
			data, oldCA := issuedState(t, now, 41*time.Minute)
			c := newROCluster(t, now, data, roPEM(oldCA), 2)
			c.conflicts = conflicts
			c.serveFiles(data)
			c.check("at the start")

			var newCA *x509.Certificate
			rounds := c.run(200, 500*time.Millisecond, func() bool {
				cas := roCerts(c.secret().Data[KeyCACert])
				if len(cas) == 0 || cas[0].Equal(oldCA) || !c.allServeFrom(cas[0]) {
					return false
				}
				newCA = cas[0]
				return true
			})
			if newCA == nil {
				c.report()
				t.Fatalf("no rollover within %d rounds of 500ms", rounds)
			}
			took := time.Duration(rounds-1) * 500 * time.Millisecond
			t.Logf("rollover: every replica serves from the new CA after %s (grace %s)", took, roGrace)
			if took < roGrace {
				t.Errorf("new CA served after %s, before the grace period %s", took, roGrace)
			}
			for i, b := range c.bundles() {
				if len(roCerts(b)) != 2 {
					t.Errorf("webhook %d: %d CAs in the caBundle after the rollover, want the new and the old one", i, len(roCerts(b)))
				}
			}
			// On to the old CA's expiry (19 min after the start) and past it by the margin
			// (expiredTrustMargin, 10 min), in 20 s steps.
			c.run(110, 20*time.Second, nil)
			for i, b := range c.bundles() {
				cas := roCerts(b)
				if len(cas) != 1 || !cas[0].Equal(newCA) {
					t.Errorf("webhook %d: after the old CA expired the caBundle holds %d CAs, want only the new one", i, len(cas))
				}
			}
			c.report()
		})
	}
}

// TestWipedSecretKeepsServedCAsTrusted: the Secret is emptied, or deleted and created again,
// while both replicas serve a certificate from the CA in the caBundles. The CA they serve
// from stays in every caBundle, and they serve from a new CA only after the grace.
func TestWipedSecretKeepsServedCAsTrusted(t *testing.T) {
	for _, recreate := range []bool{false, true} {
		t.Run(map[bool]string{false: "emptied", true: "deleted and created again"}[recreate], func(t *testing.T) {
			now := time.Now()
			c := newROCluster(t, now, nil, nil, 2)
			// Bootstrap from the empty Secret the chart creates.
			c.run(10, 500*time.Millisecond, func() bool {
				cas := roCerts(c.secret().Data[KeyCACert])
				return len(cas) > 0 && c.allServeFrom(cas[0])
			})
			first := roCerts(c.secret().Data[KeyCACert])
			if len(first) != 1 || !c.allServeFrom(first[0]) {
				c.report()
				t.Fatalf("bootstrap: %d CAs in the Secret; replicas serve from it: %v", len(first), len(first) == 1 && c.allServeFrom(first[0]))
			}
			c.run(4, 500*time.Millisecond, nil)

			s := c.secret()
			if recreate {
				if err := c.api.Delete(c.ctx, s); err != nil {
					t.Fatal(err)
				}
				c.run(2, 500*time.Millisecond, nil)
				if err := c.api.Create(c.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: roNS, Name: roSecret}}); err != nil {
					t.Fatal(err)
				}
			} else {
				s.Data = nil
				if err := c.api.Update(c.ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			c.check("after the wipe")
			wipedAt := c.clk.Now()
			var servedAt time.Time
			c.run(100, 500*time.Millisecond, func() bool {
				cas := roCerts(c.secret().Data[KeyCACert])
				for _, ca := range cas {
					if !ca.Equal(first[0]) && c.allServeFrom(ca) {
						servedAt = c.clk.Now()
						return true
					}
				}
				return false
			})
			if servedAt.IsZero() {
				c.report()
				t.Fatal("replicas never served from a new CA after the wipe")
			}
			t.Logf("after the wipe, every replica serves from a new CA after %s (grace %s)", servedAt.Sub(wipedAt), roGrace)
			if servedAt.Sub(wipedAt) < roGrace {
				t.Errorf("served from the new CA %s after the wipe, before the grace %s", servedAt.Sub(wipedAt), roGrace)
			}
			for i, b := range c.bundles() {
				if cas := roCerts(b); len(cas) != 2 {
					t.Errorf("webhook %d: %d CAs in the caBundle after the wipe, want the previous and the new one", i, len(cas))
				}
			}
			c.report()
		})
	}
}

// TestStaleReplicaCannotShrinkBundle: replica B's cache holds an older Secret (its CA only)
// and the current configurations, which replica A filled with A's CA after replacing the
// material. Whatever B writes, the caBundles keep A's CA, which A serves.
func TestStaleReplicaCannotShrinkBundle(t *testing.T) {
	now := time.Now()
	stale, staleCA := issuedState(t, now, time.Minute) // valid, nothing due
	fresh, freshCA := issuedState(t, now, time.Minute)
	// The API: A's material, and caBundles holding A's CA. The Secret was written once more
	// after B's view of it, so B's view carries an older resourceVersion.
	c := newROCluster(t, now, stale, roPEM(freshCA), 1)
	s := c.secret()
	s.Data = fresh
	if err := c.api.Update(c.ctx, s); err != nil {
		t.Fatal(err)
	}
	dirA := t.TempDir()
	for _, k := range []string{KeyTLSCert, KeyTLSKey} {
		if err := os.WriteFile(filepath.Join(dirA, k), fresh[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// B reads a Secret as it was before A's update, and the configurations as they are.
	staleSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: roNS, Name: roSecret, ResourceVersion: "999"}, Data: stale}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	_ = c.api.Get(c.ctx, types.NamespacedName{Name: roConfig}, &mwc)
	_ = c.api.Get(c.ctx, types.NamespacedName{Name: roConfig}, &vwc)
	staleReader := fake.NewClientBuilder().WithObjects(staleSecret, &mwc, &vwc).Build()
	b := roReplica(t, staleReader, c.api, t.TempDir(), c.clk)
	for range 3 {
		if _, err := b.Reconcile(c.ctx, reconcile.Request{}); err != nil && !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	for i, bundle := range c.bundles() {
		cas := roCerts(bundle)
		has := false
		for _, ca := range cas {
			has = has || ca.Equal(freshCA)
		}
		if !has {
			t.Errorf("webhook %d: replica B's write removed A's CA from the caBundle (holds %d CAs, B's CA among them: %v)", i, len(cas), len(cas) == 1 && cas[0].Equal(staleCA))
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(bundle)
		served := roCerts(fresh[KeyTLSCert])[0]
		if _, err := served.Verify(x509.VerifyOptions{Roots: pool, DNSName: roDNSName, CurrentTime: now}); err != nil {
			t.Errorf("webhook %d: replica A's certificate no longer verifies: %v", i, err)
		}
	}
}

// TestNotYetValidServingCertificate: the Secret holds a serving certificate issued by a
// replica whose clock is 15 minutes ahead (NotBefore 10 minutes in this replica's future,
// past the 5-minute backdate). It is not served; a certificate valid now is.
func TestNotYetValidServingCertificate(t *testing.T) {
	now := time.Now()
	ca, caKey, err := newCA(time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	ahead, certPEM, keyPEM, err := newServingCert(ca, caKey, ServiceDNSNames(roService, roNS), 9*time.Minute, now.Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{KeyCACert: roPEM(ca), KeyCAKey: caKeyPEM, KeyTLSCert: certPEM, KeyTLSKey: keyPEM}
	c := newROCluster(t, now, data, roPEM(ca), 1)
	c.run(2, 500*time.Millisecond, nil)
	served := c.served(0)
	if served == nil {
		t.Fatal("nothing served")
	}
	if served.Equal(ahead) {
		t.Errorf("serves the certificate that is not valid before %s (now %s)", ahead.NotBefore.UTC(), now.UTC())
	}
	if served.NotBefore.After(c.clk.Now()) {
		t.Errorf("serves a certificate not valid before %s", served.NotBefore.UTC())
	}
	stored := roCerts(c.secret().Data[KeyTLSCert])
	if len(stored) == 0 || stored[0].NotBefore.After(c.clk.Now()) {
		t.Error("the Secret still holds a serving certificate that is not valid yet")
	}
	c.report()
}
