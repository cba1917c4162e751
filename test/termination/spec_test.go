package termination

import (
	"strings"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

func TestPlanFor(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name        string
		term        Termination
		term0, kill time.Duration
		floored     bool
	}{
		{"no preStop, default grace", Termination{Grace: 30 * s}, 0, 30 * s, false},
		{"sleep 30 uses up grace 30: 2 s floor", Termination{HasPreStop: true, PreStopSleep: 30 * s, Grace: 30 * s}, 30 * s, 32 * s, true},
		{"sleep 30, grace 45", Termination{HasPreStop: true, PreStopSleep: 30 * s, Grace: 45 * s}, 30 * s, 45 * s, false},
		{"hook cut at the grace period", Termination{HasPreStop: true, PreStopSleep: 60 * s, Grace: 30 * s}, 30 * s, 32 * s, true},
		{"1 s left is raised to 2 s", Termination{HasPreStop: true, PreStopSleep: 29 * s, Grace: 30 * s}, 29 * s, 31 * s, true},
		{"grace 0 still gets the floor", Termination{Grace: 0}, 0, 2 * s, true},
		{"grace 0 skips the hook", Termination{HasPreStop: true, PreStopSleep: 5 * s}, 0, 2 * s, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanFor(tc.term)
			if p.SIGTERMAt != tc.term0 || p.SIGKILLAt != tc.kill || p.Floored != tc.floored {
				t.Errorf("PlanFor(%v) = %+v; want SIGTERM %s, SIGKILL %s, floored %v", tc.term, p, tc.term0, tc.kill, tc.floored)
			}
		})
	}
}

const podTemplate = `apiVersion: v1
kind: Pod
metadata:
  name: pgw
spec:
  GRACE
  containers:
    - name: sidecar
      image: busybox
    - name: gateway
      image: quay.io/prometheus/pushgateway:v1.11.3
      readinessProbe:
        httpGet: {path: /-/ready, port: 9091}
        initialDelaySeconds: 7
      lifecycle:
        preStop:
          HOOK
`

func TestFromManifests(t *testing.T) {
	for _, tc := range []struct {
		name, grace, hook string
		sleep, wantGrace  time.Duration
		wantErr           string
	}{
		{name: "sleep action", hook: "sleep: {seconds: 20}", sleep: 20 * time.Second, wantGrace: 30 * time.Second},
		{name: "exec sh -c", grace: "terminationGracePeriodSeconds: 60", hook: `exec: {command: ["sh", "-c", "sleep 30"]}`, sleep: 30 * time.Second, wantGrace: 60 * time.Second},
		{name: "exec /bin/sh -c", hook: `exec: {command: ["/bin/sh", "-c", "  sleep 12 "]}`, sleep: 12 * time.Second, wantGrace: 30 * time.Second},
		{name: "exec sleep", hook: `exec: {command: ["/bin/sleep", "9"]}`, sleep: 9 * time.Second, wantGrace: 30 * time.Second},
		{name: "script is not a plain sleep", hook: `exec: {command: ["sh", "-c", "sleep 5; kill 1"]}`, wantErr: "not a plain sleep"},
		{name: "httpGet cannot be replayed", hook: `httpGet: {path: /quit, port: 9091}`, wantErr: "cannot replay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.NewReplacer("GRACE", tc.grace, "HOOK", tc.hook).Replace(podTemplate)
			term, err := FromManifests([]byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n" + doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if term.Container != "gateway" || !term.HasPreStop || term.PreStopSleep != tc.sleep || term.Grace != tc.wantGrace {
				t.Errorf("got %+v; want container gateway, preStop %s, grace %s", term, tc.sleep, tc.wantGrace)
			}
			if term.ReadyDelay != 7*time.Second || term.ReadyPeriod != 10*time.Second {
				t.Errorf("readiness %s/%s; want 7s/10s", term.ReadyDelay, term.ReadyPeriod)
			}
		})
	}
}

func TestUpstreamFixture(t *testing.T) {
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"default.yaml", "default-sts.yaml", "persistence.yaml"} {
		term := readSpec(t, fixture(t, root, name))
		if term.HasPreStop || term.Grace != 30*time.Second || term.Container != "pushgateway" || term.ReadyDelay != 10*time.Second {
			t.Errorf("%s: %+v; want the chart's pushgateway container with no preStop, the default grace 30s and readiness after 10s", name, term)
		}
	}
}
