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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
)

// ReasonDraining is the event of a pod that stopped taking pushes.
const ReasonDraining = "Draining"

// DrainReconciler keeps the annotations.ConditionAcceptingPushes condition of the pods that
// carry its readiness gate what engine.DecideAccepting says: True from the first sight (the
// pod is unready until then, so this runs before its containers start), False while it
// terminates, and True again for a pod whose DELETE, drained at admission, never happened.
type DrainReconciler struct {
	Index    *Index
	Client   client.Client
	Recorder recorder.EventRecorder
	Clock    clock.PassiveClock
	Log      logr.Logger
}

// setupDrain adds the drain controller beside the handoff gate's, on the same caches.
func setupDrain(mgr manager.Manager, ix *Index, log logr.Logger) error {
	r := &DrainReconciler{
		Index: ix, Client: mgr.GetClient(),
		Recorder: mgr.GetEventRecorder(ControllerName), Clock: clock.RealClock{}, Log: log,
	}
	gated := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, p *corev1.Pod) []reconcile.Request {
		if !engine.HasReadinessGate(p) {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(p)}}
	})
	return ix.Watch(mgr, "drain", r, gated, log)
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
	cur := condition(pod)
	a := engine.DecideAccepting(pod, cur, now)
	if cur == nil || cur.Status != a.Status {
		err := setCondition(ctx, r.Client, pod, corev1.PodCondition{
			Type: annotations.ConditionAcceptingPushes, Status: a.Status, Reason: a.Reason, Message: a.Message,
			LastTransitionTime: metav1.NewTime(now),
		})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, fmt.Errorf("setting %s of %s/%s: %w", annotations.ConditionAcceptingPushes, pod.Namespace, pod.Name, err)
		}
		metrics.DrainTransitionsTotal.WithLabelValues("controller", string(a.Status)).Inc()
		log := r.Log.WithValues("namespace", pod.Namespace, "pod", pod.Name)
		if a.Status == corev1.ConditionFalse {
			// Late: the kubelet has computed the terminating pod's Ready already (the drain
			// webhook was not called, or failed); counted, so that it shows.
			r.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, ReasonDraining, "Drain",
				"drained by the controller after the deletion: the kubelet may keep it serving until its preStop sleep ends (was the drain webhook called?)")
			log.Info("drained late: the DELETE was not drained at admission")
		} else {
			log.V(1).Info("accepting pushes", "reason", a.Message)
		}
	}
	if !a.Until.IsZero() {
		return reconcile.Result{RequeueAfter: a.Until.Sub(now)}, nil
	}
	return reconcile.Result{}, nil
}

// Drain writes the condition False for the pod about to be deleted (the drain webhook, at the
// DELETE's admission), and records the event. It reads nothing: the webhook decided from the
// pod in the request.
func (ix *Index) Drain(ctx context.Context, pod *corev1.Pod) error {
	now := time.Now()
	if err := setCondition(ctx, ix.writer, pod, engine.DrainingCondition(now)); err != nil {
		return err
	}
	metrics.DrainTransitionsTotal.WithLabelValues("webhook", string(corev1.ConditionFalse)).Inc()
	if ix.recorder != nil {
		ix.recorder.Eventf(pod, nil, corev1.EventTypeNormal, ReasonDraining, "Drain",
			"deleted: takes no pushes from now on, so that Prometheus scrapes what it acknowledged before its preStop sleep ends (no persistence)")
	}
	return nil
}

// setCondition writes one condition with a strategic merge patch of the status: conditions
// merge by type, so the kubelet's own conditions and any other controller's stay as they are.
func setCondition(ctx context.Context, c client.Client, pod *corev1.Pod, cond corev1.PodCondition) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{cond}}})
	if err != nil {
		return err
	}
	return c.Status().Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, patch))
}

func condition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == annotations.ConditionAcceptingPushes {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
