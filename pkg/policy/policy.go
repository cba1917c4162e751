// Package policy is the cluster-wide configuration of pushgateway-lifecycle: a typed struct
// with defaults, one Validate() that reports every problem at once, and a YAML loader.
package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// Values of ExistingPreStop.
const (
	ExistingPreStopKeep    = "keep"
	ExistingPreStopReplace = "replace"
)

// Values of OnInvalid.
const (
	OnInvalidWarn   = "warn"
	OnInvalidReject = "reject"
)

// Seconds is a duration in whole seconds that reads the same forms as the annotations
// ("45s", "1m30s", 45) and writes itself back as a Go duration string.
type Seconds int64

// UnmarshalJSON accepts a string in either annotation form or a bare JSON integer.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	str := string(bytes.TrimSpace(b))
	if len(str) > 0 && str[0] == '"' {
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
	}
	n, err := annotations.ParseSeconds(str)
	if err != nil {
		return fmt.Errorf("invalid duration %s: must be %s", annotations.Truncate(str), annotations.DurationForms)
	}
	*s = Seconds(n)
	return nil
}

// MarshalJSON writes the Go duration form, as the docs show it.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(annotations.FormatSeconds(int64(s)))
}

// String is the Go duration form.
func (s Seconds) String() string { return annotations.FormatSeconds(int64(s)) }

// Defaults apply to a selected pod that does not set the matching annotation.
type Defaults struct {
	// PreStopSleep covers the time until every router has dropped the terminating pod's
	// endpoint: EndpointSlice propagation to kube-proxy and ingress typically takes seconds.
	PreStopSleep Seconds `json:"preStopSleep"`
	// ShutdownBudget is the time Pushgateway needs after SIGTERM to persist its store.
	ShutdownBudget Seconds `json:"shutdownBudget"`
	// PreStopAction is "sleep" (native, no shell needed) or "exec" (/bin/sh -c "sleep N").
	PreStopAction string `json:"preStopAction"`
}

// Limits bound what a pod's annotations may ask for.
type Limits struct {
	MinPreStopSleep Seconds `json:"minPreStopSleep"`
	MaxPreStopSleep Seconds `json:"maxPreStopSleep"`
	// MaxTerminationGracePeriod defaults to 600s, the Cluster Autoscaler's cap on the grace
	// period it grants while draining a node for scale-down.
	MaxTerminationGracePeriod Seconds `json:"maxTerminationGracePeriod"`
}

// Policy is the whole file.
type Policy struct {
	// Selector chooses the pods to mutate among those the webhook configuration sends.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	Defaults Defaults              `json:"defaults"`
	Limits   Limits                `json:"limits"`
	// ExistingPreStop says what happens to a target container's own preStop hook.
	ExistingPreStop string `json:"existingPreStop"`
	// OnInvalid is "warn" (ignore the bad setting, patch with defaults, warn) or "reject"
	// (deny the pod). Warn is the default because a typo must not stop a Recreate rollout.
	OnInvalid string `json:"onInvalid"`
	// Handoff is the gate that holds a replacement pod while its predecessor still writes
	// the persistence file they share.
	Handoff Handoff `json:"handoff"`
	// Readiness is "tune" (the Pushgateway's /-/ready probe starts at once and every 2 s at
	// most: Pushgateway only answers once its store is loaded) or "keep" (as written).
	Readiness string `json:"readiness"`

	// selector is Selector compiled once at load time: the admission path must not reparse it.
	selector labels.Selector
}

// Handoff configures the scheduling gate (annotations.SchedulingGateHandoff).
type Handoff struct {
	// Mode is "auto" (gate a replacement while a terminating pod of its namespace still mounts
	// the same claim or hostPath) or "off".
	Mode string `json:"mode"`
	// MaxWait is how long past the predecessor's deletionTimestamp (which already includes
	// its grace period) the gate is lifted at the latest: a kubelet that never reports the
	// pod gone (node lost) must not hold the replacement forever.
	MaxWait Seconds `json:"maxWait"`
}

// DefaultSelector matches the label of the upstream prometheus-pushgateway chart's pods.
func DefaultSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key:      annotations.LabelAppName,
		Operator: metav1.LabelSelectorOpIn,
		Values:   []string{"prometheus-pushgateway", "pushgateway"},
	}}}
}

// Default returns the built-in policy, used when no file is given.
func Default() *Policy {
	p := &Policy{}
	p.SetDefaults()
	if errs := p.Validate(); len(errs) > 0 {
		panic("built-in policy is invalid: " + errs.ToAggregate().Error())
	}
	return p
}

// SetDefaults fills every field left at its zero value (for policies built in code; files go
// through Parse, which also keeps explicit zeros).
func (p *Policy) SetDefaults() {
	if p.Selector == nil {
		p.Selector = DefaultSelector()
	}
	if p.Defaults.PreStopSleep == 0 {
		p.Defaults.PreStopSleep = 30
	}
	if p.Defaults.ShutdownBudget == 0 {
		p.Defaults.ShutdownBudget = 15
	}
	if p.Defaults.PreStopAction == "" {
		p.Defaults.PreStopAction = annotations.ActionSleep
	}
	if p.Limits.MinPreStopSleep == 0 {
		p.Limits.MinPreStopSleep = 5
	}
	if p.Limits.MaxPreStopSleep == 0 {
		p.Limits.MaxPreStopSleep = 300
	}
	if p.Limits.MaxTerminationGracePeriod == 0 {
		p.Limits.MaxTerminationGracePeriod = 600
	}
	if p.ExistingPreStop == "" {
		p.ExistingPreStop = ExistingPreStopKeep
	}
	if p.OnInvalid == "" {
		p.OnInvalid = OnInvalidWarn
	}
	if p.Handoff.Mode == "" {
		p.Handoff.Mode = annotations.HandoffAuto
	}
	if p.Handoff.MaxWait == 0 {
		p.Handoff.MaxWait = 30
	}
	if p.Readiness == "" {
		p.Readiness = annotations.ReadinessTune
	}
}

// Validate checks the defaulted policy and returns every problem at once. On success it
// compiles the selector, so a validated policy is ready for the admission path.
func (p *Policy) Validate() field.ErrorList {
	var errs field.ErrorList
	if p.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Selector)
		if err != nil {
			errs = append(errs, field.Invalid(field.NewPath("selector"), p.Selector, err.Error()))
		} else {
			p.selector = sel
		}
	}
	lim := p.Limits
	lp := field.NewPath("limits")
	if lim.MinPreStopSleep < 0 {
		errs = append(errs, field.Invalid(lp.Child("minPreStopSleep"), lim.MinPreStopSleep.String(), "must be >= 0s"))
	}
	if lim.MaxPreStopSleep < lim.MinPreStopSleep {
		errs = append(errs, field.Invalid(lp.Child("maxPreStopSleep"), lim.MaxPreStopSleep.String(),
			fmt.Sprintf("must be >= limits.minPreStopSleep (%s)", lim.MinPreStopSleep)))
	}
	if lim.MaxTerminationGracePeriod < lim.MaxPreStopSleep {
		errs = append(errs, field.Invalid(lp.Child("maxTerminationGracePeriod"), lim.MaxTerminationGracePeriod.String(),
			fmt.Sprintf("must be >= limits.maxPreStopSleep (%s): the grace period has to cover the sleep", lim.MaxPreStopSleep)))
	}
	d := p.Defaults
	dp := field.NewPath("defaults")
	if d.PreStopSleep < lim.MinPreStopSleep || d.PreStopSleep > lim.MaxPreStopSleep {
		errs = append(errs, field.Invalid(dp.Child("preStopSleep"), d.PreStopSleep.String(),
			fmt.Sprintf("must be within limits [%s, %s]", lim.MinPreStopSleep, lim.MaxPreStopSleep)))
	}
	if d.ShutdownBudget < 0 {
		errs = append(errs, field.Invalid(dp.Child("shutdownBudget"), d.ShutdownBudget.String(), "must be >= 0s"))
	}
	// Subtraction, not addition: both are >= 0 here, and the sum of two large values
	// overflows int64 and would pass the check.
	if d.ShutdownBudget > lim.MaxTerminationGracePeriod-d.PreStopSleep {
		errs = append(errs, field.Invalid(dp.Child("shutdownBudget"), d.ShutdownBudget.String(),
			fmt.Sprintf("defaults.preStopSleep + defaults.shutdownBudget must be <= limits.maxTerminationGracePeriod (%s)", lim.MaxTerminationGracePeriod)))
	}
	if d.PreStopAction != annotations.ActionSleep && d.PreStopAction != annotations.ActionExec {
		errs = append(errs, field.NotSupported(dp.Child("preStopAction"), d.PreStopAction, []string{annotations.ActionSleep, annotations.ActionExec}))
	}
	if p.ExistingPreStop != ExistingPreStopKeep && p.ExistingPreStop != ExistingPreStopReplace {
		errs = append(errs, field.NotSupported(field.NewPath("existingPreStop"), p.ExistingPreStop, []string{ExistingPreStopKeep, ExistingPreStopReplace}))
	}
	if p.OnInvalid != OnInvalidWarn && p.OnInvalid != OnInvalidReject {
		errs = append(errs, field.NotSupported(field.NewPath("onInvalid"), p.OnInvalid, []string{OnInvalidWarn, OnInvalidReject}))
	}
	hp := field.NewPath("handoff")
	if p.Handoff.Mode != annotations.HandoffAuto && p.Handoff.Mode != annotations.HandoffOff {
		errs = append(errs, field.NotSupported(hp.Child("mode"), p.Handoff.Mode, []string{annotations.HandoffAuto, annotations.HandoffOff}))
	}
	if p.Handoff.MaxWait < 0 || p.Handoff.MaxWait > 3600 {
		errs = append(errs, field.Invalid(hp.Child("maxWait"), p.Handoff.MaxWait.String(), "must be from 1s to 1h (0 or unset: 30s)"))
	}
	if p.Readiness != annotations.ReadinessTune && p.Readiness != annotations.ReadinessKeep {
		errs = append(errs, field.NotSupported(field.NewPath("readiness"), p.Readiness, []string{annotations.ReadinessTune, annotations.ReadinessKeep}))
	}
	return errs
}

// Matches reports whether the policy's selector selects a pod with these labels.
func (p *Policy) Matches(podLabels map[string]string) bool {
	if p.selector == nil {
		return false
	}
	return p.selector.Matches(labels.Set(podLabels))
}

// AnnotationLimits converts the limits for the annotation parsers.
func (p *Policy) AnnotationLimits() annotations.Limits {
	return annotations.Limits{
		MinPreStopSleep:           int64(p.Limits.MinPreStopSleep),
		MaxPreStopSleep:           int64(p.Limits.MaxPreStopSleep),
		MaxTerminationGracePeriod: int64(p.Limits.MaxTerminationGracePeriod),
	}
}

// Parse reads a policy document (YAML or JSON). Unknown fields are errors: a misspelt key
// silently falling back to a default is the failure this file exists to prevent. The
// document is read over the defaults, so an explicit zero (shutdownBudget: 0s) is kept.
func Parse(data []byte) (*Policy, error) {
	p := &Policy{}
	p.SetDefaults()
	// A selector in the file replaces the default one whole instead of merging into it.
	p.Selector = nil
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, p); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	if p.Selector == nil {
		p.Selector = DefaultSelector()
	}
	if errs := p.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("policy: %w", errs.ToAggregate())
	}
	return p, nil
}

// Load reads and parses a policy file; an empty path means the built-in defaults.
func Load(path string) (*Policy, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// readFile reads a policy file until two reads a moment apart are byte-identical, and
// refuses one that is empty or blank. A writer that does not rename into place (a shell
// redirect, kubectl cp, an editor without a swap file, a hostPath) leaves a reader a window
// in which the file is truncated or cut inside a value; "preStopSleep: 120s" read as
// "preStopSleep: 12" parses, so a parse alone cannot tell a half-written file from an edit
// (issue 26). An empty file read as "no settings" became the built-in defaults, which
// silently turned onInvalid: reject into warn.
func readFile(path string) ([]byte, error) {
	return readStable(path, os.ReadFile, settleDelay, settleReads)
}

// Variables so that a test can widen the window beyond a noisy machine's scheduling pauses.
var (
	// settleDelay is the pause between the two reads that must match: long enough for a
	// writer's next write() to land, short enough that a reload is not noticeably late.
	settleDelay = 50 * time.Millisecond
	// settleReads bounds the reads of a file that keeps changing; the reload then fails,
	// the last good policy stays, and the next event or poll tries again.
	settleReads = 10
)

func readStable(path string, read func(string) ([]byte, error), delay time.Duration, tries int) ([]byte, error) {
	prev, err := read(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	for i := 1; ; i++ {
		time.Sleep(delay)
		data, err := read(path)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if bytes.Equal(prev, data) {
			break
		}
		if i >= tries {
			return nil, fmt.Errorf("policy: %s: file still changing after %d reads %v apart; keeping the last good policy (write the file atomically: write a temporary file, then rename it)", path, tries, delay)
		}
		prev = data
	}
	if len(bytes.TrimSpace(prev)) == 0 {
		return nil, fmt.Errorf("policy: %s: file is empty; write the settings, or remove the policy flag for the built-in defaults", path)
	}
	return prev, nil
}
