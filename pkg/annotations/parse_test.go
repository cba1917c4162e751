package annotations

import (
	"strings"
	"testing"
)

func TestParseSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"45", 45, false},
		{"0", 0, false},
		{"45s", 45, false},
		{"1m30s", 90, false},
		{"2h", 7200, false},
		{"", 0, true},
		{"-5s", 0, true},
		{"-5", 0, true},
		{"1.5s", 0, true},
		{"1500ms", 0, true},
		{"2000ms", 2, false},
		{"0.5", 0, true},
		{"45 s", 0, true},
		{" 45", 0, true},
		{"+45", 0, true},
		{"9999999999999999999s", 0, true},
		{"9999999999999999999", 0, true},
		{"abc", 0, true},
		{"30秒", 0, true},
		{"3\x000s", 0, true},
	} {
		got, err := ParseSeconds(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSeconds(%q) = %d, %v; want %d, error=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

var lim = Limits{MinPreStopSleep: 5, MaxPreStopSleep: 300, MaxTerminationGracePeriod: 600}

func TestParse(t *testing.T) {
	i := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want Settings
		// errs are substrings expected in the error list, in order.
		errs []string
	}{
		{name: "none", ann: nil},
		{name: "all valid", ann: map[string]string{
			AnnotationPreStopSleep: "45s", AnnotationShutdownBudget: "20", AnnotationTerminationGracePeriod: "1m30s",
			AnnotationPreStopAction: "exec", AnnotationContainers: " pushgateway , sidecar", AnnotationInject: "true",
		}, want: Settings{PreStopSleep: i(45), ShutdownBudget: i(20), TerminationGracePeriod: i(90), Action: "exec", Containers: []string{"pushgateway", "sidecar"}}},
		{name: "opt out", ann: map[string]string{AnnotationInject: "false"}, want: Settings{OptOut: true}},
		{name: "handoff off, readiness keep", ann: map[string]string{AnnotationHandoff: "off", AnnotationReadiness: "keep"},
			want: Settings{HandoffOff: true, ReadinessKeep: true}},
		{name: "handoff auto, readiness tune", ann: map[string]string{AnnotationHandoff: "auto", AnnotationReadiness: "tune"}},
		{name: "handoff and readiness misspelt", ann: map[string]string{AnnotationHandoff: "Off", AnnotationReadiness: "false"},
			errs: []string{`metadata.annotations[pushgateway-lifecycle.io/handoff]: Invalid value: "Off": must be "auto" or "off"`,
				`metadata.annotations[pushgateway-lifecycle.io/readiness]: Invalid value: "false": must be "tune" or "keep"`}},
		{name: "inject neither true nor false", ann: map[string]string{AnnotationInject: "yes"},
			errs: []string{`metadata.annotations[pushgateway-lifecycle.io/inject]`, `Invalid value: "yes": must be "true" or "false"`}},
		{name: "sleep below the minimum", ann: map[string]string{AnnotationPreStopSleep: "1s"},
			errs: []string{`[pushgateway-lifecycle.io/pre-stop-sleep]`, `"1s"`, "from 5s to 5m0s"}},
		{name: "sleep above the maximum", ann: map[string]string{AnnotationPreStopSleep: "301"},
			errs: []string{`"301"`, "from 5s to 5m0s"}},
		{name: "sleep overflows int64", ann: map[string]string{AnnotationPreStopSleep: "9999999999999999999s"},
			errs: []string{`"9999999999999999999s"`, DurationForms}},
		{name: "negative budget", ann: map[string]string{AnnotationShutdownBudget: "-1s"},
			errs: []string{`[pushgateway-lifecycle.io/shutdown-budget]`, `"-1s"`, "from 0s to 10m0s"}},
		{name: "fractional grace", ann: map[string]string{AnnotationTerminationGracePeriod: "1.5s"},
			errs: []string{`[pushgateway-lifecycle.io/termination-grace-period]`, `"1.5s"`}},
		{name: "grace above the maximum", ann: map[string]string{AnnotationTerminationGracePeriod: "601s"},
			errs: []string{`"601s"`, "from 0s to 10m0s"}},
		{name: "empty sleep", ann: map[string]string{AnnotationPreStopSleep: ""}, errs: []string{`Invalid value: "": must be`}},
		{name: "bad action", ann: map[string]string{AnnotationPreStopAction: "httpGet"},
			errs: []string{`[pushgateway-lifecycle.io/pre-stop-action]`, `"httpGet"`, `one of "sleep", "exec", "auto"`}},
		{name: "empty container name", ann: map[string]string{AnnotationContainers: "a,,b"},
			errs: []string{`[pushgateway-lifecycle.io/containers]`, `"a,,b"`}},
		{name: "control characters are escaped", ann: map[string]string{AnnotationPreStopSleep: "3\x1b[31m0"},
			errs: []string{`"3\x1b[31m0"`}},
		{name: "long values are truncated", ann: map[string]string{AnnotationPreStopSleep: strings.Repeat("9", 5000)},
			errs: []string{"... (5000 bytes)"}},
		{name: "every error at once", ann: map[string]string{AnnotationPreStopSleep: "x", AnnotationShutdownBudget: "y", AnnotationPreStopAction: "z"},
			errs: []string{"pre-stop-sleep", "shutdown-budget", "pre-stop-action"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := Parse(tc.ann, lim)
			if len(tc.errs) == 0 && len(errs) > 0 {
				t.Fatalf("unexpected errors: %v", errs)
			}
			msg := errs.ToAggregate()
			if len(tc.errs) > 0 {
				if msg == nil {
					t.Fatalf("want errors containing %q, got none", tc.errs)
				}
				for _, want := range tc.errs {
					if !strings.Contains(msg.Error(), want) {
						t.Errorf("error %q does not contain %q", msg.Error(), want)
					}
				}
				if len(msg.Error()) > 2000 {
					t.Errorf("error message is %d bytes: values must be truncated", len(msg.Error()))
				}
				return
			}
			if !equalSettings(got, tc.want) {
				t.Errorf("Parse = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func equalSettings(a, b Settings) bool {
	eq := func(x, y *int64) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	if a.OptOut != b.OptOut || a.Action != b.Action || !eq(a.PreStopSleep, b.PreStopSleep) ||
		!eq(a.ShutdownBudget, b.ShutdownBudget) || !eq(a.TerminationGracePeriod, b.TerminationGracePeriod) ||
		len(a.Containers) != len(b.Containers) {
		return false
	}
	for i := range a.Containers {
		if a.Containers[i] != b.Containers[i] {
			return false
		}
	}
	return true
}

func TestTruncateKeepsUTF8Valid(t *testing.T) {
	s := strings.Repeat("é", 100)
	got := Truncate(s)
	if strings.Contains(got, `\x`) {
		t.Errorf("Truncate cut a rune in half: %s", got)
	}
}
