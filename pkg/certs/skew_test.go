package certs

import (
	"context"
	"errors"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// Issue 26 finding 3: one replica whose wall clock is two hours ahead (CA validity one hour,
// as in the other rollover tests) judged the CA that every other replica serves from as
// expired, dropped it from the Secret and from every live caBundle, and bootstrapped a new
// CA: 28 "unknown authority" handshakes on the other replicas. With the API server's clock
// to check against, the skewed replica judges expiry by the API server's time, as the API
// server itself does when it verifies the served certificate.
func TestSkewedReplicaKeepsTheServedCA(t *testing.T) {
	now := time.Now()
	data, oldCA := issuedState(t, now, 10*time.Minute) // CA valid until now+50m
	c := newROCluster(t, now, data, roPEM(oldCA), 2)
	c.serveFiles(data)
	c.check("at the start")

	skewed := clocktesting.NewFakePassiveClock(now.Add(2 * time.Hour))
	c.replicas[0] = roReplica(t, c.api, c.api, c.dirs[0], skewed)
	c.replicas[0].serverClock = func(context.Context) (time.Time, error) { return c.clk.Now(), nil }
	c.run(3, time.Second, nil)

	for i, b := range c.bundles() {
		has := false
		for _, ca := range roCerts(b) {
			has = has || ca.Equal(oldCA)
		}
		if !has {
			t.Errorf("webhook %d's caBundle lost the CA the replicas serve from", i)
		}
	}
	if !c.replicas[0].skewed {
		t.Error("the skewed replica did not notice its skew")
	}
	c.report()
}

func TestRotatorNow(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		server     serverClock
		want       time.Time
		wantSkewed bool
	}{
		{"no server clock", nil, t0, false},
		{"server unreadable", func(context.Context) (time.Time, error) { return time.Time{}, errors.New("down") }, t0, false},
		{"within tolerance", func(context.Context) (time.Time, error) { return t0.Add(-20 * time.Second), nil }, t0, false},
		{"local ahead", func(context.Context) (time.Time, error) { return t0.Add(-2 * time.Hour), nil }, t0.Add(-2*time.Hour + 500*time.Millisecond), true},
		{"local behind", func(context.Context) (time.Time, error) { return t0.Add(time.Hour), nil }, t0.Add(time.Hour + 500*time.Millisecond), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := roReplica(t, nil, nil, t.TempDir(), clocktesting.NewFakePassiveClock(t0))
			r.serverClock = tc.server
			if got := r.now(context.Background()); !got.Equal(tc.want) || r.skewed != tc.wantSkewed {
				t.Fatalf("now = %s (skewed %v), want %s (skewed %v)", got, r.skewed, tc.want, tc.wantSkewed)
			}
		})
	}
}
