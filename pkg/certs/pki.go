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
	// KeyCACert is the trust bundle: every CA that the Secret or a caBundle held and that has
	// not expired, the signing CA first. It is what every caBundle is kept a superset of.
	KeyCACert = "ca.crt"
	// KeyCAKey is the private key of the signing CA (the one serving certificates come from).
	KeyCAKey = "ca.key"
	// KeyNextCAKey is the private key of the CA being rolled in: its certificate is in ca.crt
	// already, but it signs nothing until it has been in every caBundle for the grace period.
	// Present only during a CA rollover.
	KeyNextCAKey = "ca-next.key"
	KeyTLSCert   = "tls.crt"
	KeyTLSKey    = "tls.key"
)

// backdate absorbs clock skew between this pod and the apiserver: a certificate that the
// apiserver considers "not yet valid" would fail every admission call.
const backdate = 5 * time.Minute

// signer is a CA with its key.
type signer struct {
	cert   *x509.Certificate
	key    crypto.Signer
	keyPEM []byte
}

// pair is a serving certificate with its key.
type pair struct {
	cert    *x509.Certificate
	certPEM []byte
	keyPEM  []byte
}

// state is the content of the Secret, decoded. The phases of the package comment are
// functions of it: steady (active, no next), rolling (next present), bootstrap (no CA at all).
type state struct {
	// bundle is the trust: the Secret's ca.crt and every live caBundle, minus expired certificates.
	bundle []*x509.Certificate
	// active signs serving certificates; nil when its key is missing or it expired.
	active *signer
	// next is published in the bundle and waits for promotion; nil outside a rollover.
	next *signer
	// serving is what every replica serves once every caBundle verifies it; nil when missing.
	serving *pair
}

// data is the Secret content for s: a key whose value is nil is to be removed.
func (s *state) data() map[string][]byte {
	d := map[string][]byte{}
	var first *x509.Certificate
	if s.active != nil {
		first = s.active.cert
		d[KeyCAKey] = s.active.keyPEM
	} else {
		d[KeyCAKey] = nil
	}
	d[KeyCACert] = encodeCerts(orderBundle(s.bundle, first))
	d[KeyNextCAKey] = nil
	if s.next != nil {
		d[KeyNextCAKey] = s.next.keyPEM
	}
	d[KeyTLSCert], d[KeyTLSKey] = nil, nil
	if s.serving != nil {
		d[KeyTLSCert], d[KeyTLSKey] = s.serving.certPEM, s.serving.keyPEM
	}
	return d
}

// decode reads the Secret's data together with the certificates of the live caBundles
// (trust never shrinks, see trusted) as they are at now. Whatever is missing, unparsable or
// does not match its key comes back nil, which step repairs.
func decode(data map[string][]byte, live []*x509.Certificate, now time.Time) *state {
	s := &state{bundle: trusted(now, parseCerts(data[KeyCACert]), live)}
	s.active = findSigner(s.bundle, data[KeyCAKey])
	s.next = findSigner(s.bundle, data[KeyNextCAKey])
	if s.next != nil && s.active != nil && s.next.cert.Equal(s.active.cert) {
		s.next = nil
	}
	if b, _ := pem.Decode(data[KeyTLSCert]); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			if k, err := parseKey(data[KeyTLSKey]); err == nil && publicKeysEqual(k.Public(), c.PublicKey) {
				s.serving = &pair{cert: c, certPEM: data[KeyTLSCert], keyPEM: data[KeyTLSKey]}
			}
		}
	}
	return s
}

// findSigner returns the CA of bundle whose public key matches keyPEM.
func findSigner(bundle []*x509.Certificate, keyPEM []byte) *signer {
	k, err := parseKey(keyPEM)
	if err != nil {
		return nil
	}
	for _, c := range bundle {
		// A CA that may not sign certificates would be "renewed" at every reconcile.
		canSign := c.IsCA && (c.KeyUsage == 0 || c.KeyUsage&x509.KeyUsageCertSign != 0)
		if canSign && publicKeysEqual(k.Public(), c.PublicKey) {
			return &signer{cert: c, key: k, keyPEM: keyPEM}
		}
	}
	return nil
}

// params are the options step needs.
type params struct {
	dnsNames     []string
	caValidity   time.Duration
	certValidity time.Duration
}

// plan is what step decided, for logs, metrics and tests.
type plan struct {
	// newCA: a CA was generated (published as next, or active at once when bootstrapping).
	newCA bool
	// promoted: next became the signing CA.
	promoted bool
	newCert  bool
	reason   string
}

func (p *plan) because(format string, args ...any) {
	if p.reason != "" {
		p.reason += "; "
	}
	p.reason += fmt.Sprintf(format, args...)
}

// step is the state machine of the package comment: from the decoded Secret at now, with
// nextSettled telling whether the next CA has been in every caBundle for the grace period
// (as this replica observed it), it returns the Secret's next state. It is pure apart from
// key generation.
func step(s *state, now time.Time, nextSettled bool, p params) (*state, plan, error) {
	out := &state{bundle: slices.Clone(s.bundle), active: s.active, next: s.next, serving: s.serving}
	var pl plan

	due := ""
	switch {
	case out.active == nil:
		due = "no usable signing CA in the Secret"
	case now.After(out.active.cert.NotAfter.Add(-p.caValidity / 3)):
		due = fmt.Sprintf("signing CA expires %s", out.active.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if due != "" && out.next == nil {
		ca, key, err := newCA(p.caValidity, now)
		if err != nil {
			return nil, pl, err
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return nil, pl, err
		}
		sg := &signer{cert: ca, key: key, keyPEM: keyPEM}
		pl.newCA = true
		if len(out.bundle) == 0 {
			// Bootstrap: nothing is trusted, so nothing served can lose trust. The new CA
			// signs at once; its certificate is still served only once a caBundle holds it.
			out.active = sg
			pl.because("%s; nothing trusted yet: new CA signs at once", due)
		} else {
			out.next = sg
			pl.because("%s; new CA published, it signs once every caBundle has held it for the grace period", due)
		}
		out.bundle = append(out.bundle, ca)
	}
	if out.next != nil && nextSettled && !now.Before(out.next.cert.NotBefore) {
		out.active, out.next = out.next, nil
		pl.promoted = true
		pl.because("new CA has been in every caBundle for the grace period: it signs from now on")
	}

	if out.active != nil {
		if why := renewal(out.serving, out.active.cert, p, now); why != "" {
			cert, certPEM, keyPEM, err := newServingCert(out.active.cert, out.active.key, p.dnsNames, p.certValidity, now)
			if err != nil {
				return nil, pl, err
			}
			out.serving = &pair{cert: cert, certPEM: certPEM, keyPEM: keyPEM}
			pl.newCert = true
			pl.because("%s", why)
		}
	}
	return out, pl, nil
}

// renewal says why the serving pair must be reissued by ca, or "" when it may stay.
func renewal(sv *pair, ca *x509.Certificate, p params, now time.Time) string {
	switch {
	case sv == nil:
		return "no usable serving certificate in the Secret"
	case sv.cert.CheckSignatureFrom(ca) != nil:
		return "serving certificate not signed by the signing CA"
	case !slices.Equal(sortedCopy(sv.cert.DNSNames), sortedCopy(p.dnsNames)):
		return fmt.Sprintf("serving certificate names %v, want %v", sv.cert.DNSNames, p.dnsNames)
	case now.Before(sv.cert.NotBefore):
		// Issued by a replica whose clock is ahead of this one by more than the backdate:
		// reissued here, it is valid for every clock at or after this replica's.
		return fmt.Sprintf("serving certificate not valid before %s (issued by a clock ahead of this one)", sv.cert.NotBefore.UTC().Format(time.RFC3339))
	case now.After(sv.cert.NotAfter.Add(-p.certValidity / 3)):
		// A certificate capped at its CA's expiry cannot be extended by the same CA: the CA
		// rollover renews it; reissuing it here would repeat at every reconcile.
		if !servingNotAfter(ca, p.certValidity, now).After(sv.cert.NotAfter) && now.Before(sv.cert.NotAfter) {
			return ""
		}
		return fmt.Sprintf("serving certificate expires %s", sv.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// trusted merges certificate lists into one set without duplicates or expired entries.
// This is the one rule that keeps trust monotonic: a certificate leaves the trust only by
// expiring, never because some replica's view lacks it. Expired means past NotAfter by
// expiredTrustMargin: the judging clock is checked against the API server's (rotator.now),
// and the margin covers a replica that could not check it.
func trusted(now time.Time, lists ...[]*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, l := range lists {
		for _, c := range l {
			if now.After(c.NotAfter.Add(expiredTrustMargin)) || slices.ContainsFunc(out, c.Equal) {
				continue
			}
			out = append(out, c)
		}
	}
	return out
}

// expiredTrustMargin is how long an expired certificate stays in the trust. Keeping it
// costs nothing (nothing it signed verifies after its expiry at a correct clock); dropping
// it early breaks every replica that still serves what it signed.
const expiredTrustMargin = 10 * time.Minute

// sameSet reports whether a and b hold the same certificates.
func sameSet(a, b []*x509.Certificate) bool { return subset(a, b) && subset(b, a) }

func subset(a, b []*x509.Certificate) bool {
	for _, c := range a {
		if !slices.ContainsFunc(b, c.Equal) {
			return false
		}
	}
	return true
}

// orderBundle is the canonical order, so that replicas with the same view write the same
// bytes: first (the signing CA) if given, then newest expiry first.
func orderBundle(certs []*x509.Certificate, first *x509.Certificate) []*x509.Certificate {
	out := slices.Clone(certs)
	slices.SortStableFunc(out, func(a, b *x509.Certificate) int {
		switch {
		case first != nil && a.Equal(first):
			return -1
		case first != nil && b.Equal(first):
			return 1
		}
		if c := b.NotAfter.Compare(a.NotAfter); c != 0 {
			return c
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	return out
}

// verifies reports whether the serving certificate chains, at now, to bundle for dnsName.
func verifies(c *x509.Certificate, bundle []*x509.Certificate, dnsName string, now time.Time) error {
	pool := x509.NewCertPool()
	for _, b := range bundle {
		pool.AddCert(b)
	}
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
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

// servingNotAfter is the expiry of a serving certificate issued by ca at now: a certificate
// cannot be trusted past its issuer's expiry.
func servingNotAfter(ca *x509.Certificate, validity time.Duration, now time.Time) time.Time {
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	return notAfter
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
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-backdate),
		NotAfter:     servingNotAfter(ca, validity, now),
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
