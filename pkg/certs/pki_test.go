package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

var (
	names      = ServiceDNSNames("pgl", "pgl-system")
	testParams = params{dnsNames: names, caValidity: time.Hour, certValidity: 9 * time.Minute}
)

// next runs one step from the Secret's data as it would be stored, with the live caBundles.
func next(t *testing.T, data map[string][]byte, live []*x509.Certificate, now time.Time, settled bool) (*state, plan) {
	t.Helper()
	s, p, err := step(decode(data, live, now), now, settled, testParams)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

// verify fails unless the Secret's serving certificate chains to its ca.crt at now.
func verify(t *testing.T, s *state, now time.Time) {
	t.Helper()
	if s.serving == nil {
		t.Fatal("no serving certificate")
	}
	if err := verifies(s.serving.cert, parseCerts(s.data()[KeyCACert]), "pgl.pgl-system.svc", now); err != nil {
		t.Fatalf("serving certificate does not verify against ca.crt: %v", err)
	}
}

func issuer(s *state) *x509.Certificate {
	for _, c := range s.bundle {
		if s.serving.cert.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// The state machine of the package comment, step by step: bootstrap, steady renewals, the
// rollover's publish, wait and promote, expiry, wiped and broken Secrets, clocks ahead.
func TestStep(t *testing.T) {
	t0 := time.Now()
	fresh, p := next(t, nil, nil, t0, false)
	if !p.newCA || !p.newCert || fresh.active == nil || fresh.next != nil {
		t.Fatalf("empty Secret, nothing trusted: plan %+v, want a signing CA at once (bootstrap)", p)
	}
	verify(t, fresh, t0)
	ca1 := fresh.active.cert

	t.Run("valid material is kept byte for byte", func(t *testing.T) {
		s, p := next(t, fresh.data(), nil, t0.Add(time.Minute), false)
		if p.newCA || p.newCert || changed(fresh.data(), s.data()) {
			t.Fatalf("plan %+v, changed %v", p, changed(fresh.data(), s.data()))
		}
	})
	t.Run("serving certificate in its last third is renewed with the same CA", func(t *testing.T) {
		now := t0.Add(7 * time.Minute)
		s, p := next(t, fresh.data(), nil, now, false)
		if p.newCA || !p.newCert || !s.active.cert.Equal(ca1) || s.serving.cert.SerialNumber.Cmp(fresh.serving.cert.SerialNumber) == 0 {
			t.Fatalf("plan %+v: want the same CA and a new serving certificate", p)
		}
		verify(t, s, now)
	})

	// The rollover, through the Secret's bytes at every step.
	now := t0.Add(41 * time.Minute)
	renewed, _ := next(t, fresh.data(), nil, t0.Add(39*time.Minute), false) // serving cert fresh at 41m
	published, p := next(t, renewed.data(), nil, now, false)
	t.Run("CA in its last third: a new CA is published, nothing signed by it yet", func(t *testing.T) {
		if !p.newCA || p.promoted || p.newCert || published.next == nil || !published.active.cert.Equal(ca1) {
			t.Fatalf("plan %+v", p)
		}
		if string(published.data()[KeyTLSCert]) != string(renewed.data()[KeyTLSCert]) {
			t.Fatal("the serving pair changed while the new CA is not trusted everywhere yet")
		}
		if len(published.bundle) != 2 || len(published.data()[KeyNextCAKey]) == 0 {
			t.Fatalf("bundle %d CAs, ca-next.key %d bytes: want both CAs and the next key", len(published.bundle), len(published.data()[KeyNextCAKey]))
		}
		if cas := parseCerts(published.data()[KeyCACert]); !cas[0].Equal(ca1) {
			t.Error("ca.crt must start with the signing CA (what earlier versions read as the current CA)")
		}
	})
	t.Run("not settled: nothing changes", func(t *testing.T) {
		s, p := next(t, published.data(), nil, now.Add(time.Minute), false)
		if p.newCA || p.promoted || changed(published.data(), s.data()) {
			t.Fatalf("plan %+v", p)
		}
	})
	promoted, p := next(t, published.data(), nil, now.Add(time.Minute), true)
	t.Run("settled: the new CA signs, the old one stays trusted", func(t *testing.T) {
		if !p.promoted || !p.newCert || p.newCA || promoted.next != nil || !promoted.active.cert.Equal(published.next.cert) {
			t.Fatalf("plan %+v", p)
		}
		if !issuer(promoted).Equal(published.next.cert) || len(promoted.bundle) != 2 {
			t.Fatalf("serving certificate from %v, bundle %d CAs", issuer(promoted).Subject, len(promoted.bundle))
		}
		if _, ok := promoted.data()[KeyNextCAKey]; !ok || promoted.data()[KeyNextCAKey] != nil {
			t.Error("ca-next.key must be removed after the promotion")
		}
		verify(t, promoted, now.Add(time.Minute))
	})
	t.Run("the old CA leaves the bundle once it has expired by the margin, not before", func(t *testing.T) {
		for _, at := range []time.Duration{59 * time.Minute, 61 * time.Minute, time.Hour + expiredTrustMargin - time.Second} {
			s, _ := next(t, promoted.data(), []*x509.Certificate{ca1}, t0.Add(at), false)
			if len(s.bundle) != 2 {
				t.Fatalf("at t0+%s (the old CA expires at t0+1h, margin %s): %d CAs, want 2", at, expiredTrustMargin, len(s.bundle))
			}
		}
		s, _ := next(t, promoted.data(), []*x509.Certificate{ca1}, t0.Add(time.Hour+expiredTrustMargin+time.Minute), false)
		if len(s.bundle) != 1 || !s.bundle[0].Equal(promoted.active.cert) {
			t.Fatalf("after the old CA's expiry: %d CAs", len(s.bundle))
		}
	})
	t.Run("a next CA that is not valid yet is not promoted", func(t *testing.T) {
		early := published.next.cert.NotBefore.Add(-time.Second)
		s, p := next(t, published.data(), nil, early, true)
		if p.promoted || s.next == nil {
			t.Fatalf("plan %+v", p)
		}
	})

	t.Run("wiped Secret: the CA still in the caBundles stays, a new one waits", func(t *testing.T) {
		s, p := next(t, nil, []*x509.Certificate{ca1}, t0.Add(time.Minute), false)
		if !p.newCA || s.active != nil || s.next == nil || s.serving != nil {
			t.Fatalf("plan %+v: want a published next CA, no signing CA, no serving pair yet", p)
		}
		if len(s.bundle) != 2 || !s.bundle[0].Equal(ca1) {
			t.Fatalf("bundle %d CAs: want the served CA kept", len(s.bundle))
		}
		s2, p := next(t, s.data(), []*x509.Certificate{ca1}, t0.Add(2*time.Minute), true)
		if !p.promoted || s2.serving == nil || !issuer(s2).Equal(s.next.cert) {
			t.Fatalf("after the grace: plan %+v", p)
		}
	})
	t.Run("deleted ca.key: rollover, the serving pair stays until the promotion", func(t *testing.T) {
		d := fresh.data()
		delete(d, KeyCAKey)
		s, p := next(t, d, nil, t0.Add(time.Minute), false)
		if !p.newCA || s.next == nil || s.active != nil || string(s.data()[KeyTLSCert]) != string(d[KeyTLSCert]) {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("everything expired: bootstrap again", func(t *testing.T) {
		s, p := next(t, fresh.data(), []*x509.Certificate{ca1}, t0.Add(2*time.Hour), false)
		if !p.newCA || s.active == nil || s.next != nil || len(s.bundle) != 1 {
			t.Fatalf("plan %+v", p)
		}
		verify(t, s, t0.Add(2*time.Hour))
	})
	t.Run("a serving certificate from a clock ahead is reissued", func(t *testing.T) {
		ahead, _ := next(t, fresh.data(), nil, t0.Add(7*time.Minute), false) // renewed "7 minutes later"
		s, p := next(t, ahead.data(), nil, t0.Add(time.Minute), false)
		if !p.newCert || s.serving.cert.NotBefore.After(t0.Add(time.Minute)) {
			t.Fatalf("plan %+v, NotBefore %s", p, s.serving.cert.NotBefore)
		}
		// 7 minutes ahead is past the 5-minute backdate; 4 minutes ahead is within it.
		_, p = next(t, ahead.data(), nil, t0.Add(4*time.Minute), false)
		if p.newCert {
			t.Fatalf("within the backdate: plan %+v", p)
		}
	})
	t.Run("a certificate capped at its CA's expiry is not reissued at every step", func(t *testing.T) {
		short := testParams
		short.certValidity = 30 * time.Minute
		s, _, err := step(decode(fresh.data(), nil, t0.Add(35*time.Minute)), t0.Add(35*time.Minute), false, short)
		if err != nil {
			t.Fatal(err)
		}
		if !s.serving.cert.NotAfter.Equal(ca1.NotAfter) {
			t.Fatalf("want a certificate capped at the CA's expiry, got %s", s.serving.cert.NotAfter)
		}
		s2, p, err := step(decode(s.data(), nil, t0.Add(36*time.Minute)), t0.Add(36*time.Minute), false, short)
		if err != nil || p.newCert || changed(s.data(), s2.data()) {
			t.Fatalf("plan %+v, err %v", p, err)
		}
	})
	t.Run("other service names get a new certificate", func(t *testing.T) {
		other := testParams
		other.dnsNames = ServiceDNSNames("other", "pgl-system")
		_, p, err := step(decode(fresh.data(), nil, t0), t0, false, other)
		if err != nil || p.newCA || !p.newCert {
			t.Fatalf("plan %+v, %v", p, err)
		}
	})
	t.Run("broken or mismatched material is replaced", func(t *testing.T) {
		other, _ := next(t, nil, nil, t0, false)
		d, o := fresh.data(), other.data()
		cases := map[string]map[string][]byte{
			"garbage":             {KeyCACert: []byte("x"), KeyCAKey: []byte("y"), KeyTLSCert: []byte("z"), KeyTLSKey: []byte("w")},
			"key of another pair": {KeyCACert: d[KeyCACert], KeyCAKey: d[KeyCAKey], KeyTLSCert: d[KeyTLSCert], KeyTLSKey: o[KeyTLSKey]},
			"cert of another CA":  {KeyCACert: d[KeyCACert], KeyCAKey: d[KeyCAKey], KeyTLSCert: o[KeyTLSCert], KeyTLSKey: o[KeyTLSKey]},
		}
		for name, data := range cases {
			s, p := next(t, data, nil, t0, false)
			if !p.newCert {
				t.Errorf("%s: plan %+v, want a new serving certificate", name, p)
			}
			verify(t, s, t0)
		}
		// The CA key of another CA: the CA in ca.crt has no key, so this is a rollover.
		s, p := next(t, map[string][]byte{KeyCACert: d[KeyCACert], KeyCAKey: o[KeyCAKey], KeyTLSCert: d[KeyTLSCert], KeyTLSKey: d[KeyTLSKey]}, nil, t0, false)
		if !p.newCA || s.next == nil {
			t.Errorf("CA key of another CA: plan %+v, want a published next CA", p)
		}
	})
}

// trusted is the monotonic merge: union, no duplicates, expired out, nothing else out.
func TestTrusted(t *testing.T) {
	t0 := time.Now()
	a, _, _ := newCA(time.Hour, t0)
	b, _, _ := newCA(2*time.Hour, t0)
	old, _, _ := newCA(time.Minute, t0.Add(-time.Hour))
	for _, tc := range []struct {
		name  string
		lists [][]*x509.Certificate
		want  []*x509.Certificate
	}{
		{"union", [][]*x509.Certificate{{a}, {b}}, []*x509.Certificate{a, b}},
		{"duplicates", [][]*x509.Certificate{{a, a}, {a, b}}, []*x509.Certificate{a, b}},
		{"expired dropped", [][]*x509.Certificate{{a, old}, {old}}, []*x509.Certificate{a}},
		{"a stale view cannot remove", [][]*x509.Certificate{{a, b}, {a}}, []*x509.Certificate{a, b}},
		{"empty", nil, nil},
	} {
		if got := trusted(t0, tc.lists...); !sameSet(got, tc.want) || len(got) != len(tc.want) {
			t.Errorf("%s: got %d certificates, want %d", tc.name, len(got), len(tc.want))
		}
	}
	if o := orderBundle([]*x509.Certificate{a, b}, a); !o[0].Equal(a) {
		t.Error("orderBundle: the signing CA must come first")
	}
	if o := orderBundle([]*x509.Certificate{a, b}, nil); !o[0].Equal(b) {
		t.Error("orderBundle: newest expiry first")
	}
}
