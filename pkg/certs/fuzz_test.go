package certs

import (
	"slices"
	"testing"
	"time"
)

// FuzzStep feeds arbitrary Secret content and caBundles (an admin, another tool or a bad
// restore may have written anything there) to decode and step: no panic, trust never
// shrinks (every unexpired certificate of ca.crt and of the caBundles stays), and whenever
// there is a signing CA the Secret's serving certificate is signed by it.
func FuzzStep(f *testing.F) {
	now := time.Now()
	fresh, _, err := step(decode(nil, nil, now), now, false, testParams)
	if err != nil {
		f.Fatal(err)
	}
	rolling, _, err := step(decode(fresh.data(), nil, now.Add(41*time.Minute)), now.Add(41*time.Minute), false, testParams)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []*state{fresh, rolling} {
		d := s.data()
		f.Add(d[KeyCACert], d[KeyCAKey], d[KeyNextCAKey], d[KeyTLSCert], d[KeyTLSKey], d[KeyCACert])
		f.Add(d[KeyCACert], d[KeyCAKey], d[KeyNextCAKey], d[KeyTLSCert], d[KeyTLSKey], []byte(nil))
		f.Add([]byte(nil), []byte(nil), []byte(nil), []byte(nil), []byte(nil), d[KeyCACert])
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), []byte("x"), []byte("y"), []byte("z"), []byte("w"), []byte("v"))
	f.Fuzz(func(t *testing.T, caCrt, caKey, nextKey, tlsCrt, tlsKey, live []byte) {
		at := now.Add(time.Minute)
		data := map[string][]byte{KeyCACert: caCrt, KeyCAKey: caKey, KeyNextCAKey: nextKey, KeyTLSCert: tlsCrt, KeyTLSKey: tlsKey}
		liveCerts := parseCerts(live)
		for _, settled := range []bool{false, true} {
			out, _, err := step(decode(data, liveCerts, at), at, settled, testParams)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range append(parseCerts(caCrt), liveCerts...) {
				if !at.After(c.NotAfter) && !slices.ContainsFunc(out.bundle, c.Equal) {
					t.Fatalf("an unexpired certificate (%s) left the trust", c.Subject)
				}
			}
			if out.active != nil {
				if out.serving == nil {
					t.Fatal("a signing CA and no serving certificate")
				}
				if err := out.serving.cert.CheckSignatureFrom(out.active.cert); err != nil {
					t.Fatalf("serving certificate not signed by the signing CA: %v", err)
				}
				// And it is stable: the same state again changes nothing.
				again, p, err := step(decode(out.data(), nil, at), at, false, testParams)
				if err != nil || p.newCert || p.newCA || changed(out.data(), again.data()) {
					t.Fatalf("not a fixed point: plan %+v, err %v", p, err)
				}
			}
			if out.next != nil && !slices.ContainsFunc(out.bundle, out.next.cert.Equal) {
				t.Fatal("the next CA is not in the trust")
			}
		}
	})
}
