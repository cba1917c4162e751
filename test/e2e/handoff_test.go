package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/handoff"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// handoffSuite runs the whole product (webhook and handoff controller, leader-elected) against
// a real kube-apiserver and kube-controller-manager. There is no kubelet: a pod bound to the
// suite's Node object is deleted gracefully and then stays terminating, exactly as a pod on a
// node whose kubelet is still running its preStop hook. The ReplicaSet controller creates the
// replacement beside it, which is the case the gate exists for.
type handoffSuite struct {
	cp     *harness.ControlPlane
	client kubernetes.Interface
	port   int
	policy string
	wh     *harness.Webhook
	logs   []*harness.Webhook
}

const (
	nsHandoff   = "e2e-handoff"
	handoffNode = "node-without-kubelet"
)

func TestHandoff(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a real control plane")
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("handoff e2e wall time: %s", time.Since(start).Round(time.Second)) })
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	s := &handoffSuite{}
	s.cp = harness.NewControlPlane(t, harness.Options{ControllerManager: true})
	s.client = s.cp.Clientset
	t.Cleanup(func() {
		for i, wh := range s.logs {
			_ = wh.Stop(15 * time.Second)
			if t.Failed() {
				t.Logf("server %d output, last 16 KiB:\n%s", i+1, tailString(wh.Logs(), 16<<10))
			}
		}
	})
	s.policy = filepath.Join(t.TempDir(), "policy.yaml")
	// maxWait 1s: the timeout case deletes with a 3 s grace period and waits for the timeout.
	writeFileAtomic(t, s.policy, "handoff:\n  maxWait: 1s\n")
	var err error
	if s.port, err = harness.FreePort(); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	if err := s.cp.Register(ctx, webhookConfigs(t).PointAt(s.wh.URL(""), s.cp.CAData)); err != nil {
		t.Fatal(err)
	}
	if err := s.cp.CreateNamespace(ctx, nsHandoff, true); err != nil {
		t.Fatal(err)
	}
	if err := s.cp.WaitForWebhook(ctx, nsHandoff, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: handoffNode}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("first pod is not gated; a graceful delete gates the replacement; force delete lifts it", func(t *testing.T) { s.caseLift(ctx, t) })
	t.Run("a predecessor that outlives deletionTimestamp plus maxWait releases with a warning", func(t *testing.T) { s.caseTimeout(ctx, t) })
	t.Run("a restarted controller lifts a gate set before it started", func(t *testing.T) { s.caseRestart(ctx, t) })
	t.Run("annotation handoff off starts the replacement at once", func(t *testing.T) { s.caseOptOut(ctx, t) })
	t.Run("a pod without persistence accepts pushes once seen and none from its DELETE on", func(t *testing.T) { s.caseDrain(ctx, t) })
}

func (s *handoffSuite) start(t *testing.T) {
	t.Helper()
	wh, err := harness.StartWebhookServer(s.cp.CertDir, harness.WebhookOptions{
		PolicyFile: s.policy,
		Port:       s.port,
		Args:       []string{"--shutdown-delay=0s", "--handoff", "--leader-elect", "--leader-election-namespace=default"},
		Env:        []string{"KUBECONFIG=" + s.cp.KubeconfigPath},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wh = wh
	s.logs = append(s.logs, wh)
}

// deployment is a one-replica chart-labelled Deployment whose pods mount claim.
func handoffDeployment(name string, podAnn map[string]string) *appsv1.Deployment {
	lbl := workloadLabels(name)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsHandoff},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: podAnn},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3",
						Args:         []string{"--persistence.file=/data/metrics"},
						VolumeMounts: []corev1.VolumeMount{{Name: "storage", MountPath: "/data"}},
					}},
					Volumes: []corev1.Volume{{Name: "storage", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name},
					}}},
				},
			},
		},
	}
}

// livePods lists the Deployment's pods: the terminating one and the others.
func (s *handoffSuite) livePods(ctx context.Context, name string) (terminating, others []corev1.Pod, err error) {
	list, err := s.client.CoreV1().Pods(nsHandoff).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(workloadLabels(name)).String()})
	if err != nil {
		return nil, nil, err
	}
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			terminating = append(terminating, p)
		} else {
			others = append(others, p)
		}
	}
	return terminating, others, nil
}

// firstPod creates the Deployment, waits for its one pod and binds it to the node, so that a
// graceful delete leaves it terminating (only a kubelet would finish it).
func (s *handoffSuite) firstPod(ctx context.Context, t *testing.T, d *appsv1.Deployment) corev1.Pod {
	t.Helper()
	if _, err := s.client.AppsV1().Deployments(nsHandoff).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	eventually(t, time.Minute, "the Deployment's first pod", func() (bool, string) {
		_, others, err := s.livePods(ctx, d.Name)
		if err != nil || len(others) != 1 {
			return false, fmt.Sprintf("%d pods, err %v", len(others), err)
		}
		pod = others[0]
		return true, ""
	})
	if gates := gateNames(&pod); len(gates) != 0 {
		t.Fatalf("a pod with no predecessor was gated: %v (status %q)", gates, pod.Annotations[annotations.AnnotationStatus])
	}
	if pod.Spec.TerminationGracePeriodSeconds == nil || *pod.Spec.TerminationGracePeriodSeconds != 45 {
		t.Fatalf("the first pod was not patched as usual: grace %v", pod.Spec.TerminationGracePeriodSeconds)
	}
	if persisted := len(d.Spec.Template.Spec.Volumes) > 0; persisted == engineHasReadinessGate(&pod) {
		t.Fatalf("persistence on a claim %v, yet the drain's readiness gate %v: %+v", persisted, !persisted, pod.Spec.ReadinessGates)
	}
	err := s.client.CoreV1().Pods(nsHandoff).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: nsHandoff},
		Target:     corev1.ObjectReference{Kind: "Node", Name: handoffNode},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("binding %s to %s: %v", pod.Name, handoffNode, err)
	}
	return pod
}

// replacement deletes old with the grace period given and returns the ReplicaSet's
// replacement, created while old still terminates.
func (s *handoffSuite) replacement(ctx context.Context, t *testing.T, name string, old corev1.Pod, grace int64) corev1.Pod {
	t.Helper()
	if err := s.client.CoreV1().Pods(nsHandoff).Delete(ctx, old.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	var repl corev1.Pod
	eventually(t, 30*time.Second, "the ReplicaSet's replacement beside the terminating pod", func() (bool, string) {
		term, others, err := s.livePods(ctx, name)
		if err != nil || len(term) != 1 || len(others) != 1 {
			return false, fmt.Sprintf("%d terminating, %d others, err %v", len(term), len(others), err)
		}
		repl = others[0]
		return true, ""
	})
	return repl
}

func (s *handoffSuite) forceDelete(ctx context.Context, t *testing.T, pod string) time.Time {
	t.Helper()
	if err := s.client.CoreV1().Pods(nsHandoff).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return time.Now()
}

// waitLifted waits for the pod's handoff gate to go and returns when it was seen gone.
func (s *handoffSuite) waitLifted(ctx context.Context, t *testing.T, pod string, timeout time.Duration) time.Time {
	t.Helper()
	eventually(t, timeout, "the handoff gate of "+pod+" lifted", func() (bool, string) {
		p, err := s.client.CoreV1().Pods(nsHandoff).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		g := gateNames(p)
		return !slices.Contains(g, annotations.SchedulingGateHandoff), fmt.Sprintf("gates %v", g)
	})
	return time.Now()
}

func gateNames(p *corev1.Pod) []string {
	var names []string
	for _, g := range p.Spec.SchedulingGates {
		names = append(names, g.Name)
	}
	return names
}

func requireGated(t *testing.T, repl *corev1.Pod, holder string) {
	t.Helper()
	if !slices.Contains(gateNames(repl), annotations.SchedulingGateHandoff) {
		t.Fatalf("replacement %s not gated while %s terminates: gates %v, status %q", repl.Name, holder, gateNames(repl), repl.Annotations[annotations.AnnotationStatus])
	}
	st := repl.Annotations[annotations.AnnotationStatus]
	if !strings.Contains(st, "handoff: held by "+annotations.SchedulingGateHandoff+" until "+holder+" stopped") {
		t.Fatalf("the status annotation does not say why the pod is held: %q", st)
	}
}

// requireEvent waits for an event of reason on the pod and returns its note.
func (s *handoffSuite) requireEvent(ctx context.Context, t *testing.T, pod, reason string) string {
	t.Helper()
	var note string
	eventually(t, 20*time.Second, reason+" event on "+pod, func() (bool, string) {
		evs, err := s.client.EventsV1().Events(nsHandoff).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Regarding.Name == pod {
				seen = append(seen, e.Reason)
				if e.Reason == reason {
					note = eventText(e)
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("events on the pod: %v", seen)
	})
	return note
}

func eventText(e eventsv1.Event) string {
	if e.ReportingController != handoff.ControllerName {
		return "reported by " + e.ReportingController + ": " + e.Note
	}
	return e.Note
}

func (s *handoffSuite) caseLift(ctx context.Context, t *testing.T) {
	d := handoffDeployment("lift", nil)
	old := s.firstPod(ctx, t, d)
	repl := s.replacement(ctx, t, d.Name, old, 30)
	requireGated(t, &repl, old.Name)
	if note := s.requireEvent(ctx, t, repl.Name, handoff.ReasonWaiting); !strings.Contains(note, old.Name) {
		t.Errorf("HandoffWaiting does not name the predecessor: %q", note)
	}
	// Held while the predecessor terminates: no release although the controller has seen it.
	time.Sleep(2 * time.Second)
	if p, err := s.client.CoreV1().Pods(nsHandoff).Get(ctx, repl.Name, metav1.GetOptions{}); err != nil || !slices.Contains(gateNames(p), annotations.SchedulingGateHandoff) {
		t.Fatalf("gate lifted while %s still terminates (err %v)", old.Name, err)
	}
	deleted := s.forceDelete(ctx, t, old.Name)
	lifted := s.waitLifted(ctx, t, repl.Name, 2*time.Second)
	t.Logf("gate lifted %s after the predecessor was removed", lifted.Sub(deleted).Round(time.Millisecond))
	// Up to 1.32 a delete that shortens the grace period moves deletionTimestamp back to the
	// first delete's time plus the new grace (k8s.io/apiserver rest.BeforeDelete; 1.33 clamps it
	// to now): the force delete's update shows a deadline 2 s past with maxWait 1s, so the
	// controller, when it reads that update before the removal, lifts the gate at the same
	// moment but reports a timeout (make test-versions on 1.31.14: either event, run to run;
	// docs/versions.md).
	if minor, err := harness.KubeMinor(); err != nil {
		t.Fatal(err)
	} else if minor <= 32 {
		eventually(t, 20*time.Second, "HandoffReleased or HandoffTimedOut on "+repl.Name, func() (bool, string) {
			evs, err := s.client.EventsV1().Events(nsHandoff).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, e := range evs.Items {
				if e.Regarding.Name == repl.Name && (e.Reason == handoff.ReasonReleased || e.Reason == handoff.ReasonTimedOut) {
					t.Logf("Kubernetes 1.%d: %s", minor, e.Reason)
					return true, ""
				}
			}
			return false, "neither event yet"
		})
		return
	}
	if note := s.requireEvent(ctx, t, repl.Name, handoff.ReasonReleased); !strings.Contains(note, "released after") {
		t.Errorf("HandoffReleased note: %q", note)
	}
}

func (s *handoffSuite) caseTimeout(ctx context.Context, t *testing.T) {
	d := handoffDeployment("timeout", nil)
	old := s.firstPod(ctx, t, d)
	const grace = 3
	deleted := time.Now()
	repl := s.replacement(ctx, t, d.Name, old, grace)
	requireGated(t, &repl, old.Name)
	// deletionTimestamp = delete + 3 s, maxWait 1 s: released about 4 s after the delete,
	// while the predecessor (no kubelet) is still there.
	lifted := s.waitLifted(ctx, t, repl.Name, 20*time.Second)
	waited := lifted.Sub(deleted)
	t.Logf("released on timeout %s after the graceful delete (grace %ds + maxWait 1s)", waited.Round(time.Millisecond), grace)
	// deletionTimestamp is stored in whole seconds (truncated), so the deadline may fall up
	// to a second before delete + grace + maxWait.
	if waited < grace*time.Second {
		t.Errorf("released after %s, before deletionTimestamp + maxWait", waited)
	}
	term, _, err := s.livePods(ctx, d.Name)
	if err != nil || len(term) != 1 {
		t.Fatalf("the predecessor should still be terminating: %d pods, %v", len(term), err)
	}
	if note := s.requireEvent(ctx, t, repl.Name, handoff.ReasonTimedOut); !strings.Contains(note, old.Name) || !strings.Contains(note, "maxWait") {
		t.Errorf("HandoffTimedOut note: %q", note)
	}
	s.forceDelete(ctx, t, old.Name)
}

func (s *handoffSuite) caseRestart(ctx context.Context, t *testing.T) {
	d := handoffDeployment("restart", nil)
	old := s.firstPod(ctx, t, d)
	repl := s.replacement(ctx, t, d.Name, old, 60)
	requireGated(t, &repl, old.Name)
	if err := s.wh.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The predecessor goes while no controller runs: nothing can lift the gate now.
	s.forceDelete(ctx, t, old.Name)
	time.Sleep(time.Second)
	if p, err := s.client.CoreV1().Pods(nsHandoff).Get(ctx, repl.Name, metav1.GetOptions{}); err != nil || !slices.Contains(gateNames(p), annotations.SchedulingGateHandoff) {
		t.Fatalf("gate gone with no controller running (err %v)", err)
	}
	started := time.Now()
	s.start(t)
	lifted := s.waitLifted(ctx, t, repl.Name, 30*time.Second)
	t.Logf("a restarted controller lifted the gate %s after it was started (ready, leader, resync)", lifted.Sub(started).Round(time.Millisecond))
}

func (s *handoffSuite) caseOptOut(ctx context.Context, t *testing.T) {
	d := handoffDeployment("optout", map[string]string{annotations.AnnotationHandoff: annotations.HandoffOff})
	old := s.firstPod(ctx, t, d)
	repl := s.replacement(ctx, t, d.Name, old, 30)
	if g := gateNames(&repl); slices.Contains(g, annotations.SchedulingGateHandoff) {
		t.Fatalf("handoff off, yet gated: %v", g)
	}
	if repl.Spec.TerminationGracePeriodSeconds == nil || *repl.Spec.TerminationGracePeriodSeconds != 45 {
		t.Fatalf("the opted-out replacement lost the rest of the patch: grace %v", repl.Spec.TerminationGracePeriodSeconds)
	}
	s.forceDelete(ctx, t, old.Name)
}

func engineHasReadinessGate(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool {
		return g.ConditionType == annotations.ConditionAcceptingPushes
	})
}

// accepting is the pod's drain condition, or nil.
func accepting(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == annotations.ConditionAcceptingPushes {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func (s *handoffSuite) caseDrain(ctx context.Context, t *testing.T) {
	d := handoffDeployment("drain", nil)
	d.Spec.Template.Spec.Containers[0].Args = nil
	d.Spec.Template.Spec.Containers[0].VolumeMounts = nil
	d.Spec.Template.Spec.Volumes = nil
	old := s.firstPod(ctx, t, d)
	get := func(name string) *corev1.Pod {
		p, err := s.client.CoreV1().Pods(nsHandoff).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	eventually(t, 30*time.Second, "the controller sets "+annotations.ConditionAcceptingPushes+" True", func() (bool, string) {
		c := accepting(get(old.Name))
		return c != nil && c.Status == corev1.ConditionTrue, fmt.Sprintf("condition %+v", c)
	})
	// A dry-run delete has no side effect.
	if err := s.client.CoreV1().Pods(nsHandoff).Delete(ctx, old.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if c := accepting(get(old.Name)); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("a dry-run delete drained the pod: %+v", c)
	}
	// The webhook writes False before the deletion is stored: the first state of the pod
	// with a deletionTimestamp already says False, which is what the kubelet starts from.
	w, err := s.client.CoreV1().Pods(nsHandoff).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + old.Name, ResourceVersion: get(old.Name).ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := s.client.CoreV1().Pods(nsHandoff).Delete(ctx, old.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](45)}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	var states []string
	for done := false; !done; {
		select {
		case ev := <-w.ResultChan():
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				t.Fatalf("watch: %v", ev.Object)
			}
			c := accepting(p)
			states = append(states, fmt.Sprintf("%s deleting=%v condition=%v", ev.Type, p.DeletionTimestamp != nil, c))
			if p.DeletionTimestamp != nil {
				if c == nil || c.Status != corev1.ConditionFalse || c.Reason != "Draining" {
					t.Fatalf("the first state with a deletionTimestamp is not drained: %v", states)
				}
				done = true
			}
		case <-timeout:
			t.Fatalf("no deletion seen: %v", states)
		}
	}
	t.Logf("states seen: %v", states)
	s.requireEvent(ctx, t, old.Name, handoff.ReasonDraining)

	// A pod whose condition was written False and that is not deleted takes pushes again.
	repl := s.replacementOf(ctx, t, d.Name, old.Name)
	eventually(t, 30*time.Second, "the replacement accepts pushes", func() (bool, string) {
		c := accepting(get(repl))
		return c != nil && c.Status == corev1.ConditionTrue, fmt.Sprintf("condition %+v", c)
	})
	b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{engine.DrainingCondition(time.Now())}}})
	if _, err := s.client.CoreV1().Pods(nsHandoff).Patch(ctx, repl, types.StrategicMergePatchType, b, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	eventually(t, 30*time.Second, "True again after the hold", func() (bool, string) {
		c := accepting(get(repl))
		return c != nil && c.Status == corev1.ConditionTrue, fmt.Sprintf("condition %+v", c)
	})
	if held := time.Since(written); held < engine.DrainHold-time.Second {
		t.Errorf("True again after %s, before the hold of %s", held, engine.DrainHold)
	}
	s.forceDelete(ctx, t, old.Name)
}

// replacementOf waits for the Deployment's pod other than old and returns its name.
func (s *handoffSuite) replacementOf(ctx context.Context, t *testing.T, name, old string) string {
	t.Helper()
	var repl string
	eventually(t, 30*time.Second, "the replacement of "+old, func() (bool, string) {
		_, others, err := s.livePods(ctx, name)
		if err != nil || len(others) != 1 || others[0].Name == old {
			return false, fmt.Sprintf("%d others, err %v", len(others), err)
		}
		repl = others[0].Name
		return true, ""
	})
	return repl
}
