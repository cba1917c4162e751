package webhook

import (
	"encoding/json"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// patchOp is one RFC 6902 operation. Value is any so the hook is encoded with the same
// corev1 JSON tags the API server decodes it with.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// escapePointer escapes a JSON pointer token (RFC 6901): "~" then "/".
func escapePointer(s string) string {
	if strings.IndexByte(s, '~') < 0 && strings.IndexByte(s, '/') < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

var statusPointer = "/metadata/annotations/" + escapePointer(annotations.AnnotationStatus)

// BuildPatch turns a decision into the JSON patch that makes exactly its changes: the preStop
// of each target container, terminationGracePeriodSeconds and the status annotation. Nothing
// else of the pod is touched, unlike a diff of a decoded and re-encoded pod, which also
// "adds" defaulted empty fields (resources: {}, status: {}). TestPatchEquivalence checks the
// result against admission.PatchResponseFromRaw on a corpus of pods.
func BuildPatch(d *engine.Decision) ([]byte, error) {
	ops := make([]patchOp, 0, len(d.Containers)+2)
	for _, c := range d.Containers {
		base := "/spec/containers/" + strconv.Itoa(c.Index) + "/lifecycle"
		if !c.HadLifecycle {
			ops = append(ops, patchOp{Op: "add", Path: base, Value: corev1.Lifecycle{PreStop: c.PreStop}})
			continue
		}
		op := "add"
		if c.HadPreStop {
			op = "replace"
		}
		ops = append(ops, patchOp{Op: op, Path: base + "/preStop", Value: c.PreStop})
	}
	if d.SetsGrace() {
		op := "add"
		if d.GraceSet {
			op = "replace"
		}
		ops = append(ops, patchOp{Op: op, Path: "/spec/terminationGracePeriodSeconds", Value: d.NewGrace})
	}
	if d.SetStatus {
		if d.HadAnnotations {
			ops = append(ops, patchOp{Op: "add", Path: statusPointer, Value: d.Status})
		} else {
			ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{annotations.AnnotationStatus: d.Status}})
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}
