package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"
	"time"
)

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIssue: the serving certificate verifies for 127.0.0.1 and localhost, the client
// certificate as a client's, each under the CA and with an increasing serial.
func TestIssue(t *testing.T) {
	ca, err := New("testpki-test")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(ca.Cert.NotAfter); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("CA expires in %s; want a day", d)
	}
	crt, key, s1, err := ca.Issue(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		t.Fatal(err)
	}
	srv := parse(t, crt)
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: name}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	cli, _, s2, err := ca.Issue(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse(t, cli).Verify(x509.VerifyOptions{Roots: ca.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if s2 <= s1 {
		t.Errorf("serials %d then %d; want increasing", s1, s2)
	}
}

// TestIssueFor: NewFor's validity holds for the CA and what it issues; names make a serving
// certificate, none a client certificate in the given groups.
func TestIssueFor(t *testing.T) {
	ca, err := NewFor("testpki-node", 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crt, _, _, err := ca.IssueFor(Subject{CommonName: "kube-apiserver", IPs: []net.IP{net.IPv4(10, 0, 0, 1)}, DNSNames: []string{"kubernetes.default.svc"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := parse(t, crt)
	if d := time.Until(srv.NotAfter); d < 7*24*time.Hour-time.Hour || d > 7*24*time.Hour {
		t.Errorf("certificate expires in %s; want a week", d)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "10.0.0.1"}); err != nil {
		t.Error(err)
	}
	crt, _, _, err = ca.IssueFor(Subject{CommonName: "system:node:n", Organization: []string{"system:nodes"}})
	if err != nil {
		t.Fatal(err)
	}
	cli := parse(t, crt)
	if cli.Subject.CommonName != "system:node:n" || !slices.Equal(cli.Subject.Organization, []string{"system:nodes"}) || !slices.Equal(cli.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client certificate %v, usages %v", cli.Subject, cli.ExtKeyUsage)
	}
}
