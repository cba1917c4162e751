package engine

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// The handoff: a pod deleted directly (kubectl delete, the Eviction API, a drain, an
// autoscaler) is replaced by its ReplicaSet at once, beside the terminating pod. If both mount
// the volume that holds the persistence file, the replacement loads the file before the old
// pod's shutdown persist and every push acknowledged since is lost. The webhook holds such a
// replacement with a scheduling gate; the controller lifts it once the old pod has stopped.
// Everything here is pure: the caller supplies the other pods (an informer in the webhook and
// the controller; nothing offline).

// Volume keys name what two pods can share: a PersistentVolumeClaim of the namespace, or a
// hostPath (on one host, or on a network path mounted at the same place on every node).
const (
	volumeKeyClaim    = "pvc/"
	volumeKeyHostPath = "hostPath/"
)

// VolumeKeys are the keys of the volumes a pod mounts that another pod of its namespace may
// also mount, sorted and without duplicates. Volumes no container mounts count too: the
// kubelet attaches them anyway, and a second writer is what matters, not who mounts where.
func VolumeKeys(pod *corev1.Pod) []string {
	var keys []string
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		switch {
		case v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName != "":
			keys = append(keys, volumeKeyClaim+v.PersistentVolumeClaim.ClaimName)
		case v.HostPath != nil && v.HostPath.Path != "":
			keys = append(keys, volumeKeyHostPath+path.Clean(v.HostPath.Path))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// DescribeVolumeKey prints a key as a user reads it: "claim data", "hostPath /srv/pg".
func DescribeVolumeKey(k string) string {
	if c, ok := strings.CutPrefix(k, volumeKeyClaim); ok {
		return "claim " + c
	}
	if p, ok := strings.CutPrefix(k, volumeKeyHostPath); ok {
		return "hostPath " + p
	}
	return k
}

// handoffCandidate decides whether the pod may be gated at all, before anyone looks at other
// pods: the caller then fetches siblings for the returned keys only (none: never gated).
func handoffCandidate(pod *corev1.Pod, set annotations.Settings, pol *policy.Policy) []string {
	// The API server refuses scheduling gates on a pod that names its node.
	if pol.Handoff.Mode == annotations.HandoffOff || set.HandoffOff || pod.Spec.NodeName != "" {
		return nil
	}
	for _, r := range pod.OwnerReferences {
		if r.Controller != nil && *r.Controller && isWorkload(r.Kind, func(k WorkloadKind) bool { return k.Serial }) {
			return nil
		}
	}
	return VolumeKeys(pod)
}

// HasGate reports whether the pod carries the handoff scheduling gate.
func HasGate(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool {
		return g.Name == annotations.SchedulingGateHandoff
	})
}

// Stopped reports whether a pod is known to run no container any more: phase Succeeded or
// Failed, or every container and init container the kubelet reports is terminated. A pod that
// reports no container status yet is not known to have stopped: its kubelet may not have
// reported it (the replacement must not load the file while it might still be written).
func Stopped(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	if len(pod.Status.ContainerStatuses) == 0 {
		// Never reached a kubelet (unscheduled, or scheduled and not yet reported): nothing
		// ran if it was never bound to a node.
		return pod.Spec.NodeName == ""
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range list {
			if list[i].State.Terminated == nil {
				return false
			}
		}
	}
	return true
}

// Holder is a terminating pod that still holds a volume the gated pod needs.
type Holder struct {
	Name string
	// Volume is the first shared volume key (DescribeVolumeKey prints it).
	Volume string
	// Deleted is the holder's deletionTimestamp: the moment its grace period ends.
	Deleted time.Time
}

// Holders are the terminating, not yet stopped pods among others that share one of keys with
// the pod named self, in the order given. Running pods never hold: a surge rollout's old pod
// keeps running until the new one is ready, and waiting for it would deadlock the rollout.
func Holders(self string, keys []string, others []*corev1.Pod) []Holder {
	var hs []Holder
	for _, o := range others {
		if o.Name == self || o.DeletionTimestamp == nil || Stopped(o) {
			continue
		}
		ok := VolumeKeys(o)
		for _, k := range keys {
			if _, found := slices.BinarySearch(ok, k); found {
				hs = append(hs, Holder{Name: o.Name, Volume: k, Deleted: o.DeletionTimestamp.Time})
				break
			}
		}
	}
	return hs
}

// Gate records in the decision that the pod is held for holders (Holders on the caller's view
// of the namespace); with no holders it changes nothing. Only a pod the engine injected or
// found unchanged, and whose HandoffKeys are set, is ever gated.
func Gate(d *Decision, pod *corev1.Pod, holders []Holder) {
	if len(holders) == 0 || len(d.HandoffKeys) == 0 || HasGate(pod) || d.Outcome == OutcomeDenied || d.Outcome == OutcomeSkipped {
		return
	}
	d.Gate = true
	d.HadSchedulingGates = len(pod.Spec.SchedulingGates) > 0
	names := make([]string, len(holders))
	for i, h := range holders {
		names[i] = h.Name
	}
	note := fmt.Sprintf("handoff: held by %s until %s stopped (%s)", annotations.SchedulingGateHandoff,
		strings.Join(names, ","), DescribeVolumeKey(holders[0].Volume))
	if d.Status == "" {
		// An unchanged pod that already carries the first pass's status: append to that.
		d.Status = pod.Annotations[annotations.AnnotationStatus]
	}
	if d.Status != "" {
		d.Status += "; "
	}
	d.Status += note
	d.SetStatus = true
	if d.Outcome == OutcomeUnchanged {
		d.Outcome = OutcomeInjected
	}
}

// Release is the controller's decision for one gated pod.
type Release struct {
	// Now: lift the gate.
	Now bool
	// TimedOut: lifted because the holders outlived handoff.maxWait past their deletionTimestamp.
	TimedOut bool
	// Holders still hold the volume (when !Now, or when TimedOut).
	Holders []Holder
	// Deadline is when the gate goes at the latest (when there are holders).
	Deadline time.Time
}

// DecideRelease is the controller's rule: lift the gate once no terminating pod holds a shared
// volume, or at the latest maxWait past the last holder's deletionTimestamp (a node that never
// reports its pods gone must not hold the replacement for ever).
func DecideRelease(pod *corev1.Pod, others []*corev1.Pod, maxWait time.Duration, now time.Time) Release {
	hs := Holders(pod.Name, VolumeKeys(pod), others)
	if len(hs) == 0 {
		return Release{Now: true}
	}
	var last time.Time
	for _, h := range hs {
		if h.Deleted.After(last) {
			last = h.Deleted
		}
	}
	r := Release{Holders: hs, Deadline: last.Add(maxWait)}
	if !now.Before(r.Deadline) {
		r.Now, r.TimedOut = true, true
	}
	return r
}
