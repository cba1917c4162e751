package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

var names = ServiceDNSNames("pgl", "pgl-system")

func mustEnsure(t *testing.T, data map[string][]byte, now time.Time) (*material, plan) {
	t.Helper()
	m, p, err := ensure(data, names, time.Hour, 9*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	return m, p
}

func verify(t *testing.T, m *material, now time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(m.caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	if _, err := m.cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "pgl.pgl-system.svc", CurrentTime: now}); err != nil {
		t.Fatalf("serving certificate does not verify against ca.crt: %v", err)
	}
}

// The renewal rules: what is regenerated, from which state, and that the result always
// verifies for the name the apiserver dials.
func TestEnsure(t *testing.T) {
	t0 := time.Now()
	fresh, p := mustEnsure(t, nil, t0)
	if !p.newCA || !p.newCert {
		t.Fatalf("empty Secret: plan %+v, want new CA and certificate", p)
	}
	verify(t, fresh, t0)

	t.Run("valid material is kept byte for byte", func(t *testing.T) {
		m, p := mustEnsure(t, fresh.data(), t0.Add(time.Minute))
		if p.newCA || p.newCert || changed(fresh.data(), m.data()) {
			t.Fatalf("plan %+v, changed %v", p, changed(fresh.data(), m.data()))
		}
	})
	t.Run("serving certificate in its last third is renewed with the same CA", func(t *testing.T) {
		now := t0.Add(7 * time.Minute)
		m, p := mustEnsure(t, fresh.data(), now)
		if p.newCA || !p.newCert {
			t.Fatalf("plan %+v", p)
		}
		if string(m.caPEM) != string(fresh.caPEM) || m.cert.SerialNumber.Cmp(fresh.cert.SerialNumber) == 0 {
			t.Fatal("want the same CA bundle and a new serving certificate")
		}
		verify(t, m, now)
	})
	t.Run("CA in its last third is rotated and the old one stays trusted", func(t *testing.T) {
		now := t0.Add(41 * time.Minute)
		m, p := mustEnsure(t, fresh.data(), now)
		if !p.newCA || !p.newCert || len(m.cas) != 2 || !m.cas[1].Equal(fresh.cas[0]) {
			t.Fatalf("plan %+v, %d CAs", p, len(m.cas))
		}
		verify(t, m, now)
		// Once the old CA has expired it leaves the bundle.
		later := t0.Add(61 * time.Minute)
		m2, _ := mustEnsure(t, m.data(), later)
		if len(m2.cas) != 1 || !m2.cas[0].Equal(m.cas[0]) {
			t.Fatalf("after expiry of the old CA: %d CAs", len(m2.cas))
		}
	})
	t.Run("other service names get a new certificate", func(t *testing.T) {
		_, p, err := ensure(fresh.data(), ServiceDNSNames("other", "pgl-system"), time.Hour, 9*time.Minute, t0)
		if err != nil || p.newCA || !p.newCert {
			t.Fatalf("plan %+v, %v", p, err)
		}
	})
	t.Run("broken or mismatched material is replaced", func(t *testing.T) {
		other, _ := mustEnsure(t, nil, t0)
		cases := map[string]map[string][]byte{
			"garbage":              {KeyCACert: []byte("x"), KeyCAKey: []byte("y"), KeyTLSCert: []byte("z"), KeyTLSKey: []byte("w")},
			"key of another pair":  {KeyCACert: fresh.caPEM, KeyCAKey: fresh.caKeyPEM, KeyTLSCert: fresh.certPEM, KeyTLSKey: other.keyPEM},
			"CA key of another CA": {KeyCACert: fresh.caPEM, KeyCAKey: other.caKeyPEM, KeyTLSCert: fresh.certPEM, KeyTLSKey: fresh.keyPEM},
			"cert of another CA":   {KeyCACert: fresh.caPEM, KeyCAKey: fresh.caKeyPEM, KeyTLSCert: other.certPEM, KeyTLSKey: other.keyPEM},
		}
		for name, data := range cases {
			m, p := mustEnsure(t, data, t0)
			if !p.newCert {
				t.Errorf("%s: plan %+v, want a new serving certificate", name, p)
			}
			verify(t, m, t0)
		}
	})
}
