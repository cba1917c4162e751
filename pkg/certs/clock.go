package certs

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/client-go/rest"

	pglmetrics "github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
)

// maxClockSkew is how far this replica's clock may be from the API server's before the
// rotator judges time by the API server's. Expiry is judged by whoever verifies: the API
// server checks the webhook's certificate against caBundle at its own clock, so a replica
// whose clock runs ahead must not drop a CA that the API server still accepts, and one that
// runs behind must not keep serving what the API server already refuses (issue 26: one
// replica two hours ahead dropped the CA every other replica served from). The HTTP Date
// header has a resolution of one second; 30 s is far above it and far below any validity.
const maxClockSkew = 30 * time.Second

// serverClock reads the API server's time.
type serverClock func(ctx context.Context) (time.Time, error)

// apiServerClock reads the Date header of GET /version, which every client may read (the
// system:public-info-viewer role), so it needs no RBAC of its own. hc is the manager's
// client: its connections to the API server are reused.
func apiServerClock(cfg *rest.Config, hc *http.Client) (serverClock, error) {
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("certs: API server clock: %w", err)
	}
	url := base.JoinPath("/version").String()
	return func(ctx context.Context) (time.Time, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return time.Time{}, err
		}
		_ = resp.Body.Close()
		d := resp.Header.Get("Date")
		if d == "" {
			return time.Time{}, fmt.Errorf("GET %s: %s with no Date header", url, resp.Status)
		}
		return http.ParseTime(d)
	}, nil
}

// now is the time the rotator judges validity by: this replica's clock, or the API
// server's when the two differ by more than maxClockSkew. Without a server clock (tests
// that drive time), or when it cannot be read, it is this replica's.
func (r *rotator) now(ctx context.Context) time.Time {
	local := r.clock.Now()
	if r.serverClock == nil {
		return local
	}
	server, err := r.serverClock(ctx)
	if err != nil {
		pglmetrics.CertificateClockChecksTotal.WithLabelValues("error").Inc()
		r.log.V(1).Info("cannot read the API server's clock; judging expiry by this replica's", "err", err.Error())
		return local
	}
	pglmetrics.CertificateClockChecksTotal.WithLabelValues("ok").Inc()
	after := r.clock.Now()
	// The Date header is truncated to the second: the server's time was in [server, server+1s).
	skew := local.Add(after.Sub(local) / 2).Sub(server.Add(500 * time.Millisecond))
	pglmetrics.CertificateClockSkew.Set(skew.Seconds())
	skewed := skew.Abs() > maxClockSkew
	if skewed != r.skewed {
		r.skewed = skewed
		if skewed {
			r.log.Info("this replica's clock is off the API server's; judging certificate validity by the API server's time", "skew", skew.Round(time.Second).String(), "tolerance", maxClockSkew.String())
		} else {
			r.log.Info("this replica's clock agrees with the API server's again", "skew", skew.Round(time.Second).String())
		}
	}
	if !skewed {
		return local
	}
	return local.Add(-skew)
}
