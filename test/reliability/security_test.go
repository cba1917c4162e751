package reliability

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

// handshake dials the webhook port with cfg and returns the negotiated state.
func handshake(s *server, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", strings.TrimPrefix(s.URL(""), "https://"), cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState(), nil
}

func tlsClient(s *server, minV, maxV uint16) *tls.Config {
	return &tls.Config{RootCAs: s.pki.Pool, MinVersion: minV, MaxVersion: maxV, ServerName: "127.0.0.1"}
}

// TestTLSVersions: TLS 1.3 only by default; --tls-min-version 1.2 admits 1.2 and nothing older.
func TestTLSVersions(t *testing.T) {
	def := startServer(t, "")
	v12 := startServer(t, "", "--tls-min-version=1.2")
	cases := []struct {
		name    string
		s       *server
		version uint16
		ok      bool
	}{
		{"default refuses TLS 1.1", def, tls.VersionTLS11, false},
		{"default refuses TLS 1.2", def, tls.VersionTLS12, false},
		{"default accepts TLS 1.3", def, tls.VersionTLS13, true},
		{"1.2 refuses TLS 1.1", v12, tls.VersionTLS11, false},
		{"1.2 accepts TLS 1.2", v12, tls.VersionTLS12, true},
		{"1.2 accepts TLS 1.3", v12, tls.VersionTLS13, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := handshake(tc.s, tlsClient(tc.s, tc.version, tc.version))
			if tc.ok {
				if err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				if st.Version != tc.version {
					t.Fatalf("negotiated %x, want %x", st.Version, tc.version)
				}
				return
			}
			if err == nil {
				t.Fatalf("handshake with version %x succeeded", tc.version)
			}
			// The refusal must come from the server (a protocol_version alert), not from a
			// client that could not even offer the version.
			if !strings.Contains(err.Error(), "protocol version") {
				t.Fatalf("refused, but not by the server's version check: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestNoHTTP2 offers only h2 (ALPN) and then lets net/http try HTTP/2: neither gets it.
func TestNoHTTP2(t *testing.T) {
	s := startServer(t, "")
	cfg := tlsClient(s, tls.VersionTLS13, tls.VersionTLS13)
	cfg.NextProtos = []string{"h2"}
	st, err := handshake(s, cfg)
	if err == nil && st.NegotiatedProtocol == "h2" {
		t.Fatal("an h2-only client negotiated HTTP/2")
	}
	t.Logf("h2-only client: err=%v negotiated=%q", err, st.NegotiatedProtocol)

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsClient(s, tls.VersionTLS13, tls.VersionTLS13), ForceAttemptHTTP2: true,
	}}
	resp, err := c.Post(s.URL(webhook.PathMutatePods), "application/json", strings.NewReader(string(reviewJSON("h2", "Pod", "", pushgatewayPod(nil)))))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("served %s to a client that offered h2 and http/1.1", resp.Proto)
	}
}

// TestClientCA: with --client-ca-file, only clients holding a certificate from that CA get in.
func TestClientCA(t *testing.T) {
	apiserverCA := newPKI(t)
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	if err := os.WriteFile(caFile, apiserverCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "", "--client-ca-file="+caFile)
	body := string(reviewJSON("mtls", "Pod", "", pushgatewayPod(nil)))
	do := func(cert *tls.Certificate) error {
		cfg := tlsClient(s, tls.VersionTLS13, tls.VersionTLS13)
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Post(s.URL(webhook.PathMutatePods), "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	if err := do(nil); err == nil {
		t.Error("a client without a certificate was served")
	} else {
		t.Logf("no certificate: %v", err)
	}
	stranger := newPKI(t).clientCert(t)
	if err := do(&stranger); err == nil {
		t.Error("a client with a certificate from another CA was served")
	} else {
		t.Logf("other CA: %v", err)
	}
	good := apiserverCA.clientCert(t)
	if err := do(&good); err != nil {
		t.Errorf("a client with a certificate from --client-ca-file was refused: %v", err)
	}
}

// TestLogsHoldNoSecrets feeds pods whose env holds a secret-looking value through every
// logging path (mutated, invalid annotation, denied, undecodable) at debug level and greps
// everything the process printed.
func TestLogsHoldNoSecrets(t *testing.T) {
	const secret = "SECRET-do-not-log-1234"
	withEnv := func(ann map[string]string) map[string]any {
		p := pushgatewayPod(ann)
		p["spec"] = map[string]any{"containers": []map[string]any{{
			"name": "pushgateway", "image": "quay.io/prometheus/pushgateway:v1.11.3",
			"env":  []map[string]string{{"name": "PASSWORD", "value": secret}},
			"args": []string{"--password=" + secret},
		}}}
		return p
	}
	for _, mode := range []string{"warn", "reject"} {
		t.Run(mode, func(t *testing.T) {
			s := startServer(t, "onInvalid: "+mode+"\n", "--zap-log-level=debug")
			c := s.client(1)
			bodies := [][]byte{
				reviewJSON("u1", "Pod", "", withEnv(nil)),
				reviewJSON("u2", "Pod", "", withEnv(map[string]string{"pushgateway-lifecycle.io/pre-stop-sleep": "bogus"})),
				reviewJSON("u3", "Pod", "", withEnv(map[string]string{"pushgateway-lifecycle.io/containers": "nothing"})),
				[]byte(strings.Replace(string(reviewJSON("u4", "Pod", "", withEnv(nil))), `"containers":[`, `"containers":"`+secret+`","x":[`, 1)),
				[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + secret + `","object":{"env":"` + secret),
			}
			for i, b := range bodies {
				status, _, err := post(context.Background(), c, s.URL(webhook.PathMutatePods), "application/json", b)
				if err != nil || status != 200 {
					t.Fatalf("body %d: status %d, %v", i, status, err)
				}
			}
			if err := s.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			logs := s.Logs()
			if !strings.Contains(logs, `"level":"debug"`) && !strings.Contains(logs, "DEBUG") {
				t.Fatalf("no debug lines: the test did not run at debug level:\n%s", tailString(logs, 4096))
			}
			if strings.Contains(logs, secret) {
				for _, line := range strings.Split(logs, "\n") {
					if strings.Contains(line, secret) {
						t.Errorf("log line holds the secret: %s", line)
					}
				}
			}
			t.Logf("%d log bytes, %d lines, secret absent", len(logs), strings.Count(logs, "\n"))
		})
	}
}
