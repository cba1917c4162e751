package annotations

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// durationSeeds are the forms users write plus the edges that broke parsers elsewhere:
// int64 overflow, signs, fractions, units that are not whole seconds, empty and non-ASCII.
var durationSeeds = []string{
	"30", "30s", "1m30s", "45s", "0", "0s", "600s", "10m", "1h", "2h45m",
	"9999999999999999999s", "9223372036854775807", "9223372036854775808", "-1", "-5s", "+5s",
	"1.5s", "0.5", "1500ms", "1e3", "", " ", " 30", "30 ", "3０s", "30\x00s", "٣٠", "30sec",
	"0x1e", "1_000", "-0", "9223372036s", "2562047h47m16s",
}

// FuzzParseSeconds: never panics, and whatever it accepts is non-negative and round-trips
// through FormatSeconds, so the value we write into the pod is the value the user meant.
func FuzzParseSeconds(f *testing.F) {
	for _, s := range durationSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSeconds(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSeconds(%q) = %d with error %v: a failed parse must not return a value", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSeconds(%q) = %d: negative values must be refused", s, n)
		}
		if n <= int64(time.Duration(1<<63-1)/time.Second) {
			back, err := ParseSeconds(FormatSeconds(n))
			if err != nil || back != n {
				t.Fatalf("ParseSeconds(%q) = %d, but FormatSeconds gives %q which parses to %d, %v", s, n, FormatSeconds(n), back, err)
			}
		}
	})
}

// FuzzParse runs every annotation parser at once on fuzzed values. The errors end up in
// admission warnings, events and logs, so besides "no panic" it checks that each message
// names its annotation, and never carries more than a truncated, quoted copy of the value.
func FuzzParse(f *testing.F) {
	f.Add("30s", "15s", "45s", "sleep", "pushgateway", "true")
	f.Add("9999999999999999999s", "-5s", "1.5s", "bogus", "nothing-here", "maybe")
	f.Add("", "", "", "", "", "")
	f.Add("1m", "0", "600", "exec", "a, b ,c", "false")
	f.Add("\x00\x1b[31m", "ü", strings.Repeat("9", 300), "auto", ",", "TRUE")
	f.Fuzz(func(t *testing.T, sleep, budget, grace, action, containers, inject string) {
		ann := map[string]string{
			AnnotationPreStopSleep:           sleep,
			AnnotationShutdownBudget:         budget,
			AnnotationTerminationGracePeriod: grace,
			AnnotationPreStopAction:          action,
			AnnotationContainers:             containers,
			AnnotationInject:                 inject,
		}
		lim := Limits{MinPreStopSleep: 5, MaxPreStopSleep: 300, MaxTerminationGracePeriod: 600}
		s, errs := Parse(ann, lim)
		for _, e := range errs {
			msg := e.Error()
			if !strings.Contains(msg, "metadata.annotations[") || !strings.Contains(msg, Prefix) {
				t.Fatalf("error does not name its annotation: %s", msg)
			}
			// Quoted value truncated to MaxValueInMessage bytes, escapes at most ~10x (\U0001xxxx),
			// plus the fixed text: anything longer echoes the input unbounded.
			if len(msg) > 10*MaxValueInMessage+400 {
				t.Fatalf("error message of %d bytes: the value is not truncated", len(msg))
			}
			if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\x00\x1b\n\r") {
				t.Fatalf("error message carries raw control characters or invalid UTF-8: %q", msg)
			}
		}
		if p := s.PreStopSleep; p != nil && (*p < lim.MinPreStopSleep || *p > lim.MaxPreStopSleep) {
			t.Fatalf("pre-stop-sleep %d accepted outside [%d, %d]", *p, lim.MinPreStopSleep, lim.MaxPreStopSleep)
		}
		for _, p := range []*int64{s.ShutdownBudget, s.TerminationGracePeriod} {
			if p != nil && (*p < 0 || *p > lim.MaxTerminationGracePeriod) {
				t.Fatalf("duration %d accepted outside [0, %d]", *p, lim.MaxTerminationGracePeriod)
			}
		}
		switch s.Action {
		case "", ActionSleep, ActionExec, ActionAuto:
		default:
			t.Fatalf("action %q accepted", s.Action)
		}
		for _, c := range s.Containers {
			if c == "" || c != strings.TrimSpace(c) || strings.Contains(c, ",") {
				t.Fatalf("container name %q accepted from %q", c, containers)
			}
		}
		if s.OptOut != (inject == "false") {
			t.Fatalf("inject=%q gave OptOut=%v", inject, s.OptOut)
		}
	})
}
