package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// DefaultPageSize is the limit of every list call: large enough that 10,000 pods take 20
// round trips, small enough that one page of pods stays a few MiB.
const DefaultPageSize = 500

// Options say what to audit and against what.
type Options struct {
	// Namespace is the one namespace to audit; ignored with AllNamespaces.
	Namespace     string
	AllNamespaces bool
	Policy        *policy.Policy
	// NamespaceScope is which namespaces the webhook is called for.
	NamespaceScope
	// PageSize is the list limit (DefaultPageSize when 0); Workers bound the concurrent owner
	// and template reads (8 when 0).
	PageSize int64
	Workers  int
}

// FatalError is an error after which nothing could be read (the API server is unreachable,
// the namespace does not exist): there is no report to print.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// NamespaceScope says which namespaces the webhook is called for, as the chart configures
// it; `audit` and the controller's drift watch both judge a pod's namespace by it.
type NamespaceScope struct {
	// ClusterScope: the webhook is called for every namespace but Excluded (the chart's
	// webhook.scope=cluster); otherwise for the namespaces NamespaceSelector matches, minus Excluded.
	ClusterScope      bool
	NamespaceSelector labels.Selector
	Excluded          []string
}

// OptedIn reports whether the webhook is called for pods of the namespace with these labels.
func (s NamespaceScope) OptedIn(name string, nsLabels map[string]string) bool {
	if slices.Contains(s.Excluded, name) {
		return false
	}
	return s.ClusterScope || (s.NamespaceSelector != nil && s.NamespaceSelector.Matches(labels.Set(nsLabels)))
}

// ParseNamespaceSelector reads a namespace selector: a LabelSelector as JSON (what the chart
// passes the drift watch: the mutating webhook's own namespaceSelector, exclusions included)
// or a label selector string.
func ParseNamespaceSelector(s string) (labels.Selector, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		var ls metav1.LabelSelector
		if err := json.Unmarshal([]byte(s), &ls); err != nil {
			return nil, fmt.Errorf("not a LabelSelector in JSON: %w", err)
		}
		return metav1.LabelSelectorAsSelector(&ls)
	}
	return labels.Parse(s)
}

// DeploymentOf names the Deployment that owns a ReplicaSet, which the Deployment controller
// names <deployment>-<pod-template-hash>; ok is false for a ReplicaSet named otherwise.
func DeploymentOf(replicaSet, podTemplateHash string) (string, bool) {
	if podTemplateHash == "" || !strings.HasSuffix(replicaSet, "-"+podTemplateHash) {
		return "", false
	}
	return strings.TrimSuffix(replicaSet, "-"+podTemplateHash), true
}

// auditor holds one run's state.
type auditor struct {
	c   kubernetes.Interface
	o   Options
	b   *Builder
	mu  sync.Mutex
	ns  map[string]*bool // nil map: namespaces unknown
	pod []podOwner
	// listed holds the workloads read by cluster-wide lists (with -A), so that they need no
	// request each; read-only once resolveOwners starts its workers.
	listed map[okey]listedWorkload
}

// listedWorkload is what is kept of a listed workload: its selector and its template's state.
type listedWorkload struct {
	selector labels.Selector
	verdict  TemplateVerdict
}

type podOwner struct {
	idx   int // into b.pods
	owner *metav1.OwnerReference
	hash  string // pod-template-hash label: <deployment>-<hash> names the ReplicaSet
	// labels of the pod, to check that an inferred Deployment selects it
	labels map[string]string
}

// Run reads the cluster and builds the report. It returns a *FatalError when nothing could be
// read; missing permissions are recorded in Report.Errors and the rest is still reported.
func Run(ctx context.Context, c kubernetes.Interface, o Options, scope Scope) (*Report, error) {
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	a := &auditor{c: c, o: o, b: NewBuilder()}
	if err := a.readNamespaces(ctx); err != nil {
		return nil, err
	}
	if err := a.readPods(ctx); err != nil {
		return nil, err
	}
	if err := a.resolveOwners(ctx); err != nil {
		return nil, err
	}
	return a.b.Report(scope), nil
}

// fatal reports whether err means the API server could not be talked to at all (as opposed
// to an answer, such as a denial).
func fatal(err error) bool {
	var st apierrors.APIStatus
	return err != nil && !errors.As(err, &st)
}

func (a *auditor) record(err error, verb, resource, namespace string) error {
	if fatal(err) {
		return &FatalError{fmt.Errorf("cannot reach the API server: %w", err)}
	}
	where := "cluster-wide"
	if namespace != "" {
		where = "in namespace " + namespace
	}
	e := Error{Namespace: namespace, Message: fmt.Sprintf("%s %s %s: %v", verb, resource, where, err)}
	if apierrors.IsForbidden(err) {
		e.Verb, e.Resource = verb, resource
		e.Message = fmt.Sprintf("missing permission: %s %s %s (%v)", verb, resource, where, err)
	}
	a.mu.Lock()
	a.b.AddError(e)
	a.mu.Unlock()
	return nil
}

func (a *auditor) readNamespaces(ctx context.Context) error {
	if !a.o.AllNamespaces {
		ns, err := a.c.CoreV1().Namespaces().Get(ctx, a.o.Namespace, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return &FatalError{fmt.Errorf("namespace %q not found", a.o.Namespace)}
		case err != nil:
			// Forbidden and the like: audit the pods anyway, without the opt-in check.
			return a.record(err, "get", "namespaces", "")
		}
		in := a.o.OptedIn(ns.Name, ns.Labels)
		a.ns = map[string]*bool{ns.Name: &in}
		return nil
	}
	m := map[string]*bool{}
	opts := metav1.ListOptions{Limit: a.o.PageSize}
	for {
		list, err := a.c.CoreV1().Namespaces().List(ctx, opts)
		if err != nil {
			return a.record(err, "list", "namespaces", "")
		}
		for i := range list.Items {
			in := a.o.OptedIn(list.Items[i].Name, list.Items[i].Labels)
			m[list.Items[i].Name] = &in
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	a.ns = m
	return nil
}

// selectors are the server-side label selectors that together return every selected pod: the
// policy's selector, and the explicit opt-in label (an OR no single selector can express).
func (a *auditor) selectors() []string {
	sel, err := metav1.LabelSelectorAsSelector(a.o.Policy.Selector)
	if err != nil || sel.Empty() {
		return []string{""}
	}
	return []string{sel.String(), annotations.LabelInject + "=true"}
}

func (a *auditor) readPods(ctx context.Context) error {
	namespace := a.o.Namespace
	if a.o.AllNamespaces {
		namespace = ""
	}
	forbidden, err := a.listPods(ctx, namespace)
	if err != nil || !forbidden || namespace != "" || a.ns == nil {
		return err
	}
	// No cluster-wide list: read the namespaces one by one, as RoleBindings per namespace allow.
	for ns := range a.ns {
		if _, err := a.listPods(ctx, ns); err != nil {
			return err
		}
	}
	return nil
}

// listPods lists the selected pods of one namespace ("" for all) page by page and classifies
// them; only the verdicts are kept. It reports whether the list was forbidden.
func (a *auditor) listPods(ctx context.Context, namespace string) (bool, error) {
	sels := a.selectors()
	for i, sel := range sels {
		opts := metav1.ListOptions{LabelSelector: sel, Limit: a.o.PageSize}
		for {
			list, err := a.c.CoreV1().Pods(namespace).List(ctx, opts)
			if err != nil {
				if namespace == "" && a.ns != nil && apierrors.IsForbidden(err) && i == 0 && opts.Continue == "" {
					// Not an error yet: readPods goes on namespace by namespace.
					return true, nil
				}
				return apierrors.IsForbidden(err), a.record(err, "list", "pods", namespace)
			}
			for j := range list.Items {
				p := &list.Items[j]
				if i > 0 && a.o.Policy.Matches(p.Labels) {
					continue // already returned by the policy's selector
				}
				a.addPod(p)
			}
			if opts.Continue = list.Continue; opts.Continue == "" {
				break
			}
		}
	}
	return false, nil
}

func (a *auditor) addPod(p *corev1.Pod) {
	if !Selected(p, a.o.Policy) || Finished(p) {
		return
	}
	var in *bool
	if a.ns != nil {
		in = a.ns[p.Namespace]
	}
	v := Classify(p, in, a.o.Policy)
	entry := Pod{Namespace: p.Namespace, Name: p.Name, State: v.State, Reason: v.Reason,
		Status: p.Annotations[annotations.AnnotationStatus], Workload: Ref{"Pod", p.Name}}
	for _, k := range engine.VolumeKeys(p) {
		entry.SharedVolumes = append(entry.SharedVolumes, engine.DescribeVolumeKey(k))
	}
	po := podOwner{idx: len(a.b.pods), hash: p.Labels["pod-template-hash"], labels: p.Labels}
	if ref := metav1.GetControllerOf(p); ref != nil {
		r := *ref
		po.owner = &r
		entry.Owner = &Ref{ref.Kind, ref.Name}
		entry.Workload = *entry.Owner
	}
	a.b.AddPod(entry)
	a.pod = append(a.pod, po)
}

type okey struct{ ns, kind, name string }

// resolveOwners walks each distinct controller up one level (ReplicaSet -> Deployment, Job ->
// CronJob), reads the top workload's template, and sets every pod's workload.
func (a *auditor) resolveOwners(ctx context.Context) error {
	owners := map[okey]*podOwner{}
	for i := range a.pod {
		po := &a.pod[i]
		if po.owner != nil {
			owners[okey{a.b.pods[po.idx].Namespace, po.owner.Kind, po.owner.Name}] = po
		}
	}
	if a.o.AllNamespaces {
		if err := a.listWorkloads(ctx, owners); err != nil {
			return err
		}
	}
	top := make(map[okey]Ref, len(owners))
	tops := map[okey]bool{} // value: the template is read already
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.o.Workers)
	for k, po := range owners {
		g.Go(func() error {
			r, haveTemplate, err := a.topOwner(gctx, k, po)
			a.mu.Lock()
			top[k] = r
			tk := okey{k.ns, r.Kind, r.Name}
			tops[tk] = tops[tk] || haveTemplate
			a.mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(a.o.Workers)
	for k, done := range tops {
		if !done {
			g.Go(func() error { return a.readTemplate(gctx, k) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, po := range a.pod {
		if po.owner != nil {
			p := &a.b.pods[po.idx]
			p.Workload = top[okey{p.Namespace, po.owner.Kind, po.owner.Name}]
		}
	}
	return nil
}

// topOwner returns the workload a controller belongs to, and whether it also read (and
// recorded) that workload's template.
func (a *auditor) topOwner(ctx context.Context, k okey, po *podOwner) (Ref, bool, error) {
	self := Ref{k.kind, k.name}
	switch k.kind {
	case "ReplicaSet":
		// The Deployment controller names its ReplicaSets <deployment>-<pod-template-hash>:
		// read that Deployment first, which the template needs anyway, and accept it when its
		// selector selects the pod. One request per workload instead of two.
		inferred, ok := DeploymentOf(k.name, po.hash)
		if ok {
			if w, ok := a.listed[okey{k.ns, "Deployment", inferred}]; ok && !w.selector.Empty() && w.selector.Matches(labels.Set(po.labels)) {
				a.mu.Lock()
				a.b.SetTemplate(k.ns, Ref{"Deployment", inferred}, w.verdict)
				a.mu.Unlock()
				return Ref{"Deployment", inferred}, true, nil
			}
			d, err := a.c.AppsV1().Deployments(k.ns).Get(ctx, inferred, metav1.GetOptions{})
			if fatal(err) {
				return self, false, a.record(err, "get", resourceOf("Deployment"), k.ns)
			}
			if err == nil && d.Spec.Selector != nil {
				if sel, serr := metav1.LabelSelectorAsSelector(d.Spec.Selector); serr == nil && !sel.Empty() && sel.Matches(labels.Set(po.labels)) {
					a.setTemplate(k.ns, Ref{"Deployment", d.Name}, d)
					return Ref{"Deployment", d.Name}, true, nil
				}
			}
		}
		rs, err := a.c.AppsV1().ReplicaSets(k.ns).Get(ctx, k.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return self, false, nil // deleted meanwhile: the pod is an orphan being collected
		}
		if err != nil {
			if inferred != "" {
				self = Ref{"Deployment", inferred}
			}
			return self, false, a.record(err, "get", resourceOf("ReplicaSet"), k.ns)
		}
		if ref := metav1.GetControllerOf(rs); ref != nil {
			return Ref{ref.Kind, ref.Name}, false, nil
		}
		a.setTemplate(k.ns, self, rs)
		return self, true, nil
	case "Job":
		job, err := a.c.BatchV1().Jobs(k.ns).Get(ctx, k.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return self, false, nil
		}
		if err != nil {
			return self, false, a.record(err, "get", resourceOf("Job"), k.ns)
		}
		if ref := metav1.GetControllerOf(job); ref != nil {
			return Ref{ref.Kind, ref.Name}, false, nil
		}
		a.setTemplate(k.ns, self, job)
		return self, true, nil
	}
	return self, false, nil
}

func (a *auditor) setTemplate(namespace string, w Ref, obj runtime.Object) {
	v := ClassifyWorkload(obj, namespace, a.o.Policy)
	a.mu.Lock()
	a.b.SetTemplate(namespace, w, v)
	a.mu.Unlock()
}

// listWorkloads lists, cluster-wide and paged, the workload kinds the pods point at, when
// there are many of them: a few list requests instead of one get per workload. A denied list
// is not an error: the gets follow, and report what they cannot read.
func (a *auditor) listWorkloads(ctx context.Context, owners map[okey]*podOwner) error {
	count := map[string]int{}
	for k, po := range owners {
		switch {
		case k.kind == "ReplicaSet" && po.hash != "":
			count["Deployment"]++
		case workloadAPIs[k.kind].list != nil:
			count[k.kind]++
		}
	}
	a.listed = map[okey]listedWorkload{}
	for kind, n := range count {
		if n < listThreshold {
			continue
		}
		api := workloadAPIs[kind]
		opts := metav1.ListOptions{Limit: a.o.PageSize}
		for {
			items, cont, err := api.list(ctx, a.c, opts)
			for _, it := range items {
				sel, serr := metav1.LabelSelectorAsSelector(it.selector)
				if serr != nil {
					sel = labels.Nothing()
				}
				a.listed[okey{it.meta.Namespace, kind, it.meta.Name}] = listedWorkload{sel, ClassifyWorkload(it.obj, it.meta.Namespace, a.o.Policy)}
			}
			if fatal(err) {
				return a.record(err, "list", kind, "")
			}
			if err != nil || cont == "" {
				break
			}
			opts.Continue = cont
		}
	}
	return nil
}

// listThreshold is the number of workloads of one kind from which a cluster-wide list is
// cheaper than a get each (a list page holds 500).
const listThreshold = 20

func (a *auditor) readTemplate(ctx context.Context, k okey) error {
	if w, ok := a.listed[k]; ok {
		a.mu.Lock()
		a.b.SetTemplate(k.ns, Ref{k.kind, k.name}, w.verdict)
		a.mu.Unlock()
		return nil
	}
	api, ok := workloadAPIs[k.kind]
	if !ok {
		return nil // an operator's kind: its template is not a pod template we know
	}
	obj, err := api.get(ctx, a.c, k.ns, k.name)
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile: no template to judge
	}
	if err != nil {
		return a.record(err, "get", resourceOf(k.kind), k.ns)
	}
	a.setTemplate(k.ns, Ref{k.kind, k.name}, obj)
	return nil
}

// resourceOf names a kind's resource as RBAC and API errors do ("deployments.apps").
func resourceOf(kind string) string {
	w, _ := engine.WorkloadOf(kind)
	return w.GroupResource()
}
