package certs

import (
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// TestRolloverTimeline records what the Secret, the caBundles and the two replicas hold at
// every change during a CA rollover and, later, a wiped Secret, on the test clock, and
// compares it with testdata/rollover-timeline.golden (-update rewrites it). CAs are named
// in order of appearance. It is the phases of the package comment as they happen.
func TestRolloverTimeline(t *testing.T) {
	start := time.Now()
	data, ca := issuedState(t, start, 41*time.Minute)
	c := newROCluster(t, start, data, roPEM(ca), 2)
	c.serveFiles(data)
	var cas []*x509.Certificate
	name := func(ca *x509.Certificate) string {
		for i, k := range cas {
			if k.Equal(ca) {
				return fmt.Sprintf("CA%d", i+1)
			}
		}
		cas = append(cas, ca)
		return fmt.Sprintf("CA%d", len(cas))
	}
	names := func(certs []*x509.Certificate) string {
		var n []string
		for _, ca := range certs {
			n = append(n, name(ca))
		}
		return "[" + strings.Join(n, " ") + "]"
	}
	issuedBy := func(cert *x509.Certificate) string {
		if cert == nil {
			return "-"
		}
		for _, ca := range cas {
			if cert.CheckSignatureFrom(ca) == nil {
				return name(ca)
			}
		}
		return "?"
	}
	var out strings.Builder
	last := ""
	snapshot := func(event string) {
		s := decode(c.secret().Data, nil, c.clk.Now())
		names(s.bundle) // name new CAs in ca.crt's order
		phase, signing, next := "steady", "-", "-"
		if s.active != nil {
			signing = name(s.active.cert)
		}
		if s.next != nil {
			phase, next = "rolling", name(s.next.cert)
		}
		if s.active == nil && s.next == nil {
			phase = "empty"
		}
		var bundles []string
		for _, b := range c.bundles() {
			bundles = append(bundles, names(orderBundle(parseCerts(b), nil)))
		}
		var servingIssuer string
		if s.serving != nil {
			servingIssuer = issuedBy(s.serving.cert)
		} else {
			servingIssuer = "-"
		}
		line := fmt.Sprintf("phase=%-7s ca.crt=%s signing=%s next=%s tls.crt-from=%s caBundles=%s served=%s,%s",
			phase, names(orderBundle(s.bundle, nil)), signing, next, servingIssuer, strings.Join(bundles, "/"), issuedBy(c.served(0)), issuedBy(c.served(1)))
		if line != last || event != "" {
			fmt.Fprintf(&out, "t+%-7s %-13s %s\n", c.clk.Now().Sub(start).Round(time.Second), event, line)
			last = line
		}
	}
	snapshot("start")
	c.run(20, time.Second, func() bool { snapshot(""); return false })
	s := c.secret()
	s.Data = nil
	if err := c.api.Update(c.ctx, s); err != nil {
		t.Fatal(err)
	}
	snapshot("Secret wiped")
	c.run(20, time.Second, func() bool { snapshot(""); return false })
	c.run(30, time.Minute, func() bool { snapshot(""); return false })
	c.report()

	golden := filepath.Join("testdata", "rollover-timeline.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != out.String() {
		t.Errorf("timeline differs from %s (-update rewrites it):\n%s", golden, out.String())
	}
}
