package admissionpolicy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// podCase is one pod of the corpus; every case runs under every policy.
type podCase struct {
	name string
	pod  *corev1.Pod
}

const pgImage = "quay.io/prometheus/pushgateway:v1.11.3"

func pgPod(ann map[string]string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "pushgateway", Image: pgImage}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{annotations.LabelAppName: "prometheus-pushgateway"}, Annotations: ann},
		Spec:       corev1.PodSpec{Containers: containers},
	}
}

func withPreStop(h *corev1.LifecycleHandler) corev1.Container {
	return corev1.Container{Name: "pushgateway", Image: pgImage, Lifecycle: &corev1.Lifecycle{PreStop: h}}
}

func execHook(cmd ...string) *corev1.LifecycleHandler {
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: cmd}}
}

// httpProbe is an httpGet probe on path with the upstream chart's timeout (period 0: unset,
// which the API server defaults to 10 before admission).
func httpProbe(path string, delay, period int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstrFromInt(9091)}},
		InitialDelaySeconds: delay, PeriodSeconds: period, TimeoutSeconds: 10}
}

func withReadiness(p *corev1.Probe) corev1.Container {
	return corev1.Container{Name: "pushgateway", Image: pgImage, ReadinessProbe: p}
}

// annotationCases covers every setting, valid and invalid, selection, and existing hooks.
func annotationCases() []podCase {
	a := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	sleepK, budgetK, graceK := annotations.AnnotationPreStopSleep, annotations.AnnotationShutdownBudget, annotations.AnnotationTerminationGracePeriod
	actionK, ctrK, injectK := annotations.AnnotationPreStopAction, annotations.AnnotationContainers, annotations.AnnotationInject
	readyK := annotations.AnnotationReadiness
	grace := func(p *corev1.Pod, g int64) *corev1.Pod { p.Spec.TerminationGracePeriodSeconds = &g; return p }
	sidecar := corev1.Container{Name: "sidecar", Image: "busybox:1.37"}
	cases := []podCase{
		{"plain", pgPod(nil)},
		{"inject-label-only", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{annotations.LabelInject: "true"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}},
		{"not-selected", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{annotations.LabelAppName: "other"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: pgImage}}}}},
		{"mirror", pgPod(a(annotations.AnnotationMirror, "abc"))},
		{"opt-out", pgPod(a(injectK, "false"))},
		{"opt-out-with-typo", pgPod(a(injectK, "false", sleepK, "soon"))},
		{"inject-true", pgPod(a(injectK, "true"))},
		{"inject-invalid", pgPod(a(injectK, "yes"))},
		{"sleep-45s", pgPod(a(sleepK, "45s"))},
		{"sleep-bare-90", pgPod(a(sleepK, "90"))},
		{"sleep-1m30s", pgPod(a(sleepK, "1m30s"))},
		{"sleep-zero-padded", pgPod(a(sleepK, "00045"))},
		{"sleep-fraction-whole", pgPod(a(sleepK, "1.5m"))},
		{"sleep-ms-whole", pgPod(a(sleepK, "45000ms"))},
		{"sleep-fraction-not-whole", pgPod(a(sleepK, "1.5s"))},
		{"sleep-negative", pgPod(a(sleepK, "-5s"))},
		{"sleep-text", pgPod(a(sleepK, "30 seconds"))},
		{"sleep-quote", pgPod(a(sleepK, `3"0\s`))},
		{"sleep-long", pgPod(a(sleepK, strings.Repeat("9", 80)))},
		{"sleep-below-min", pgPod(a(sleepK, "1s"))},
		{"sleep-above-max", pgPod(a(sleepK, "10m"))},
		{"sleep-overflow", pgPod(a(sleepK, "99999999999999999999h"))},
		{"sleep-empty", pgPod(a(sleepK, ""))},
		{"budget-0", pgPod(a(budgetK, "0"))},
		{"budget-large-capped", pgPod(a(sleepK, "300s", budgetK, "590s"))},
		{"budget-invalid", pgPod(a(budgetK, "lots"))},
		{"grace-explicit", pgPod(a(graceK, "120"))},
		{"grace-below-sleep", pgPod(a(graceK, "10s"))},
		{"grace-above-max", pgPod(a(graceK, "1h"))},
		{"grace-pod-long", grace(pgPod(nil), 700)},
		{"grace-pod-short", grace(pgPod(nil), 5)},
		{"grace-pod-exact", grace(pgPod(nil), 45)},
		{"action-exec", pgPod(a(actionK, "exec"))},
		{"action-sleep", pgPod(a(actionK, "sleep"))},
		{"action-auto", pgPod(a(actionK, "auto"))},
		{"action-invalid", pgPod(a(actionK, "wait"))},
		{"containers-named", pgPod(a(ctrK, " sidecar , pushgateway "), corev1.Container{Name: "pushgateway", Image: pgImage}, sidecar)},
		{"containers-missing", pgPod(a(ctrK, "pushgatway"))},
		{"containers-empty-part", pgPod(a(ctrK, "pushgateway,,"))},
		{"containers-missing-no-default", pgPod(a(ctrK, "nope"), corev1.Container{Name: "a", Image: "x"}, corev1.Container{Name: "b", Image: "y"})},
		{"many-invalid", pgPod(a(injectK, "maybe", sleepK, "x", budgetK, "-1", graceK, "y", actionK, "z", ctrK, ","))},
		{"multi-by-image", pgPod(nil, corev1.Container{Name: "main", Image: "registry.example:5000/mirror/pushgateway@sha256:" + strings.Repeat("a", 64)}, sidecar)},
		{"multi-no-target", pgPod(nil, corev1.Container{Name: "a", Image: "x"}, corev1.Container{Name: "b", Image: "y"})},
		{"single-other-container", pgPod(nil, corev1.Container{Name: "gw", Image: "example/gateway:1"})},
		{"kept-sleep-7", pgPod(nil, withPreStop(&corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 7}}))},
		{"kept-sleep-40", pgPod(nil, withPreStop(&corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 40}}))},
		{"kept-exec-sh-sleep-40", pgPod(nil, withPreStop(execHook("/bin/sh", "-c", "sleep 40")))},
		{"kept-exec-bash-sleep-1m", pgPod(nil, withPreStop(execHook("bash", "-c", "  sleep\t1m ")))},
		{"kept-exec-sleep-50", pgPod(nil, withPreStop(execHook("/usr/bin/sleep", "50")))},
		{"kept-exec-script", pgPod(nil, withPreStop(execHook("/bin/sh", "-c", "curl -X PUT localhost:9091/quit; sleep 40")))},
		{"kept-httpget", pgPod(nil, withPreStop(&corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/quit", Port: intstrFromInt(9091)}}))},
		{"already-set", grace(pgPod(nil, withPreStop(&corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}})), 45)},
		{"already-set-exec", grace(pgPod(a(actionK, "exec"), withPreStop(execHook("/bin/sh", "-c", "sleep 30"))), 45)},
		{"status-present", pgPod(a(annotations.AnnotationStatus, "stale"))},
		{"lifecycle-without-prestop", pgPod(nil, corev1.Container{Name: "pushgateway", Image: pgImage, Lifecycle: &corev1.Lifecycle{PostStart: execHook("true")}})},
		{"mixed-kept-and-added", pgPod(a(ctrK, "pushgateway,sidecar"), withPreStop(&corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 100}}), sidecar)},
		// The readinessProbe on /-/ready of the target containers (engine.readinessChange).
		{"readiness-upstream-timing", pgPod(nil, withReadiness(httpProbe("/-/ready", 10, 0)))},
		{"readiness-period-1-kept", pgPod(nil, withReadiness(httpProbe("/-/ready", 10, 1)))},
		{"readiness-delay-0-period-5", pgPod(nil, withReadiness(httpProbe("/-/ready", 0, 5)))},
		{"readiness-only-change", grace(pgPod(nil, corev1.Container{Name: "pushgateway", Image: pgImage, ReadinessProbe: httpProbe("/-/ready", 10, 10),
			Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}}}}), 45)},
		{"readiness-already-tuned", grace(pgPod(nil, corev1.Container{Name: "pushgateway", Image: pgImage, ReadinessProbe: httpProbe("/-/ready", 0, 2),
			Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}}}}), 45)},
		{"readiness-other-path", pgPod(nil, withReadiness(httpProbe("/metrics", 10, 10)))},
		{"readiness-tcp-socket", pgPod(nil, withReadiness(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstrFromInt(9091)}},
			InitialDelaySeconds: 10, PeriodSeconds: 10}))},
		{"liveness-on-ready", pgPod(nil, corev1.Container{Name: "pushgateway", Image: pgImage, LivenessProbe: httpProbe("/-/ready", 10, 10)})},
		{"readiness-annotation-keep", pgPod(a(readyK, "keep"), withReadiness(httpProbe("/-/ready", 10, 10)))},
		{"readiness-annotation-tune", pgPod(a(readyK, "tune"), withReadiness(httpProbe("/-/ready", 10, 10)))},
		{"readiness-annotation-invalid", pgPod(a(readyK, "Keep"), withReadiness(httpProbe("/-/ready", 10, 10)))},
		{"readiness-non-target", pgPod(nil, withReadiness(httpProbe("/-/ready", 10, 10)),
			corev1.Container{Name: "sidecar", Image: "busybox:1.37", ReadinessProbe: httpProbe("/-/ready", 10, 10)})},
		{"readiness-two-targets", pgPod(a(ctrK, "pushgateway,sidecar"), withReadiness(httpProbe("/-/ready", 10, 10)),
			corev1.Container{Name: "sidecar", Image: "busybox:1.37", ReadinessProbe: httpProbe("/-/ready", 0, 3)})},
	}
	// Large pods: CEL runtime cost grows with them; the API server's budget must not be hit
	// (failurePolicy Ignore would then leave the pod unchanged, which the comparison catches).
	many := []corev1.Container{{Name: "pushgateway", Image: pgImage}}
	for i := 0; i < 60; i++ {
		many = append(many, corev1.Container{Name: "c" + itoa(i), Image: "registry.example/sidecar:" + itoa(i),
			Lifecycle: &corev1.Lifecycle{PreStop: execHook("/bin/sh", "-c", "sleep "+itoa(i))}})
	}
	cases = append(cases,
		podCase{"sixty-one-containers", pgPod(a(ctrK, "pushgateway,c59,c3"), many...)},
		podCase{"huge-annotations", pgPod(a("example.com/blob", strings.Repeat("x", 200<<10), sleepK, strings.Repeat("4", 50<<10)))},
	)
	return cases
}

// engineGoldenCases are the engine's golden corpus (pkg/engine/testdata) with its policies.
func engineGoldenCases(t *testing.T) map[string][]podCase {
	t.Helper()
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "pkg", "engine", "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]podCase{}
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(data, &pod); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		pol := ""
		if b, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".policy"); err == nil {
			pol = string(b)
		}
		out[pol] = append(out[pol], podCase{"golden-" + name, &pod})
	}
	return out
}

// upstreamChartCases are the pods of the upstream chart's workloads.
func upstreamChartCases(t *testing.T) []podCase {
	t.Helper()
	paths, err := fixtures.UpstreamChart()
	if err != nil {
		t.Fatal(err)
	}
	var out []podCase
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				continue // comment-only documents
			}
			var tpl *corev1.PodTemplateSpec
			switch o := obj.(type) {
			case *appsv1.Deployment:
				tpl = &o.Spec.Template
			case *appsv1.StatefulSet:
				tpl = &o.Spec.Template
			default:
				continue
			}
			pod := &corev1.Pod{ObjectMeta: *tpl.ObjectMeta.DeepCopy(), Spec: *tpl.Spec.DeepCopy()}
			// Volumes name claims and config maps that do not exist; admission does not care.
			out = append(out, podCase{"upstream-" + strings.TrimSuffix(filepath.Base(p), ".yaml"), pod})
		}
	}
	if len(out) == 0 {
		t.Fatal("no pod templates in the upstream chart fixtures")
	}
	return out
}

// diffJSON compares two decoded JSON values field by field and returns the differing paths.
func diffJSON(path string, a, b any) []string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return []string{path + ": webhook " + short(a) + " != policy " + short(b)}
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []string
		for _, k := range sorted {
			out = append(out, diffJSON(path+"."+k, av[k], bv[k])...)
		}
		return out
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return []string{path + ": webhook " + short(a) + " != policy " + short(b)}
		}
		var out []string
		for i := range av {
			out = append(out, diffJSON(path+"["+itoa(i)+"]", av[i], bv[i])...)
		}
		return out
	}
	if short(a) != short(b) {
		return []string{path + ": webhook " + short(a) + " != policy " + short(b)}
	}
	return nil
}

// TestDiffJSON: the comparison reports a differing field, a missing one and a list length.
func TestDiffJSON(t *testing.T) {
	a := map[string]any{"spec": map[string]any{"g": 45.0, "c": []any{map[string]any{"n": "x"}}}, "meta": map[string]any{"s": "a"}}
	b := map[string]any{"spec": map[string]any{"g": 30.0, "c": []any{map[string]any{"n": "x"}, "y"}}}
	got := diffJSON("pod", a, b)
	want := []string{"pod.meta: webhook {\"s\":\"a\"} != policy null", "pod.spec.c: webhook [{\"n\":\"x\"}] != policy [{\"n\":\"x\"},\"y\"]", "pod.spec.g: webhook 45 != policy 30"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := diffJSON("pod", a, a); len(d) != 0 {
		t.Errorf("a pod differs from itself: %v", d)
	}
}

// randomCases are pods drawn from the values that matter to the engine (every setting's
// valid, boundary and invalid forms; container names, images and hooks; grace periods), from
// a fixed seed so that a failure reproduces.
func randomCases(n int, seed uint64) []podCase {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	durations := []string{"", "0", "5", "4s", "30", "45s", "1m30s", "0045", "1.5m", "1.5s", "-1s", "-0s", "300s", "301", "600s", "601s", "1h", "abc", "99999999999999999999"}
	var out []podCase
	for i := 0; i < n; i++ {
		ann := map[string]string{}
		maybe := func(key string, vals ...string) {
			if r.IntN(10) < 4 {
				ann[key] = pick(vals...)
			}
		}
		maybe(annotations.AnnotationPreStopSleep, durations...)
		maybe(annotations.AnnotationShutdownBudget, durations...)
		maybe(annotations.AnnotationTerminationGracePeriod, durations...)
		maybe(annotations.AnnotationPreStopAction, "sleep", "exec", "auto", "wait")
		maybe(annotations.AnnotationContainers, "pushgateway", "a,pushgateway", "nope", " a ", ",", "a,b", "sidecar")
		if r.IntN(10) == 0 {
			ann[annotations.AnnotationInject] = pick("true", "false", "x")
		}
		var containers []corev1.Container
		for _, name := range []string{"pushgateway", "a", "b", "sidecar"} {
			if r.IntN(2) == 0 {
				continue
			}
			c := corev1.Container{Name: name, Image: pick(pgImage, "busybox:1.37", "x/pushgateway:1", "y")}
			switch r.IntN(7) {
			case 1:
				c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: int64([]int{0, 7, 30, 40, 200}[r.IntN(5)])}}}
			case 2:
				c.Lifecycle = &corev1.Lifecycle{PreStop: execHook("/bin/sh", "-c", pick("sleep 40", "sleep 30", "sleep 1m", "echo; sleep 9"))}
			case 3:
				c.Lifecycle = &corev1.Lifecycle{PreStop: execHook("sleep", pick("50", "x"))}
			case 4:
				c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/quit", Port: intstrFromInt(9091)}}}
			case 5:
				c.Lifecycle = &corev1.Lifecycle{PostStart: execHook("true")}
			}
			containers = append(containers, c)
		}
		if len(containers) == 0 {
			containers = []corev1.Container{{Name: "pushgateway", Image: pgImage}}
		}
		pod := pgPod(ann, containers...)
		if len(ann) == 0 {
			pod.Annotations = nil
		}
		if r.IntN(5) == 0 {
			pod.Labels = map[string]string{annotations.LabelInject: "true"}
		}
		if r.IntN(3) == 0 {
			g := int64([]int{0, 5, 30, 45, 700}[r.IntN(5)])
			pod.Spec.TerminationGracePeriodSeconds = &g
		}
		out = append(out, podCase{"random-" + itoa(i), pod})
	}
	return out
}
