package engine

import (
	"sort"
	"strings"
)

// WorkloadKind is what the product knows about one kind of object that carries a pod: where the
// pod sits and which of the product's rules apply to it. Workloads is the one table of them;
// the workload validator, mutate, audit, the admission-policy generator and the data-risk and
// handoff rules read it, so adding a kind is one row here plus regenerated goldens.
type WorkloadKind struct {
	// Kind is the object's kind, as in its manifest.
	Kind string
	// Group is the API group ("" for core); Resource the plural name the API serves it under.
	Group, Resource string
	// Template is the JSON pointer (RFC 6901) to the pod: "" for a Pod itself.
	Template string
	// Custom kinds are matched by group and kind: their names are common (kruise-rollouts'
	// Rollout, for one, carries no pod at all). Built-in kinds are matched by kind alone,
	// whatever their API version, since extensions/v1beta1 Deployments still render from old
	// charts, and OpenKruise's Advanced StatefulSet and DaemonSet are kinds StatefulSet and
	// DaemonSet with a spec.template.
	Custom bool
	// Validated kinds get their pod template checked at apply time (the workload validator
	// and the admission-policy mode's workload policy); the chart registers the same list.
	Validated bool
	// Replicated kinds run replicas, whose rollouts start a pod beside its predecessor.
	Replicated bool
	// Serving kinds run a Pushgateway for good; a Job's or CronJob's pod is a batch run whose
	// store ends with it.
	Serving bool
	// Serial owners start one pod at a time already (a StatefulSet waits for the old ordinal
	// to be gone) or are bound to their node (a DaemonSet's pod replaces its own predecessor
	// there): their pods need no handoff gate.
	Serial bool
}

// Workloads is every kind the product knows, in the order admission rules list them.
var Workloads = []WorkloadKind{
	{Kind: "Pod", Resource: "pods"},
	{Kind: "PodTemplate", Resource: "podtemplates", Template: "/template"},
	{Kind: "ReplicationController", Resource: "replicationcontrollers", Template: "/spec/template", Replicated: true, Serving: true},
	{Kind: "Deployment", Group: "apps", Resource: "deployments", Template: "/spec/template", Validated: true, Replicated: true, Serving: true},
	{Kind: "StatefulSet", Group: "apps", Resource: "statefulsets", Template: "/spec/template", Validated: true, Replicated: true, Serving: true, Serial: true},
	{Kind: "DaemonSet", Group: "apps", Resource: "daemonsets", Template: "/spec/template", Validated: true, Serving: true, Serial: true},
	{Kind: "ReplicaSet", Group: "apps", Resource: "replicasets", Template: "/spec/template", Validated: true, Replicated: true, Serving: true},
	{Kind: "Job", Group: "batch", Resource: "jobs", Template: "/spec/template", Validated: true},
	{Kind: "CronJob", Group: "batch", Resource: "cronjobs", Template: "/spec/jobTemplate/spec/template", Validated: true},
	{Kind: "Rollout", Group: "argoproj.io", Resource: "rollouts", Template: "/spec/template", Custom: true},
	{Kind: "CloneSet", Group: "apps.kruise.io", Resource: "clonesets", Template: "/spec/template", Custom: true},
}

// builtin and custom index Workloads by kind and by group/kind.
var builtin, custom = func() (map[string]*WorkloadKind, map[string]*WorkloadKind) {
	b, c := map[string]*WorkloadKind{}, map[string]*WorkloadKind{}
	for i := range Workloads {
		w := &Workloads[i]
		if w.Custom {
			c[w.Group+"/"+w.Kind] = w
		} else {
			b[w.Kind] = w
		}
	}
	return b, c
}()

// LookupWorkload returns the row of an object of this apiVersion and kind, and false for a
// kind the product does not know. A custom group's other kinds fall back to the built-in
// names (OpenKruise's Advanced StatefulSet is apps.kruise.io StatefulSet).
func LookupWorkload(apiVersion, kind string) (WorkloadKind, bool) {
	if group, _, found := strings.Cut(apiVersion, "/"); found {
		if w, ok := custom[group+"/"+kind]; ok {
			return *w, true
		}
	}
	if w, ok := builtin[kind]; ok {
		return *w, true
	}
	return WorkloadKind{}, false
}

// WorkloadOf returns the built-in row of a kind, as an ownerReference or an admission request
// names it (the kinds the validator and the rules judge are all built-in).
func WorkloadOf(kind string) (WorkloadKind, bool) {
	w, ok := builtin[kind]
	if !ok {
		return WorkloadKind{}, false
	}
	return *w, true
}

// Name is the kind as mutate's help and the docs list it: built-in kinds by name, custom ones
// as group/kind.
func (w WorkloadKind) Name() string {
	if w.Custom {
		return w.Group + "/" + w.Kind
	}
	return w.Kind
}

// GroupResource is "deployments.apps" (or "pods" for core), as RBAC errors name it.
func (w WorkloadKind) GroupResource() string {
	if w.Group == "" {
		return w.Resource
	}
	return w.Resource + "." + w.Group
}

// CELPath is the pod template's path below root in CEL ("object.spec.template").
func (w WorkloadKind) CELPath(root string) string {
	return root + strings.ReplaceAll(w.Template, "/", ".")
}

// WorkloadNames lists every kind by Name, sorted.
func WorkloadNames() []string {
	out := make([]string, 0, len(Workloads))
	for _, w := range Workloads {
		out = append(out, w.Name())
	}
	sort.Strings(out)
	return out
}

// ValidatedWorkloads are the rows with Validated, in table order.
func ValidatedWorkloads() []WorkloadKind {
	var out []WorkloadKind
	for _, w := range Workloads {
		if w.Validated {
			out = append(out, w)
		}
	}
	return out
}

// ValidatedTemplateCEL is a CEL expression for the pod template of any validated kind below
// root: a conditional for each kind that keeps it elsewhere than most do.
func ValidatedTemplateCEL(root string) string {
	ws := ValidatedWorkloads()
	count := map[string]int{}
	common := ""
	for _, w := range ws {
		count[w.Template]++
		if count[w.Template] > count[common] {
			common = w.Template
		}
	}
	var b strings.Builder
	for _, w := range ws {
		if w.Template != common {
			b.WriteString(root + ".kind == '" + w.Kind + "' ? " + w.CELPath(root) + " : ")
		}
	}
	b.WriteString(WorkloadKind{Template: common}.CELPath(root))
	return b.String()
}

// isWorkload reports whether kind is a built-in row for which has holds.
func isWorkload(kind string, has func(WorkloadKind) bool) bool {
	w, ok := builtin[kind]
	return ok && has(*w)
}

// GroupResources are the resources of one API group.
type GroupResources struct {
	Group     string
	Resources []string
}

// ValidatedGroups are the validated kinds' resources, one entry per API group in table order:
// what the workload validator's webhook and policy registrations list.
func ValidatedGroups() []GroupResources {
	var out []GroupResources
	at := map[string]int{}
	for _, w := range ValidatedWorkloads() {
		i, ok := at[w.Group]
		if !ok {
			i = len(out)
			at[w.Group] = i
			out = append(out, GroupResources{Group: w.Group})
		}
		out[i].Resources = append(out[i].Resources, w.Resource)
	}
	return out
}
