package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/testpki"
)

// nodePKI is the real node's throw-away certificate authority (a testpki.CA, valid for a
// week): one CA signs the API server's serving certificate, the kubelet's, and the client
// certificates of the admin, the node and the API server's kubelet client. Every file goes
// under dir.
type nodePKI struct {
	dir string
	ca  *testpki.CA
}

func newNodePKI(dir string) (*nodePKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := testpki.NewFor("pushgateway-lifecycle-node-ca", 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	p := &nodePKI{dir: dir, ca: ca}
	if err := os.WriteFile(p.path("ca.crt"), ca.PEM, 0o600); err != nil {
		return nil, err
	}
	// The service-account signing key (API server issues tokens, controller-manager signs
	// legacy ones; both read the same pair).
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	skder, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	pkder, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.path("sa.key"), "EC PRIVATE KEY", skder); err != nil {
		return nil, err
	}
	return p, writePEM(p.path("sa.pub"), "PUBLIC KEY", pkder)
}

func (p *nodePKI) path(name string) string { return filepath.Join(p.dir, name) }

// issue writes <name>.crt and <name>.key: a server certificate when ips or dns are given,
// otherwise a client certificate for cn in the groups orgs.
func (p *nodePKI) issue(name, cn string, orgs []string, ips []net.IP, dns []string) error {
	crt, key, _, err := p.ca.IssueFor(testpki.Subject{CommonName: cn, Organization: orgs, IPs: ips, DNSNames: dns})
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.path(name+".crt"), crt, 0o600); err != nil {
		return err
	}
	return os.WriteFile(p.path(name+".key"), key, 0o600)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
