package engine

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
)

// Data risks: what no pod spec the webhook writes can save, because it follows from the
// workload around the pod (its strategy, its replica count) or from where the Pushgateway
// keeps its store. The validating webhook returns them as warnings at `kubectl apply`,
// `audit` lists them per workload and `mutate` prints them on standard error; all three call
// Risks, so the wording and the fix are written once.

// Risk codes, stable for scripts reading `audit -o json`.
const (
	// RiskTwoWriters: a surge rollout starts the new pod beside the old one on the same
	// persistence file; both write it, the last writer wins.
	RiskTwoWriters = "two-writers"
	// RiskNoPersistence: the store lives and dies with the pod.
	RiskNoPersistence = "no-persistence"
	// RiskReplicas: each replica holds different pushes.
	RiskReplicas = "replicas"
	// RiskCrash (information): what a crash loses at most with persistence on.
	RiskCrash = "crash-loss"
)

// Pushgateway's flags for its store (kingpin: "--flag=value" or "--flag value").
const (
	flagPersistenceFile     = "--persistence.file"
	flagPersistenceInterval = "--persistence.interval"
	// defaultPersistenceInterval is Pushgateway's default for --persistence.interval.
	defaultPersistenceInterval = "5m"
)

// Workload is what the risk rules read of the object around a pod template.
type Workload struct {
	// Kind is the workload's kind (Deployment, StatefulSet, ReplicaSet, ...).
	Kind string
	// Replicas is spec.replicas; nil means the API default, 1.
	Replicas *int32
	// Strategy is a Deployment's spec.strategy.type; "" means the API default, RollingUpdate.
	Strategy string
	// ClaimTemplates are a StatefulSet's volumeClaimTemplates names: volumes of the pod that
	// are not in its spec.volumes, one claim per ordinal, kept across replacements.
	ClaimTemplates []string
	// Pod is built from the template: the rules read container names, arguments and
	// mounts and the volumes' sources (DecodeRiskTemplate decodes just those).
	Pod *corev1.Pod
}

// Risk is one data risk of a workload, its message naming the fix.
type Risk struct {
	Code string `json:"code"`
	// Info marks information rather than a warning (what a crash loses is not a mistake).
	Info    bool   `json:"info,omitempty"`
	Message string `json:"message"`
}

func (r Risk) String() string {
	if r.Info {
		return "info: " + r.Message
	}
	return r.Message
}

// HasRisks says whether the risk rules apply to a workload of kind whose pods the engine
// decided d for, before anything is decoded for them.
func HasRisks(kind string, d *Decision) bool {
	return isWorkload(kind, func(k WorkloadKind) bool { return k.Serving }) && d.Selected && d.Outcome != OutcomeSkipped && d.Outcome != OutcomeDenied && len(d.Targets) > 0
}

// store is where a Pushgateway container keeps its persistence file.
type store struct {
	file, interval string
	// volume is the volume the file is on ("" for the container's own filesystem);
	// kind one of "claim", "claimTemplate", "hostPath", "ephemeral", "other".
	volume, kind string
}

// Risks are the data risks of a workload whose pods the engine decided d for (Decide on
// w.Pod). A pod the webhook does not handle (not selected, opted out, no target, denied)
// has none: its risks are not this product's to name, nor has a Job, a CronJob or a bare
// pod. A DaemonSet, without replicas or a surge rollout, gets only the persistence rules.
func Risks(w *Workload, d *Decision) []Risk {
	if w == nil || w.Pod == nil || !HasRisks(w.Kind, d) {
		return nil
	}
	var out []Risk
	if isWorkload(w.Kind, func(k WorkloadKind) bool { return k.Replicated }) && w.Replicas != nil && *w.Replicas > 1 {
		out = append(out, Risk{Code: RiskReplicas, Message: fmt.Sprintf(
			"%s has replicas: %d: each Pushgateway replica holds only the pushes that reached it and Prometheus scrapes each, so series come and go between replicas and a replacement loses its own; set replicas: 1 (Pushgateway is not built to scale out)",
			w.Kind, *w.Replicas)})
	}
	for _, c := range d.Targets {
		ctr := container(w.Pod, c)
		if ctr == nil {
			continue
		}
		s := findStore(ctr, w)
		switch {
		case s.file == "":
			out = append(out, Risk{Code: RiskNoPersistence, Message: fmt.Sprintf(
				"container %q runs without %s: its store is lost on every replacement (rollout, delete, eviction, drain, crash) and only what Prometheus scraped before the pod ended survives; add %s=<path> on a PersistentVolumeClaim (the community chart: persistentVolume.enabled=true and extraArgs), or keep the preStop sleep above Prometheus' scrape interval plus its discovery lag",
				c, flagPersistenceFile, flagPersistenceFile)})
			continue
		case s.kind == "" || s.kind == "ephemeral":
			where := "the container's own filesystem"
			if s.volume != "" {
				where = fmt.Sprintf("volume %q, which lives and dies with the pod", s.volume)
			}
			out = append(out, Risk{Code: RiskNoPersistence, Message: fmt.Sprintf(
				"container %q persists %s to %s: the store is lost on every replacement and only what Prometheus scraped before the pod ended survives; put the file on a PersistentVolumeClaim",
				c, s.file, where)})
			continue
		}
		if w.Kind == "Deployment" && w.Strategy != "Recreate" && s.kind != "claimTemplate" {
			strategy := w.Strategy
			if strategy == "" {
				strategy = "RollingUpdate (the default)"
			}
			out = append(out, Risk{Code: RiskTwoWriters, Message: fmt.Sprintf(
				"Deployment strategy %s with container %q persisting %s on volume %q: a rollout starts the new pod beside the old one, the new one loads the file while the old one still writes it and the last writer wins, losing the pushes in between; set spec.strategy.type: Recreate (the handoff gate then covers deletes, evictions and drains)",
				strategy, c, s.file, s.volume)})
		}
		out = append(out, Risk{Code: RiskCrash, Info: true, Message: fmt.Sprintf(
			"a crash of container %q (SIGKILL, OOM kill, node loss) skips the shutdown persist: it loses at most the pushes since the last periodic persist, every %s (%s)",
			c, s.interval, flagPersistenceInterval)})
	}
	return out
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// findStore reads the container's persistence flags and the volume the file lands on: the
// mount with the longest mountPath that contains it, as the kernel resolves it.
func findStore(c *corev1.Container, w *Workload) store {
	s := store{interval: defaultPersistenceInterval}
	argv := append(append([]string(nil), c.Command...), c.Args...)
	for i := 0; i < len(argv); i++ {
		for _, f := range []struct {
			flag string
			into *string
		}{{flagPersistenceFile, &s.file}, {flagPersistenceInterval, &s.interval}} {
			if v, ok := strings.CutPrefix(argv[i], f.flag+"="); ok {
				*f.into = v
			} else if argv[i] == f.flag && i+1 < len(argv) {
				*f.into = argv[i+1]
			}
		}
	}
	if s.file == "" {
		return s
	}
	file := path.Clean(s.file)
	best := -1
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if (file == mp || strings.HasPrefix(file, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, s.volume = len(mp), m.Name
		}
	}
	if s.volume == "" {
		return s
	}
	for _, t := range w.ClaimTemplates {
		if t == s.volume {
			s.kind = "claimTemplate"
			return s
		}
	}
	s.kind = "other"
	for i := range w.Pod.Spec.Volumes {
		v := &w.Pod.Spec.Volumes[i]
		if v.Name != s.volume {
			continue
		}
		switch {
		case v.PersistentVolumeClaim != nil:
			s.kind = "claim"
		case v.HostPath != nil:
			s.kind = "hostPath"
		case v.EmptyDir != nil, v.Ephemeral != nil:
			// A generic ephemeral volume's claim is deleted with its pod.
			s.kind = "ephemeral"
		}
	}
	return s
}

// riskTemplate is the part of a pod template the risk rules read (Risks, findStore): the
// containers' names, arguments and mounts, and the kind of each volume. Decoding only that
// keeps the rules off the cost of a full PodTemplateSpec (mutate runs them on every selected
// object of a stream).
type riskTemplate struct {
	Spec struct {
		Containers []struct {
			Name         string   `json:"name"`
			Command      []string `json:"command"`
			Args         []string `json:"args"`
			VolumeMounts []struct {
				Name      string `json:"name"`
				MountPath string `json:"mountPath"`
			} `json:"volumeMounts"`
		} `json:"containers"`
		Volumes []struct {
			Name                  string           `json:"name"`
			PersistentVolumeClaim *json.RawMessage `json:"persistentVolumeClaim"`
			HostPath              *json.RawMessage `json:"hostPath"`
			EmptyDir              *json.RawMessage `json:"emptyDir"`
			Ephemeral             *json.RawMessage `json:"ephemeral"`
		} `json:"volumes"`
	} `json:"spec"`
}

func (t *riskTemplate) pod() *corev1.Pod {
	p := &corev1.Pod{}
	for _, c := range t.Spec.Containers {
		pc := corev1.Container{Name: c.Name, Command: c.Command, Args: c.Args}
		for _, m := range c.VolumeMounts {
			pc.VolumeMounts = append(pc.VolumeMounts, corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath})
		}
		p.Spec.Containers = append(p.Spec.Containers, pc)
	}
	// null counts as absent, as the API server decodes it.
	set := func(r *json.RawMessage) bool { return r != nil && string(*r) != "null" }
	for _, v := range t.Spec.Volumes {
		pv := corev1.Volume{Name: v.Name}
		switch {
		case set(v.PersistentVolumeClaim):
			pv.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{}
		case set(v.HostPath):
			pv.HostPath = &corev1.HostPathVolumeSource{}
		case set(v.EmptyDir):
			pv.EmptyDir = &corev1.EmptyDirVolumeSource{}
		case set(v.Ephemeral):
			pv.Ephemeral = &corev1.EphemeralVolumeSource{}
		}
		p.Spec.Volumes = append(p.Spec.Volumes, pv)
	}
	return p
}

// DecodeRiskTemplate decodes a pod template (JSON, keys matched case-sensitively as the API
// server does) into the sparse pod Workload.Pod needs.
func DecodeRiskTemplate(raw []byte) (*corev1.Pod, error) {
	var t riskTemplate
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &t); err != nil {
		return nil, err
	}
	return t.pod(), nil
}

// workloadJSON is the part of a workload object the risk rules read around the template.
type workloadJSON struct {
	Kind string `json:"kind"`
	Spec struct {
		Replicas *int32 `json:"replicas"`
		Strategy *struct {
			Type string `json:"type"`
		} `json:"strategy"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"volumeClaimTemplates"`
		Template    *riskTemplate `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *riskTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// DecodeWorkload reads a workload object (JSON, keys matched case-sensitively) for Risks;
// kind overrides the object's own (a List's items may carry none). A workload without a pod
// template returns nil.
func DecodeWorkload(raw []byte, kind string) (*Workload, error) {
	var v workloadJSON
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &v); err != nil {
		return nil, err
	}
	tpl := v.Spec.Template
	if tpl == nil && v.Spec.JobTemplate != nil {
		tpl = v.Spec.JobTemplate.Spec.Template
	}
	if tpl == nil {
		return nil, nil
	}
	if kind == "" {
		kind = v.Kind
	}
	w := &Workload{Kind: kind, Replicas: v.Spec.Replicas, Pod: tpl.pod()}
	if v.Spec.Strategy != nil {
		w.Strategy = v.Spec.Strategy.Type
	}
	for _, t := range v.Spec.VolumeClaimTemplates {
		w.ClaimTemplates = append(w.ClaimTemplates, t.Metadata.Name)
	}
	return w, nil
}
