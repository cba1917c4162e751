// Package engine is the pure mutation: a pod and a policy in, the decisions (and, through
// Apply, the mutated pod) out. No I/O, no clock, no globals: the admission handler, the
// offline `mutate` preview and the workload validator all call the same functions, so what
// `mutate` shows is what the webhook does.
package engine

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// Outcome is what happened to one pod; it is the label of pushgateway_lifecycle_pods_total.
type Outcome string

const (
	// OutcomeInjected means the pod was changed with valid settings.
	OutcomeInjected Outcome = "injected"
	// OutcomeUnchanged means selected, but already as the policy wants it (a reinvocation, or a
	// pod that set everything itself).
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeSkipped means not ours to change (not selected, opted out, mirror pod, kube-system,
	// no target container).
	OutcomeSkipped Outcome = "skipped"
	// OutcomeInvalid means patched with defaults in place of settings that did not parse (onInvalid: warn).
	OutcomeInvalid Outcome = "invalid"
	// OutcomeDenied means refused because of invalid settings (onInvalid: reject).
	OutcomeDenied Outcome = "denied"
)

// KubernetesDefaultGracePeriod is what the API server defaults terminationGracePeriodSeconds to.
const KubernetesDefaultGracePeriod int64 = 30

// TotalAnnotationSizeLimit is the API server's bound on a pod's annotations, keys and values
// together (apimachinery's TotalAnnotationSizeLimitB, a test keeps them equal): a status
// annotation that crossed it would turn an admissible pod into one the API server refuses
// after admission, which failurePolicy: Ignore does not cover.
const TotalAnnotationSizeLimit = 256 * 1024

// Readiness tuning (policy readiness: tune). The Pushgateway answers /-/ready only once it
// has loaded its persistence file, so the probe needs no initial delay to be safe: a delay
// and a long period only lengthen the time a loaded replacement still gets no pushes, which
// in a Recreate rollout is outage. With the upstream chart's 10 s delay and the default 10 s
// period, a pod ready at once waits 10 s for its first probe, and one that loads for 11 s is
// seen ready only at 20 s. Liveness probes are not touched: a big store takes time to load,
// and a liveness probe that fires early restarts the container in a loop.
const (
	// ReadinessPath is the Pushgateway's readiness endpoint; a probe on any other path is
	// someone else's and kept as written.
	ReadinessPath = "/-/ready"
	// ReadinessMaxPeriod is the longest periodSeconds the tuned probe keeps (a shorter one stays).
	ReadinessMaxPeriod int32 = 2
	// KubernetesDefaultProbePeriod is what the API server defaults a probe's periodSeconds to.
	KubernetesDefaultProbePeriod int32 = 10
)

// ContainerChange is the preStop hook to set on one container of spec.containers.
type ContainerChange struct {
	Index int
	Name  string
	// PreStop is the hook the container ends up with.
	PreStop *corev1.LifecycleHandler
	// HadLifecycle and HadPreStop describe the input, so a patch can add or replace precisely.
	HadLifecycle bool
	HadPreStop   bool
}

// ProbeChange is the readinessProbe timing to set on one container of spec.containers. Only
// the fields that change are written: initialDelaySeconds when it is above 0, periodSeconds
// when it is unset or above ReadinessMaxPeriod.
type ProbeChange struct {
	Index int
	Name  string
	// OldInitialDelay is the probe's initialDelaySeconds; the new one is always 0.
	OldInitialDelay int32
	// OldPeriod is the probe's periodSeconds (KubernetesDefaultProbePeriod when unset);
	// PeriodSet reports whether the field was present, so a patch can add or replace.
	OldPeriod, NewPeriod int32
	PeriodSet            bool
}

// SetsInitialDelay reports whether initialDelaySeconds has to be written (as 0).
func (c *ProbeChange) SetsInitialDelay() bool { return c.OldInitialDelay > 0 }

// SetsPeriod reports whether periodSeconds has to be written.
func (c *ProbeChange) SetsPeriod() bool { return !c.PeriodSet || c.NewPeriod != c.OldPeriod }

// SkipReason says why Decide left a pod alone.
type SkipReason int

const (
	// NotSkipped is the zero value: the pod was not skipped.
	NotSkipped SkipReason = iota
	// SkipMirrorPod is a mirror pod, whose spec the kubelet owns: the API server refuses changes.
	SkipMirrorPod
	// SkipKubeSystem is a pod in kube-system, which the product never mutates.
	SkipKubeSystem
	// SkipNotSelected is a pod that neither the inject label nor the policy's selector chose.
	SkipNotSelected
	// SkipOptedOut is a pod that carries inject=false.
	SkipOptedOut
	// SkipNoTarget is a pod with no container to put the hook on.
	SkipNoTarget
)

// Decision is everything the engine decided for one pod. It refers to the input pod by
// container index and never aliases it.
type Decision struct {
	Outcome Outcome
	// Selected: the policy's selector or the inject label chose the pod.
	Selected bool
	// Skip is why the pod was skipped (OutcomeSkipped only); callers switch on it.
	Skip SkipReason
	// Reason explains a skip in words (status annotation text after "skipped: ").
	Reason string

	Sleep  int64
	Action string
	// Targets are the containers that were considered, in pod order.
	Targets []string
	// Containers are the hooks to write; empty when every target already has the right hook.
	Containers []ContainerChange
	// Probes are the targets' readinessProbe timings to write (policy readiness: tune);
	// empty when no target probes ReadinessPath or every such probe is tuned already.
	Probes []ProbeChange

	// OldGrace is the pod's grace period (KubernetesDefaultGracePeriod when unset); NewGrace
	// what it should be. GraceSet reports whether the field was present in the input.
	OldGrace, NewGrace int64
	GraceSet           bool

	// Status is the value for the status annotation; SetStatus says whether to write it.
	Status    string
	SetStatus bool
	// StatusOmitted: Status differs from the pod's, but writing it would take the pod's
	// annotations over TotalAnnotationSizeLimit, so it is not written (a warning says so).
	StatusOmitted bool
	// HadAnnotations: the input had a non-nil annotations map (for precise patches).
	HadAnnotations bool

	// HandoffKeys are the shared volumes (VolumeKeys) for which a terminating predecessor
	// would hold this pod; empty when it is never gated (no such volume, opted out, a
	// StatefulSet's or DaemonSet's pod). The caller looks those pods up and calls Gate.
	HandoffKeys []string
	// Gate: add the handoff scheduling gate (set by Gate). HadSchedulingGates describes the
	// input, for a precise patch.
	Gate               bool
	HadSchedulingGates bool

	// DrainCandidate: a target's store does not survive the pod and nothing opted out, so
	// where the controller runs the caller calls Drain. ReadinessGate: add the
	// ConditionAcceptingPushes readiness gate (set by Drain); HadReadinessGates describes the
	// input, for a precise patch.
	DrainCandidate    bool
	ReadinessGate     bool
	HadReadinessGates bool

	// Problems are the invalid settings; Warnings what the admission response carries.
	Problems field.ErrorList
	Warnings []string
}

// SetsGrace reports whether terminationGracePeriodSeconds has to be written.
func (d *Decision) SetsGrace() bool {
	return (d.Outcome == OutcomeInjected || d.Outcome == OutcomeInvalid) && (!d.GraceSet || d.NewGrace != d.OldGrace)
}

// Changed reports whether Apply would modify the pod.
func (d *Decision) Changed() bool {
	return len(d.Containers) > 0 || len(d.Probes) > 0 || d.SetsGrace() || d.SetStatus || d.Gate || d.ReadinessGate
}

// DenyMessage is the message of a denied pod.
func (d *Decision) DenyMessage() string {
	return "pushgateway-lifecycle: " + d.Problems.ToAggregate().Error()
}

// Decide computes the decision for a pod, reading the pod only. namespace is the request's
// namespace (a pod being created may not carry metadata.namespace yet).
func Decide(pod *corev1.Pod, namespace string, pol *policy.Policy) Decision {
	var d Decision
	if namespace == "" {
		namespace = pod.Namespace
	}
	ann := pod.Annotations
	d.HadAnnotations = ann != nil
	if _, mirror := ann[annotations.AnnotationMirror]; mirror {
		// The kubelet owns a mirror pod's spec; the API server refuses changes to it.
		return skip(d, pod, SkipMirrorPod, "mirror pod", false)
	}
	if namespace == "kube-system" {
		return skip(d, pod, SkipKubeSystem, "kube-system", false)
	}
	d.Selected = pod.Labels[annotations.LabelInject] == "true" || pol.Matches(pod.Labels)
	if !d.Selected {
		return skip(d, pod, SkipNotSelected, "not selected", false)
	}

	set, problems := annotations.Parse(ann, pol.AnnotationLimits())
	d.Problems = problems
	if set.OptOut {
		return skip(d, pod, SkipOptedOut, "inject=false", true)
	}

	targets, terr := targetContainers(pod, set.Containers)
	if terr != nil {
		d.Problems = append(d.Problems, terr)
		// Fall back to the default choice so that a typo still protects the pod.
		targets, _ = targetContainers(pod, nil)
	}
	if len(d.Problems) > 0 && pol.OnInvalid == policy.OnInvalidReject {
		d.Outcome = OutcomeDenied
		return d
	}
	if len(targets) == 0 {
		return skip(d, pod, SkipNoTarget, "no target container (name one in "+annotations.AnnotationContainers+")", true)
	}
	d.HandoffKeys = handoffCandidate(pod, set, pol)
	d.DrainCandidate = drainCandidate(pod, set, pol, targets)

	d.Sleep = int64(pol.Defaults.PreStopSleep)
	if set.PreStopSleep != nil {
		d.Sleep = *set.PreStopSleep
	}
	budget := int64(pol.Defaults.ShutdownBudget)
	if set.ShutdownBudget != nil {
		budget = *set.ShutdownBudget
	}
	d.Action = pol.Defaults.PreStopAction
	if set.Action == annotations.ActionSleep || set.Action == annotations.ActionExec {
		d.Action = set.Action
	}

	d.GraceSet = pod.Spec.TerminationGracePeriodSeconds != nil
	d.OldGrace = KubernetesDefaultGracePeriod
	if d.GraceSet {
		d.OldGrace = *pod.Spec.TerminationGracePeriodSeconds
	}

	want := Hook(d.Action, d.Sleep)
	// longest is the longest preStop the pod will run, ours or a kept one: the grace period
	// has to cover it, or the kubelet kills the container mid-sleep. A kept hook whose length
	// cannot be read (httpGet, a script) counts as our sleep, the length we would have set.
	// longestName is the first target with it, for the message of a grace period below it.
	var longest int64
	var longestName string
	note := func(s int64, name string) {
		if s > longest || s == longest && longestName == "" {
			longest, longestName = s, name
		}
	}
	var kept, replaced []string
	for _, i := range targets {
		c := &pod.Spec.Containers[i]
		d.Targets = append(d.Targets, c.Name)
		hadLC := c.Lifecycle != nil
		var existing *corev1.LifecycleHandler
		if hadLC {
			existing = c.Lifecycle.PreStop
		}
		if existing != nil && HookEqual(existing, want) {
			note(d.Sleep, c.Name)
			continue
		}
		if existing != nil && pol.ExistingPreStop != policy.ExistingPreStopReplace {
			kept = append(kept, c.Name)
			s, ok := HookSleepSeconds(existing)
			if !ok {
				s = d.Sleep
			}
			note(s, c.Name)
			continue
		}
		note(d.Sleep, c.Name)
		if existing != nil {
			replaced = append(replaced, c.Name)
			d.Warnings = append(d.Warnings, fmt.Sprintf("pushgateway-lifecycle: replaced the existing preStop hook of container %q (%s) with %s (policy existingPreStop: replace)",
				c.Name, DescribeHook(existing), DescribeHook(want)))
		}
		d.Containers = append(d.Containers, ContainerChange{Index: i, Name: c.Name, PreStop: want, HadLifecycle: hadLC, HadPreStop: existing != nil})
	}

	// floor is the longest preStop sleep of any container: the API server refuses a pod with a
	// sleep longer than its grace period, the other containers' and the native sidecars' as
	// much as ours, so no grace period we set may be shorter. Only our own sleep gets the
	// shutdown budget on top; the others' hooks are not ours to size.
	others, othersName := otherSleeps(pod, targets)
	floor, floorName := longest, longestName
	if others > longest {
		floor, floorName = others, othersName
	}

	var graceNote string
	switch {
	case set.TerminationGracePeriod != nil && *set.TerminationGracePeriod >= floor:
		d.NewGrace = *set.TerminationGracePeriod
	default:
		if set.TerminationGracePeriod != nil {
			// Below a sleep the API server would reject the pod: treat it as invalid.
			d.Problems = append(d.Problems, field.Invalid(annotations.Path(annotations.AnnotationTerminationGracePeriod), field.OmitValueType{},
				graceBelowFloor(ann[annotations.AnnotationTerminationGracePeriod], floor, floorName, int64(pol.Limits.MaxTerminationGracePeriod))))
			if pol.OnInvalid == policy.OnInvalidReject {
				d.Outcome = OutcomeDenied
				d.Containers = nil
				return d
			}
		}
		d.NewGrace = max(d.OldGrace, addCapped(longest, budget), others)
		if d.NewGrace > int64(pol.Limits.MaxTerminationGracePeriod) && d.OldGrace <= int64(pol.Limits.MaxTerminationGracePeriod) {
			// Capped so that node drains (Cluster Autoscaler) do not give up on the pod;
			// never below a sleep, which the API server requires.
			d.NewGrace = max(int64(pol.Limits.MaxTerminationGracePeriod), floor, d.OldGrace)
			graceNote = " (capped by limits.maxTerminationGracePeriod)"
		}
	}

	if pol.Readiness == annotations.ReadinessTune && !set.ReadinessKeep {
		for _, i := range targets {
			if pc, ok := readinessChange(&pod.Spec.Containers[i], i); ok {
				d.Probes = append(d.Probes, pc)
			}
		}
	}

	for _, e := range d.Problems {
		d.Warnings = append(d.Warnings, "pushgateway-lifecycle: "+e.Error()+"; using the policy default")
	}

	graceChanged := d.NewGrace != d.OldGrace || !d.GraceSet
	if len(d.Containers) == 0 && !graceChanged && len(d.Probes) == 0 {
		d.Outcome = OutcomeUnchanged
		// Leave an existing status alone: a reinvocation must not rewrite the first pass's record.
		if _, has := ann[annotations.AnnotationStatus]; !has {
			d.Status = statusText(&d, kept, replaced, graceNote)
			d.SetStatus = true
			limitStatus(&d, ann)
		}
		return d
	}
	d.Outcome = OutcomeInjected
	if len(d.Problems) > 0 {
		d.Outcome = OutcomeInvalid
	}
	d.Status = statusText(&d, kept, replaced, graceNote)
	d.SetStatus = ann[annotations.AnnotationStatus] != d.Status
	limitStatus(&d, ann)
	return d
}

// readinessChange is the tuning of container c's readinessProbe (c is spec.containers[i]):
// an httpGet on ReadinessPath starts at once and runs every ReadinessMaxPeriod seconds at
// most. Values are only ever lowered, never raised: a shorter period is kept, and a negative
// one is the API server's to refuse. false when the probe is someone else's or tuned already.
func readinessChange(c *corev1.Container, i int) (ProbeChange, bool) {
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != ReadinessPath {
		return ProbeChange{}, false
	}
	pc := ProbeChange{Index: i, Name: c.Name, OldInitialDelay: p.InitialDelaySeconds, OldPeriod: p.PeriodSeconds, PeriodSet: p.PeriodSeconds != 0}
	if !pc.PeriodSet {
		// Absent (omitempty: 0 is absent) means the API server's default, which is above the bound.
		pc.OldPeriod = KubernetesDefaultProbePeriod
	}
	pc.NewPeriod = min(pc.OldPeriod, ReadinessMaxPeriod)
	if !pc.SetsInitialDelay() && !pc.SetsPeriod() {
		return ProbeChange{}, false
	}
	return pc, true
}

// otherSleeps is the longest readable preStop sleep (HookSleepSeconds) among the containers
// that are not targets and the restartable init containers (native sidecars; other init
// containers may not have hooks), with the first container that has it, init containers
// first. Hooks whose length cannot be read do not count: the API server bounds only the
// sleep action, and these hooks are the pod's own, not ones we set.
func otherSleeps(pod *corev1.Pod, targets []int) (int64, string) {
	var longest int64
	var name string
	note := func(c *corev1.Container) {
		if c.Lifecycle == nil {
			return
		}
		if s, ok := HookSleepSeconds(c.Lifecycle.PreStop); ok && s > longest {
			longest, name = s, c.Name
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			note(c)
		}
	}
	for i := range pod.Spec.Containers {
		if !slices.Contains(targets, i) {
			note(&pod.Spec.Containers[i])
		}
	}
	return longest, name
}

// graceBelowFloor explains a termination-grace-period annotation below the longest sleep.
func graceBelowFloor(value string, floor int64, name string, maxGrace int64) string {
	msg := fmt.Sprintf("%s: must be at least the longest preStop sleep of the pod, %s (container %s), ",
		annotations.Truncate(value), annotations.FormatSeconds(floor), annotations.Truncate(name))
	if floor > maxGrace {
		return msg + fmt.Sprintf("which is above limits.maxTerminationGracePeriod (%s): remove the annotation", annotations.FormatSeconds(maxGrace))
	}
	return msg + fmt.Sprintf("so from %s to %s", annotations.FormatSeconds(floor), annotations.FormatSeconds(maxGrace))
}

// limitStatus drops a status annotation that would take the pod's annotations over
// TotalAnnotationSizeLimit: the hook and the grace period matter, the record does not, and a
// pod the API server refuses gets neither. An old status stays (the pod carried it already);
// the decision and a warning say that the new one was left out.
func limitStatus(d *Decision, ann map[string]string) {
	if !d.SetStatus {
		return
	}
	total := len(annotations.AnnotationStatus) + len(d.Status)
	for k, v := range ann {
		if k != annotations.AnnotationStatus {
			total += len(k) + len(v)
		}
	}
	if total <= TotalAnnotationSizeLimit {
		return
	}
	d.SetStatus = false
	d.StatusOmitted = true
	d.Warnings = append(d.Warnings, fmt.Sprintf("pushgateway-lifecycle: status annotation %s left out: with it the pod's annotations would total %d bytes, over the limit of %d",
		annotations.AnnotationStatus, total, TotalAnnotationSizeLimit))
}

// skip records a skip; with record the reason goes into the status annotation (for skips a
// user asked for or can fix), written only when it differs so a reinvocation changes nothing.
// addCapped adds two non-negative seconds without wrapping: a kept hook may come with any
// int64 (the API server validates it after us), and a wrapped sum would shorten the grace.
func addCapped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func skip(d Decision, pod *corev1.Pod, why SkipReason, reason string, record bool) Decision {
	d.Outcome = OutcomeSkipped
	d.Skip, d.Reason = why, reason
	if record {
		d.Status = "skipped: " + reason
		if len(d.Problems) > 0 {
			d.Status += "; invalid: " + problemsText(d.Problems)
		}
		d.SetStatus = pod.Annotations[annotations.AnnotationStatus] != d.Status
		limitStatus(&d, pod.Annotations)
	}
	return d
}

func statusText(d *Decision, kept, replaced []string, graceNote string) string {
	var parts []string
	if len(d.Containers) > 0 {
		names := make([]string, len(d.Containers))
		for i, c := range d.Containers {
			names[i] = c.Name
		}
		p := fmt.Sprintf("injected: %s %s on %s", d.Action, annotations.FormatSeconds(d.Sleep), strings.Join(names, ","))
		if len(replaced) > 0 {
			p += fmt.Sprintf(" (replaced existing preStop on %s)", strings.Join(replaced, ","))
		}
		parts = append(parts, p)
	}
	if len(kept) > 0 {
		parts = append(parts, "kept existing preStop on "+strings.Join(kept, ","))
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("already set: %s %s on %s", d.Action, annotations.FormatSeconds(d.Sleep), strings.Join(d.Targets, ",")))
	}
	if d.GraceSet && d.NewGrace == d.OldGrace {
		parts = append(parts, fmt.Sprintf("terminationGracePeriodSeconds %d", d.NewGrace))
	} else {
		parts = append(parts, fmt.Sprintf("terminationGracePeriodSeconds %d->%d%s", d.OldGrace, d.NewGrace, graceNote))
	}
	for i := range d.Probes {
		c := &d.Probes[i]
		var fields []string
		if c.SetsInitialDelay() {
			fields = append(fields, fmt.Sprintf("initialDelaySeconds %d->0", c.OldInitialDelay))
		}
		if c.SetsPeriod() {
			fields = append(fields, fmt.Sprintf("periodSeconds %d->%d", c.OldPeriod, c.NewPeriod))
		}
		parts = append(parts, "readiness: "+strings.Join(fields, ", ")+" on "+c.Name)
	}
	if len(d.Problems) > 0 {
		parts = append(parts, "invalid: "+problemsText(d.Problems))
	}
	return strings.Join(parts, "; ")
}

func problemsText(errs field.ErrorList) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}

// targetContainers returns indexes into spec.containers. Named containers must all exist.
func targetContainers(pod *corev1.Pod, names []string) ([]int, *field.Error) {
	cs := pod.Spec.Containers
	if names != nil {
		idx := make([]int, 0, len(names))
		var missing []string
		for _, n := range names {
			found := -1
			for i := range cs {
				if cs[i].Name == n {
					found = i
					break
				}
			}
			if found < 0 {
				missing = append(missing, n)
				continue
			}
			if !slices.Contains(idx, found) {
				idx = append(idx, found)
			}
		}
		if len(missing) > 0 {
			existing := make([]string, len(cs))
			for i := range cs {
				existing[i] = cs[i].Name
			}
			return nil, field.Invalid(annotations.Path(annotations.AnnotationContainers), field.OmitValueType{},
				fmt.Sprintf("%s: names no container of this pod (%s); must be a comma-separated list of: %s",
					annotations.Truncate(strings.Join(names, ",")), annotations.Truncate(strings.Join(missing, ",")), annotations.Truncate(strings.Join(existing, ","))))
		}
		slices.Sort(idx)
		return idx, nil
	}
	var idx []int
	for i := range cs {
		if cs[i].Name == "pushgateway" || imageName(cs[i].Image) == "pushgateway" {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 && len(cs) == 1 {
		idx = []int{0}
	}
	return idx, nil
}

// imageName is the last path element of an image reference without tag or digest:
// quay.io/prometheus/pushgateway:v1.11.3 -> pushgateway.
func imageName(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	image = path.Base(image)
	if i := strings.IndexByte(image, ':'); i >= 0 {
		image = image[:i]
	}
	return image
}

// Hook builds the preStop handler for an action and a sleep.
func Hook(action string, seconds int64) *corev1.LifecycleHandler {
	if action == annotations.ActionExec {
		return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "sleep " + strconv.FormatInt(seconds, 10)}}}
	}
	return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}
}

// HookEqual compares the parts of a handler that Hook sets.
func HookEqual(a, b *corev1.LifecycleHandler) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.HTTPGet != nil || a.TCPSocket != nil || b.HTTPGet != nil || b.TCPSocket != nil {
		return false
	}
	switch {
	case a.Sleep != nil && b.Sleep != nil:
		return a.Exec == nil && b.Exec == nil && a.Sleep.Seconds == b.Sleep.Seconds
	case a.Exec != nil && b.Exec != nil:
		if a.Sleep != nil || b.Sleep != nil || len(a.Exec.Command) != len(b.Exec.Command) {
			return false
		}
		for i := range a.Exec.Command {
			if a.Exec.Command[i] != b.Exec.Command[i] {
				return false
			}
		}
		return true
	}
	return false
}

// HookSleepSeconds reads how long a sleep-only hook waits: the native sleep action, or an
// exec of `sh -c "sleep N"` / `sleep N`. Other hooks report false.
func HookSleepSeconds(h *corev1.LifecycleHandler) (int64, bool) {
	if h == nil {
		return 0, false
	}
	if h.Sleep != nil {
		return h.Sleep.Seconds, true
	}
	if h.Exec == nil {
		return 0, false
	}
	cmd := h.Exec.Command
	var script string
	switch {
	case len(cmd) == 3 && path.Base(cmd[0]) == "sh" || len(cmd) == 3 && path.Base(cmd[0]) == "bash":
		if cmd[1] != "-c" {
			return 0, false
		}
		script = cmd[2]
	case len(cmd) == 2 && path.Base(cmd[0]) == "sleep":
		script = "sleep " + cmd[1]
	default:
		return 0, false
	}
	f := strings.Fields(script)
	if len(f) != 2 || f[0] != "sleep" {
		return 0, false
	}
	n, err := annotations.ParseSeconds(f[1])
	if err != nil {
		return 0, false
	}
	return n, true
}

// DescribeHook prints a preStop handler briefly ("sleep 30s", "exec /bin/sh -c sleep 30"), as the
// status annotation and warnings do; audit uses the same words.
func DescribeHook(h *corev1.LifecycleHandler) string {
	switch {
	case h == nil:
		return "none"
	case h.Sleep != nil:
		return "sleep " + annotations.FormatSeconds(h.Sleep.Seconds)
	case h.Exec != nil:
		return "exec " + annotations.Truncate(strings.Join(h.Exec.Command, " "))
	case h.HTTPGet != nil:
		return "httpGet " + annotations.Truncate(h.HTTPGet.Path)
	case h.TCPSocket != nil:
		return "tcpSocket"
	}
	return "unknown"
}

// Apply writes a decision into a pod. The pod must be the one the decision was made for.
func Apply(pod *corev1.Pod, d *Decision) {
	for _, c := range d.Containers {
		ct := &pod.Spec.Containers[c.Index]
		if ct.Lifecycle == nil {
			ct.Lifecycle = &corev1.Lifecycle{}
		}
		ct.Lifecycle.PreStop = c.PreStop.DeepCopy()
	}
	for i := range d.Probes {
		c := &d.Probes[i]
		// Decide found the probe on this container, so ReadinessProbe is set.
		p := pod.Spec.Containers[c.Index].ReadinessProbe
		if c.SetsInitialDelay() {
			p.InitialDelaySeconds = 0
		}
		if c.SetsPeriod() {
			p.PeriodSeconds = c.NewPeriod
		}
	}
	if d.SetsGrace() {
		g := d.NewGrace
		pod.Spec.TerminationGracePeriodSeconds = &g
	}
	if d.SetStatus {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[annotations.AnnotationStatus] = d.Status
	}
	if d.Gate {
		pod.Spec.SchedulingGates = append(pod.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: annotations.SchedulingGateHandoff})
	}
	if d.ReadinessGate {
		pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: annotations.ConditionAcceptingPushes})
	}
}

// Mutate is Decide followed by Apply on a copy: the form for callers that want the pod.
func Mutate(pod *corev1.Pod, namespace string, pol *policy.Policy) (*corev1.Pod, Decision) {
	d := Decide(pod, namespace, pol)
	out := pod.DeepCopy()
	Apply(out, &d)
	return out, d
}
