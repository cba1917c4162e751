package audit

import (
	"context"

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
			if err != nil {
				return nil, "", err
			}
			out := make([]listed, len(l.Items))
			for i := range l.Items {
				out[i] = listed{&l.Items[i].ObjectMeta, l.Items[i].Spec.Selector, &l.Items[i]}
			}
			return out, l.Continue, nil
		},
	},
	"StatefulSet": {
		get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
			return c.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		list: func(ctx context.Context, c kubernetes.Interface, opts metav1.ListOptions) ([]listed, string, error) {
			l, err := c.AppsV1().StatefulSets("").List(ctx, opts)
			if err != nil {
				return nil, "", err
			}
			out := make([]listed, len(l.Items))
			for i := range l.Items {
				out[i] = listed{&l.Items[i].ObjectMeta, l.Items[i].Spec.Selector, &l.Items[i]}
			}
			return out, l.Continue, nil
		},
	},
	"DaemonSet": {
		get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (runtime.Object, error) {
			return c.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		list: func(ctx context.Context, c kubernetes.Interface, opts metav1.ListOptions) ([]listed, string, error) {
			l, err := c.AppsV1().DaemonSets("").List(ctx, opts)
			if err != nil {
				return nil, "", err
			}
			out := make([]listed, len(l.Items))
			for i := range l.Items {
				out[i] = listed{&l.Items[i].ObjectMeta, l.Items[i].Spec.Selector, &l.Items[i]}
			}
			return out, l.Continue, nil
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
