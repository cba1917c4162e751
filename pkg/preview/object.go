package preview

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// HandledKinds lists the kinds mutate places, for documentation and the command's help:
// built-in kinds by name, custom kinds as group/kind (engine.Workloads).
func HandledKinds() []string { return engine.WorkloadNames() }

// podTemplateCandidates are where objects of kinds mutate does not know commonly keep a pod
// template (Argo Rollout-like workloads, CronJob-like ones, a bare template); finding one
// there is what earns such an object a notice instead of silence.
var podTemplateCandidates = [][]string{
	{"spec", "template"},
	{"spec", "jobTemplate", "spec", "template"},
	{"template"},
}

// isListKind reports whether kind is kubectl's "List" or an API list kind ("DeploymentList").
// The object must also carry an items sequence to be read as a list: a custom kind that only
// ends in "List" is otherwise an ordinary object.
func isListKind(kind string) bool { return strings.HasSuffix(kind, "List") }

// shape is what is found at a path of an object.
type shape int

const (
	shapeAbsent shape = iota
	shapeMap
	shapeSeq
	shapeOther // a scalar, null included
)

// object is one Kubernetes object of the stream, read from a YAML tree or from JSON bytes.
// The mutation logic below is written once against it, so a List item, a JSON document and
// a YAML document are placed, decided and patched alike.
type object interface {
	// str is the string at path, "" when absent or not a string.
	str(path ...string) string
	shape(path ...string) shape
	// json is the JSON encoding of the value at path (which exists).
	json(path ...string) ([]byte, error)
	// apply applies add and replace operations, paths relative to the object.
	apply(patch []byte) error
	// eachItem calls fn for every mapping in the object's items sequence, with its index.
	eachItem(fn func(i int, item object) error) error
}

// mutateObject places, decides and patches one object; for a List it does so for each item.
// A denial is returned as an error wrapping ErrDenied (every item of a List is still
// processed); an *InputError stops at once.
//
// typeOf is the apiVersion and kind for an object that carries none: the items of an API
// list (a DeploymentList as the API server returns it) do not repeat their kind.
func mutateObject(o object, pol *policy.Policy, typeOf [2]string) (Result, error) {
	var res Result
	apiVersion, kind := o.str("apiVersion"), o.str("kind")
	if kind == "" {
		apiVersion, kind = typeOf[0], typeOf[1]
	}
	res.Kind = kind
	res.Name = o.str("metadata", "name")
	label := Notice{Kind: res.Kind, Name: res.Name}.object()
	if isListKind(res.Kind) && o.shape("items") == shapeSeq {
		var itemType [2]string
		if res.Kind != "List" {
			itemType = [2]string{apiVersion, strings.TrimSuffix(res.Kind, "List")}
		}
		var denials []error
		err := o.eachItem(func(i int, item object) error {
			r, err := mutateObject(item, pol, itemType)
			res.Items = append(res.Items, r)
			res.Notices = append(res.Notices, r.Notices...)
			if r.Mutated {
				res.Mutated = true
			}
			var ie *InputError
			switch {
			case err == nil:
			case errors.As(err, &ie):
				return &InputError{fmt.Errorf("%s items[%d]: %w", label, i, ie.Err)}
			case errors.Is(err, ErrDenied):
				denials = append(denials, err)
			default:
				return err
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		return res, errors.Join(denials...)
	}
	w, known := engine.LookupWorkload(apiVersion, res.Kind)
	ptr := w.Template
	if !known {
		for _, p := range podTemplateCandidates {
			if o.shape(p...) == shapeMap && o.shape(append(p, "spec", "containers")...) == shapeSeq {
				res.Notices = append(res.Notices, Notice{Kind: res.Kind, Name: res.Name,
					Reason: "pod template at " + strings.Join(p, ".") + " not mutated: mutate does not know this kind (the webhook still mutates the pods created from it)"})
				break
			}
		}
		return res, nil
	}
	var tplPath []string
	if ptr != "" {
		tplPath = engine.SplitPointer(ptr)
	}
	if ptr != "" && o.shape(tplPath...) != shapeMap {
		// No pod template: a partial manifest (a kustomize patch), or an Argo Rollout that
		// takes its pods from a Deployment (spec.workloadRef), which is mutated in its own right.
		if o.shape("spec", "workloadRef") != shapeMap {
			res.Notices = append(res.Notices, Notice{Kind: res.Kind, Name: res.Name,
				Reason: "no pod template at " + strings.ReplaceAll(ptr[1:], "/", ".") + ": not mutated"})
		}
		return res, nil
	}
	tplJSON, err := o.json(tplPath...)
	if err != nil {
		return res, &InputError{fmt.Errorf("%s: the pod template is not representable as JSON: %w", label, err)}
	}
	pod, err := engine.DecodePod(tplJSON)
	if err != nil {
		return res, &InputError{fmt.Errorf("%s: the pod template does not decode: %w", label, err)}
	}
	namespace := o.str("metadata", "namespace")
	d := engine.Decide(pod, namespace, pol)
	res.Decision = d
	res.Risks = risksOf(o, res.Kind, tplJSON, &d)
	if d.Outcome == engine.OutcomeDenied {
		return res, fmt.Errorf("%s %s: %w: %s", res.Kind, res.Name, ErrDenied, d.DenyMessage())
	}
	if !d.Changed() {
		return res, nil
	}
	if o.shape(append(tplPath, "metadata")...) != shapeMap {
		// A template without metadata gets an empty one for the annotation patch to land in.
		pre := []byte(`[{"op":"add","path":"` + ptr + `/metadata","value":{}}]`)
		if err := o.apply(pre); err != nil {
			return res, &InputError{fmt.Errorf("%s: %w", label, err)}
		}
		res.Patches = append(res.Patches, pre)
	}
	patch, err := engine.BuildPatch(&d)
	if err != nil {
		return res, err
	}
	patch, err = prefixPatch(patch, ptr)
	if err != nil {
		return res, err
	}
	if err := o.apply(patch); err != nil {
		// The document is not shaped as its decoding suggested: a null container ("- " with
		// nothing after it) decodes as an empty one but has nowhere to put a hook. The API
		// server would refuse such a pod; so does mutate, as bad input.
		return res, &InputError{fmt.Errorf("%s: the webhook's patch does not apply: %w", label, err)}
	}
	res.Patches = append(res.Patches, patch)
	res.Mutated = true
	return res, nil
}

// Notice is a document mutate read but could not place: it is written unchanged, and the
// command says so on standard error (and fails with --strict).
type Notice struct {
	// Document is the 1-based position of the document in the stream.
	Document   int
	Kind, Name string
	Reason     string
}

func (n Notice) String() string {
	return "document " + strconv.Itoa(n.Document) + ": " + n.object() + ": " + n.Reason
}

// object names the object as kubectl does, Kind/name.
func (n Notice) object() string {
	kind, name := n.Kind, n.Name
	if kind == "" {
		kind = "(no kind)"
	}
	if name == "" {
		return kind + " (no name)"
	}
	return kind + "/" + name
}
