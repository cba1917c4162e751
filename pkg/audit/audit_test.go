package audit

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

func mustPolicy(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// chartPod is a pod of the upstream prometheus-pushgateway chart, as its Deployment creates it.
func chartPod(ann map[string]string, containers ...string) *corev1.Pod {
	if len(containers) == 0 {
		containers = []string{"pushgateway"}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "pgw-7d4b9c-abcde", Namespace: "monitoring",
		Labels:      map[string]string{annotations.LabelAppName: "prometheus-pushgateway"},
		Annotations: ann,
	}}
	for _, c := range containers {
		img := "quay.io/prometheus/pushgateway:v1.11.3"
		if c != "pushgateway" {
			img = "example.org/" + c + ":1"
		}
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: img})
	}
	return p
}

// admitted is the pod as the webhook stores it: engine.Mutate under pol.
func admitted(t *testing.T, p *corev1.Pod, pol *policy.Policy) *corev1.Pod {
	t.Helper()
	out, d := engine.Mutate(p, p.Namespace, pol)
	if d.Outcome != engine.OutcomeInjected && d.Outcome != engine.OutcomeInvalid && d.Outcome != engine.OutcomeSkipped {
		t.Fatalf("fixture: outcome %s", d.Outcome)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestClassify(t *testing.T) {
	def := policy.Default()
	budget60 := mustPolicy(t, "defaults:\n  shutdownBudget: 60s\n")
	reject := mustPolicy(t, "onInvalid: reject\n")
	in, out := ptr(true), ptr(false)

	handSet := chartPod(nil)
	handSet.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}}}
	handSet.Spec.TerminationGracePeriodSeconds = ptr(int64(45))

	edited := admitted(t, chartPod(nil), def)
	edited.Annotations[annotations.AnnotationShutdownBudget] = "60s"

	// The status annotation of an admitted pod copied by hand into a template, whose pod was
	// then created while the webhook was down.
	copied := chartPod(map[string]string{annotations.AnnotationStatus: admitted(t, chartPod(nil), def).Annotations[annotations.AnnotationStatus]})

	fixedSince := admitted(t, chartPod(map[string]string{annotations.AnnotationPreStopSleep: "banana"}), def)
	delete(fixedSince.Annotations, annotations.AnnotationPreStopSleep)

	mirror := chartPod(map[string]string{annotations.AnnotationMirror: "x"})
	kubeSystem := chartPod(nil)
	kubeSystem.Namespace = "kube-system"

	keptHook := chartPod(nil)
	keptHook.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/drain"}}}

	// Admitted before the readiness tuning (or under readiness: keep): hook and grace period
	// set, the upstream chart's readinessProbe timing still as written.
	keep := mustPolicy(t, "readiness: keep\n")
	probed := chartPod(nil)
	probed.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: engine.ReadinessPath}},
		InitialDelaySeconds: 10, PeriodSeconds: 10}
	untuned := admitted(t, probed, keep)

	cases := []struct {
		name    string
		pod     *corev1.Pod
		optedIn *bool
		pol     *policy.Policy
		want    State
		reason  string // substring; "" means the reason must be empty
	}{
		{"admitted by the webhook", admitted(t, chartPod(nil), def), in, def, StateProtected, ""},
		{"admitted, namespace opted out since", admitted(t, chartPod(nil), def), out, def, StateProtected, ""},
		{"set by hand, no status", handSet, in, def, StateProtected, "no status annotation, but the spec already"},
		{"set by hand in a namespace not opted in", handSet, out, def, StateProtected, "already is what the policy asks"},
		{"created before the webhook", chartPod(nil), in, def, StateUnprotected,
			"would set: preStop of pushgateway none -> sleep 30s, terminationGracePeriodSeconds unset -> 45"},
		{"namespace unknown (no permission)", chartPod(nil), nil, def, StateUnprotected, "no status annotation"},
		{"kept an httpGet hook, grace not set", admitted(t, keptHook, def), in, def, StateProtected, ""},
		{"kept hook created without the webhook", keptHook, in, def, StateUnprotected, "terminationGracePeriodSeconds unset -> 45"},
		{"policy budget raised since", admitted(t, chartPod(nil), def), in, budget60, StateDrifted,
			"spec differs from what the policy decides now: terminationGracePeriodSeconds 45 -> 90"},
		{"readiness tuned since admission", untuned, in, def, StateDrifted,
			"spec differs from what the policy decides now: readinessProbe.initialDelaySeconds of pushgateway 10 -> 0, readinessProbe.periodSeconds of pushgateway 10 -> 2"},
		{"readiness kept by the policy", untuned, in, keep, StateProtected, ""},
		{"readiness tuned at admission", admitted(t, probed, def), in, def, StateProtected, ""},
		{"annotation edited on the live pod", edited, in, def, StateDrifted, "terminationGracePeriodSeconds 45 -> 90"},
		{"status copied into a template", copied, in, def, StateDrifted, "preStop of pushgateway none -> sleep 30s"},
		{"invalid annotation, admitted with defaults", admitted(t, chartPod(map[string]string{annotations.AnnotationPreStopSleep: "banana"}), def), in, def,
			StateInvalid, `metadata.annotations[pushgateway-lifecycle.io/pre-stop-sleep]: Invalid value: "banana"`},
		{"invalid annotation, never admitted", chartPod(map[string]string{annotations.AnnotationPreStopSleep: "banana"}), in, def, StateInvalid, `"banana"`},
		{"invalid annotation under reject", chartPod(map[string]string{annotations.AnnotationShutdownBudget: "-1s"}), in, reject, StateInvalid, `"-1s"`},
		{"invalid at admission, fixed since", fixedSince, in, def, StateInvalid, "created with invalid settings"},
		{"container annotation names nothing", chartPod(map[string]string{annotations.AnnotationContainers: "nope"}), in, def, StateInvalid, "names no container"},
		{"no target container", chartPod(nil, "app", "sidecar"), in, def, StateInvalid, "no target container"},
		{"opted out", chartPod(map[string]string{annotations.AnnotationInject: "false"}), in, def, StateOptedOut, "inject=false"},
		{"opted out in a namespace not opted in", chartPod(map[string]string{annotations.AnnotationInject: "false"}), out, def, StateOptedOut, "inject=false"},
		{"namespace not opted in", chartPod(nil), out, def, StateNotOptedIn, "namespace monitoring is not opted in; would set: preStop"},
		{"kube-system", kubeSystem, in, def, StateNotOptedIn, "never mutates a kube-system"},
		{"mirror pod", mirror, in, def, StateNotOptedIn, "never mutates a mirror pod"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !Selected(c.pod, c.pol) {
				t.Fatal("fixture not selected by the policy")
			}
			v := Classify(c.pod, c.optedIn, c.pol)
			if v.State != c.want {
				t.Errorf("state %s, want %s (reason %q)", v.State, c.want, v.Reason)
			}
			if c.reason == "" && v.Reason != "" || !strings.Contains(v.Reason, c.reason) {
				t.Errorf("reason %q, want it to contain %q", v.Reason, c.reason)
			}
		})
	}
}

func TestSelected(t *testing.T) {
	def := policy.Default()
	p := chartPod(nil)
	p.Labels = map[string]string{"app": "other"}
	if Selected(p, def) {
		t.Error("a pod without the chart's label or the inject label is selected")
	}
	p.Labels[annotations.LabelInject] = "true"
	if !Selected(p, def) {
		t.Error("the inject=true label does not select")
	}
}

func TestFinished(t *testing.T) {
	for phase, want := range map[corev1.PodPhase]bool{corev1.PodPending: false, corev1.PodRunning: false, corev1.PodSucceeded: true, corev1.PodFailed: true} {
		p := chartPod(nil)
		p.Status.Phase = phase
		if Finished(p) != want {
			t.Errorf("phase %s: Finished %v", phase, !want)
		}
	}
	p := chartPod(nil)
	p.DeletionTimestamp = &metav1.Time{}
	if !Finished(p) {
		t.Error("a pod being deleted is not finished")
	}
}

func TestClassifyTemplate(t *testing.T) {
	def := policy.Default()
	tpl := func(p *corev1.Pod) *corev1.PodTemplateSpec {
		return &corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
	}
	unlabelled := chartPod(nil)
	unlabelled.Labels = map[string]string{"app": "x"}
	cases := []struct {
		name, ns string
		pod      *corev1.Pod
		want     string
	}{
		{"chart template", "monitoring", chartPod(nil), TemplateMutated},
		{"already carries the hook", "monitoring", admitted(t, chartPod(nil), def), TemplateAsWanted},
		{"opted out", "monitoring", chartPod(map[string]string{annotations.AnnotationInject: "false"}), TemplateOptedOut},
		{"invalid", "monitoring", chartPod(map[string]string{annotations.AnnotationPreStopAction: "wait"}), TemplateInvalid},
		{"not selected", "monitoring", unlabelled, TemplateNotSelected},
		{"kube-system", "kube-system", chartPod(nil), TemplateNeverMutated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reason := ClassifyTemplate(tpl(c.pod), c.ns, def)
			if got != c.want {
				t.Errorf("%s (%s), want %s", got, reason, c.want)
			}
			if (got == TemplateInvalid || got == TemplateNeverMutated) != (reason != "") {
				t.Errorf("reason %q for %s", reason, got)
			}
		})
	}
}

func TestStateRank(t *testing.T) {
	for i := 1; i < len(States); i++ {
		if States[i].Rank() <= States[i-1].Rank() {
			t.Errorf("%s does not rank above %s", States[i], States[i-1])
		}
	}
	if State("Bogus").Rank() != len(States) {
		t.Error("an unknown state does not rank last")
	}
	for _, s := range States {
		if s.OK() != (s == StateProtected || s == StateOptedOut) {
			t.Errorf("%s.OK() = %v", s, s.OK())
		}
	}
}

// persisting is chartPod with --persistence.file on volume "storage" of the given source.
func persisting(src corev1.VolumeSource) corev1.PodTemplateSpec {
	p := chartPod(nil)
	c := &p.Spec.Containers[0]
	c.Args = []string{"--persistence.file=/data/store", "--persistence.interval=1m"}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "storage", MountPath: "/data"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "storage", VolumeSource: src}}
	return corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
}

func TestClassifyWorkloadRisks(t *testing.T) {
	def := policy.Default()
	claim := corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pgw"}}
	empty := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	deploy := func(strategy appsv1.DeploymentStrategyType, replicas int32, tpl corev1.PodTemplateSpec) *appsv1.Deployment {
		return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &replicas, Strategy: appsv1.DeploymentStrategy{Type: strategy}, Template: tpl}}
	}
	plain := corev1.PodTemplateSpec{ObjectMeta: chartPod(nil).ObjectMeta, Spec: chartPod(nil).Spec}
	optedOut := plain.DeepCopy()
	optedOut.Annotations = map[string]string{annotations.AnnotationInject: "false"}
	sts := &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Template: persisting(corev1.VolumeSource{}),
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "storage"}}}}}
	sts.Spec.Template.Spec.Volumes = nil
	cases := []struct {
		name  string
		obj   runtime.Object
		state string
		codes []string
	}{
		{"the community chart's default", deploy("", 1, plain), TemplateMutated, []string{engine.RiskNoPersistence}},
		{"persistence on emptyDir", deploy(appsv1.RecreateDeploymentStrategyType, 1, persisting(empty)), TemplateMutated, []string{engine.RiskNoPersistence}},
		{"RollingUpdate on a claim", deploy(appsv1.RollingUpdateDeploymentStrategyType, 1, persisting(claim)), TemplateMutated, []string{engine.RiskTwoWriters, engine.RiskCrash}},
		{"Recreate on a claim", deploy(appsv1.RecreateDeploymentStrategyType, 1, persisting(claim)), TemplateMutated, []string{engine.RiskCrash}},
		{"two replicas", deploy(appsv1.RecreateDeploymentStrategyType, 2, persisting(claim)), TemplateMutated, []string{engine.RiskReplicas, engine.RiskCrash}},
		{"StatefulSet on its claim template", sts, TemplateMutated, []string{engine.RiskCrash}},
		{"opted out", deploy("", 1, *optedOut), TemplateOptedOut, nil},
		{"a Job", &batchv1.Job{Spec: batchv1.JobSpec{Template: plain}}, TemplateMutated, nil},
		{"not a workload", &corev1.ConfigMap{}, TemplateUnknown, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := ClassifyWorkload(c.obj, "monitoring", def)
			if v.State != c.state {
				t.Errorf("state %q (%s), want %q", v.State, v.Reason, c.state)
			}
			var codes []string
			for _, r := range v.Risks {
				codes = append(codes, r.Code)
				if (r.Code == engine.RiskCrash) != r.Info {
					t.Errorf("%s: info %v", r.Code, r.Info)
				}
			}
			if strings.Join(codes, ",") != strings.Join(c.codes, ",") {
				t.Errorf("risks %q, want %q: %v", codes, c.codes, v.Risks)
			}
		})
	}
}
