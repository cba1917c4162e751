package e2e

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// case14: what no pod spec can save is said at `kubectl apply` (engine.Risks through the
// validating webhook and its matchConditions, in the real API server): a surge rollout on a
// shared persistence file, no persistence, replicas > 1; a change of the strategy or the
// replicas alone reaches the webhook, a scale through the scale subresource does not.
func (s *suite) case14(ctx context.Context, t *testing.T) {
	const ns = "e2e-risks"
	if err := s.cp.CreateNamespace(ctx, ns, true); err != nil {
		t.Fatal(err)
	}
	apps := s.client.AppsV1()
	persisted := func(name string, replicas int32, strategy appsv1.DeploymentStrategyType) *appsv1.Deployment {
		d := testDeployment(ns, name, replicas, nil)
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: strategy}
		ps := &d.Spec.Template.Spec
		ps.Containers[0].Args = []string{"--persistence.file=/data/pushgateway.data"}
		ps.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "storage-volume", MountPath: "/data"}}
		ps.Volumes = []corev1.Volume{{Name: "storage-volume", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
		return d
	}

	s.warnings.Reset()
	if _, err := apps.Deployments(ns).Create(ctx, persisted("pgw-recreate", 0, appsv1.RecreateDeploymentStrategyType), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.warnings.Contains("deployment/pgw-recreate") {
		t.Errorf("a Recreate Deployment persisting to a claim got a warning: %q", s.warnings.Warnings())
	}

	s.warnings.Reset()
	if _, err := apps.Deployments(ns).Create(ctx, persisted("pgw-rolling", 0, appsv1.RollingUpdateDeploymentStrategyType), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !s.warnings.Contains("deployment/pgw-rolling", "last writer wins", "spec.strategy.type: Recreate") {
		t.Errorf("no two-writers warning naming the fix at creation: %q", s.warnings.Warnings())
	}

	s.warnings.Reset()
	if _, err := apps.Deployments(ns).Create(ctx, testDeployment(ns, "pgw-memory", 0, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !s.warnings.Contains("deployment/pgw-memory", "without --persistence.file") {
		t.Errorf("no no-persistence warning at creation: %q", s.warnings.Warnings())
	}

	t.Run("an update of the replicas alone is checked", func(t *testing.T) {
		s.warnings.Reset()
		if _, err := s.updateDeployment(ctx, ns, "pgw-recreate", func(d *appsv1.Deployment) { d.Spec.Replicas = int32p(2) }); err != nil {
			t.Fatal(err)
		}
		if !s.warnings.Contains("deployment/pgw-recreate", "replicas: 2", "set replicas: 1") {
			t.Errorf("no replicas warning: %q", s.warnings.Warnings())
		}
	})
	t.Run("an update of the strategy alone is checked", func(t *testing.T) {
		s.warnings.Reset()
		if _, err := s.updateDeployment(ctx, ns, "pgw-recreate", func(d *appsv1.Deployment) {
			d.Spec.Replicas = int32p(0)
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType}
		}); err != nil {
			t.Fatal(err)
		}
		if !s.warnings.Contains("deployment/pgw-recreate", "last writer wins") {
			t.Errorf("no two-writers warning after switching to RollingUpdate: %q", s.warnings.Warnings())
		}
	})
	t.Run("the scale subresource never reaches the webhook", func(t *testing.T) {
		s.warnings.Reset()
		sc, err := apps.Deployments(ns).GetScale(ctx, "pgw-rolling", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = 2
		if _, err := apps.Deployments(ns).UpdateScale(ctx, "pgw-rolling", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if s.warnings.Contains("deployment/pgw-rolling") {
			t.Errorf("a scale (as the HPA and kubectl scale do) got warnings: %q", s.warnings.Warnings())
		}
	})
}

func int32p(n int32) *int32 { return &n }
