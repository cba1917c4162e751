package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// reads returns a reader that hands out the given contents in order, then repeats the last.
func reads(contents ...string) func(string) ([]byte, error) {
	var mu sync.Mutex
	i := 0
	return func(string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		c := contents[min(i, len(contents)-1)]
		i++
		return []byte(c), nil
	}
}

// Issue 26 finding 5: a read that catches a non-atomic writer mid-write must not be applied.
// "preStopSleep: 12" is what a reader sees of "preStopSleep: 120s" cut three bytes short; it
// parses, so only a second, matching read can tell it from an edit.
func TestReadStable(t *testing.T) {
	const full = "onInvalid: reject\ndefaults:\n  preStopSleep: 120s\n"
	cut := full[:len(full)-3]
	cases := []struct {
		name    string
		read    func(string) ([]byte, error)
		want    string
		wantErr string
	}{
		{"stable at once", reads(full), full, ""},
		{"cut, then complete", reads(cut, full, full), full, ""},
		{"empty, cut, then complete", reads("", cut, full, full), full, ""},
		{"never settles", reads("a", "b", "c", "d", "e", "f"), "", "still changing after 4 reads"},
		{"settles empty", reads(cut, "", ""), "", "file is empty"},
		{"read error", func(string) ([]byte, error) { return nil, errors.New("boom") }, "", "boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readStable("/p/policy.yaml", tc.read, time.Millisecond, 4)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The same with a real file and a real writer that writes in pieces with pauses (the way
// a shell redirect of a slow producer does): no reload may apply a prefix of the file.
func TestReloadDuringSlowWrite(t *testing.T) {
	defer func(d time.Duration) { settleDelay = d }(settleDelay)
	settleDelay = 300 * time.Millisecond // far beyond the writer's pauses, even when starved
	path := filepath.Join(t.TempDir(), "policy.yaml")
	old := "onInvalid: reject\ndefaults:\n  preStopSleep: 120s\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(path, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	next := "onInvalid: reject\ndefaults:\n  preStopSleep: 90s\n  shutdownBudget: 45s\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		for i := 0; i < len(next); i += 7 {
			_, _ = f.WriteString(next[i:min(i+7, len(next))])
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for {
		_ = w.Reload()
		p := w.Current()
		if got := p.Defaults.PreStopSleep; got != 120 && got != 90 {
			t.Fatalf("a reload applied a half-written file: preStopSleep = %v", got)
		}
		if p.Defaults.PreStopSleep == 90 && p.Defaults.ShutdownBudget != 45 {
			t.Fatalf("a reload applied a half-written file: shutdownBudget = %v", p.Defaults.ShutdownBudget)
		}
		select {
		case <-done:
			if err := w.Reload(); err != nil {
				t.Fatal(err)
			}
			if p := w.Current(); p.Defaults.PreStopSleep != 90 || p.Defaults.ShutdownBudget != 45 {
				t.Fatalf("after the write: preStopSleep %v shutdownBudget %v, want 90 and 45", p.Defaults.PreStopSleep, p.Defaults.ShutdownBudget)
			}
			return
		default:
		}
	}
}
