package engine

import (
	"encoding/json"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// wireOp is jsonpatch.Operation without its methods (a conversion, not a copy of the type):
// every value here is non-nil, so "value" is always written, as RFC 6902 requires for add
// and replace.
type wireOp struct {
	Operation string `json:"op"`
	Path      string `json:"path"`
	Value     any    `json:"value"`
}

// EscapePointer escapes a JSON pointer token (RFC 6901): "~" then "/".
func EscapePointer(s string) string {
	if strings.IndexByte(s, '~') < 0 && strings.IndexByte(s, '/') < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// SplitPointer splits a JSON pointer (RFC 6901) into its unescaped tokens: "/a~1b/c" is
// ["a/b", "c"]. The root pointer "" has none.
func SplitPointer(p string) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range toks {
		if strings.IndexByte(t, '~') >= 0 {
			toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		}
	}
	return toks
}

var statusPointer = "/metadata/annotations/" + EscapePointer(annotations.AnnotationStatus)

// BuildPatch turns a decision into the JSON patch that makes exactly its changes: the preStop
// of each target container, the timing of their readinessProbes, terminationGracePeriodSeconds,
// the status annotation, the handoff gate and the drain's readiness gate. Nothing else of the pod is touched, unlike a
// diff of a decoded and re-encoded pod, which also "adds" defaulted empty fields
// (resources: {}, status: {}). TestPatchEquivalence checks the
// result against admission.PatchResponseFromRaw on a corpus of pods.
func BuildPatch(d *Decision) ([]byte, error) {
	// jsonpatch.Operation is the type controller-runtime's admission responses use; Value is
	// any, so the hook is encoded with the corev1 JSON tags the API server decodes it with
	// (no value here is a nil interface, so its omitempty never drops one).
	ops := make([]jsonpatch.Operation, 0, len(d.Containers)+2*len(d.Probes)+2)
	for _, c := range d.Containers {
		base := "/spec/containers/" + strconv.Itoa(c.Index) + "/lifecycle"
		if !c.HadLifecycle {
			ops = append(ops, jsonpatch.NewOperation("add", base, corev1.Lifecycle{PreStop: c.PreStop}))
			continue
		}
		op := "add"
		if c.HadPreStop {
			op = "replace"
		}
		ops = append(ops, jsonpatch.NewOperation(op, base+"/preStop", c.PreStop))
	}
	for i := range d.Probes {
		c := &d.Probes[i]
		base := "/spec/containers/" + strconv.Itoa(c.Index) + "/readinessProbe"
		if c.SetsInitialDelay() {
			// Always present here (it is above 0), so replaced, like a present preStop.
			ops = append(ops, jsonpatch.NewOperation("replace", base+"/initialDelaySeconds", int32(0)))
		}
		if c.SetsPeriod() {
			op := "add"
			if c.PeriodSet {
				op = "replace"
			}
			ops = append(ops, jsonpatch.NewOperation(op, base+"/periodSeconds", c.NewPeriod))
		}
	}
	if d.SetsGrace() {
		op := "add"
		if d.GraceSet {
			op = "replace"
		}
		ops = append(ops, jsonpatch.NewOperation(op, "/spec/terminationGracePeriodSeconds", d.NewGrace))
	}
	if d.SetStatus {
		if d.HadAnnotations {
			ops = append(ops, jsonpatch.NewOperation("add", statusPointer, d.Status))
		} else {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", map[string]string{annotations.AnnotationStatus: d.Status}))
		}
	}
	if d.Gate {
		ops = appendItem(ops, "/spec/schedulingGates", d.HadSchedulingGates, corev1.PodSchedulingGate{Name: annotations.SchedulingGateHandoff})
	}
	if d.ReadinessGate {
		ops = appendItem(ops, "/spec/readinessGates", d.HadReadinessGates, corev1.PodReadinessGate{ConditionType: annotations.ConditionAcceptingPushes})
	}
	if len(ops) == 0 {
		return nil, nil
	}
	// Encoded through wireOp: Operation's own MarshalJSON (pointer receiver) re-marshals
	// every operation through a second anonymous struct, six allocations per pod for the
	// same bytes.
	wire := make([]wireOp, len(ops))
	for i := range ops {
		wire[i] = wireOp(ops[i])
	}
	return json.Marshal(wire)
}

// appendItem adds one item to the list at path: appended when the list exists (had), else the
// list created with it (a JSON patch cannot append to an absent array).
func appendItem[T any](ops []jsonpatch.Operation, path string, had bool, item T) []jsonpatch.Operation {
	if had {
		return append(ops, jsonpatch.NewOperation("add", path+"/-", item))
	}
	return append(ops, jsonpatch.NewOperation("add", path, []T{item}))
}
