package harness

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"
)

// TestNodePKI: the node's files are a CA, pairs it signed (serving ones for their names,
// client ones for their groups) and the service-account key pair.
func TestNodePKI(t *testing.T) {
	p, err := newNodePKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.issue("apiserver", "kube-apiserver", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"kubernetes.default.svc"}); err != nil {
		t.Fatal(err)
	}
	if err := p.issue("admin", "admin", []string{"system:masters"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.crt: %v", err)
	}
	load := func(name string) *x509.Certificate {
		pair, err := tls.LoadX509KeyPair(p.path(name+".crt"), p.path(name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	if _, err := load("apiserver").Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Errorf("apiserver: %v", err)
	}
	admin := load("admin")
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin: %v", err)
	}
	if admin.Subject.CommonName != "admin" || len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin subject %v", admin.Subject)
	}
	for name, typ := range map[string]string{"sa.key": "EC PRIVATE KEY", "sa.pub": "PUBLIC KEY"} {
		data, err := os.ReadFile(p.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode(data); b == nil || b.Type != typ {
			t.Errorf("%s: want a %s block", name, typ)
		}
	}
}
