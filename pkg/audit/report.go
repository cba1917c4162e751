package audit

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// The report's type, written into every JSON and YAML report so that a consumer can check
// what it parses. A field is only ever added within v1alpha1; a rename or a removal is a new
// version.
const (
	APIVersion = "audit.pushgateway-lifecycle.io/v1alpha1"
	Kind       = "AuditReport"
)

// Report is the whole audit: `-o json|yaml` prints it as is.
type Report struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Scope      Scope      `json:"scope"`
	Summary    Summary    `json:"summary"`
	Workloads  []Workload `json:"workloads"`
	Pods       []Pod      `json:"pods"`
	// Errors are what could not be read; the rest of the report is still what could.
	Errors []Error `json:"errors,omitempty"`
}

// Scope records what was audited against what.
type Scope struct {
	// AllNamespaces is -A; otherwise Namespace is the one namespace audited.
	AllNamespaces bool   `json:"allNamespaces"`
	Namespace     string `json:"namespace,omitempty"`
	// Policy names where the policy came from: "built-in", "file:PATH" or "configmap:NS/NAME".
	Policy string `json:"policy"`
	// WebhookScope is "namespace" (opt-in by NamespaceSelector) or "cluster".
	WebhookScope      string   `json:"webhookScope"`
	NamespaceSelector string   `json:"namespaceSelector,omitempty"`
	ExcludedNames     []string `json:"excludedNamespaces,omitempty"`
}

// Summary counts pods by state. ByState always holds every state, zeros included.
type Summary struct {
	Pods      int           `json:"pods"`
	Workloads int           `json:"workloads"`
	ByState   map[State]int `json:"byState"`
	// HandoffCandidates counts the pods with SharedVolumes.
	HandoffCandidates int `json:"handoffCandidates,omitempty"`
	// DataRisks counts the workloads' risks that are warnings (not information).
	DataRisks int `json:"dataRisks,omitempty"`
	// AllProtected is true when every pod is protected or opted out (exit code 0).
	AllProtected bool `json:"allProtected"`
}

// Ref names an object in the report's namespace.
type Ref struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// String is kind/name, lowercase kind as kubectl takes it.
func (r Ref) String() string { return strings.ToLower(r.Kind) + "/" + r.Name }

// Workload is the top-level owner of one or more audited pods (a bare pod is its own).
type Workload struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// State is the worst state of its pods.
	State   State         `json:"state"`
	Pods    int           `json:"pods"`
	ByState map[State]int `json:"byState"`
	// Template is what the webhook does with a pod created from the workload's template (a
	// Template* constant; empty when unknown), TemplateReason why it is invalid.
	Template       string `json:"template,omitempty"`
	TemplateReason string `json:"templateReason,omitempty"`
	// Fix is the one command (or instruction) that protects the workload's pods; empty when
	// nothing is to be done.
	Fix string `json:"fix,omitempty"`
	// Risks are the data risks of the workload (engine.Risks: a RollingUpdate on a shared
	// persistence file, no persistence, replicas > 1; what a crash loses as information):
	// what no pod spec the webhook writes can save. They do not change the exit code.
	Risks []engine.Risk `json:"risks,omitempty"`
}

// Ref is the workload's reference.
func (w *Workload) Ref() Ref { return Ref{w.Kind, w.Name} }

// Pod is one audited pod.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	State     State  `json:"state"`
	Reason    string `json:"reason,omitempty"`
	// Status is the pushgateway-lifecycle.io/status annotation as the webhook wrote it.
	Status string `json:"status,omitempty"`
	// Owner is the pod's controller (a ReplicaSet for a Deployment's pod); Workload the
	// top-level owner the fix acts on (the pod itself when it has no owner).
	Owner    *Ref `json:"owner,omitempty"`
	Workload Ref  `json:"workload"`
	// SharedVolumes are the claims and hostPaths the pod mounts (engine.VolumeKeys, described):
	// its replacement after a delete, an eviction or a drain is safe only behind the handoff
	// gate, which only the webhook with --handoff sets.
	SharedVolumes []string `json:"sharedVolumes,omitempty"`
}

// Error is one read that failed. For a missing permission Verb and Resource name it.
type Error struct {
	Verb      string `json:"verb,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Message   string `json:"message"`
}

func (e Error) String() string { return e.Message }

type wkey struct{ ns, kind, name string }

// Builder collects pods, workload templates and errors into a Report; it does no I/O.
type Builder struct {
	pods      []Pod
	templates map[wkey]TemplateVerdict
	errors    []Error
	seenErr   map[string]bool
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder {
	return &Builder{templates: map[wkey]TemplateVerdict{}, seenErr: map[string]bool{}}
}

// AddPod adds a classified pod.
func (b *Builder) AddPod(p Pod) { b.pods = append(b.pods, p) }

// SetTemplate records what the webhook does with the template of a workload, and its risks.
func (b *Builder) SetTemplate(namespace string, w Ref, v TemplateVerdict) {
	b.templates[wkey{namespace, w.Kind, w.Name}] = v
}

// AddError records a failed read once: a missing permission once per verb, resource and
// namespace (it repeats for every object of the kind), another error once per message.
func (b *Builder) AddError(e Error) {
	key := e.Message
	if e.Verb != "" {
		key = e.Verb + " " + e.Resource + " " + e.Namespace
	}
	if b.seenErr[key] {
		return
	}
	b.seenErr[key] = true
	b.errors = append(b.errors, e)
}

// Errors returns the errors so far.
func (b *Builder) Errors() []Error { return b.errors }

func newByState() map[State]int {
	m := make(map[State]int, len(States))
	for _, s := range States {
		m[s] = 0
	}
	return m
}

// Report groups the pods by workload, picks each workload's fix and sorts everything, so
// that the same cluster always prints the same report.
func (b *Builder) Report(scope Scope) *Report {
	r := &Report{APIVersion: APIVersion, Kind: Kind, Scope: scope, Pods: b.pods, Errors: b.errors, Workloads: []Workload{}}
	if r.Pods == nil {
		r.Pods = []Pod{}
	}
	sort.Slice(r.Pods, func(i, j int) bool {
		a, c := &r.Pods[i], &r.Pods[j]
		if a.Namespace != c.Namespace {
			return a.Namespace < c.Namespace
		}
		return a.Name < c.Name
	})
	// Owners are read concurrently and namespaces in map order: sort for a stable report.
	sort.Slice(r.Errors, func(i, j int) bool { return r.Errors[i].Message < r.Errors[j].Message })
	r.Summary.ByState = newByState()
	idx := map[wkey]int{}
	names := map[wkey][]string{}
	reasons := map[wkey]string{}
	for i := range r.Pods {
		p := &r.Pods[i]
		r.Summary.ByState[p.State]++
		if len(p.SharedVolumes) > 0 {
			r.Summary.HandoffCandidates++
		}
		k := wkey{p.Namespace, p.Workload.Kind, p.Workload.Name}
		j, ok := idx[k]
		if !ok {
			j = len(r.Workloads)
			idx[k] = j
			t := b.templates[k]
			r.Workloads = append(r.Workloads, Workload{Namespace: p.Namespace, Kind: p.Workload.Kind, Name: p.Workload.Name,
				State: p.State, ByState: newByState(), Template: t.State, TemplateReason: t.Reason, Risks: t.Risks})
			for _, rk := range t.Risks {
				if !rk.Info {
					r.Summary.DataRisks++
				}
			}
			reasons[k] = p.Reason
		}
		w := &r.Workloads[j]
		w.Pods++
		w.ByState[p.State]++
		if p.State.Rank() > w.State.Rank() {
			w.State = p.State
			reasons[k] = p.Reason
		}
		if !p.State.OK() {
			names[k] = append(names[k], p.Name)
		}
	}
	for i := range r.Workloads {
		w := &r.Workloads[i]
		k := wkey{w.Namespace, w.Kind, w.Name}
		w.Fix = Fix(w, names[k], reasons[k])
	}
	sort.SliceStable(r.Workloads, func(i, j int) bool {
		a, c := &r.Workloads[i], &r.Workloads[j]
		if a.Namespace != c.Namespace {
			return a.Namespace < c.Namespace
		}
		if a.Kind != c.Kind {
			return a.Kind < c.Kind
		}
		return a.Name < c.Name
	})
	r.Summary.Pods = len(r.Pods)
	r.Summary.Workloads = len(r.Workloads)
	r.Summary.AllProtected = true
	for s, n := range r.Summary.ByState {
		if n > 0 && !s.OK() {
			r.Summary.AllProtected = false
		}
	}
	return r
}

// Fix is the action that protects a workload in its state: one line per workload. pods are
// the names of its pods that need it; reason is the reason of one pod in the workload's state.
func Fix(w *Workload, pods []string, reason string) string {
	if w.State.OK() {
		return ""
	}
	restart := Restart(w.Namespace, w.Ref(), pods)
	switch {
	case w.State == StateNotOptedIn && strings.HasPrefix(reason, "the webhook never mutates"):
		return "none possible: " + reason + "; run it in another namespace"
	case w.Template == TemplateNotSelected:
		return fmt.Sprintf("label the pod template %s=true (its labels are not selected by the policy), then: %s", annotations.LabelInject, restart)
	case w.Template == TemplateOptedOut:
		return fmt.Sprintf("none: the pod template opts out (%s=false); its next pods will not be protected", annotations.AnnotationInject)
	case w.Template == TemplateInvalid, w.State == StateInvalid && w.Kind != "Pod":
		restart = "fix the pod template's annotations (see the pods' reason), then: " + restart
	case w.State == StateInvalid:
		restart = "fix the pod's annotations (see its reason), then: " + restart
	}
	if w.State == StateNotOptedIn {
		return fmt.Sprintf("kubectl label namespace %s %s=%s && %s", w.Namespace, annotations.LabelInjection, annotations.InjectionEnabled, restart)
	}
	return restart
}

// Restart is the command that re-creates a workload's pods through the webhook.
func Restart(namespace string, w Ref, pods []string) string {
	switch w.Kind {
	case "Deployment", "StatefulSet", "DaemonSet":
		return fmt.Sprintf("kubectl rollout restart %s -n %s", w, namespace)
	case "CronJob":
		return fmt.Sprintf("none needed: the next run of %s is created through the webhook (to run now: kubectl create job --from=%s %s-audit -n %s)",
			w, w, shorten(w.Name, 50), namespace)
	case "Pod":
		return fmt.Sprintf("kubectl get pod %s -n %s -o yaml | kubectl replace --force -f -", w.Name, namespace)
	case "Job":
		return fmt.Sprintf("kubectl delete pod -n %s %s (the Job re-creates them; each counts as a failure against its backoffLimit)", namespace, strings.Join(pods, " "))
	}
	// A bare ReplicaSet, or an operator's kind: deleting the pods lets the controller re-create them.
	return fmt.Sprintf("kubectl delete pod -n %s %s (%s re-creates them)", namespace, strings.Join(pods, " "), w)
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
