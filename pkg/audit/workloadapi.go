package audit

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// workloadAPI is the I/O side of the engine.Workloads rows audit reads: the typed client calls,
// which the pure table cannot hold. TestWorkloadAPIFollowsTable checks that it holds exactly
// the validated built-in rows, so a kind added to the table and not here fails a test.
type workloadAPI struct {
	get func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error)
	// list pages through every namespace; nil for the kinds audit never lists (it reads them
	// one by one, as few pods point at each).
	list func(ctx context.Context, c kubernetes.Interface, opts metav1.ListOptions) ([]listed, string, error)
}

// listed is one listed workload: its metadata, selector and the object itself.
type listed struct {
	meta     *metav1.ObjectMeta
	selector *metav1.LabelSelector
	obj      runtime.Object
}

var workloadAPIs = map[string]workloadAPI{
	"Deployment": {
		get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
			return c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		},
		list: func(ctx context.Context, c kubernetes.Interface, opts metav1.ListOptions) ([]listed, string, error) {
			l, err := c.AppsV1().Deployments("").List(ctx, opts)
			return entries(l, err, func(l *appsv1.DeploymentList) (string, []listed) {
				return l.Continue, each(l.Items, func(d *appsv1.Deployment) listed { return listed{&d.ObjectMeta, d.Spec.Selector, d} })
			})
		},
	},
	"StatefulSet": {
		get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
			return c.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		list: func(ctx context.Context, c kubernetes.Interface, opts metav1.ListOptions) ([]listed, string, error) {
			l, err := c.AppsV1().StatefulSets("").List(ctx, opts)
			return entries(l, err, func(l *appsv1.StatefulSetList) (string, []listed) {
				return l.Continue, each(l.Items, func(s *appsv1.StatefulSet) listed { return listed{&s.ObjectMeta, s.Spec.Selector, s} })
			})
		},
	},
	"DaemonSet": {
		get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
			return c.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		list: func(ctx context.Context, c kubernetes.Interface, opts metav1.ListOptions) ([]listed, string, error) {
			l, err := c.AppsV1().DaemonSets("").List(ctx, opts)
			return entries(l, err, func(l *appsv1.DaemonSetList) (string, []listed) {
				return l.Continue, each(l.Items, func(d *appsv1.DaemonSet) listed { return listed{&d.ObjectMeta, d.Spec.Selector, d} })
			})
		},
	},
	"ReplicaSet": {get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
		return c.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	}},
	"Job": {get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
		return c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	}},
	"CronJob": {get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
		return c.BatchV1().CronJobs(ns).Get(ctx, name, metav1.GetOptions{})
	}},
}

// entries turns one page of a typed List call into listed workloads and its continue token.
func entries[L any](l L, err error, page func(L) (string, []listed)) ([]listed, string, error) {
	if err != nil {
		return nil, "", err
	}
	cont, out := page(l)
	return out, cont, nil
}

// each applies fn to a pointer to every item, in place (the listed entries point into items).
func each[T any](items []T, fn func(*T) listed) []listed {
	out := make([]listed, len(items))
	for i := range items {
		out[i] = fn(&items[i])
	}
	return out
}
