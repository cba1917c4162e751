package harness

import (
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// WarningRecorder records the Warning headers a client receives: admission warnings reach
// kubectl the same way, so asserting on these asserts what a user sees.
type WarningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

var _ rest.WarningHandler = (*WarningRecorder)(nil)

// HandleWarningHeader implements rest.WarningHandler.
func (r *WarningRecorder) HandleWarningHeader(code int, agent string, text string) {
	if code != 299 || text == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = append(r.warnings, text)
}

// Warnings returns what was recorded so far.
func (r *WarningRecorder) Warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.warnings...)
}

// Reset forgets what was recorded.
func (r *WarningRecorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = nil
}

// Contains reports whether any warning contains every one of the substrings.
func (r *WarningRecorder) Contains(substrings ...string) bool {
	for _, w := range r.Warnings() {
		all := true
		for _, s := range substrings {
			if !strings.Contains(w, s) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// WithWarnings returns a copy of cfg whose clients report warnings to a new recorder.
func WithWarnings(cfg *rest.Config) (*rest.Config, *WarningRecorder) {
	rec := &WarningRecorder{}
	c := rest.CopyConfig(cfg)
	c.WarningHandler = rec
	c.WarningHandlerWithContext = nil
	return c, rec
}
