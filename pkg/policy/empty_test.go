package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// Issue 26: an empty policy file (a ConfigMap being rewritten, a truncated write) parsed as
// the built-in defaults, so reject/120s silently became warn/30s.
func TestEmptyPolicyFileRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWatcher(path, logr.Discard()); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("NewWatcher on an empty file: err = %v, want an error naming %s", err, path)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load on an empty file: err = %v, want an error naming %s", err, path)
	}

	if err := os.WriteFile(path, []byte("defaults:\n  shutdownBudget: 120s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(path, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	want := *w.Current()
	var reloadErrs int
	w.OnReload = func(err error) {
		if err != nil {
			reloadErrs++
		}
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err == nil {
		t.Fatal("Reload of an empty file: err = nil, want a refusal")
	}
	if got := *w.Current(); got.Defaults.ShutdownBudget != want.Defaults.ShutdownBudget {
		t.Fatalf("after an empty reload shutdownBudget = %v, want the last good %v", got.Defaults.ShutdownBudget, want.Defaults.ShutdownBudget)
	}
	if reloadErrs != 1 {
		t.Fatalf("OnReload saw %d failures, want 1", reloadErrs)
	}
}
