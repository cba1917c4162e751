package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// validateCalls reads how often the API server called the workload validator.
func (s *suite) validateCalls(t *testing.T) float64 {
	return s.webhookCalls(t, harness.ValidateWorkloadsPath)
}

// eventually polls cond every 200 ms until it returns true or timeout passes; then it fails
// the test with cond's last description.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last state: %s", what, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// workloadLabels are a chart pod's labels plus an instance label that tells workloads apart.
func workloadLabels(instance string) map[string]string {
	return map[string]string{annotations.LabelAppName: "prometheus-pushgateway", "app.kubernetes.io/instance": instance}
}

// testDeployment is a selected Deployment (Recreate, so that a rollout needs no pod to become
// available: no kubelet runs here).
func testDeployment(ns, name string, replicas int32, ann map[string]string) *appsv1.Deployment {
	pod := chartPod(ns, ann)
	l := workloadLabels(name)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l, Annotations: ann}, Spec: pod.Spec},
		},
	}
}

func testCronJob(ns, name string, tplLabels, ann map[string]string) *batchv1.CronJob {
	pod := chartPod(ns, ann)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.CronJobSpec{
			Schedule: "* * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tplLabels, Annotations: ann}, Spec: pod.Spec},
			}},
		},
	}
}

// updateDeployment applies change to the live Deployment and updates it, again on a conflict
// (the deployment controller writes the object too). A denial is returned as is.
func (s *suite) updateDeployment(ctx context.Context, ns, name string, change func(*appsv1.Deployment)) (*appsv1.Deployment, error) {
	var out *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := s.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		out, err = s.client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	return out, err
}

// replicaSetsOf lists the ReplicaSets a Deployment controls.
func (s *suite) replicaSetsOf(ctx context.Context, d *appsv1.Deployment) ([]appsv1.ReplicaSet, error) {
	list, err := s.cp.Clientset.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set(d.Spec.Selector.MatchLabels).String()})
	if err != nil {
		return nil, err
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if c := metav1.GetControllerOf(&rs); c != nil && c.UID == d.UID {
			out = append(out, rs)
		}
	}
	return out, nil
}

func describeReplicaSets(rss []appsv1.ReplicaSet) string {
	var b strings.Builder
	for _, rs := range rss {
		fmt.Fprintf(&b, "[%s replicas=%d status=%d] ", rs.Name, *rs.Spec.Replicas, rs.Status.Replicas)
	}
	return b.String()
}

// case12 proves that the validating webhook checks what people write and never what the
// controllers write from it (issue 16, item 5): a Deployment and a CronJob admitted with an
// invalid annotation under warn keep working after the policy is hot-reloaded to reject.
func (s *suite) case12(ctx context.Context, t *testing.T) {
	const ns = "e2e-controllers"
	if err := s.cp.CreateNamespace(ctx, ns, true); err != nil {
		t.Fatal(err)
	}
	apps, batch := s.client.AppsV1(), s.client.BatchV1()
	bad := map[string]string{annotations.AnnotationShutdownBudget: "-5s"}

	// Under warn: admitted, with a warning, and the controller creates the pod.
	s.warnings.Reset()
	dep, err := apps.Deployments(ns).Create(ctx, testDeployment(ns, "pgw-bad", 1, bad), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("warn mode must admit the Deployment: %v", err)
	}
	if !s.warnings.Contains(annotations.AnnotationShutdownBudget, "-5s") {
		t.Fatalf("no warning at creation (is the validating webhook registered?): %q", s.warnings.Warnings())
	}
	ratchet, err := apps.Deployments(ns).Create(ctx, testDeployment(ns, "pgw-ratchet", 0, bad), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cronLabels := workloadLabels("pgw-cron")
	if _, err := batch.CronJobs(ns).Create(ctx, testCronJob(ns, "pgw-cron", cronLabels, bad), metav1.CreateOptions{}); err != nil {
		t.Fatalf("warn mode must admit the CronJob: %v", err)
	}
	if _, err := s.cp.WaitForPods(ctx, ns, "app.kubernetes.io/instance=pgw-bad", 1, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// The policy tightens: the server hot-reloads the file (no restart).
	pid := s.wh.Pid()
	writeFileAtomic(t, s.policyFile, "onInvalid: reject\n")
	defer func() {
		writeFileAtomic(t, s.policyFile, warnPolicy)
		eventually(t, 30*time.Second, "policy back to warn", func() (bool, string) {
			_, err := s.client.AppsV1().Deployments(ns).Create(ctx, testDeployment(ns, uniqueName("probe"), 0, bad), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err == nil, fmt.Sprint(err)
		})
	}()
	eventually(t, 30*time.Second, "reject policy in force (dry-run create of an invalid Deployment denied)", func() (bool, string) {
		_, err := apps.Deployments(ns).Create(ctx, testDeployment(ns, uniqueName("probe"), 0, bad), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "-5s"), fmt.Sprint(err)
	})
	if s.wh.Pid() != pid {
		t.Fatal("the server restarted: the policy was to be hot-reloaded")
	}
	existingJobs := map[string]bool{}
	if jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, j := range jobs.Items {
			existingJobs[j.Name] = true
		}
	} else {
		t.Fatal(err)
	}
	switched := time.Now()
	t.Logf("policy switched to reject by hot reload; %d Jobs existed", len(existingJobs))
	// The handler counts a controller-owned object it is sent as "skipped": none may arrive.
	const skipped = `pushgateway_lifecycle_workloads_total{result="skipped"}`
	skippedBefore, callsBefore := s.metric(t, skipped), s.validateCalls(t)
	defer func() {
		t.Logf("validating webhook calls while scaling, rolling out and scheduling under reject: %v; requests the handler skipped: %v",
			s.validateCalls(t)-callsBefore, s.metric(t, skipped)-skippedBefore)
		if n := s.metric(t, skipped) - skippedBefore; n != 0 {
			t.Errorf("%v requests reached the handler only to be skipped (controller-owned or unchanged template): the matchConditions should keep them off the wire", n)
		}
	}()

	t.Run("scale: the controller's ReplicaSet update is admitted", func(t *testing.T) {
		before := s.validateCalls(t)
		scale, err := apps.Deployments(ns).GetScale(ctx, dep.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = 3
		if _, err := apps.Deployments(ns).UpdateScale(ctx, dep.Name, scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		eventually(t, 60*time.Second, "ReplicaSet scaled to 3", func() (bool, string) {
			rss, err := s.replicaSetsOf(ctx, dep)
			return err == nil && len(rss) == 1 && *rss[0].Spec.Replicas == 3, describeReplicaSets(rss) + fmt.Sprint(err)
		})
		t.Logf("ReplicaSet scaled 1 -> 3 in %s", time.Since(start).Round(time.Millisecond))
		// Neither the scale nor the controller's ReplicaSet update reached the webhook.
		calls := s.validateCalls(t) - before
		t.Logf("validating webhook calls during the scale (ReplicaSet update included): %v", calls)
		if calls != 0 {
			t.Errorf("the validating webhook was called %v times for a scale", calls)
		}
		// The pods of the invalid template are the pod webhook's to refuse under reject (its
		// own contract): the ReplicaSet reports them as FailedCreate naming the annotation.
		pods, _ := s.cp.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=pgw-bad"})
		t.Logf("pods of the invalid template after the scale: %d (new ones are refused by the pod webhook under reject)", len(pods.Items))
	})

	t.Run("rollout: the new ReplicaSet is created and the old one scaled down", func(t *testing.T) {
		before := s.validateCalls(t)
		// A person's write: fix the annotation and bump the image. Checked (and valid).
		_, err := s.updateDeployment(ctx, ns, dep.Name, func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{annotations.AnnotationShutdownBudget: "20s"}
			d.Spec.Template.Spec.Containers[0].Image = "quay.io/prometheus/pushgateway:v1.11.4"
		})
		if err != nil {
			t.Fatalf("rollout denied: %v", err)
		}
		calls := s.validateCalls(t) - before
		t.Logf("validating webhook calls for the rollout's Deployment update: %v", calls)
		if calls < 1 {
			t.Errorf("the validating webhook was not called for the template change")
		}
		start := time.Now()
		var newRS string
		eventually(t, 60*time.Second, "old ReplicaSet at 0, new one at 3", func() (bool, string) {
			rss, err := s.replicaSetsOf(ctx, dep)
			if err != nil || len(rss) != 2 {
				return false, describeReplicaSets(rss) + fmt.Sprint(err)
			}
			for _, rs := range rss {
				img := rs.Spec.Template.Spec.Containers[0].Image
				if strings.HasSuffix(img, "v1.11.4") {
					newRS = rs.Name
					if *rs.Spec.Replicas != 3 {
						return false, describeReplicaSets(rss)
					}
				} else if *rs.Spec.Replicas != 0 {
					return false, describeReplicaSets(rss)
				}
			}
			return newRS != "", describeReplicaSets(rss)
		})
		pods, err := s.cp.WaitForPods(ctx, ns, "app.kubernetes.io/instance=pgw-bad", 3, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rollout: old ReplicaSet scaled to 0, %s created, %d pods in %s", newRS, len(pods), time.Since(start).Round(time.Millisecond))
		for i := range pods {
			if c := metav1.GetControllerOf(&pods[i]); c == nil || c.Name != newRS {
				t.Errorf("pod %s is not the new ReplicaSet's", pods[i].Name)
			}
			expectInjected(t, &pods[i], "pushgateway", "sleep 30", 50)
		}
	})

	t.Run("updates are denied only for what they introduce", func(t *testing.T) {
		s.warnings.Reset()
		_, err := s.updateDeployment(ctx, ns, ratchet.Name, func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Image = "quay.io/prometheus/pushgateway:v1.11.4"
		})
		if err != nil {
			t.Fatalf("an update keeping the stored template's problem was denied: %v", err)
		}
		if !s.warnings.Contains(annotations.AnnotationShutdownBudget, "kept from the stored object") {
			t.Errorf("no warning about the kept problem: %q", s.warnings.Warnings())
		}
		_, err = s.updateDeployment(ctx, ns, ratchet.Name, func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations[annotations.AnnotationPreStopSleep] = "banana"
		})
		if err == nil || !strings.Contains(err.Error(), "banana") {
			t.Fatalf("an update introducing preStopSleep=banana under reject: %v, want a denial naming it", err)
		}
		if strings.Contains(err.Error(), "-5s") {
			t.Errorf("the denial names the stored template's problem too: %v", err)
		}
	})

	t.Run("CronJob: the controller's Jobs are admitted", func(t *testing.T) {
		// The schedule fires at the next minute boundary.
		var job string
		eventually(t, 90*time.Second, "a Job created by the CronJob after the switch", func() (bool, string) {
			jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, j := range jobs.Items {
				if c := metav1.GetControllerOf(&j); !existingJobs[j.Name] && c != nil && c.Kind == "CronJob" {
					job = j.Name
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d Jobs, none new", len(jobs.Items))
		})
		j, err := batch.Jobs(ns).Get(ctx, job, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if j.Spec.Template.Annotations[annotations.AnnotationShutdownBudget] != "-5s" {
			t.Errorf("Job %s does not carry the invalid template: %v", job, j.Spec.Template.Annotations)
		}
		t.Logf("Job %s created by the CronJob %s after the switch to reject", job, time.Since(switched).Round(time.Second))
	})
	if t.Failed() {
		if ev, err := s.cp.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, e := range ev.Items {
				if e.Type == corev1.EventTypeWarning {
					t.Logf("event %s %s/%s: %s", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
				}
			}
		}
	}
}

// case13 proves that the validating webhook is called only for selected pod templates (issue
// 16, item 6): the API server's matchConditions, not the handler, keep the rest away, as for
// pods in case 2.
func (s *suite) case13(ctx context.Context, t *testing.T) {
	apps, batch := s.client.AppsV1(), s.client.BatchV1()
	other := map[string]string{"app": "web"}
	// Dry-run creates: admission (and so the webhook call) happens, nothing is stored.
	dryRun := []string{metav1.DryRunAll}
	for _, tc := range []struct {
		name   string
		create func() error
		calls  float64
	}{
		{"unselected Deployment", func() error {
			d := testDeployment(nsIn, uniqueName("web"), 0, nil)
			d.Spec.Selector.MatchLabels, d.Spec.Template.Labels = other, other
			_, err := apps.Deployments(nsIn).Create(ctx, d, metav1.CreateOptions{DryRun: dryRun})
			return err
		}, 0},
		{"unselected CronJob", func() error {
			_, err := batch.CronJobs(nsIn).Create(ctx, testCronJob(nsIn, uniqueName("web"), other, nil), metav1.CreateOptions{DryRun: dryRun})
			return err
		}, 0},
		{"selected Deployment", func() error {
			_, err := apps.Deployments(nsIn).Create(ctx, testDeployment(nsIn, uniqueName("pgw"), 0, nil), metav1.CreateOptions{DryRun: dryRun})
			return err
		}, 1},
		{"selected CronJob (jobTemplate)", func() error {
			_, err := batch.CronJobs(nsIn).Create(ctx, testCronJob(nsIn, uniqueName("pgw"), workloadLabels("x"), nil), metav1.CreateOptions{DryRun: dryRun})
			return err
		}, 1},
		{"explicit inject=true selects", func() error {
			d := testDeployment(nsIn, uniqueName("app"), 0, nil)
			l := map[string]string{annotations.LabelInject: "true"}
			d.Spec.Selector.MatchLabels, d.Spec.Template.Labels = l, l
			_, err := apps.Deployments(nsIn).Create(ctx, d, metav1.CreateOptions{DryRun: dryRun})
			return err
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.validateCalls(t)
			if err := tc.create(); err != nil {
				t.Fatal(err)
			}
			got := s.validateCalls(t) - before
			t.Logf("validating webhook calls: %v", got)
			if got != tc.calls {
				t.Errorf("the API server called the validating webhook %v times, want %v", got, tc.calls)
			}
		})
	}
	t.Run("selected Deployment: an update that keeps the template is not sent", func(t *testing.T) {
		d, err := apps.Deployments(nsIn).Create(ctx, testDeployment(nsIn, uniqueName("pgw"), 0, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := s.validateCalls(t)
		_, err = s.updateDeployment(ctx, nsIn, d.Name, func(d *appsv1.Deployment) {
			d.Labels["team"] = "observability"
			zero := int32(0)
			d.Spec.RevisionHistoryLimit = &zero
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.validateCalls(t) - before; got != 0 {
			t.Errorf("the API server called the validating webhook %v times for an update that kept the template", got)
		}
	})
}
