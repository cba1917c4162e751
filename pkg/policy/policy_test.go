package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestDefault(t *testing.T) {
	p := Default()
	if p.Defaults.PreStopSleep != 30 || p.Defaults.ShutdownBudget != 15 || p.Defaults.PreStopAction != "sleep" ||
		p.Limits.MinPreStopSleep != 5 || p.Limits.MaxPreStopSleep != 300 || p.Limits.MaxTerminationGracePeriod != 600 ||
		p.ExistingPreStop != "keep" || p.OnInvalid != "warn" {
		t.Errorf("defaults = %+v", p)
	}
	for labels, want := range map[string]bool{"prometheus-pushgateway": true, "pushgateway": true, "grafana": false} {
		if got := p.Matches(map[string]string{"app.kubernetes.io/name": labels}); got != want {
			t.Errorf("default selector on %s = %v, want %v", labels, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		errs []string
		chk  func(*testing.T, *Policy)
	}{
		{name: "empty file is the defaults", in: "", chk: func(t *testing.T, p *Policy) {
			if p.Defaults.PreStopSleep != 30 {
				t.Errorf("sleep %v", p.Defaults.PreStopSleep)
			}
		}},
		{name: "every field", in: `
selector:
  matchLabels: {team: obs}
defaults: {preStopSleep: 1m, shutdownBudget: 0s, preStopAction: exec}
limits: {minPreStopSleep: 0, maxPreStopSleep: 120, maxTerminationGracePeriod: 5m}
existingPreStop: replace
onInvalid: reject
`, chk: func(t *testing.T, p *Policy) {
			if p.Defaults.PreStopSleep != 60 || p.Defaults.ShutdownBudget != 0 || p.Defaults.PreStopAction != "exec" ||
				p.Limits.MinPreStopSleep != 0 || p.Limits.MaxPreStopSleep != 120 || p.Limits.MaxTerminationGracePeriod != 300 ||
				p.ExistingPreStop != "replace" || p.OnInvalid != "reject" {
				t.Errorf("parsed %+v", p)
			}
			if !p.Matches(map[string]string{"team": "obs"}) || p.Matches(map[string]string{"app.kubernetes.io/name": "pushgateway"}) {
				t.Error("a selector in the file must replace the default one")
			}
		}},
		{name: "unknown field", in: "onInvalidd: warn\n", errs: []string{`unknown field "onInvalidd"`}},
		{name: "bad duration", in: "defaults: {preStopSleep: 30 seconds}\n", errs: []string{`invalid duration "30 seconds"`, "Go duration"}},
		{name: "every error at once", in: `
defaults: {preStopSleep: 400s, preStopAction: http}
limits: {maxTerminationGracePeriod: 100s}
existingPreStop: merge
onInvalid: ignore
selector: {matchExpressions: [{key: a, operator: Bogus}]}
`, errs: []string{"selector", "limits.maxTerminationGracePeriod", "defaults.preStopSleep", "defaults.preStopAction", "existingPreStop", "onInvalid", `"merge"`, `"ignore"`}},
		{name: "sleep plus budget above the cap", in: "defaults: {preStopSleep: 300s, shutdownBudget: 301s}\n", errs: []string{"defaults.shutdownBudget", "<= limits.maxTerminationGracePeriod (10m0s)"}},
		{name: "not YAML", in: "{{{", errs: []string{"policy:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.in))
			if len(tc.errs) > 0 {
				if err == nil {
					t.Fatalf("want an error containing %q", tc.errs)
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q does not contain %q", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.chk(t, p)
		})
	}
}

func TestWatcherReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(s string) {
		t.Helper()
		// Write-then-rename, as the kubelet's ConfigMap update does.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("defaults: {preStopSleep: 20s}\n")
	w, err := NewWatcher(path, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 10)
	w.OnReload = func(err error) { results <- err }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- w.Start(ctx) }()
	time.Sleep(100 * time.Millisecond) // let the watch start

	write("defaults: {preStopSleep: 40s}\n")
	if err := waitResult(t, results); err != nil {
		t.Fatalf("valid reload failed: %v", err)
	}
	if got := w.Current().Defaults.PreStopSleep; got != 40 {
		t.Fatalf("after reload sleep = %v, want 40s", got)
	}
	write("defaults: {preStopSleep: nope}\n")
	if err := waitResult(t, results); err == nil {
		t.Fatal("invalid reload reported success")
	}
	if got := w.Current().Defaults.PreStopSleep; got != 40 {
		t.Fatalf("after an invalid reload sleep = %v, want the last good 40s", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitResult(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no reload within 5s")
	}
	return nil
}

func TestNewWatcherRejectsInvalidFileAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte("onInvalid: maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWatcher(path, logr.Discard()); err == nil || !strings.Contains(err.Error(), "onInvalid") {
		t.Fatalf("err = %v, want one naming onInvalid", err)
	}
}
