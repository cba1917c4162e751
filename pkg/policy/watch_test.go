package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
)

// TestWatcherPollsWhenFsnotifyFails: when fsnotify cannot start (no inotify instance left on
// the node) or cannot watch the directory, Start keeps running and reloads by polling. At
// ce16377 it returned the error, and the server (an errgroup) went down with it.
func TestWatcherPollsWhenFsnotifyFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		notify func() (*fsnotify.Watcher, error)
	}{
		{"NewWatcher fails", func() (*fsnotify.Watcher, error) {
			return nil, errors.New("too many open files")
		}},
		{"Add fails", func() (*fsnotify.Watcher, error) {
			fw, err := fsnotify.NewWatcher()
			if err != nil {
				return nil, err
			}
			_ = fw.Close() // Add on a closed watcher fails
			return fw, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(path, []byte("defaults: {preStopSleep: 20s}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			w, err := NewWatcher(path, logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			w.newNotifier = tc.notify
			w.Interval = 100 * time.Millisecond
			results := make(chan error, 10)
			w.OnReload = func(err error) { results <- err }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- w.Start(ctx) }()
			select {
			case err := <-done:
				t.Fatalf("Start returned %v when fsnotify failed, want it to keep polling", err)
			case <-time.After(300 * time.Millisecond):
			}
			// Write-then-rename, as the kubelet does: a poll must not see a half-written file.
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, []byte("defaults: {preStopSleep: 40s}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
			if err := waitResult(t, results); err != nil {
				t.Fatalf("polled reload failed: %v", err)
			}
			if got := w.Current().Defaults.PreStopSleep; got != 40 {
				t.Fatalf("after the polled reload sleep = %v, want 40s", got)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
