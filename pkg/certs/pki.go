package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Keys of the Secret. tls.crt/tls.key are the names kubebuilder, cert-manager and the
// kubernetes.io/tls type use, so the same Secret layout works with every certificate source.
const (
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
)

// backdate absorbs clock skew between this pod and the apiserver: a certificate that the
// apiserver considers "not yet valid" would fail every admission call.
const backdate = 5 * time.Minute

// material is the decoded content of the Secret.
type material struct {
	// cas is the trust bundle, current CA first; older CAs stay until they expire so that a
	// replica still serving a certificate from the old CA is trusted during a CA rotation.
	cas      []*x509.Certificate
	caKey    crypto.Signer
	cert     *x509.Certificate
	certPEM  []byte
	keyPEM   []byte
	caPEM    []byte
	caKeyPEM []byte
}

func (m *material) data() map[string][]byte {
	return map[string][]byte{
		KeyCACert:  m.caPEM,
		KeyCAKey:   m.caKeyPEM,
		KeyTLSCert: m.certPEM,
		KeyTLSKey:  m.keyPEM,
	}
}

// decode reads what it can; a nil field means missing or unusable, which the caller repairs.
func decode(data map[string][]byte) *material {
	m := &material{}
	for rest := data[KeyCACert]; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && c.IsCA {
			m.cas = append(m.cas, c)
		}
	}
	if k, err := parseKey(data[KeyCAKey]); err == nil && len(m.cas) > 0 && publicKeysEqual(k.Public(), m.cas[0].PublicKey) {
		m.caKey = k
		m.caKeyPEM = data[KeyCAKey]
	}
	if b, _ := pem.Decode(data[KeyTLSCert]); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			if k, err := parseKey(data[KeyTLSKey]); err == nil && publicKeysEqual(k.Public(), c.PublicKey) {
				m.cert, m.certPEM, m.keyPEM = c, data[KeyTLSCert], data[KeyTLSKey]
			}
		}
	}
	return m
}

// plan is what reconcile decided to do with the material, for logs and tests.
type plan struct {
	newCA, newCert bool
	reason         string
}

// ensure returns material that is valid at now for dnsNames, generating what is missing,
// broken or due for renewal (the last third of its lifetime, as cert-manager does by default).
func ensure(data map[string][]byte, dnsNames []string, caValidity, certValidity time.Duration, now time.Time) (*material, plan, error) {
	m := decode(data)
	p := plan{}
	switch {
	case len(m.cas) == 0 || m.caKey == nil:
		p.newCA, p.reason = true, "no usable CA in the Secret"
	case now.After(m.cas[0].NotAfter.Add(-caValidity / 3)):
		p.newCA, p.reason = true, fmt.Sprintf("CA expires %s", m.cas[0].NotAfter.UTC().Format(time.RFC3339))
	}
	if p.newCA {
		ca, key, err := newCA(caValidity, now)
		if err != nil {
			return nil, p, err
		}
		m.cas = append([]*x509.Certificate{ca}, m.cas...)
		m.caKey = key
		if m.caKeyPEM, err = encodeKey(key); err != nil {
			return nil, p, err
		}
	}
	// Expired CAs can no longer validate anything: drop them so the bundle does not grow.
	current := m.cas[0]
	m.cas = slices.DeleteFunc(m.cas, func(c *x509.Certificate) bool { return c != current && now.After(c.NotAfter) })
	var caPEM bytes.Buffer
	for _, c := range m.cas {
		_ = pem.Encode(&caPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	m.caPEM = caPEM.Bytes()

	switch {
	case p.newCA:
		p.newCert = true
	case m.cert == nil:
		p.newCert, p.reason = true, "no usable serving certificate in the Secret"
	case m.cert.CheckSignatureFrom(m.cas[0]) != nil:
		p.newCert, p.reason = true, "serving certificate not signed by the current CA"
	case !slices.Equal(sortedCopy(m.cert.DNSNames), sortedCopy(dnsNames)):
		p.newCert, p.reason = true, fmt.Sprintf("serving certificate names %v, want %v", m.cert.DNSNames, dnsNames)
	case now.After(m.cert.NotAfter.Add(-certValidity / 3)):
		p.newCert, p.reason = true, fmt.Sprintf("serving certificate expires %s", m.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if p.newCert {
		cert, certPEM, keyPEM, err := newServingCert(m.cas[0], m.caKey, dnsNames, certValidity, now)
		if err != nil {
			return nil, p, err
		}
		m.cert, m.certPEM, m.keyPEM = cert, certPEM, keyPEM
	}
	return m, p, nil
}

func newCA(validity time.Duration, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("pushgateway-lifecycle-ca@%d", now.Unix()), Organization: []string{"pushgateway-lifecycle"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newServingCert(ca *x509.Certificate, caKey crypto.Signer, dnsNames []string, validity time.Duration, now time.Time) (*x509.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := now.Add(validity)
	// A certificate cannot be trusted past its issuer's expiry.
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(p []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("not a signing key")
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	return x509.ParsePKCS1PrivateKey(b.Bytes)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// ServiceDNSNames are the names the apiserver may use to reach a webhook Service: it dials
// <service>.<namespace>.svc, the others cover in-cluster clients and tools.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
		service + "." + namespace,
		service,
	}
}
