package preview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	yaml "go.yaml.in/yaml/v3"
)

// applyToNode applies the add/replace operations that engine.BuildPatch produces to a YAML
// document tree instead of to JSON, so the document keeps its key order, quoting and
// comments and `--diff` shows only the lines the webhook changes.
func applyToNode(doc *yaml.Node, patch []byte) error {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	return applyPatch(patch, func(op *patchOp) error {
		val, err := valueNode(op)
		if err != nil {
			return err
		}
		parent, err := walk(root, op.parent)
		if err != nil {
			return err
		}
		return set(parent, op.key, val)
	})
}

// valueNodes remembers the node yaml.Node.Encode made of a patch value, by the value's JSON:
// Encode writes the value as YAML text and parses it back, a tenth of mutate's time when every
// document gets the same hook, grace and probes. Bounded, since the values (the status
// annotation, the pod's own settings) could all differ on a long stream.
var valueNodes struct {
	sync.Map // string(raw JSON) -> *yaml.Node, never handed out: callers get a copy
	n        atomic.Int64
}

const maxValueNodes = 1024

// valueNode is a fresh copy of what yaml.Node.Encode makes of op.value (the document's later
// steps, spellFlowNulls and the encoder, may change it).
func valueNode(op *patchOp) (*yaml.Node, error) {
	if n, ok := valueNodes.Load(string(op.raw)); ok {
		return cloneNode(n.(*yaml.Node)), nil
	}
	var val yaml.Node
	if err := val.Encode(op.value); err != nil {
		return nil, err
	}
	if valueNodes.n.Load() < maxValueNodes {
		if _, loaded := valueNodes.LoadOrStore(string(op.raw), cloneNode(&val)); !loaded {
			valueNodes.n.Add(1)
		}
	}
	return &val, nil
}

// cloneNode copies a tree that Encode made (no aliases, no shared nodes).
func cloneNode(n *yaml.Node) *yaml.Node {
	c := *n
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = cloneNode(k)
		}
	}
	return &c
}

// walk follows unescaped pointer tokens (engine.SplitPointer) from n.
func walk(n *yaml.Node, toks []string) (*yaml.Node, error) {
	for _, t := range toks {
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == t {
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return nil, fmt.Errorf("no key %q", t)
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(n.Content) {
				return nil, fmt.Errorf("no index %q", t)
			}
			n = n.Content[i]
		default:
			return nil, fmt.Errorf("cannot descend into a scalar at %q", t)
		}
	}
	return n, nil
}

func set(parent *yaml.Node, key string, val *yaml.Node) error {
	if parent.Kind != yaml.MappingNode {
		return fmt.Errorf("parent is not a mapping")
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == key {
			parent.Content[i+1] = val
			return nil
		}
	}
	parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
	return nil
}

// encodeNode writes a document with two-space indentation, Helm's and kubectl's style, and
// block sequences indented under their key as the input has them: Helm charts indent them
// ("containers:\n  - name"), kubectl does not ("containers:\n- name"). Re-encoding kubectl's
// output in the other style would turn every sequence into a line of --diff.
func encodeNode(doc *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if compactSequences(doc) {
		enc.CompactSeqIndent()
	}
	spellFlowNulls(doc, false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// spellFlowNulls writes "null" into the empty null scalars of flow collections: the encoder
// writes an empty one there as an empty quoted string ({"spec"} would come back with "spec"
// a string), so the output would not read back as the input did. An empty null in block style ("spec:")
// is written as it was and left alone.
func spellFlowNulls(n *yaml.Node, inFlow bool) {
	if n.Kind == yaml.ScalarNode && inFlow && n.Tag == "!!null" && n.Value == "" {
		n.Value = "null"
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		inFlow = inFlow || n.Style&yaml.FlowStyle != 0
	}
	for _, c := range n.Content {
		spellFlowNulls(c, inFlow)
	}
}

// compactSequences reports whether the first block sequence that is the value of a mapping
// key starts in the key's own column (kubectl's style).
func compactSequences(n *yaml.Node) bool {
	compact, _ := findSeqStyle(n, 0)
	return compact
}

func findSeqStyle(n *yaml.Node, depth int) (compact, found bool) {
	if depth > 100 {
		return false, false
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if compact, found := findSeqStyle(c, depth+1); found {
				return compact, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.SequenceNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Line > k.Line {
				return v.Column == k.Column, true
			}
			if compact, found := findSeqStyle(v, depth+1); found {
				return compact, true
			}
		}
	}
	return false, false
}

// yamlObject is an object read from a YAML document tree; patches edit the tree in place.
// The tree holds no aliases (expandAliases), so every node belongs to one object.
type yamlObject struct{ n *yaml.Node }

func newYAMLObject(root *yaml.Node) yamlObject { return yamlObject{n: root} }

func (o yamlObject) at(path []string) *yaml.Node {
	n, err := walk(o.n, path)
	if err != nil {
		return nil
	}
	return n
}

func (o yamlObject) str(path ...string) string {
	if n := o.at(path); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

func (o yamlObject) shape(path ...string) shape {
	n := o.at(path)
	switch {
	case n == nil:
		return shapeAbsent
	case n.Kind == yaml.MappingNode:
		return shapeMap
	case n.Kind == yaml.SequenceNode:
		return shapeSeq
	}
	return shapeOther
}

// json converts the subtree for the decoder the admission handler uses; only the pod
// template is converted, never the whole document.
func (o yamlObject) json(path ...string) ([]byte, error) {
	var v any
	if err := o.at(path).Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func (o yamlObject) apply(patch []byte) error { return applyToNode(o.n, patch) }

func (o yamlObject) eachItem(fn func(int, object) error) error {
	seq := o.at([]string{"items"})
	for i, item := range seq.Content {
		if item.Kind != yaml.MappingNode {
			continue
		}
		if err := fn(i, yamlObject{n: item}); err != nil {
			return err
		}
	}
	return nil
}

// expandAliases replaces each alias in the document with a copy of the node it names, and
// drops the anchors. A patch applied through an alias, or into an anchored node that an
// alias elsewhere names, would change objects the policy did not select (issue 26: a
// Deployment sharing `containers: &shared` with a Pushgateway gained its preStop, above its
// own grace). The API server never sees aliases either: kubectl and Helm expand them before
// sending, so the expanded document is the same objects. A document without aliases is left
// as it is; an alias that names a node containing it (a cycle, no Kubernetes object) and one
// that expands far beyond the document's own size (a "billion laughs") are input errors.
func expandAliases(doc *yaml.Node) error {
	nodes, aliases := countNodes(doc)
	if aliases == 0 {
		return nil
	}
	budget := max(100_000, 10*nodes)
	active := map[*yaml.Node]bool{}
	var copyExpanded func(n *yaml.Node) (*yaml.Node, error)
	copyExpanded = func(n *yaml.Node) (*yaml.Node, error) {
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				return nil, fmt.Errorf("line %d: alias *%s names no anchor", n.Line, n.Value)
			}
			if active[n.Alias] {
				return nil, fmt.Errorf("line %d: alias *%s names a node that contains it", n.Line, n.Value)
			}
			return copyExpanded(n.Alias)
		}
		if budget--; budget < 0 {
			return nil, fmt.Errorf("its aliases expand to more than %d nodes (%d in the document)", max(100_000, 10*nodes), nodes)
		}
		cp := *n
		cp.Anchor = ""
		cp.Content = make([]*yaml.Node, 0, len(n.Content))
		active[n] = true
		defer delete(active, n)
		for _, c := range n.Content {
			cc, err := copyExpanded(c)
			if err != nil {
				return nil, err
			}
			cp.Content = append(cp.Content, cc)
		}
		return &cp, nil
	}
	expanded, err := copyExpanded(doc)
	if err != nil {
		return err
	}
	*doc = *expanded
	return nil
}

func countNodes(n *yaml.Node) (nodes, aliases int) {
	nodes = 1
	if n.Kind == yaml.AliasNode {
		return nodes, 1
	}
	for _, c := range n.Content {
		cn, ca := countNodes(c)
		nodes += cn
		aliases += ca
	}
	return nodes, aliases
}
