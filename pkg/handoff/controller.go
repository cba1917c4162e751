package handoff

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// Event reasons (kubectl describe pod shows them).
const (
	ReasonWaiting  = "HandoffWaiting"
	ReasonReleased = "HandoffReleased"
	ReasonTimedOut = "HandoffTimedOut"
)

// ControllerName is the events' reportingController and the controller's name in logs
// and controller-runtime's metrics.
const ControllerName = "pushgateway-lifecycle.io/handoff"

// PolicySource returns the policy in force (handoff.maxWait may change on reload).
type PolicySource interface{ Current() *policy.Policy }

// Reconciler lifts the handoff gate of one pod when engine.DecideRelease says so.
type Reconciler struct {
	Index    *Index
	Client   client.Client
	Policy   PolicySource
	Recorder recorder.EventRecorder
	Clock    clock.PassiveClock
	Log      logr.Logger

	mu sync.Mutex
	// held are the gated pods seen, for the gauge and for one HandoffWaiting event each.
	held map[types.NamespacedName]types.UID
}

// SetupController adds the controller, and the drain's beside it (drain.go), to the manager: one replica (the leader) runs it; a
// new leader finds every gated pod in its first list, so no pod is lost to a restart.
func SetupController(mgr manager.Manager, ix *Index, pol PolicySource, log logr.Logger) error {
	r := &Reconciler{
		Index: ix, Client: mgr.GetClient(), Policy: pol,
		Recorder: mgr.GetEventRecorder(ControllerName), Clock: clock.RealClock{}, Log: log,
	}
	if err := ix.Watch(mgr, "handoff", r, handler.TypedEnqueueRequestsFromMapFunc(r.affected), log); err != nil {
		return err
	}
	return setupDrain(mgr, ix, log.WithName("drain"))
}

// affected maps a change of any selected pod to the gated pods it may release: itself when
// gated, and the gated pods of its namespace that share one of its volumes (a predecessor
// that stopped or went away).
func (r *Reconciler) affected(ctx context.Context, p *corev1.Pod) []reconcile.Request {
	var reqs []reconcile.Request
	if engine.HasGate(p) {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
	}
	keys := engine.VolumeKeys(p)
	if len(keys) == 0 {
		return reqs
	}
	pods, err := r.Index.Sharing(ctx, p.Namespace, keys)
	if err != nil {
		r.Log.Error(err, "listing the pods that share a volume", "namespace", p.Namespace, "pod", p.Name)
		return reqs
	}
	for _, o := range pods {
		if o.UID != p.UID && engine.HasGate(o) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
	}
	return reqs
}

// Reconcile decides for one gated pod.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod, err := r.Index.Get(ctx, req.NamespacedName)
	if apierrors.IsNotFound(err) {
		r.forget(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if !engine.HasGate(pod) {
		r.forget(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	others, err := r.Index.Sharing(ctx, pod.Namespace, engine.VolumeKeys(pod))
	if err != nil {
		return reconcile.Result{}, err
	}
	now := r.Clock.Now()
	maxWait := time.Duration(r.Policy.Current().Handoff.MaxWait) * time.Second
	rel := engine.DecideRelease(pod, others, maxWait, now)
	log := r.Log.WithValues("namespace", pod.Namespace, "pod", pod.Name)
	if !rel.Now {
		if r.remember(req.NamespacedName, pod.UID) {
			r.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, ReasonWaiting, "Hold",
				"held until %s stopped (%s), at the latest until %s", holderNames(rel.Holders),
				engine.DescribeVolumeKey(rel.Holders[0].Volume), rel.Deadline.UTC().Format(time.RFC3339))
			log.Info("holding", "holders", holderNames(rel.Holders), "deadline", rel.Deadline)
		}
		return reconcile.Result{RequeueAfter: rel.Deadline.Sub(now)}, nil
	}
	if err := r.lift(ctx, pod); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("lifting the handoff gate of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.forget(req.NamespacedName)
	held := now.Sub(pod.CreationTimestamp.Time).Seconds()
	if rel.TimedOut {
		metrics.HandoffHoldSeconds.WithLabelValues("timed_out").Observe(held)
		r.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, ReasonTimedOut, "Release",
			"released after %.1fs although %s had not stopped (%s): handoff.maxWait (%s) past its deletionTimestamp; this pod may load a store its predecessor is still writing",
			held, holderNames(rel.Holders), engine.DescribeVolumeKey(rel.Holders[0].Volume), maxWait)
		log.Info("released on timeout", "heldSeconds", held, "holders", holderNames(rel.Holders))
		return reconcile.Result{}, nil
	}
	metrics.HandoffHoldSeconds.WithLabelValues("released").Observe(held)
	r.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, ReasonReleased, "Release",
		"released after %.1fs: no terminating pod holds its volumes any more", held)
	log.Info("released", "heldSeconds", held)
	return reconcile.Result{}, nil
}

// lift removes the gate with a JSON patch that first tests that the gate is still where it
// was read: a concurrent change (another gate removed by its own controller) fails the
// patch, and the retry reads the pod again, instead of removing someone else's gate.
func (r *Reconciler) lift(ctx context.Context, pod *corev1.Pod) error {
	for i, g := range pod.Spec.SchedulingGates {
		if g.Name != annotations.SchedulingGateHandoff {
			continue
		}
		at := fmt.Sprintf("/spec/schedulingGates/%d", i)
		patch, err := json.Marshal([]map[string]any{
			{"op": "test", "path": at, "value": corev1.PodSchedulingGate{Name: annotations.SchedulingGateHandoff}},
			{"op": "remove", "path": at},
		})
		if err != nil {
			return err
		}
		return r.Client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch))
	}
	return nil
}

func (r *Reconciler) remember(key types.NamespacedName, uid types.UID) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = map[types.NamespacedName]types.UID{}
	}
	first = r.held[key] != uid
	r.held[key] = uid
	metrics.HandoffHeldPods.Set(float64(len(r.held)))
	return first
}

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.held, key)
	metrics.HandoffHeldPods.Set(float64(len(r.held)))
}

func holderNames(hs []engine.Holder) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return strings.Join(names, ",")
}
