// Package filewatch calls a function when a mounted file may have changed. The policy file and
// the client CA file are both reloaded this way, so a change to how mounts are watched is made
// once.
package filewatch

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
)

// Debounce is how long to wait after a file event before reading: editors and the kubelet
// write in several steps.
const Debounce = 100 * time.Millisecond

// Notifier is what Watch needs from fsnotify; tests substitute one that fails.
type Notifier func() (*fsnotify.Watcher, error)

// Watch calls reload on events in path's directory and on a poll every interval, until ctx
// ends. The directory, not the file, is watched because a mounted ConfigMap or Secret is
// updated by swapping a symlink (..data), which replaces the file instead of writing to it.
// The poll runs beside the watch, and alone when fsnotify cannot start (inotify instances or
// watches exhausted on the node): a file reloaded late is better than a server that is down.
// newNotifier may be nil (fsnotify.NewWatcher).
func Watch(ctx context.Context, path string, interval time.Duration, log logr.Logger, newNotifier Notifier, reload func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if newNotifier == nil {
		newNotifier = fsnotify.NewWatcher
	}
	if fw, err := newNotifier(); err != nil {
		log.Error(err, "cannot watch the file; polling it", "path", path, "interval", interval.String())
	} else {
		defer func() { _ = fw.Close() }()
		if err := fw.Add(filepath.Dir(path)); err != nil {
			log.Error(err, "cannot watch the file; polling it", "path", path, "interval", interval.String())
		} else {
			events, errs = fw.Events, fw.Errors
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil // the poll goes on
				continue
			}
			debounce = time.After(Debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Error(err, "watching the file", "path", path)
		case <-debounce:
			debounce = nil
			reload()
		case <-tick.C:
			reload()
		}
	}
}
