package annotations

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxValueInMessage bounds how much of a user-supplied value is echoed back in an error: the
// value lands in admission warnings, events and logs, and an annotation may be 256 KiB.
const MaxValueInMessage = 64

// DurationForms describes the accepted duration syntax in every error message.
const DurationForms = "a Go duration in whole seconds (45s, 1m30s) or bare whole seconds (45)"

// annotationsPath is the field path that every per-pod error names.
var annotationsPath = field.NewPath("metadata", "annotations")

// Path returns the field path of one annotation, as errors and warnings name it.
func Path(key string) *field.Path { return annotationsPath.Key(key) }

// Limits are the policy bounds that annotation values are checked against. They are plain
// seconds so that this package does not depend on the policy package.
type Limits struct {
	MinPreStopSleep           int64
	MaxPreStopSleep           int64
	MaxTerminationGracePeriod int64
}

// Settings are the per-pod annotations after parsing. A nil pointer or empty string means
// "not set": the policy default applies.
type Settings struct {
	// Inject is false only for an explicit opt-out.
	OptOut                 bool
	PreStopSleep           *int64
	ShutdownBudget         *int64
	TerminationGracePeriod *int64
	Action                 string
	Containers             []string
	// HandoffOff and ReadinessKeep are explicit per-pod opt-outs of the gate and the probe tuning.
	HandoffOff    bool
	ReadinessKeep bool
}

// Truncate shortens v for an error message and quotes it, so control characters and invalid
// UTF-8 are printed escaped instead of reaching a terminal or a log line raw.
func Truncate(v string) string {
	if len(v) > MaxValueInMessage {
		cut := MaxValueInMessage
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		return strconv.Quote(v[:cut]) + fmt.Sprintf("... (%d bytes)", len(v))
	}
	return strconv.Quote(v)
}

// invalid builds the one error shape used for every setting: field path, bad value, accepted forms.
func invalid(path *field.Path, value, accepted string) *field.Error {
	// field.Invalid would print the value with %v unbounded; keep our own truncated, quoted form.
	return field.Invalid(path, field.OmitValueType{}, fmt.Sprintf("%s: must be %s", Truncate(value), accepted))
}

// ParseSeconds parses a duration setting: a Go duration that is a whole number of seconds, or
// bare whole seconds. Negative values are refused here; ranges are the caller's.
func ParseSeconds(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	if isDigits(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		// Beyond MaxSeconds FormatSeconds (time.Duration) overflows and would print a
		// different value than the one accepted (9223372036854775807 -> "-1s").
		if err != nil || n > MaxSeconds {
			return 0, fmt.Errorf("out of range")
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration")
	}
	if d < 0 {
		return 0, fmt.Errorf("negative")
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("not whole seconds")
	}
	return int64(d / time.Second), nil
}

// MaxSeconds is the largest duration a setting can hold: the largest time.Duration in whole
// seconds (about 292 years), so every accepted value prints back as itself.
const MaxSeconds = int64(1<<63-1) / int64(time.Second)

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatSeconds prints seconds the way the status annotation and messages do (30s, 1m30s).
func FormatSeconds(n int64) string {
	if n > MaxSeconds || n < -MaxSeconds {
		// Beyond time.Duration: print plain seconds rather than a wrapped value.
		return strconv.FormatInt(n, 10) + "s"
	}
	return (time.Duration(n) * time.Second).String()
}

// parseDurationIn parses one duration annotation within [lo, hi] (hi < 0: no upper bound).
func parseDurationIn(ann map[string]string, key string, lo, hi int64, errs *field.ErrorList) *int64 {
	v, ok := ann[key]
	if !ok {
		return nil
	}
	accepted := DurationForms
	if hi >= 0 {
		accepted += fmt.Sprintf(", from %s to %s", FormatSeconds(lo), FormatSeconds(hi))
	} else {
		accepted += fmt.Sprintf(", at least %s", FormatSeconds(lo))
	}
	n, err := ParseSeconds(v)
	if err != nil || n < lo || (hi >= 0 && n > hi) {
		*errs = append(*errs, invalid(Path(key), v, accepted))
		return nil
	}
	return &n
}

// ParseInject reads AnnotationInject: "true", "false", or absent.
func ParseInject(ann map[string]string) (optOut bool, err *field.Error) {
	v, ok := ann[AnnotationInject]
	if !ok {
		return false, nil
	}
	switch v {
	case "false":
		return true, nil
	case "true":
		return false, nil
	}
	return false, invalid(Path(AnnotationInject), v, `"true" or "false"`)
}

// ParseAction reads AnnotationPreStopAction; "" when absent.
func ParseAction(ann map[string]string) (string, *field.Error) {
	v, ok := ann[AnnotationPreStopAction]
	if !ok {
		return "", nil
	}
	switch v {
	case ActionSleep, ActionExec, ActionAuto:
		return v, nil
	}
	return "", invalid(Path(AnnotationPreStopAction), v, `one of "sleep", "exec", "auto"`)
}

// ParseContainers reads AnnotationContainers: comma-separated names, spaces around names
// ignored. Whether the names exist is checked against the pod by the engine.
func ParseContainers(ann map[string]string) ([]string, *field.Error) {
	v, ok := ann[AnnotationContainers]
	if !ok {
		return nil, nil
	}
	const accepted = "a comma-separated list of container names of this pod (pushgateway,sidecar)"
	parts := strings.Split(v, ",")
	names := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, invalid(Path(AnnotationContainers), v, accepted)
		}
		names = append(names, p)
	}
	return names, nil
}

// parseChoice reads an annotation whose value is one of two words; it reports whether the
// value is the second one (the opt-out).
func parseChoice(ann map[string]string, key, on, off string) (bool, *field.Error) {
	v, ok := ann[key]
	if !ok {
		return false, nil
	}
	switch v {
	case on:
		return false, nil
	case off:
		return true, nil
	}
	return false, invalid(Path(key), v, fmt.Sprintf("%q or %q", on, off))
}

// ParseHandoff reads AnnotationHandoff: "auto", "off", or absent.
func ParseHandoff(ann map[string]string) (off bool, err *field.Error) {
	return parseChoice(ann, AnnotationHandoff, HandoffAuto, HandoffOff)
}

// ParseReadiness reads AnnotationReadiness: "tune", "keep", or absent.
func ParseReadiness(ann map[string]string) (keep bool, err *field.Error) {
	return parseChoice(ann, AnnotationReadiness, ReadinessTune, ReadinessKeep)
}

// Parse reads every tuning annotation. It returns what parsed and every error at once; a
// setting with an error is left unset, so callers that warn instead of rejecting fall back
// to the policy defaults for exactly that setting.
func Parse(ann map[string]string, lim Limits) (Settings, field.ErrorList) {
	var s Settings
	var errs field.ErrorList
	if len(ann) == 0 {
		return s, nil
	}
	optOut, err := ParseInject(ann)
	if err != nil {
		errs = append(errs, err)
	}
	s.OptOut = optOut
	s.PreStopSleep = parseDurationIn(ann, AnnotationPreStopSleep, lim.MinPreStopSleep, lim.MaxPreStopSleep, &errs)
	s.ShutdownBudget = parseDurationIn(ann, AnnotationShutdownBudget, 0, lim.MaxTerminationGracePeriod, &errs)
	s.TerminationGracePeriod = parseDurationIn(ann, AnnotationTerminationGracePeriod, 0, lim.MaxTerminationGracePeriod, &errs)
	if a, err := ParseAction(ann); err != nil {
		errs = append(errs, err)
	} else {
		s.Action = a
	}
	if c, err := ParseContainers(ann); err != nil {
		errs = append(errs, err)
	} else {
		s.Containers = c
	}
	if off, err := ParseHandoff(ann); err != nil {
		errs = append(errs, err)
	} else {
		s.HandoffOff = off
	}
	if keep, err := ParseReadiness(ann); err != nil {
		errs = append(errs, err)
	} else {
		s.ReadinessKeep = keep
	}
	return s, errs
}
