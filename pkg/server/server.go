// Package server wires the webhook handlers to controller-runtime's webhook server, the
// metrics server and the health probes, and runs them until shutdown.
//
// A controller-runtime Manager is only created when something needs the Kubernetes API (the
// in-process certificate rotation, the handoff gate): the admission path itself needs no credentials, so a
// deployment without rotation runs with no service-account token and no RBAC at all.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/certs"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/drift"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/handoff"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	pglwebhook "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

// Options are the serve command's settings.
type Options struct {
	WebhookHost string
	WebhookPort int
	CertDir     string
	CertName    string
	KeyName     string
	// TLSMinVersion is "1.2" or "1.3".
	TLSMinVersion string
	EnableHTTP2   bool
	// ClientCAFile, when set, makes the server require a client certificate signed by it
	// (the API server's, configured through its AdmissionConfiguration).
	ClientCAFile           string
	MetricsBindAddress     string
	HealthProbeBindAddress string
	PolicyFile             string
	// ShutdownDelay is how long the server stays up, unready, after a stop signal, so that
	// the Service's endpoints drop it before it stops accepting connections.
	ShutdownDelay time.Duration
	// CertWaitTimeout bounds the wait for the certificate files at start (0: wait forever).
	CertWaitTimeout time.Duration
	// RequestReadTimeout bounds the time from a request's headers to the end of its body; a
	// body still arriving then is cut and its connection closed (see pglwebhook.Limits).
	RequestReadTimeout time.Duration
	// MaxInflightRequestBytes bounds the body buffers that all requests being read hold at
	// once, beyond a small pre-size each (0: no bound; see pglwebhook.Limits).
	MaxInflightRequestBytes int64

	// CertRotation, when set, runs the in-process certificate rotator (pkg/certs) in a
	// controller-runtime Manager: the only part of the server that talks to the API.
	CertRotation *certs.Options

	// Handoff runs the handoff gate: the webhook holds a replacement pod whose shared volume a
	// terminating predecessor still holds, and the controller lifts the gate (pkg/handoff).
	Handoff bool
	// Drift, when set, runs the drift watch (pkg/drift) on the leader: every selected running
	// pod without the product's spec is counted and gets a Warning event. Scope is which
	// namespaces the webhook is called for. It shares the handoff gate's pod caches.
	Drift *audit.NamespaceScope
	// LeaderElection makes one replica run the controllers (the handoff controller); the
	// caches, the webhook and the certificate rotator run on every replica.
	LeaderElection          bool
	LeaderElectionNamespace string
	LeaderElectionID        string

	// Extra runs beside the servers (for example the certificate rotator); each ready
	// channel gates the webhook server and readiness until it is closed.
	Extra      func(ctx context.Context) error
	ExtraReady []<-chan struct{}
}

// DefaultOptions are the flag defaults.
func DefaultOptions() Options {
	return Options{
		WebhookPort:             9443,
		CertDir:                 filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		CertName:                "tls.crt",
		KeyName:                 "tls.key",
		TLSMinVersion:           "1.3",
		MetricsBindAddress:      ":8080",
		HealthProbeBindAddress:  ":8081",
		ShutdownDelay:           2 * time.Second,
		LeaderElectionID:        "pushgateway-lifecycle.io",
		RequestReadTimeout:      DefaultRequestReadTimeout,
		MaxInflightRequestBytes: DefaultMaxInflightRequestBytes,
	}
}

// DefaultRequestReadTimeout is the API server's default webhook timeoutSeconds (10 s): an
// API server that has not sent a review's body by then has given up on it, and the longest
// timeoutSeconds it accepts is 30 s.
const DefaultRequestReadTimeout = 10 * time.Second

// DefaultMaxInflightRequestBytes leaves room for one review of the largest size while its
// buffer grows, or for a dozen of 1 MiB, beside any number of ordinary reviews (which fit
// their pre-size). With the garbage that growing buffers leave until the next GC it keeps a
// replica under attack well inside the chart's 128 MiB limit (test/reliability
// TestStalledClients).
const DefaultMaxInflightRequestBytes = 16 << 20

// Validate returns every problem with the options at once.
func (o *Options) Validate() field.ErrorList {
	var errs field.ErrorList
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("webhook-port"), o.WebhookPort, "must be a port number from 1 to 65535"))
	}
	if o.TLSMinVersion != "1.2" && o.TLSMinVersion != "1.3" {
		errs = append(errs, field.NotSupported(field.NewPath("tls-min-version"), o.TLSMinVersion, []string{"1.2", "1.3"}))
	}
	if o.CertDir == "" {
		errs = append(errs, field.Required(field.NewPath("cert-dir"), "the directory holding the serving certificate"))
	}
	if o.ShutdownDelay < 0 {
		errs = append(errs, field.Invalid(field.NewPath("shutdown-delay"), o.ShutdownDelay.String(), "must be >= 0"))
	}
	if o.RequestReadTimeout <= 0 || o.RequestReadTimeout > 30*time.Second {
		errs = append(errs, field.Invalid(field.NewPath("request-read-timeout"), o.RequestReadTimeout.String(),
			"must be > 0 and at most 30s, the longest webhook timeout the API server waits"))
	}
	if o.MaxInflightRequestBytes != 0 && o.MaxInflightRequestBytes < pglwebhook.MinInflightBytes {
		errs = append(errs, field.Invalid(field.NewPath("max-inflight-request-bytes"), o.MaxInflightRequestBytes,
			fmt.Sprintf("must be 0 (no bound) or at least %d, room for one review of the largest size while its buffer grows", pglwebhook.MinInflightBytes)))
	}
	return errs
}

// Run serves until ctx is cancelled, then drains: readiness turns false, the server keeps
// answering for ShutdownDelay, and in-flight requests complete before it returns.
func Run(ctx context.Context, o Options, log logr.Logger) error {
	if errs := o.Validate(); len(errs) > 0 {
		return errs.ToAggregate()
	}
	watcher, err := policy.NewWatcher(o.PolicyFile, log.WithName("policy"))
	if err != nil {
		metrics.PolicyReloadsTotal.WithLabelValues("failure").Inc()
		return fmt.Errorf("loading the policy: %w", err)
	}
	if o.PolicyFile != "" {
		metrics.PolicyReloadsTotal.WithLabelValues("success").Inc()
	}
	watcher.OnReload = func(err error) {
		if err != nil {
			metrics.PolicyReloadsTotal.WithLabelValues("failure").Inc()
		} else {
			metrics.PolicyReloadsTotal.WithLabelValues("success").Inc()
		}
	}

	var holders pglwebhook.HolderSource
	var ix *handoff.Index
	// The drift watch alone needs the Manager too (it reads the same pod caches).
	if o.CertRotation != nil || o.Handoff || o.Drift != nil {
		var err error
		if ix, err = o.setupManager(log, watcher); err != nil {
			return err
		}
		if ix != nil {
			holders = ix
		}
	}

	handlers := map[string]http.Handler{
		pglwebhook.PathMutatePods:        &pglwebhook.PodMutator{Policy: watcher, Log: log.WithName("pods"), Handoff: holders},
		pglwebhook.PathValidateWorkloads: &pglwebhook.WorkloadValidator{Policy: watcher, Log: log.WithName("workloads")},
	}
	if ix != nil {
		// The drain's half at admission; its controller runs with the handoff gate's.
		handlers[pglwebhook.PathDrainPods] = &pglwebhook.PodDrainer{Drainer: ix, Log: log.WithName("drain")}
	}
	return serve(ctx, o, handlers, log, watcher.Start)
}

// Serve serves handlers (path to handler) the way Run serves the product's: on the same TLS
// stack, with the same request limits, metrics and probe servers, certificate wait and drain.
// The options of the product's handlers (PolicyFile, CertRotation, Handoff, Drift and the
// leader election) play no part. The reference servers under test/bench run on it, so that
// they are measured on the product's server.
func Serve(ctx context.Context, o Options, handlers map[string]http.Handler, log logr.Logger) error {
	if errs := o.Validate(); len(errs) > 0 {
		return errs.ToAggregate()
	}
	return serve(ctx, o, handlers, log)
}

// serve is Run and Serve once the options are valid: it runs handlers on the webhook server,
// and run (beside the servers, stopped after the drain) until ctx is cancelled.
func serve(ctx context.Context, o Options, handlers map[string]http.Handler, log logr.Logger, run ...func(context.Context) error) error {
	var clientCA *clientCA
	if o.ClientCAFile != "" {
		var err error
		if clientCA, err = newClientCA(o.ClientCAFile, log.WithName("client-ca")); err != nil {
			return err
		}
	}
	tlsOpts := o.tlsOptions(clientCA)
	srv := webhook.NewServer(webhook.Options{
		Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.CertDir, CertName: o.CertName, KeyName: o.KeyName,
		TLSOpts: tlsOpts,
	})
	limits := pglwebhook.Limits{ReadTimeout: o.RequestReadTimeout, InflightBytes: o.MaxInflightRequestBytes}
	for path, h := range handlers {
		srv.Register(path, limits.Wrap(h))
	}

	var draining, certsPresent atomic.Bool
	started := srv.StartedChecker()
	ready := func(r *http.Request) error {
		switch {
		case draining.Load():
			return errors.New("shutting down")
		case !certsPresent.Load():
			return fmt.Errorf("waiting for the serving certificate in %s", o.CertDir)
		}
		return started(r)
	}

	// Components stop on runCtx, which is cancelled only after the drain delay.
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)

	if o.MetricsBindAddress != "0" && o.MetricsBindAddress != "" {
		ms, err := metricsserver.NewServer(metricsserver.Options{BindAddress: o.MetricsBindAddress}, nil, nil)
		if err != nil {
			return err
		}
		g.Go(func() error { return ms.Start(gctx) })
	}
	if o.HealthProbeBindAddress != "0" && o.HealthProbeBindAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/readyz", http.StripPrefix("/readyz", &healthz.Handler{Checks: map[string]healthz.Checker{"webhook": ready}}))
		mux.Handle("/readyz/", http.StripPrefix("/readyz", &healthz.Handler{Checks: map[string]healthz.Checker{"webhook": ready}}))
		mux.Handle("/healthz", http.StripPrefix("/healthz", &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}))
		mux.Handle("/healthz/", http.StripPrefix("/healthz", &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}))
		hs := &http.Server{Addr: o.HealthProbeBindAddress, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", o.HealthProbeBindAddress)
		if err != nil {
			return fmt.Errorf("health probe listener: %w", err)
		}
		log.Info("serving health probes", "address", ln.Addr().String())
		g.Go(func() error {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	for _, r := range run {
		g.Go(func() error { return r(gctx) })
	}
	if clientCA != nil {
		g.Go(func() error { return clientCA.Start(gctx) })
	}
	if o.Extra != nil {
		g.Go(func() error { return o.Extra(gctx) })
	}
	g.Go(func() error {
		for _, ch := range o.ExtraReady {
			select {
			case <-ch:
			case <-gctx.Done():
				return nil
			}
		}
		// certwatcher refuses to start without the files; wait for them (a Secret mount or
		// a rotator may deliver them after the process starts) and stay unready meanwhile.
		if err := waitForFiles(gctx, o.CertWaitTimeout, log, filepath.Join(o.CertDir, o.CertName), filepath.Join(o.CertDir, o.KeyName)); err != nil {
			return err
		}
		select {
		case <-gctx.Done():
			return nil // stopped while waiting: a normal shutdown, with nothing to serve
		default:
		}
		certsPresent.Store(true)
		return srv.Start(gctx)
	})

	select {
	case <-ctx.Done():
		draining.Store(true)
		if certsPresent.Load() {
			log.Info("stop requested: turning unready, then draining", "delay", o.ShutdownDelay.String())
			select {
			case <-time.After(o.ShutdownDelay):
			case <-gctx.Done():
			}
		} else {
			// Never ready, so no endpoint to drain: stop at once.
			log.Info("stop requested before the serving certificate appeared: stopping")
		}
		stop()
	case <-gctx.Done():
	}
	return g.Wait()
}

// setupManager builds a Manager with in-cluster credentials for what needs the API: the
// certificate rotator (every replica writes its own cert dir) and the handoff gate (the pod
// caches on every replica, the controller on the leader). It has no metrics or probe servers
// of its own (ours serve its metrics through the shared registry) and no webhook server. The
// index is nil without the handoff gate.
func (o *Options) setupManager(log logr.Logger, pol *policy.Watcher) (*handoff.Index, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("--cert-rotation, --handoff and --drift-watch need Kubernetes API access: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Logger:                  log.WithName("manager"),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        o.LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// A replica that stops hands the lease over at once instead of after its expiry.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	o.Extra = mgr.Start
	if o.CertRotation != nil {
		co := *o.CertRotation
		co.CertDir, co.CertName, co.KeyName = o.CertDir, o.CertName, o.KeyName
		ready, err := certs.Setup(mgr, co)
		if err != nil {
			return nil, err
		}
		o.ExtraReady = append(o.ExtraReady, ready)
	}
	if !o.Handoff && o.Drift == nil {
		return nil, nil
	}
	sels, err := handoff.Selectors(pol.Current())
	if err != nil {
		return nil, err
	}
	ix, err := handoff.NewIndex(mgr, sels)
	if err != nil {
		return nil, err
	}
	if o.Drift != nil {
		if _, err := drift.Setup(mgr, ix, pol, *o.Drift, log.WithName("drift")); err != nil {
			return nil, err
		}
	}
	if !o.Handoff {
		return nil, nil
	}
	if err := handoff.SetupController(mgr, ix, pol, log.WithName("handoff")); err != nil {
		return nil, err
	}
	// Unready until the caches have listed: before that an absent predecessor proves nothing.
	o.ExtraReady = append(o.ExtraReady, ix.Synced())
	return ix, nil
}

func waitForFiles(ctx context.Context, timeout time.Duration, log logr.Logger, paths ...string) error {
	var deadline <-chan time.Time
	if timeout > 0 {
		deadline = time.After(timeout)
	}
	logged := false
	for {
		missing := ""
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				missing = p
				break
			}
		}
		if missing == "" {
			return nil
		}
		if !logged {
			log.Info("waiting for the serving certificate", "missing", missing)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return fmt.Errorf("serving certificate %s did not appear within %s", missing, timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (o *Options) tlsOptions(clientCA *clientCA) []func(*tls.Config) {
	minVersion := uint16(tls.VersionTLS13)
	if o.TLSMinVersion == "1.2" {
		minVersion = tls.VersionTLS12
	}
	opts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = minVersion }}
	if !o.EnableHTTP2 {
		// HTTP/2 rapid reset (CVE-2023-44487): serve HTTP/1.1 only unless asked, as kubebuilder does.
		opts = append(opts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if clientCA != nil {
		opts = append(opts, clientCA.configure)
	}
	return opts
}
