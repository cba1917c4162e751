package engine

import (
	"encoding/json"
	"errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodView holds exactly the pod fields the engine reads (Decide: labels, annotations,
// namespace, container names, images, lifecycles and readinessProbes' path and timing, init
// containers' names, restart policies and lifecycles, the grace period). Decoding into it
// skips the rest of the pod instead of allocating it; TestPodViewEquivalence proves that the
// engine decides the same on a PodView as on the fully decoded pod.
type PodView struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		// OwnerReferences, volumes, node name and scheduling gates decide whether a
		// replacement may be held for its predecessor (VolumeKeys, handoffCandidate).
		OwnerReferences []ownerView `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		Containers []containerView `json:"containers"`
		// InitContainers are read for their preStop sleeps only: a native sidecar's sleep
		// bounds the grace period as much as a container's.
		InitContainers                []initContainerView        `json:"initContainers"`
		TerminationGracePeriodSeconds *int64                     `json:"terminationGracePeriodSeconds"`
		Volumes                       []volumeView               `json:"volumes"`
		NodeName                      string                     `json:"nodeName"`
		SchedulingGates               []corev1.PodSchedulingGate `json:"schedulingGates"`
		ReadinessGates                []corev1.PodReadinessGate  `json:"readinessGates"`
	} `json:"spec"`
}

type ownerView struct {
	Kind       string `json:"kind"`
	Controller *bool  `json:"controller"`
}

// volumeView keeps only what names a shared volume and whether it dies with the pod (the
// drain: storeSurvives); the other sources are skipped undecoded.
type volumeView struct {
	Name                  string `json:"name"`
	PersistentVolumeClaim *struct {
		ClaimName string `json:"claimName"`
	} `json:"persistentVolumeClaim"`
	HostPath *struct {
		Path string `json:"path"`
	} `json:"hostPath"`
	EmptyDir  *struct{} `json:"emptyDir"`
	Ephemeral *struct{} `json:"ephemeral"`
}

type containerView struct {
	Name      string            `json:"name"`
	Image     string            `json:"image"`
	Lifecycle *corev1.Lifecycle `json:"lifecycle"`
	// ReadinessProbe is tuned when it is an httpGet on ReadinessPath.
	ReadinessProbe *probeView `json:"readinessProbe"`
	// Command, Args and VolumeMounts say where the store is persisted (the drain).
	Command      []string          `json:"command"`
	Args         []string          `json:"args"`
	VolumeMounts []volumeMountView `json:"volumeMounts"`
}

type volumeMountView struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// probeView keeps what decides the readiness tuning: the httpGet path and the two timings it
// lowers. A probe with another handler (exec, tcpSocket, grpc) decodes with HTTPGet nil,
// which the engine leaves alone as it does the full probe.
type probeView struct {
	HTTPGet *struct {
		Path string `json:"path"`
	} `json:"httpGet"`
	InitialDelaySeconds int32 `json:"initialDelaySeconds"`
	PeriodSeconds       int32 `json:"periodSeconds"`
}

func (v *probeView) probe() *corev1.Probe {
	if v == nil {
		return nil
	}
	p := &corev1.Probe{InitialDelaySeconds: v.InitialDelaySeconds, PeriodSeconds: v.PeriodSeconds}
	if v.HTTPGet != nil {
		p.HTTPGet = &corev1.HTTPGetAction{Path: v.HTTPGet.Path}
	}
	return p
}

type initContainerView struct {
	Name          string                         `json:"name"`
	RestartPolicy *corev1.ContainerRestartPolicy `json:"restartPolicy"`
	Lifecycle     *corev1.Lifecycle              `json:"lifecycle"`
}

// Pod builds the sparse corev1.Pod the engine runs on.
func (v *PodView) Pod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name = v.Metadata.Name
	p.GenerateName = v.Metadata.GenerateName
	p.Namespace = v.Metadata.Namespace
	p.Labels = v.Metadata.Labels
	p.Annotations = v.Metadata.Annotations
	p.Spec.TerminationGracePeriodSeconds = v.Spec.TerminationGracePeriodSeconds
	p.Spec.NodeName = v.Spec.NodeName
	p.Spec.SchedulingGates = v.Spec.SchedulingGates
	p.Spec.ReadinessGates = v.Spec.ReadinessGates
	if n := len(v.Metadata.OwnerReferences); n > 0 {
		p.OwnerReferences = make([]metav1.OwnerReference, n)
		for i, r := range v.Metadata.OwnerReferences {
			p.OwnerReferences[i] = metav1.OwnerReference{Kind: r.Kind, Controller: r.Controller}
		}
	}
	for _, vol := range v.Spec.Volumes {
		// Every volume is kept, by name, so that a mount resolves to it; a source the engine
		// does not read stays empty (findStore counts it as one that outlives the pod).
		out := corev1.Volume{Name: vol.Name}
		switch {
		case vol.PersistentVolumeClaim != nil:
			out.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: vol.PersistentVolumeClaim.ClaimName}
		case vol.HostPath != nil:
			out.HostPath = &corev1.HostPathVolumeSource{Path: vol.HostPath.Path}
		case vol.EmptyDir != nil:
			out.EmptyDir = &corev1.EmptyDirVolumeSource{}
		case vol.Ephemeral != nil:
			out.Ephemeral = &corev1.EphemeralVolumeSource{}
		}
		p.Spec.Volumes = append(p.Spec.Volumes, out)
	}
	if n := len(v.Spec.Containers); n > 0 {
		p.Spec.Containers = make([]corev1.Container, n)
		for i := range v.Spec.Containers {
			c := &v.Spec.Containers[i]
			p.Spec.Containers[i] = corev1.Container{Name: c.Name, Image: c.Image, Lifecycle: c.Lifecycle, ReadinessProbe: c.ReadinessProbe.probe(),
				Command: c.Command, Args: c.Args}
			if len(c.VolumeMounts) > 0 {
				p.Spec.Containers[i].VolumeMounts = make([]corev1.VolumeMount, len(c.VolumeMounts))
				for j, m := range c.VolumeMounts {
					p.Spec.Containers[i].VolumeMounts[j] = corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath}
				}
			}
		}
	}
	if n := len(v.Spec.InitContainers); n > 0 {
		p.Spec.InitContainers = make([]corev1.Container, n)
		for i := range v.Spec.InitContainers {
			c := &v.Spec.InitContainers[i]
			p.Spec.InitContainers[i] = corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy, Lifecycle: c.Lifecycle}
		}
	}
	return p
}

// TemplateView is the part of a workload the validator reads: the pod template of a
// Deployment, StatefulSet, DaemonSet, ReplicaSet or Job (spec.template) or of a CronJob
// (spec.jobTemplate.spec.template).
type TemplateView struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		OwnerReferences []struct {
			Controller *bool `json:"controller"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		// Replicas and Strategy are compared on UPDATE only: a change to them alone gets the
		// data-risk warnings again (Risks), not the annotation checks.
		Replicas    *int32           `json:"replicas"`
		Strategy    *json.RawMessage `json:"strategy"`
		Template    *PodView         `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *PodView `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// Controlled reports whether a controller owns the object (an ownerReference with
// controller: true): a Deployment's ReplicaSets, a CronJob's Jobs, an operator's workloads.
func (t *TemplateView) Controlled() bool {
	for _, r := range t.Metadata.OwnerReferences {
		if r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// PodTemplate returns the pod template, wherever the kind keeps it; nil when there is none.
func (t *TemplateView) PodTemplate() *PodView {
	if t.Spec.Template != nil {
		return t.Spec.Template
	}
	if t.Spec.JobTemplate != nil {
		return t.Spec.JobTemplate.Spec.Template
	}
	return nil
}

// DecodePod decodes the fields of a pod the engine reads into the same view, with the same
// decoder, as the admission handler does (DecodeJSON), for the offline preview and any other
// caller holding a pod's JSON. Keys are matched case-sensitively, as the API server decodes: a
// hand-written "Metadata:" is an unknown field there, and must not be taken for metadata here.
func DecodePod(raw []byte) (*corev1.Pod, error) {
	var v PodView
	if err := DecodeJSON(raw, &v); err != nil {
		return nil, errors.New(DescribeJSONError(err))
	}
	return v.Pod(), nil
}
