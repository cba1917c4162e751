package termination

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Route values: which endpoint the Service chose for a request.
const (
	RouteOld  = "old"
	RouteNew  = "new"
	RouteNone = "none"
)

const (
	headerRoute = "X-Proof-Route"
	headerError = "X-Proof-Error"
)

type endpoint struct {
	route string
	url   *url.URL
}

type routeKey struct{}

// Service stands in for the Kubernetes Service (kube-proxy or an ingress): it forwards to the
// one endpoint it currently knows, and answers 503 when it knows none. The experiment changes
// the endpoint the way EndpointSlice updates would reach it: the old pod is removed a
// propagation delay after the pod starts terminating, the new one is added once it is ready.
type Service struct {
	URL string
	srv *http.Server
	ep  atomic.Pointer[endpoint]

	mu      sync.Mutex
	changes []RouteChange
}

// RouteChange is one moment the Service's endpoint changed.
type RouteChange struct {
	At    time.Time
	Route string
}

// NewService listens on a free loopback port.
func NewService() (*Service, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Service{URL: "http://" + l.Addr().String()}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(r.In.Context().Value(routeKey{}).(*endpoint).url)
		},
		// A new connection per request, as each batch job opens its own: a push routed to a
		// pod whose listener is closed is refused, like a packet DNATed to a stopped pod.
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set(headerError, classify(err))
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ep := s.ep.Load()
			if ep == nil {
				w.Header().Set(headerRoute, RouteNone)
				http.Error(w, "no endpoints available for service", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set(headerRoute, ep.route)
			rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, ep)))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// SetEndpoint routes to addr under the given route name, or to nothing when addr is empty.
func (s *Service) SetEndpoint(route, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr == "" {
		s.ep.Store(nil)
		route = RouteNone
	} else {
		s.ep.Store(&endpoint{route: route, url: &url.URL{Scheme: "http", Host: addr}})
	}
	s.changes = append(s.changes, RouteChange{At: time.Now(), Route: route})
}

// NoEndpointTime is the total time the Service had no endpoint (answered 503).
func (s *Service) NoEndpointTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total time.Duration
	for i, c := range s.changes {
		if c.Route != RouteNone {
			continue
		}
		end := time.Now()
		if i+1 < len(s.changes) {
			end = s.changes[i+1].At
		}
		total += end.Sub(c.At)
	}
	return total
}

// Changes returns every endpoint change, in order.
func (s *Service) Changes() []RouteChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RouteChange(nil), s.changes...)
}

// Close stops the Service.
func (s *Service) Close() { _ = s.srv.Close() }

func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error: " + err.Error()
	}
}
