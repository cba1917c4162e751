package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// readChartFixture decodes every document of an upstream chart rendering.
func readChartFixture(t *testing.T, name string) []runtime.Object {
	t.Helper()
	data, err := fixtures.ReadUpstreamChart(name)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// applyChartFixture creates the fixture's ServiceAccount, Service, PersistentVolumeClaim,
// Deployment and StatefulSet in ns, with the workloads scaled to replicas, and returns the
// kinds it created. The chart's namespace ("monitoring") is replaced; nothing else changes
// except, for a StatefulSet, podManagementPolicy Parallel: with the default OrderedReady the
// controller waits for pod 0 to become Ready, which no kubelet will ever report here.
func applyChartFixture(ctx context.Context, t *testing.T, cp *harness.ControlPlane, name, ns string, replicas int32) []string {
	t.Helper()
	var kinds []string
	c := cp.Clientset
	opts := metav1.CreateOptions{}
	for _, obj := range readChartFixture(t, name) {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			o.Namespace = ns
			_, err = c.CoreV1().ServiceAccounts(ns).Create(ctx, o, opts)
		case *corev1.Service:
			o.Namespace = ns
			_, err = c.CoreV1().Services(ns).Create(ctx, o, opts)
		case *corev1.PersistentVolumeClaim:
			o.Namespace = ns
			_, err = c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, o, opts)
		case *appsv1.Deployment:
			o.Namespace = ns
			o.Spec.Replicas = &replicas
			_, err = c.AppsV1().Deployments(ns).Create(ctx, o, opts)
		case *appsv1.StatefulSet:
			o.Namespace = ns
			o.Spec.Replicas = &replicas
			o.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
			_, err = c.AppsV1().StatefulSets(ns).Create(ctx, o, opts)
		default:
			t.Logf("%s: skipping %T", name, obj)
			continue
		}
		if err != nil {
			t.Fatalf("%s: create %T: %v", name, obj, err)
		}
		kinds = append(kinds, obj.GetObjectKind().GroupVersionKind().Kind)
	}
	return kinds
}
