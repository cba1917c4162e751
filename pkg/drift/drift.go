// Package drift reports, continuously, every selected pod that runs without the product's
// spec: created while the webhook was unreachable (it fails open), before its namespace opted
// in, or before the policy changed. It judges each pod with audit.Classify, the code path of
// `pushgateway-lifecycle audit`, on the pods of the handoff index's label-filtered caches, so
// it costs no API call per pod. Each such pod gets one Warning event naming the fix, and the
// gauge pushgateway_lifecycle_unprotected_pods counts them by the pods' namespace and state.
package drift

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/handoff"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/metrics"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// ReasonUnprotected is the Warning event's reason on a pod that runs without the spec.
const ReasonUnprotected = "PushgatewayUnprotected"

// ControllerName is the events' reportingController.
const ControllerName = "pushgateway-lifecycle.io/drift"

// Recheck is how often each selected pod is judged again without an event of its own: the
// policy may have been reloaded or its namespace relabelled since.
const Recheck = time.Minute

// PolicySource returns the policy in force.
type PolicySource interface{ Current() *policy.Policy }

// Reconciler judges one pod.
type Reconciler struct {
	Index    *handoff.Index
	Reader   client.Reader // namespaces' metadata
	Policy   PolicySource
	Scope    audit.NamespaceScope
	Recorder recorder.EventRecorder
	Log      logr.Logger

	mu sync.Mutex
	// seen is the state counted for each pod and the UID and state its event was for.
	seen map[types.NamespacedName]judged
}

type judged struct {
	uid       types.UID
	namespace string
	state     audit.State
}

// Setup adds the drift watch to the manager; it runs on the leader only (the gauge and the
// events are the leader's), on the handoff index's caches.
func Setup(mgr manager.Manager, ix *handoff.Index, pol PolicySource, scope audit.NamespaceScope, log logr.Logger) (*Reconciler, error) {
	r := &Reconciler{Index: ix, Reader: mgr.GetClient(), Policy: pol, Scope: scope,
		Recorder: mgr.GetEventRecorder(ControllerName), Log: log}
	if err := ix.Watch(mgr, "drift", r, &handler.TypedEnqueueRequestForObject[*corev1.Pod]{}, log); err != nil {
		return nil, err
	}
	return r, nil
}

// Reconcile judges the pod, counts it, and warns once per pod and state.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod, err := r.Index.Get(ctx, req.NamespacedName)
	if apierrors.IsNotFound(err) {
		r.set(req.NamespacedName, nil)
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	pol := r.Policy.Current()
	if !audit.Selected(pod, pol) || audit.Finished(pod) {
		r.set(req.NamespacedName, nil)
		return reconcile.Result{}, nil
	}
	var in *bool
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: pod.Namespace}, ns); err == nil {
		in = ptr.To(r.Scope.OptedIn(ns.Name, ns.Labels))
	} else {
		r.Log.V(1).Info("cannot read the pod's namespace; judging without the opt-in check", "namespace", pod.Namespace, "err", err.Error())
	}
	v := audit.Classify(pod, in, pol)
	if !Reported(v.State) {
		r.set(req.NamespacedName, nil)
		return reconcile.Result{RequeueAfter: Recheck}, nil
	}
	if r.set(req.NamespacedName, &judged{uid: pod.UID, namespace: pod.Namespace, state: v.State}) {
		r.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, ReasonUnprotected, "Audit",
			"%s: %s; fix: %s", v.State, v.Reason, Fix(pod))
		r.Log.Info("pod runs without the product's spec", "namespace", pod.Namespace, "pod", pod.Name, "state", v.State, "reason", v.Reason)
	}
	return reconcile.Result{RequeueAfter: Recheck}, nil
}

// Reported are the states the drift watch reports: the spec is missing or wrong. Protected
// and opted-out pods are fine; a namespace that is not opted in is the operator's choice
// (audit lists it).
func Reported(s audit.State) bool {
	return s == audit.StateUnprotected || s == audit.StateDrifted || s == audit.StateInvalid
}

// set records the pod's judgement (nil: not reported), moves the gauge, and reports whether
// this is a new (pod, state), the one that deserves an event.
func (r *Reconciler) set(key types.NamespacedName, j *judged) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[types.NamespacedName]judged{}
	}
	old, had := r.seen[key]
	if had && j != nil && old == *j {
		return false
	}
	if had {
		metrics.UnprotectedPods.WithLabelValues(old.namespace, string(old.state)).Dec()
		delete(r.seen, key)
	}
	if j == nil {
		return false
	}
	r.seen[key] = *j
	metrics.UnprotectedPods.WithLabelValues(j.namespace, string(j.state)).Inc()
	return true
}

// Fix is the command that re-creates the pod through the webhook: a restart of the workload
// that owns it (a ReplicaSet's Deployment by its pod-template-hash), as audit prints it.
func Fix(pod *corev1.Pod) string {
	ref := metav1.GetControllerOf(pod)
	w := audit.Ref{Kind: "Pod", Name: pod.Name}
	if ref != nil {
		w = audit.Ref{Kind: ref.Kind, Name: ref.Name}
		if d, ok := audit.DeploymentOf(ref.Name, pod.Labels["pod-template-hash"]); ok && ref.Kind == "ReplicaSet" {
			w = audit.Ref{Kind: "Deployment", Name: d}
		}
	}
	return audit.Restart(pod.Namespace, w, []string{pod.Name}) + fmt.Sprintf(" (then `pushgateway-lifecycle audit -n %s` shows it Protected)", pod.Namespace)
}
