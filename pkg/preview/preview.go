// Package preview applies the webhook's mutation offline to a stream of YAML documents: the
// `mutate` command, usable as a Helm post-renderer. It runs the same engine and builds the
// same JSON patch as the admission handler, applied to the document's pod template, so the
// preview shows exactly what the webhook would do and changes nothing else.
package preview

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	yaml "go.yaml.in/yaml/v3"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/webhook"
)

// MaxDocumentBytes bounds one YAML document (the API server's own object limit is 3 MiB).
const MaxDocumentBytes = 8 * 1024 * 1024

// templatePointer is where each kind keeps the pod the engine looks at.
var templatePointer = map[string]string{
	"Pod":         "",
	"Deployment":  "/spec/template",
	"StatefulSet": "/spec/template",
	"DaemonSet":   "/spec/template",
	"ReplicaSet":  "/spec/template",
	"Job":         "/spec/template",
	"CronJob":     "/spec/jobTemplate/spec/template",
}

// Result of one document.
type Result struct {
	Kind, Name string
	Decision   engine.Decision
	// Mutated is false for documents left byte for byte as they came.
	Mutated bool
}

// ErrDenied is returned (wrapped) when the policy would deny at least one pod.
var ErrDenied = errors.New("denied")

// InputError marks input that could not be read or parsed (exit code 2).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// SplitDocuments splits a YAML stream on document separators, keeping each document's bytes.
func SplitDocuments(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxDocumentBytes)
	sc.Split(scanLinesKeepCR)
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		docs = append(docs, bytes.Clone(cur.Bytes()))
		cur.Reset()
	}
	for sc.Scan() {
		line := sc.Bytes()
		if isSeparator(line) {
			flush()
			continue
		}
		if cur.Len()+len(line) > MaxDocumentBytes {
			return nil, &InputError{fmt.Errorf("a YAML document is larger than %d bytes", MaxDocumentBytes)}
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, &InputError{fmt.Errorf("reading input: %w", err)}
	}
	flush()
	// Drop empty documents (a leading "---", comments only).
	out := docs[:0]
	for _, d := range docs {
		if !isEmptyDoc(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// scanLinesKeepCR is bufio.ScanLines without its dropping of a "\r" before "\n": documents
// that are passed through must come out byte for byte, CRLF line ends included.
func scanLinesKeepCR(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// isSeparator matches "---" alone or followed by a comment ("--- # Source: ...").
func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

func isEmptyDoc(d []byte) bool {
	for _, line := range bytes.Split(d, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

// Document mutates one YAML document. It returns the document unchanged (same bytes) when
// it holds no pod, or nothing to change. The document is parsed once into a YAML tree; only
// the pod template is converted to JSON, for the same decoder the admission handler uses.
func Document(doc []byte, pol *policy.Policy) ([]byte, Result, error) {
	var res Result
	var node yaml.Node
	if err := yaml.Unmarshal(doc, &node); err != nil {
		return nil, res, &InputError{fmt.Errorf("not valid YAML: %w", err)}
	}
	root := &node
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		// A list or a scalar document: not a Kubernetes object, passed through as is.
		return doc, res, nil
	}
	res.Kind = scalarAt(root, "kind")
	if md, err := walk(root, []string{"metadata"}); err == nil {
		res.Name = scalarAt(md, "name")
	}
	namespace := ""
	if md, err := walk(root, []string{"metadata"}); err == nil {
		namespace = scalarAt(md, "namespace")
	}
	ptr, ok := templatePointer[res.Kind]
	if !ok {
		return doc, res, nil
	}
	tplNode := root
	if ptr != "" {
		var err error
		tplNode, err = walk(root, strings.Split(strings.TrimPrefix(ptr, "/"), "/"))
		if err != nil || tplNode.Kind != yaml.MappingNode {
			// No pod template (a partial manifest): nothing to mutate, passed through.
			return doc, res, nil //nolint:nilerr // absence is not an error here
		}
	}
	var tpl any
	if err := tplNode.Decode(&tpl); err != nil {
		return nil, res, &InputError{fmt.Errorf("%s %s: %w", res.Kind, res.Name, err)}
	}
	tplJSON, err := json.Marshal(tpl)
	if err != nil {
		return nil, res, &InputError{fmt.Errorf("%s %s: the pod template is not representable as JSON: %w", res.Kind, res.Name, err)}
	}
	pod, err := webhook.DecodePod(tplJSON)
	if err != nil {
		return nil, res, &InputError{fmt.Errorf("%s %s: the pod template does not decode: %w", res.Kind, res.Name, err)}
	}
	d := engine.Decide(pod, namespace, pol)
	res.Decision = d
	if d.Outcome == engine.OutcomeDenied {
		return doc, res, fmt.Errorf("%s %s: %w: %s", res.Kind, res.Name, ErrDenied, d.DenyMessage())
	}
	if !d.Changed() {
		return doc, res, nil
	}
	if _, err := walk(tplNode, []string{"metadata"}); err != nil {
		// A template without metadata gets an empty one for the annotation patch to land in.
		if err := applyToNode(&node, []byte(`[{"op":"add","path":"`+ptr+`/metadata","value":{}}]`)); err != nil {
			return nil, res, err
		}
	}
	patch, err := webhook.BuildPatch(&d)
	if err != nil {
		return nil, res, err
	}
	patch, err = prefixPatch(patch, ptr)
	if err != nil {
		return nil, res, err
	}
	if err := applyToNode(&node, patch); err != nil {
		return nil, res, fmt.Errorf("%s %s: applying the patch: %w", res.Kind, res.Name, err)
	}
	y, err := encodeNode(&node)
	if err != nil {
		return nil, res, err
	}
	res.Mutated = true
	return y, res, nil
}

// scalarAt returns the scalar value of key in a mapping node, or "".
func scalarAt(m *yaml.Node, key string) string {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.ScalarNode {
			return m.Content[i+1].Value
		}
	}
	return ""
}

func prefixPatch(patch []byte, prefix string) ([]byte, error) {
	if prefix == "" {
		return patch, nil
	}
	var ops []map[string]any
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, err
	}
	for _, op := range ops {
		op["path"] = prefix + op["path"].(string)
	}
	return json.Marshal(ops)
}

// Stream mutates every document of in and writes them to out in order, separated by "---".
// With diff set it writes a unified diff of the stream instead. Denials are collected: every
// document is still processed so that all denials are reported at once.
func Stream(in io.Reader, out io.Writer, pol *policy.Policy, diff bool) ([]Result, error) {
	docs, err := SplitDocuments(in)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(docs))
	var denials []error
	// Without --diff each document is written as soon as it is done, so memory stays at the
	// input plus one document; the diff needs both streams whole.
	var before, after bytes.Buffer
	w := bufio.NewWriter(out)
	if diff {
		w = bufio.NewWriter(&after)
	}
	for i, doc := range docs {
		m, res, err := Document(doc, pol)
		if err != nil {
			var ie *InputError
			if errors.As(err, &ie) {
				return results, &InputError{fmt.Errorf("document %d: %w", i+1, ie.Err)}
			}
			if !errors.Is(err, ErrDenied) {
				return results, err
			}
			denials = append(denials, err)
		}
		results = append(results, res)
		if i > 0 {
			_, _ = w.WriteString("---\n")
			if diff {
				before.WriteString("---\n")
			}
		}
		_, _ = w.Write(m)
		if diff {
			before.Write(doc)
		}
	}
	if err := w.Flush(); err != nil {
		return results, err
	}
	if diff {
		ud := difflib.UnifiedDiff{A: difflib.SplitLines(before.String()), B: difflib.SplitLines(after.String()),
			FromFile: "input", ToFile: "mutated", Context: 3}
		if err := difflib.WriteUnifiedDiff(out, ud); err != nil {
			return results, err
		}
	}
	if len(denials) > 0 {
		return results, errors.Join(denials...)
	}
	return results, nil
}
