// Package certs keeps the webhook's serving certificate valid without cert-manager: a CA and a
// serving certificate live in one Secret that the chart creates empty; every replica runs this
// rotator, which fills the Secret, renews what is in the last third of its lifetime, keeps
// the CA bundle (caBundle) of the two webhook configurations a superset of the Secret's trust,
// and writes the serving pair into --cert-dir (controller-runtime's certwatcher reloads it).
//
// # Invariant
//
// At every moment, every replica serves a certificate that every live caBundle verifies. The
// API servers read caBundle through their own informers, a moment after it is written; a
// certificate served before that moment fails the handshake ("unknown authority") and, with
// failurePolicy Ignore, lets pods through unmutated. Three rules hold the invariant:
//
//  1. Trust only grows until expiry. Every write of ca.crt or of a caBundle is the union of
//     what it held, what the Secret holds and what the live caBundles hold, minus expired
//     certificates (func trusted). Writes carry the resourceVersion that was read, so a
//     replica with a stale view gets a conflict instead of shrinking the live value. A
//     wiped or recreated Secret takes its trust back from the live caBundles, so a CA that a
//     replica still serves stays trusted. A CA leaves only by expiring, when nothing signed
//     by it can verify any more: judged by the API server's clock when this replica's is
//     off by more than maxClockSkew (clock.go), and only expiredTrustMargin after NotAfter.
//  2. Publish, wait, then sign. A new CA is first published: its certificate goes into ca.crt
//     and its key into ca-next.key, and the caBundles are updated, while the serving pair in
//     the Secret stays signed by the old CA. Only after this replica has seen the new CA in
//     every caBundle for Options.RolloverGrace (measured on its own monotonic clock: no clock
//     comparison between replicas) is it promoted: its key moves to ca.key and a serving
//     certificate signed by it replaces the pair. A replica that restarts starts its wait
//     again, which only delays the promotion.
//  3. Serve only what is trusted. A replica writes the Secret's pair into its cert dir only
//     when every live caBundle (as just written, or as in its cache) verifies it at its own
//     clock; otherwise it keeps serving what it has and tries again shortly.
//
// # Phases
//
// They are functions of the Secret (func step), not stored labels:
//
//   - bootstrap: no CA is trusted anywhere (first install, or everything expired). Nothing
//     served can lose trust, so the new CA signs at once; rule 3 still holds the files back
//     until a caBundle holds it.
//   - steady: ca.key signs, no ca-next.key. The serving certificate is renewed in the last
//     third of its life by the same CA: no caBundle change, no trust question.
//   - rolling: the signing CA entered the last third of its life, or its key is gone (a wiped
//     Secret, a deleted ca.key): a new CA waits in ca-next.key for promotion (rule 2). A
//     wiped Secret has no serving pair to renew meanwhile; replicas keep serving their files.
//   - promoted: back to steady with the new CA. The old CA stays in every bundle until it
//     expires (rule 1); replicas switch to the new pair as the Secret's event reaches them.
//
// A stored certificate whose NotBefore is after this replica's clock (issued by a replica
// whose clock is ahead by more than the 5-minute backdate) is reissued by this replica; a CA
// not yet valid is neither promoted nor served from until it is. Skew between a replica and
// the API servers beyond the backdate cannot be seen from here: keep clocks synchronised.
//
// Why not github.com/open-policy-agent/cert-controller (what Gatekeeper uses): it compiles with
// controller-runtime v0.25, but its informers list and watch every Secret of the namespace and
// every webhook configuration of the cluster, so it needs RBAC on all of them. This rotator
// watches exactly one object of each kind through a metadata.name field selector, which RBAC
// authorizes against resourceNames: the grant is get/list/watch/update on one Secret and on
// two named webhook configurations, nothing else (no create, no delete, no other Secret).
package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	pglmetrics "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
)

// Defaults of Options.
const (
	// DefaultCAValidity: the CA is what the apiserver trusts; a long life keeps CA rollovers
	// (the only moment two CAs are in the bundle) rare.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity: the serving certificate is renewed after two thirds, every ~8 months.
	DefaultCertValidity = 365 * 24 * time.Hour
	// DefaultRolloverGrace is how long a new CA must have been in every caBundle before it
	// signs: the API servers' informers usually deliver a webhook configuration change in
	// well under a second; a minute covers a lagging API server of an HA control plane and
	// costs nothing against a CA rollover every ~6.7 years.
	DefaultRolloverGrace = time.Minute
	// DefaultResyncInterval re-checks everything even without an event (a missed watch event,
	// a clock that jumped).
	DefaultResyncInterval = time.Hour
)

const (
	// conflictRetry is the pause before reconciling again after losing an update race to
	// another replica; the winner's write usually arrives as an event before it ends.
	conflictRetry = 200 * time.Millisecond
	// untrustedRetry is the pause before checking again whether the caBundles verify the
	// Secret's serving pair, when they did not (rule 3 of the package comment).
	untrustedRetry = time.Second
)

// Options of Setup. The flags of `serve` map one to one: --cert-namespace, --cert-secret-name,
// --cert-service-name, --mutating-webhook-name, --validating-webhook-name, --cert-dir,
// --cert-name, --key-name, --cert-ca-validity, --cert-validity, --cert-rollover-grace.
type Options struct {
	// Namespace of the Secret and of the webhook Service (required).
	Namespace string
	// SecretName is the Secret holding ca.crt, ca.key, tls.crt, tls.key and, during a CA
	// rollover, ca-next.key (required). It must exist (the chart and kustomize create it
	// empty): this process may update it, not create it.
	SecretName string
	// ServiceName is the webhook Service; the serving certificate is valid for its DNS names.
	ServiceName string
	// ExtraDNSNames are added to the serving certificate.
	ExtraDNSNames []string
	// MutatingWebhookName and ValidatingWebhookName are the configurations whose every
	// webhook's clientConfig.caBundle is kept a superset of ca.crt. Empty: not managed.
	MutatingWebhookName   string
	ValidatingWebhookName string
	// CertDir receives CertName and KeyName (default tls.crt, tls.key), written atomically
	// once the caBundles verify the Secret's pair. Empty: files are not written (mount the
	// Secret; the kubelet's sync delay then adds to the rollover grace).
	CertDir  string
	CertName string
	KeyName  string
	// CAValidity, CertValidity, RolloverGrace and ResyncInterval default to the Default*
	// constants. Each certificate is renewed once less than a third of its validity is left;
	// a new CA signs once it has been in every caBundle for RolloverGrace, which must be
	// shorter than a third of CertValidity and of CAValidity (what is served meanwhile must
	// outlive the rollover).
	CAValidity     time.Duration
	CertValidity   time.Duration
	RolloverGrace  time.Duration
	ResyncInterval time.Duration
}

func (o *Options) defaults() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("certs: namespace is required (--cert-namespace or POD_NAMESPACE)"))
	}
	if o.SecretName == "" {
		errs = append(errs, errors.New("certs: secret name is required (--cert-secret-name)"))
	}
	if o.ServiceName == "" && len(o.ExtraDNSNames) == 0 {
		errs = append(errs, errors.New("certs: service name is required (--cert-service-name)"))
	}
	if o.CertName == "" {
		o.CertName = KeyTLSCert
	}
	if o.KeyName == "" {
		o.KeyName = KeyTLSKey
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity == 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.RolloverGrace == 0 {
		o.RolloverGrace = DefaultRolloverGrace
	}
	if o.CAValidity < 0 || o.CertValidity < 0 || o.RolloverGrace < 0 {
		errs = append(errs, fmt.Errorf("certs: --cert-ca-validity %s, --cert-validity %s, --cert-rollover-grace %s: durations must be positive", o.CAValidity, o.CertValidity, o.RolloverGrace))
	}
	if o.CertValidity > o.CAValidity {
		errs = append(errs, fmt.Errorf("certs: --cert-validity %s exceeds --cert-ca-validity %s", o.CertValidity, o.CAValidity))
	}
	// During a rollover nothing renews the serving pair of a wiped Secret (its CA key is
	// gone): the pair in use, renewed with a third of its life left, must outlive the grace,
	// and so must the old CA.
	if o.RolloverGrace >= o.CertValidity/3 || o.RolloverGrace >= o.CAValidity/3 {
		errs = append(errs, fmt.Errorf("certs: --cert-rollover-grace %s must be shorter than a third of --cert-validity %s and of --cert-ca-validity %s: the certificates in use must outlive the rollover", o.RolloverGrace, o.CertValidity, o.CAValidity))
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	return errors.Join(errs...)
}

func (o *Options) dnsNames() []string {
	var names []string
	if o.ServiceName != "" {
		names = ServiceDNSNames(o.ServiceName, o.Namespace)
	}
	return append(names, o.ExtraDNSNames...)
}

func (o *Options) params() params {
	return params{dnsNames: o.dnsNames(), caValidity: o.CAValidity, certValidity: o.CertValidity}
}

// Setup adds the rotator to mgr; it starts with the manager, on every replica (no leader
// election: each replica writes its own CertDir). The returned channel is closed once a
// serving pair that every caBundle verifies is in CertDir (or, without CertDir, in the
// Secret): start serving TLS then.
func Setup(mgr manager.Manager, opts Options) (<-chan struct{}, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	pglmetrics.RegisterCertificateMetrics()

	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}, Field: byName(opts.SecretName)},
	}
	if opts.MutatingWebhookName != "" {
		byObject[&admissionregistrationv1.MutatingWebhookConfiguration{}] = cache.ByObject{Field: byName(opts.MutatingWebhookName)}
	}
	if opts.ValidatingWebhookName != "" {
		byObject[&admissionregistrationv1.ValidatingWebhookConfiguration{}] = cache.ByObject{Field: byName(opts.ValidatingWebhookName)}
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:   mgr.GetScheme(),
		Mapper:   mgr.GetRESTMapper(),
		ByObject: byObject,
		// Only the objects above may ever be read: anything else would need RBAC we do not have.
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return nil, fmt.Errorf("certs: cache: %w", err)
	}
	if err := mgr.Add(noLeaderElection{c}); err != nil {
		return nil, err
	}

	r := newRotator(opts, c, mgr.GetClient(), mgr.GetLogger().WithName("cert-rotator"), clock.RealClock{})
	if r.serverClock, err = apiServerClock(mgr.GetConfig(), mgr.GetHTTPClient()); err != nil {
		return nil, err
	}
	ctrl, err := controller.NewUnmanaged("cert-rotator", controller.Options{
		Reconciler:              r,
		MaxConcurrentReconciles: 1,
		NeedLeaderElection:      ptr.To(false),
		SkipNameValidation:      ptr.To(true),
		LogConstructor:          func(*reconcile.Request) logr.Logger { return r.log },
	})
	if err != nil {
		return nil, err
	}
	// Every event maps to the one request: there is one thing to reconcile.
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: r.key}}
	})
	for obj := range byObject {
		if err := ctrl.Watch(source.Kind(c, obj, one)); err != nil {
			return nil, err
		}
	}
	// The Secret may not produce an event (it may not exist yet): reconcile once at start.
	if err := ctrl.Watch(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.Add(reconcile.Request{NamespacedName: r.key})
		return nil
	})); err != nil {
		return nil, err
	}
	if err := mgr.Add(noLeaderElection{ctrl}); err != nil {
		return nil, err
	}
	return r.ready, nil
}

// newRotator builds the reconciler; opts must have been defaulted.
func newRotator(opts Options, reader client.Reader, writer client.Writer, log logr.Logger, clk clock.PassiveClock) *rotator {
	return &rotator{
		opts:   opts,
		reader: reader,
		writer: writer,
		log:    log,
		clock:  clk,
		ready:  make(chan struct{}),
		key:    types.NamespacedName{Namespace: opts.Namespace, Name: opts.SecretName},
	}
}

type rotator struct {
	opts   Options
	reader client.Reader
	writer client.Writer
	log    logr.Logger
	// clock is a PassiveClock so that tests can drive time; the real one carries a
	// monotonic reading, so the grace is immune to wall-clock jumps.
	clock     clock.PassiveClock
	key       types.NamespacedName
	ready     chan struct{}
	readyOnce sync.Once
	// nextSeen is when this replica first saw the next CA (nextSeenRaw) in every caBundle.
	// Reconcile runs one at a time (MaxConcurrentReconciles 1): no lock.
	nextSeenRaw []byte
	nextSeen    time.Time
	// serverClock, when set, checks this replica's clock against the API server's (now).
	serverClock serverClock
	skewed      bool
}

// Reconcile: the Secret's next state (step), then the caBundles (publish), then CertDir
// (serve what every caBundle verifies). See the package comment.
func (r *rotator) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var secret corev1.Secret
	if err := r.reader.Get(ctx, r.key, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			r.log.Info("waiting for the certificate Secret: it is created (empty) by the chart or kustomize; this process may only update it", "secret", r.key.String())
			return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
		}
		return reconcile.Result{}, err
	}
	configs, err := r.readConfigs(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := r.now(ctx)
	live := liveBundles(configs)
	st := decode(secret.Data, flatten(live), now)
	// The grace is a duration on this replica's own monotonic clock, never a comparison of
	// clocks: the skew correction stays out of it.
	settled, graceLeft := r.nextSettled(st, live, r.clock.Now())
	out, pl, err := step(st, now, settled, r.opts.params())
	if err != nil {
		pglmetrics.CertificateRotationsTotal.WithLabelValues("error").Inc()
		return reconcile.Result{}, err
	}
	if want := out.data(); changed(secret.Data, want) {
		updated := secret.DeepCopy()
		if updated.Data == nil {
			updated.Data = map[string][]byte{}
		}
		for k, v := range want {
			if v == nil {
				delete(updated.Data, k)
			} else {
				updated.Data[k] = v
			}
		}
		if err := r.writer.Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				// Another replica won: its state arrives with the next event.
				r.log.V(1).Info("certificate Secret changed concurrently; retrying")
				return reconcile.Result{RequeueAfter: conflictRetry}, nil
			}
			pglmetrics.CertificateRotationsTotal.WithLabelValues("error").Inc()
			return reconcile.Result{}, fmt.Errorf("update Secret %s: %w", r.key, err)
		}
		r.count(pl)
		kv := []any{"reason", pl.reason, "newCA", pl.newCA, "promoted", pl.promoted, "newServingCert", pl.newCert, "trustedCAs", len(out.bundle)}
		if out.serving != nil {
			kv = append(kv, "servingNotAfter", out.serving.cert.NotAfter.UTC())
		}
		if out.next != nil {
			kv = append(kv, "nextCANotAfter", out.next.cert.NotAfter.UTC(), "grace", r.opts.RolloverGrace.String())
		}
		r.log.Info("certificate Secret updated", kv...)
	}
	if out.active != nil {
		pglmetrics.CertificateExpiry.WithLabelValues("ca").Set(float64(out.active.cert.NotAfter.Unix()))
	}
	if out.serving != nil {
		pglmetrics.CertificateExpiry.WithLabelValues("serving").Set(float64(out.serving.cert.NotAfter.Unix()))
	}

	publishErr := r.publish(ctx, configs, out, now)
	live = liveBundles(configs)

	retry := r.serve(out, live, now)
	if publishErr != nil {
		if apierrors.IsConflict(publishErr) {
			return reconcile.Result{RequeueAfter: conflictRetry}, nil
		}
		return reconcile.Result{}, publishErr
	}
	return reconcile.Result{RequeueAfter: r.nextCheck(out, now, graceLeft, retry)}, nil
}

func (r *rotator) count(pl plan) {
	if pl.newCA {
		pglmetrics.CertificateRotationsTotal.WithLabelValues("ca").Inc()
	}
	if pl.promoted {
		pglmetrics.CertificateRotationsTotal.WithLabelValues("ca_promoted").Inc()
	}
	if pl.newCert {
		pglmetrics.CertificateRotationsTotal.WithLabelValues("serving").Inc()
	}
}

// nextSettled reports whether the Secret's next CA has been in every live caBundle for the
// grace period, as this replica observed it, and otherwise how long is left (0: not seen).
func (r *rotator) nextSettled(st *state, live [][]*x509.Certificate, now time.Time) (bool, time.Duration) {
	if st.next == nil || !inEvery(st.next.cert, live) {
		r.nextSeenRaw, r.nextSeen = nil, time.Time{}
		return false, 0
	}
	if !bytes.Equal(r.nextSeenRaw, st.next.cert.Raw) {
		r.nextSeenRaw, r.nextSeen = st.next.cert.Raw, now
		r.log.Info("new CA seen in every caBundle; it signs after the grace period", "grace", r.opts.RolloverGrace.String())
	}
	left := r.opts.RolloverGrace - now.Sub(r.nextSeen)
	return left <= 0, max(left, 0)
}

func inEvery(c *x509.Certificate, bundles [][]*x509.Certificate) bool {
	for _, b := range bundles {
		if !slices.ContainsFunc(b, c.Equal) {
			return false
		}
	}
	return true
}

// nextCheck is when to reconcile again without an event: the earliest renewal, rollover,
// expiry (to prune the bundle), end of the grace, or retry.
func (r *rotator) nextCheck(s *state, now time.Time, graceLeft, retry time.Duration) time.Duration {
	next := r.opts.ResyncInterval
	consider := func(d time.Duration) {
		if d > 0 && d < next {
			next = d
		}
	}
	// A moment already past was acted on in this reconcile (or waits on the grace below):
	// polling for it would only spin.
	at := func(t time.Time) {
		if d := t.Sub(now); d > 0 {
			consider(d + time.Second)
		}
	}
	if s.serving != nil {
		at(s.serving.cert.NotAfter.Add(-r.opts.CertValidity / 3))
	}
	if s.active != nil {
		at(s.active.cert.NotAfter.Add(-r.opts.CAValidity / 3))
	}
	for _, c := range s.bundle {
		at(c.NotAfter)
	}
	if s.next != nil {
		// Not seen in every caBundle yet: the configuration's event brings us back; poll
		// anyway in case this replica cannot write them.
		consider(max(graceLeft, untrustedRetry))
	}
	consider(retry)
	return next
}

// changed reports whether have differs from want; a nil value in want means "absent" (a
// key present with an empty value is not).
func changed(have, want map[string][]byte) bool {
	for k, v := range want {
		if !bytes.Equal(have[k], v) || (v == nil && have[k] != nil) {
			return true
		}
	}
	return false
}

// readConfigs returns the managed webhook configurations that exist. A configuration that
// does not exist yet is skipped: its creation is an event that brings us back.
func (r *rotator) readConfigs(ctx context.Context) ([]client.Object, error) {
	var out []client.Object
	for _, c := range []struct {
		name string
		obj  client.Object
	}{
		{r.opts.MutatingWebhookName, &admissionregistrationv1.MutatingWebhookConfiguration{}},
		{r.opts.ValidatingWebhookName, &admissionregistrationv1.ValidatingWebhookConfiguration{}},
	} {
		if c.name == "" {
			continue
		}
		err := r.reader.Get(ctx, types.NamespacedName{Name: c.name}, c.obj)
		switch {
		case apierrors.IsNotFound(err):
			r.log.V(1).Info("webhook configuration not found yet", "kind", fmt.Sprintf("%T", c.obj), "name", c.name)
		case err != nil:
			return nil, err
		default:
			out = append(out, c.obj)
		}
	}
	return out, nil
}

// clientConfigs are the client configurations of every webhook of a configuration.
func clientConfigs(obj client.Object) []*admissionregistrationv1.WebhookClientConfig {
	var out []*admissionregistrationv1.WebhookClientConfig
	switch o := obj.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range o.Webhooks {
			out = append(out, &o.Webhooks[i].ClientConfig)
		}
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range o.Webhooks {
			out = append(out, &o.Webhooks[i].ClientConfig)
		}
	}
	return out
}

// liveBundles are the caBundles the API servers use, one per webhook.
func liveBundles(configs []client.Object) [][]*x509.Certificate {
	var out [][]*x509.Certificate
	for _, c := range configs {
		for _, cc := range clientConfigs(c) {
			out = append(out, parseCerts(cc.CABundle))
		}
	}
	return out
}

func flatten(l [][]*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, b := range l {
		out = append(out, b...)
	}
	return out
}

// publish makes every caBundle the union of what it holds and the Secret's trust, minus
// expired certificates, writing only when the set changes (not the order, so replicas with
// different views never rewrite each other's bytes). Each write carries the resourceVersion
// that was read: a stale view conflicts instead of overwriting. configs is updated in place
// with what was written.
func (r *rotator) publish(ctx context.Context, configs []client.Object, s *state, now time.Time) error {
	var first *x509.Certificate
	if s.active != nil {
		first = s.active.cert
	}
	var errs []error
	for i, c := range configs {
		updated := c.DeepCopyObject().(client.Object)
		dirty := false
		for _, cc := range clientConfigs(updated) {
			have := parseCerts(cc.CABundle)
			want := trusted(now, have, s.bundle)
			if !sameSet(have, want) || (len(have) == 0 && len(cc.CABundle) > 0) {
				cc.CABundle = encodeCerts(orderBundle(want, first))
				dirty = true
			}
		}
		if !dirty {
			continue
		}
		if err := r.writer.Update(ctx, updated); err != nil {
			errs = append(errs, fmt.Errorf("inject caBundle into %T %s: %w", c, c.GetName(), err))
			continue
		}
		configs[i] = updated
		r.log.Info("caBundle updated", "kind", fmt.Sprintf("%T", c), "name", c.GetName(), "trustedCAs", len(s.bundle))
	}
	return errors.Join(errs...)
}

// serve writes the Secret's serving pair into CertDir if every live caBundle verifies it
// (rule 3), and closes ready once CertDir (or, without CertDir, the Secret) holds a pair
// that they verify. It returns how soon to check again when the pair had to wait.
func (r *rotator) serve(s *state, live [][]*x509.Certificate, now time.Time) time.Duration {
	dnsName := r.opts.dnsNames()[0]
	trustedNow := func(c *x509.Certificate) error {
		for _, b := range append(live, s.bundle) {
			if err := verifies(c, b, dnsName, now); err != nil {
				return err
			}
		}
		return nil
	}
	var retry time.Duration
	if s.serving != nil {
		if err := trustedNow(s.serving.cert); err != nil {
			r.log.Info("serving certificate of the Secret not trusted by every caBundle yet: keeping the current one", "reason", err.Error())
			retry = untrustedRetry
			if s.serving.cert.NotBefore.After(now) {
				retry = max(retry, s.serving.cert.NotBefore.Sub(now))
			}
		} else if r.opts.CertDir != "" {
			if err := r.writeFiles(s.serving); err != nil {
				r.log.Error(err, "writing the serving certificate")
				return untrustedRetry
			}
		}
	}
	if r.opts.CertDir == "" {
		if s.serving != nil && retry == 0 {
			r.readyOnce.Do(func() { close(r.ready) })
		}
		return retry
	}
	// What is in CertDir may be older than the Secret (kept above, or from before a
	// restart): ready whenever it is trusted.
	if c := r.servedCert(); c != nil && trustedNow(c) == nil {
		r.readyOnce.Do(func() { close(r.ready) })
	}
	return retry
}

// servedCert is the certificate in CertDir, or nil.
func (r *rotator) servedCert() *x509.Certificate {
	b, err := os.ReadFile(filepath.Join(r.opts.CertDir, r.opts.CertName))
	if err != nil {
		return nil
	}
	if certs := parseCerts(b); len(certs) > 0 {
		return certs[0]
	}
	return nil
}

// writeFiles replaces the key, then the certificate, each by rename so that a reader never
// sees half a file. certwatcher reloads on either event and keeps the old pair when the two
// files do not match yet, so the brief window between the renames is harmless.
func (r *rotator) writeFiles(p *pair) error {
	certPath := filepath.Join(r.opts.CertDir, r.opts.CertName)
	keyPath := filepath.Join(r.opts.CertDir, r.opts.KeyName)
	oldCert, _ := os.ReadFile(certPath)
	oldKey, _ := os.ReadFile(keyPath)
	if bytes.Equal(oldCert, p.certPEM) && bytes.Equal(oldKey, p.keyPEM) {
		return nil
	}
	if err := os.MkdirAll(r.opts.CertDir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{keyPath, p.keyPEM}, {certPath, p.certPEM}} {
		tmp, err := os.CreateTemp(r.opts.CertDir, ".tmp-")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(f.data)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			_ = os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), f.path); err != nil {
			_ = os.Remove(tmp.Name())
			return err
		}
	}
	r.log.Info("serving certificate written", "dir", r.opts.CertDir, "issuer", p.cert.Issuer.CommonName, "notAfter", p.cert.NotAfter.UTC())
	return nil
}

// noLeaderElection runs a runnable on every replica even when the manager uses leader
// election: every replica needs its own certificate files.
type noLeaderElection struct{ manager.Runnable }

func (noLeaderElection) NeedLeaderElection() bool { return false }
