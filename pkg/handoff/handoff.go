// Package handoff is the part of the product that needs other pods and time: the index of
// selected pods by shared volume that the webhook asks at admission (does a terminating pod
// still hold this replacement's claim?), and the controller that lifts the scheduling gate
// once that pod has stopped. The rules themselves are pure and live in pkg/engine (Holders,
// Gate, DecideRelease); this package only feeds them.
package handoff

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// volumeField indexes the selected pods by engine.VolumeKeys.
const volumeField = "pushgateway-lifecycle.io/volume"

// confirmTimeout bounds the one GET the admission path may make: the API server's webhook
// timeout is 10 s by default and the rest of the request must still fit.
const confirmTimeout = 2 * time.Second

// Index holds the pods the policy can select, indexed by the volumes they share. A pod is
// selected by the policy's selector or by the inject label, and a label selector cannot say
// "or": one cache per selector, each filtered on the API server, so that the thousands of
// pods of other workloads are never sent, decoded or held (measured in docs/handoff.md).
type Index struct {
	caches []cache.Cache
	// reader answers the confirming GET straight from the API server.
	reader client.Reader
	// writer and recorder write the drain's condition and event at a DELETE (Drain).
	writer   client.Client
	recorder recorder.EventRecorder
	synced   chan struct{}
}

// Selectors are the label selectors of the pods the webhook may gate: the policy's and the
// inject label's. The policy's is read at start; a reload that changes it takes effect at the
// next restart (the chart rolls the pods when the policy changes).
func Selectors(pol *policy.Policy) ([]labels.Selector, error) {
	inject, err := labels.NewRequirement(annotations.LabelInject, selection.Equals, []string{"true"})
	if err != nil {
		return nil, err
	}
	sels := []labels.Selector{labels.NewSelector().Add(*inject)}
	if pol.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(pol.Selector)
		if err != nil {
			return nil, fmt.Errorf("handoff: policy selector: %w", err)
		}
		if s.Empty() {
			// The policy selects every pod of the opted-in namespaces: one unfiltered cache.
			return []labels.Selector{s}, nil
		}
		sels = append(sels, s)
	}
	return sels, nil
}

// NewIndex builds the caches and adds them to the manager (on every replica: each one
// answers admission requests, whoever leads the controller).
func NewIndex(mgr manager.Manager, sels []labels.Selector) (*Index, error) {
	ix := &Index{reader: mgr.GetAPIReader(), writer: mgr.GetClient(), recorder: mgr.GetEventRecorder(ControllerName), synced: make(chan struct{})}
	for _, sel := range sels {
		c, err := cache.New(mgr.GetConfig(), cache.Options{
			Scheme: mgr.GetScheme(),
			Mapper: mgr.GetRESTMapper(),
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Pod{}: {Label: sel},
			},
			DefaultTransform:            cache.TransformStripManagedFields(),
			ReaderFailOnMissingInformer: true,
		})
		if err != nil {
			return nil, fmt.Errorf("handoff: cache for %s: %w", sel, err)
		}
		if err := c.IndexField(context.Background(), &corev1.Pod{}, volumeField, func(o client.Object) []string {
			return engine.VolumeKeys(o.(*corev1.Pod))
		}); err != nil {
			return nil, fmt.Errorf("handoff: index: %w", err)
		}
		// Informers start with the cache; asking for it here makes it watched from the start.
		if _, err := c.GetInformer(context.Background(), &corev1.Pod{}); err != nil {
			return nil, fmt.Errorf("handoff: informer: %w", err)
		}
		if err := mgr.Add(everyReplica{c}); err != nil {
			return nil, err
		}
		ix.caches = append(ix.caches, c)
	}
	if err := mgr.Add(everyReplica{manager.RunnableFunc(ix.waitForSync)}); err != nil {
		return nil, err
	}
	return ix, nil
}

// Caches are the label-filtered pod caches, for other controllers that watch the same pods.
func (ix *Index) Caches() []cache.Cache { return ix.caches }

// Watch adds a controller named name, run by the leader, that reconciles the requests h maps
// each change of a pod in any of the caches to: the handoff gate, the drain and the drift
// watch all watch the same pods this way.
func (ix *Index) Watch(mgr manager.Manager, name string, r reconcile.Reconciler, h handler.TypedEventHandler[*corev1.Pod, reconcile.Request], log logr.Logger) error {
	c, err := controller.New(name, mgr, controller.Options{
		Reconciler: r,
		// The three run in one manager, and tests start several managers in one process.
		SkipNameValidation: ptr.To(true),
		LogConstructor:     func(*reconcile.Request) logr.Logger { return log },
	})
	if err != nil {
		return err
	}
	for _, ca := range ix.caches {
		if err := c.Watch(source.Kind(ca, &corev1.Pod{}, h)); err != nil {
			return err
		}
	}
	return nil
}

// Synced is closed once every cache has listed its pods: before that, an absent sibling
// proves nothing, so the webhook stays unready.
func (ix *Index) Synced() <-chan struct{} { return ix.synced }

func (ix *Index) waitForSync(ctx context.Context) error {
	for _, c := range ix.caches {
		if !c.WaitForCacheSync(ctx) {
			return nil // stopped before sync
		}
	}
	close(ix.synced)
	return nil
}

// Sharing returns the pods of the namespace that mount any of keys, each once.
func (ix *Index) Sharing(ctx context.Context, namespace string, keys []string) ([]*corev1.Pod, error) {
	seen := map[types.UID]bool{}
	var pods []*corev1.Pod
	for _, c := range ix.caches {
		for _, k := range keys {
			var list corev1.PodList
			if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{volumeField: k}); err != nil {
				return nil, err
			}
			for i := range list.Items {
				p := &list.Items[i]
				if !seen[p.UID] {
					seen[p.UID] = true
					pods = append(pods, p)
				}
			}
		}
	}
	return pods, nil
}

// Get reads one pod from whichever cache holds it.
func (ix *Index) Get(ctx context.Context, key types.NamespacedName) (*corev1.Pod, error) {
	for _, c := range ix.caches {
		var p corev1.Pod
		err := c.Get(ctx, key, &p)
		if err == nil {
			return &p, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return nil, apierrors.NewNotFound(corev1.Resource("pods"), key.Name)
}

// Holders is the admission path's question: which terminating pods still hold a volume
// that the pod being created (name, possibly empty with generateName) would share. It asks
// the caches only, except for a pod they show alive: the delete that the replacement
// answers may not have reached this replica's watch yet, so one GET confirms (the only API
// call on the admission path; a surge rollout's running predecessor costs it every time).
func (ix *Index) Holders(namespace, name string, keys []string) ([]engine.Holder, error) {
	select {
	case <-ix.synced:
	default:
		return nil, errors.New("the pod index has not synced yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	pods, err := ix.Sharing(ctx, namespace, keys)
	if err != nil {
		return nil, err
	}
	confirmed := pods[:0]
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Name != name {
			var live corev1.Pod
			err := ix.reader.Get(ctx, client.ObjectKeyFromObject(p), &live)
			switch {
			case apierrors.IsNotFound(err):
				continue
			case err != nil:
				return nil, fmt.Errorf("confirming pod %s/%s: %w", namespace, p.Name, err)
			}
			p = &live
		}
		confirmed = append(confirmed, p)
	}
	return engine.Holders(name, keys, confirmed), nil
}

// everyReplica runs a component on every replica, leader or not: the caches serve the
// webhook, which every replica runs.
type everyReplica struct{ manager.Runnable }

func (everyReplica) NeedLeaderElection() bool { return false }
