// Package testpki is the throwaway certificate authority of the tests, the benchmark and the
// harness's real node: it issues serving certificates for 127.0.0.1 and client certificates
// (or any names, through IssueFor), and writes serving pairs into a certificate directory the
// way a kubelet updates a Secret volume, so tests can rotate, withhold and verify certificates
// at will. It never leaves test code; the product's own CA is pkg/certs.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CA is a self-signed certificate authority, valid from an hour ago for a day (New) or for the
// validity given to NewFor. Every certificate it issues has the same validity, counted from
// its issue.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate (a webhook configuration's caBundle, a --client-ca-file).
	PEM []byte
	// Pool trusts the CA (a client's RootCAs).
	Pool *x509.CertPool

	validity time.Duration
	mu       sync.Mutex
	serial   int64
}

// New creates a CA with the given common name, valid for a day.
func New(name string) (*CA, error) { return NewFor(name, 24*time.Hour) }

// NewFor creates a CA with the given common name, valid for validity.
func NewFor(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: x509.NewCertPool(), validity: validity, serial: 1}
	ca.Pool.AddCert(cert)
	return ca, nil
}

// Subject is whom IssueFor issues a certificate to: a server certificate for IPs and
// DNSNames when either is given, otherwise a client certificate (Organization is then the
// user's groups).
type Subject struct {
	CommonName   string
	Organization []string
	IPs          []net.IP
	DNSNames     []string
}

// Issue returns a PEM certificate and key signed by the CA, for 127.0.0.1 and localhost
// (server) or a client, and the certificate's serial (unique per CA, increasing).
func (c *CA) Issue(server bool) (certPEM, keyPEM []byte, serial int64, err error) {
	if server {
		return c.IssueFor(Subject{CommonName: "127.0.0.1", IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"}})
	}
	return c.IssueFor(Subject{CommonName: "kube-apiserver-client"})
}

// IssueFor returns a PEM certificate and key signed by the CA for sub, and the certificate's
// serial (unique per CA, increasing).
func (c *CA) IssueFor(sub Subject) (certPEM, keyPEM []byte, serial int64, err error) {
	c.mu.Lock()
	c.serial++
	serial = c.serial
	c.mu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, 0, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: sub.CommonName, Organization: sub.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(c.validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(sub.IPs) > 0 || len(sub.DNSNames) > 0 {
		tmpl.IPAddresses, tmpl.DNSNames = sub.IPs, sub.DNSNames
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &key.PublicKey, c.Key)
	if err != nil {
		return nil, nil, 0, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, 0, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), serial, nil
}

// WriteServing puts a new serving pair into dir as tls.crt and tls.key: both written aside,
// then renamed into place, so a reader never sees half a pair. It returns the serial.
func (c *CA) WriteServing(dir string) (int64, error) {
	crt, key, serial, err := c.Issue(true)
	if err != nil {
		return 0, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"tls.key", key}, {"tls.crt", crt}} {
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return 0, err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return 0, err
		}
	}
	return serial, nil
}

// ClientCert is a client certificate signed by the CA.
func (c *CA) ClientCert() (tls.Certificate, error) {
	crt, key, _, err := c.Issue(false)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(crt, key)
}
