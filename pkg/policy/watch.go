package policy

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/filewatch"
)

// Watcher holds the policy in force and replaces it when the file changes. An invalid new
// version is logged and counted, and the last good policy stays: a bad edit to the ConfigMap
// must not change what the webhook does.
type Watcher struct {
	path    string
	log     logr.Logger
	current atomic.Pointer[Policy]
	last    []byte
	// OnReload is called after every attempt with its error (nil: applied or unchanged).
	OnReload func(err error)
	// Interval is the fallback poll period, for file systems whose events do not arrive.
	Interval time.Duration
	// newNotifier starts fsnotify (nil: fsnotify.NewWatcher); tests make it fail.
	newNotifier func() (*fsnotify.Watcher, error)
}

// NewWatcher loads the file once; a file that is invalid at start is an error, so a broken
// deployment fails its rollout instead of running on defaults.
func NewWatcher(path string, log logr.Logger) (*Watcher, error) {
	w := &Watcher{path: path, log: log, Interval: 10 * time.Second}
	if path == "" {
		w.current.Store(Default())
		return w, nil
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	w.last = data
	w.current.Store(p)
	return w, nil
}

// Current returns the policy in force. It is safe for concurrent use and allocation-free.
func (w *Watcher) Current() *Policy { return w.current.Load() }

// Reload reads the file again and applies it when it is valid and different.
func (w *Watcher) Reload() error {
	data, err := readFile(w.path)
	if err == nil && bytes.Equal(data, w.last) {
		return nil
	}
	var p *Policy
	if err == nil {
		p, err = Parse(data)
	}
	if err != nil {
		w.log.Error(err, "policy reload failed; keeping the last good policy", "path", w.path)
	} else {
		w.last = data
		w.current.Store(p)
		w.log.Info("policy reloaded", "path", w.path)
	}
	if w.OnReload != nil {
		w.OnReload(err)
	}
	return err
}

// Start watches the file's directory until ctx ends. The directory, not the file, is
// watched because a mounted ConfigMap is updated by swapping a symlink (..data), which
// replaces the file instead of writing to it. The poll every Interval runs beside the watch,
// and alone when fsnotify cannot start (inotify instances or watches exhausted on the node):
// a policy that reloads late is better than a webhook that is down.
func (w *Watcher) Start(ctx context.Context) error {
	if w.path == "" {
		<-ctx.Done()
		return nil
	}
	filewatch.Watch(ctx, w.path, w.Interval, w.log, w.newNotifier, func() { _ = w.Reload() })
	return nil
}
