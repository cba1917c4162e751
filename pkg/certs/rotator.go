// Package certs keeps the webhook's serving certificate valid without cert-manager: a CA and a
// serving certificate live in one Secret that the chart creates empty; every replica runs this
// rotator, which fills the Secret, renews what is in the last third of its lifetime, writes
// the serving pair into --cert-dir (controller-runtime's certwatcher reloads it) and keeps the
// CA bundle of the two webhook configurations in sync.
//
// Why not github.com/open-policy-agent/cert-controller (what Gatekeeper uses): it compiles with
// controller-runtime v0.25, but its informers list and watch every Secret of the namespace and
// every webhook configuration of the cluster, so it needs RBAC on all of them. This rotator
// watches exactly one object of each kind through a metadata.name field selector, which RBAC
// authorizes against resourceNames: the grant is get/list/watch/update on one Secret and on
// two named webhook configurations, nothing else (no create, no delete, no other Secret).
//
// Concurrency between replicas is the apiserver's optimistic locking: a replica whose update
// of the Secret conflicts drops its own material and takes the winner's from the next event,
// so every replica serves a certificate that is in the Secret and signed by a CA in the bundle.
package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Defaults of Options.
const (
	// DefaultCAValidity: the CA is what the apiserver trusts; a long life keeps CA rotations
	// (the only moment two CAs are in the bundle) rare.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity: the serving certificate is renewed after two thirds, every ~8 months.
	DefaultCertValidity = 365 * 24 * time.Hour
	// DefaultResyncInterval re-checks everything even without an event (a missed watch event,
	// a clock that jumped).
	DefaultResyncInterval = time.Hour
)

// conflictRetry is the pause before reconciling again after losing an update race to
// another replica; the winner's write usually arrives as an event before it ends.
const conflictRetry = 200 * time.Millisecond

// Options of Setup. The flags of `serve` map one to one: --cert-namespace, --cert-secret-name,
// --cert-service-name, --mutating-webhook-name, --validating-webhook-name, --cert-dir,
// --cert-name, --key-name.
type Options struct {
	// Namespace of the Secret and of the webhook Service (required).
	Namespace string
	// SecretName is the Secret holding ca.crt, ca.key, tls.crt, tls.key (required). It must
	// exist (the chart and kustomize create it empty): this process may update it, not create it.
	SecretName string
	// ServiceName is the webhook Service; the serving certificate is valid for its DNS names.
	ServiceName string
	// ExtraDNSNames are added to the serving certificate.
	ExtraDNSNames []string
	// MutatingWebhookName and ValidatingWebhookName are the configurations whose every
	// webhook's clientConfig.caBundle is kept equal to the CA bundle. Empty: not managed.
	MutatingWebhookName   string
	ValidatingWebhookName string
	// CertDir receives CertName and KeyName (default tls.crt, tls.key), written atomically
	// whenever the Secret's pair changes. Empty: files are not written (mount the Secret).
	CertDir  string
	CertName string
	KeyName  string
	// CAValidity, CertValidity and ResyncInterval default to the Default* constants. Each
	// certificate is renewed once less than a third of its validity is left.
	CAValidity     time.Duration
	CertValidity   time.Duration
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
	if o.CertValidity > o.CAValidity {
		errs = append(errs, fmt.Errorf("certs: certificate validity %s exceeds the CA's %s", o.CertValidity, o.CAValidity))
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

var (
	expiryGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushgateway_lifecycle_certificate_expiry_timestamp_seconds",
		Help: "Expiry (Unix time) of the certificates managed by the in-process rotator (type=ca|serving).",
	}, []string{"type"})
	rotationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgateway_lifecycle_certificate_rotations_total",
		Help: "Certificates generated by the in-process rotator (type=ca|serving), and failed attempts (type=error).",
	}, []string{"type"})
	registerOnce sync.Once
)

// Setup adds the rotator to mgr; it starts with the manager, on every replica (no leader
// election: each replica writes its own CertDir). The returned channel is closed once a valid
// serving pair is in CertDir (or, without CertDir, in the Secret): start serving TLS then.
func Setup(mgr manager.Manager, opts Options) (<-chan struct{}, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	registerOnce.Do(func() { metrics.Registry.MustRegister(expiryGauge, rotationsTotal) })

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

	ready := make(chan struct{})
	r := &rotator{
		opts:   opts,
		reader: c,
		writer: mgr.GetClient(),
		log:    mgr.GetLogger().WithName("cert-rotator"),
		ready:  ready,
		key:    types.NamespacedName{Namespace: opts.Namespace, Name: opts.SecretName},
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
	return ready, nil
}

type rotator struct {
	opts      Options
	reader    client.Reader
	writer    client.Writer
	log       logr.Logger
	key       types.NamespacedName
	ready     chan struct{}
	readyOnce sync.Once
}

// Reconcile makes the Secret valid, then CertDir equal to the Secret, then the caBundles.
func (r *rotator) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var secret corev1.Secret
	if err := r.reader.Get(ctx, r.key, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			r.log.Info("waiting for the certificate Secret: it is created (empty) by the chart or kustomize; this process may only update it", "secret", r.key.String())
			return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
		}
		return reconcile.Result{}, err
	}
	now := time.Now()
	m, p, err := ensure(secret.Data, r.opts.dnsNames(), r.opts.CAValidity, r.opts.CertValidity, now)
	if err != nil {
		rotationsTotal.WithLabelValues("error").Inc()
		return reconcile.Result{}, err
	}
	if changed(secret.Data, m.data()) {
		updated := secret.DeepCopy()
		if updated.Data == nil {
			updated.Data = map[string][]byte{}
		}
		for k, v := range m.data() {
			updated.Data[k] = v
		}
		if err := r.writer.Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				// Another replica won: use its material, which the next event brings.
				r.log.V(1).Info("certificate Secret changed concurrently; retrying")
				return reconcile.Result{RequeueAfter: conflictRetry}, nil
			}
			rotationsTotal.WithLabelValues("error").Inc()
			return reconcile.Result{}, fmt.Errorf("update Secret %s: %w", r.key, err)
		}
		if p.newCA {
			rotationsTotal.WithLabelValues("ca").Inc()
		}
		if p.newCert {
			rotationsTotal.WithLabelValues("serving").Inc()
		}
		r.log.Info("certificate Secret updated", "reason", p.reason, "newCA", p.newCA, "newServingCert", p.newCert,
			"servingNotAfter", m.cert.NotAfter.UTC(), "caNotAfter", m.cas[0].NotAfter.UTC())
	}
	expiryGauge.WithLabelValues("ca").Set(float64(m.cas[0].NotAfter.Unix()))
	expiryGauge.WithLabelValues("serving").Set(float64(m.cert.NotAfter.Unix()))

	if r.opts.CertDir != "" {
		if err := r.writeFiles(m); err != nil {
			return reconcile.Result{}, err
		}
	}
	r.readyOnce.Do(func() { close(r.ready) })

	if err := r.injectCABundle(ctx, m.caPEM); err != nil {
		if apierrors.IsConflict(err) {
			return reconcile.Result{RequeueAfter: conflictRetry}, nil
		}
		return reconcile.Result{}, err
	}

	next := r.opts.ResyncInterval
	for _, at := range []time.Time{m.cert.NotAfter.Add(-r.opts.CertValidity / 3), m.cas[0].NotAfter.Add(-r.opts.CAValidity / 3)} {
		if d := at.Sub(now) + time.Second; d < next {
			next = max(d, time.Second)
		}
	}
	return reconcile.Result{RequeueAfter: next}, nil
}

func changed(have, want map[string][]byte) bool {
	for k, v := range want {
		if !bytes.Equal(have[k], v) {
			return true
		}
	}
	return false
}

// writeFiles replaces the key, then the certificate, each by rename so that a reader never
// sees half a file. certwatcher reloads on either event and keeps the old pair when the two
// files do not match yet, so the brief window between the renames is harmless.
func (r *rotator) writeFiles(m *material) error {
	certPath := filepath.Join(r.opts.CertDir, r.opts.CertName)
	keyPath := filepath.Join(r.opts.CertDir, r.opts.KeyName)
	oldCert, _ := os.ReadFile(certPath)
	oldKey, _ := os.ReadFile(keyPath)
	if bytes.Equal(oldCert, m.certPEM) && bytes.Equal(oldKey, m.keyPEM) {
		return nil
	}
	if err := os.MkdirAll(r.opts.CertDir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{keyPath, m.keyPEM}, {certPath, m.certPEM}} {
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
	r.log.Info("serving certificate written", "dir", r.opts.CertDir, "notAfter", m.cert.NotAfter.UTC())
	return nil
}

// injectCABundle sets caBundle on every webhook of the two configurations. A configuration
// that does not exist yet is skipped: its creation is an event that brings us back.
func (r *rotator) injectCABundle(ctx context.Context, bundle []byte) error {
	if name := r.opts.MutatingWebhookName; name != "" {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		err := r.reader.Get(ctx, types.NamespacedName{Name: name}, &mwc)
		switch {
		case apierrors.IsNotFound(err):
			r.log.V(1).Info("MutatingWebhookConfiguration not found yet", "name", name)
		case err != nil:
			return err
		default:
			dirty := false
			for i := range mwc.Webhooks {
				if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, bundle) {
					mwc.Webhooks[i].ClientConfig.CABundle, dirty = bundle, true
				}
			}
			if dirty {
				if err := r.writer.Update(ctx, &mwc); err != nil {
					return fmt.Errorf("inject caBundle into MutatingWebhookConfiguration %s: %w", name, err)
				}
				r.log.Info("caBundle injected", "mutatingwebhookconfiguration", name)
			}
		}
	}
	if name := r.opts.ValidatingWebhookName; name != "" {
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		err := r.reader.Get(ctx, types.NamespacedName{Name: name}, &vwc)
		switch {
		case apierrors.IsNotFound(err):
			r.log.V(1).Info("ValidatingWebhookConfiguration not found yet", "name", name)
		case err != nil:
			return err
		default:
			dirty := false
			for i := range vwc.Webhooks {
				if !bytes.Equal(vwc.Webhooks[i].ClientConfig.CABundle, bundle) {
					vwc.Webhooks[i].ClientConfig.CABundle, dirty = bundle, true
				}
			}
			if dirty {
				if err := r.writer.Update(ctx, &vwc); err != nil {
					return fmt.Errorf("inject caBundle into ValidatingWebhookConfiguration %s: %w", name, err)
				}
				r.log.Info("caBundle injected", "validatingwebhookconfiguration", name)
			}
		}
	}
	return nil
}

// noLeaderElection runs a runnable on every replica even when the manager uses leader
// election: every replica needs its own certificate files.
type noLeaderElection struct{ manager.Runnable }

func (noLeaderElection) NeedLeaderElection() bool { return false }
