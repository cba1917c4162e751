package preview

import (
	"encoding/json"
	"fmt"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// patchOp is one operation of the patches engine.BuildPatch writes, ready for a document
// editor: the parent's path, the key to write under it and the value. Both editors (JSON
// documents in their bytes, YAML documents as nodes) apply the same parsed operations, so
// the patch is read, checked and its pointers unescaped in one place.
type patchOp struct {
	path   string // as written, for errors
	parent []string
	key    string
	value  any
	raw    json.RawMessage // value as the patch wrote it: a key for what an editor derives from it
}

// parsePatch reads an RFC 6902 patch of add and replace operations: the only ones the
// engine writes; anything else is refused rather than half applied.
func parsePatch(patch []byte) ([]patchOp, error) {
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, err
	}
	out := make([]patchOp, 0, len(ops))
	for _, op := range ops {
		if op.Op != "add" && op.Op != "replace" {
			return nil, fmt.Errorf("unsupported patch operation %q", op.Op)
		}
		var v any
		if err := json.Unmarshal(op.Value, &v); err != nil {
			return nil, err
		}
		toks := engine.SplitPointer(op.Path)
		if len(toks) == 0 {
			return nil, fmt.Errorf("%q: a patch of the whole document is not one the engine writes", op.Path)
		}
		out = append(out, patchOp{path: op.Path, parent: toks[:len(toks)-1], key: toks[len(toks)-1], value: v, raw: op.Value})
	}
	return out, nil
}

// applyPatch applies patch with set, the document editor's one write.
func applyPatch(patch []byte, set func(op *patchOp) error) error {
	ops, err := parsePatch(patch)
	if err != nil {
		return err
	}
	for i := range ops {
		op := &ops[i]
		if err := set(op); err != nil {
			return fmt.Errorf("%s: %w", op.path, err)
		}
	}
	return nil
}
