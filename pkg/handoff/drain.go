package handoff

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
)

// ReasonDraining is the event of a pod that stopped taking pushes.
const ReasonDraining = "Draining"

// DrainReconciler keeps the annotations.ConditionAcceptingPushes condition of the pods that
// carry its readiness gate what engine.DecideAccepting says: True from the first sight (the
// pod is unready until then, so this runs before its containers start), False once its
// termination reaches the drain window.
type DrainReconciler struct {
	Index    *Index
	Client   client.Client
	Policy   PolicySource
	Recorder recorder.EventRecorder
	Clock    clock.PassiveClock
	Log      logr.Logger
}

// setupDrain adds the drain controller beside the handoff gate's, on the same caches.
func setupDrain(mgr manager.Manager, ix *Index, pol PolicySource, log logr.Logger) error {
	r := &DrainReconciler{
		Index: ix, Client: mgr.GetClient(), Policy: pol,
		Recorder: mgr.GetEventRecorder(ControllerName), Clock: clock.RealClock{}, Log: log,
	}
	c, err := controller.New("drain", mgr, controller.Options{
		Reconciler:         r,
		SkipNameValidation: ptr.To(true),
		LogConstructor:     func(*reconcile.Request) logr.Logger { return log },
	})
	if err != nil {
		return err
	}
	gated := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, p *corev1.Pod) []reconcile.Request {
		if !engine.HasReadinessGate(p) {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(p)}}
	})
	for _, ca := range ix.caches {
		if err := c.Watch(source.Kind(ca, &corev1.Pod{}, gated)); err != nil {
			return err
		}
	}
	return nil
}

// Reconcile sets one pod's condition.
func (r *DrainReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod, err := r.Index.Get(ctx, req.NamespacedName)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if !engine.HasReadinessGate(pod) {
		return reconcile.Result{}, nil
	}
	now := r.Clock.Now()
	a := engine.DecideAccepting(pod, r.Policy.Current(), now)
	if cur := condition(pod); cur == nil || cur.Status != a.Status {
		if err := r.set(ctx, pod, a, now); err != nil {
			if apierrors.IsNotFound(err) {
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, fmt.Errorf("setting %s of %s/%s: %w", annotations.ConditionAcceptingPushes, pod.Namespace, pod.Name, err)
		}
		metrics.DrainTransitionsTotal.WithLabelValues(string(a.Status)).Inc()
		log := r.Log.WithValues("namespace", pod.Namespace, "pod", pod.Name)
		if a.Status == corev1.ConditionFalse {
			r.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, ReasonDraining, "Drain", "%s", a.Message)
			log.Info("draining", "since", a.At)
		} else {
			log.V(1).Info("accepting pushes")
		}
	}
	if a.Status == corev1.ConditionTrue && !a.At.IsZero() {
		return reconcile.Result{RequeueAfter: a.At.Sub(now)}, nil
	}
	return reconcile.Result{}, nil
}

// set writes the condition with a strategic merge patch of the status: conditions merge by
// type, so the kubelet's own conditions and any other controller's stay as they are.
func (r *DrainReconciler) set(ctx context.Context, pod *corev1.Pod, a engine.Accepting, now time.Time) error {
	cond := corev1.PodCondition{
		Type:               annotations.ConditionAcceptingPushes,
		Status:             a.Status,
		Reason:             a.Reason,
		Message:            a.Message,
		LastTransitionTime: metav1.NewTime(now),
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{cond}}})
	if err != nil {
		return err
	}
	return r.Client.Status().Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, patch))
}

func condition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == annotations.ConditionAcceptingPushes {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
