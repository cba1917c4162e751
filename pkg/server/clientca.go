package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/filewatch"
)

// clientCA is the CA bundle that client certificates must chain to (--client-ca-file),
// reloaded when the file changes, as the serving certificate is: a rotated API server client
// CA must not need a restart. A new file that holds no certificate is logged and the last
// good bundle stays.
type clientCA struct {
	path     string
	log      logr.Logger
	pool     atomic.Pointer[x509.CertPool]
	last     []byte
	interval time.Duration
}

func newClientCA(path string, log logr.Logger) (*clientCA, error) {
	c := &clientCA{path: path, log: log, interval: 10 * time.Second}
	if err := c.reload(); err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	return c, nil
}

// reload reads the file and replaces the pool when it changed and holds a certificate.
func (c *clientCA) reload() error {
	data, err := os.ReadFile(c.path)
	if err != nil {
		return err
	}
	if bytes.Equal(data, c.last) {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("%s: no PEM certificate found", c.path)
	}
	c.last = data
	c.pool.Store(pool)
	return nil
}

// configure makes the TLS server require a client certificate and verify it against the
// current pool. The check is in VerifyConnection rather than ClientCAs because ClientCAs is
// fixed for the listener's lifetime, and because VerifyConnection also runs on resumed
// sessions: a client whose CA has been removed is refused even with a session ticket.
func (c *clientCA) configure(cfg *tls.Config) {
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyConnection = c.verify
}

func (c *clientCA) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: client certificate required")
	}
	opts := x509.VerifyOptions{
		Roots:         c.pool.Load(),
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: client certificate not signed by --client-ca-file: %w", err)
	}
	return nil
}

// Start reloads the file on change until ctx ends: on fsnotify events for its directory (a
// mounted ConfigMap or Secret changes by swapping a symlink) and on a poll, which alone
// remains when fsnotify cannot start.
func (c *clientCA) Start(ctx context.Context) error {
	filewatch.Watch(ctx, c.path, c.interval, c.log, nil, func() {
		before := c.pool.Load()
		if err := c.reload(); err != nil {
			c.log.Error(err, "client CA reload failed; keeping the last good bundle", "path", c.path)
		} else if c.pool.Load() != before {
			c.log.Info("client CA reloaded", "path", c.path)
		}
	})
	return nil
}
