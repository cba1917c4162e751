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
	yaml3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

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

type header struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// Document mutates one YAML document. It returns the document unchanged (same bytes) when
// it holds no pod, or nothing to change.
func Document(doc []byte, pol *policy.Policy) ([]byte, Result, error) {
	var res Result
	// Strict: a duplicate key is refused as kubectl refuses it, instead of the JSON view (last
	// key wins) and the YAML node patched below (first key) disagreeing on the pod.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, res, &InputError{fmt.Errorf("not valid YAML: %w", err)}
	}
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		// A list or a scalar document: not a Kubernetes object, passed through as is.
		return doc, res, nil //nolint:nilerr // not ours to judge
	}
	res.Kind, res.Name = h.Kind, h.Metadata.Name
	ptr, ok := templatePointer[h.Kind]
	if !ok {
		return doc, res, nil
	}
	var root any
	if err := json.Unmarshal(js, &root); err != nil {
		return nil, res, &InputError{err}
	}
	tpl, ok := lookup(root, ptr)
	if !ok {
		return doc, res, nil
	}
	tplJSON, err := json.Marshal(tpl)
	if err != nil {
		return nil, res, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(tplJSON, &pod); err != nil {
		return nil, res, &InputError{fmt.Errorf("%s %s: the pod template does not decode: %w", h.Kind, h.Metadata.Name, err)}
	}
	d := engine.Decide(&pod, h.Metadata.Namespace, pol)
	res.Decision = d
	if d.Outcome == engine.OutcomeDenied {
		return doc, res, fmt.Errorf("%s %s: %w: %s", h.Kind, h.Metadata.Name, ErrDenied, d.DenyMessage())
	}
	if !d.Changed() {
		return doc, res, nil
	}
	var node yaml3.Node
	if err := yaml3.Unmarshal(doc, &node); err != nil {
		return nil, res, &InputError{fmt.Errorf("not valid YAML: %w", err)}
	}
	if tm, ok := tpl.(map[string]any); ok {
		// A template without metadata gets an empty one for the annotation patch to land in.
		if md, has := tm["metadata"]; !has || md == nil {
			if err := applyToNode(&node, []byte(`[{"op":"add","path":"`+ptr+`/metadata","value":{}}]`)); err != nil {
				return nil, res, err
			}
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
		return nil, res, fmt.Errorf("%s %s: applying the patch: %w", h.Kind, h.Metadata.Name, err)
	}
	y, err := encodeNode(&node)
	if err != nil {
		return nil, res, err
	}
	res.Mutated = true
	return y, res, nil
}

func lookup(root any, ptr string) (any, bool) {
	cur := root
	if ptr == "" {
		return cur, true
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok || cur == nil {
			return nil, false
		}
	}
	return cur, true
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
	var results []Result
	var denials []error
	var after, before bytes.Buffer
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
			after.WriteString("---\n")
			before.WriteString("---\n")
		}
		after.Write(m)
		before.Write(doc)
	}
	if diff {
		ud := difflib.UnifiedDiff{A: difflib.SplitLines(before.String()), B: difflib.SplitLines(after.String()),
			FromFile: "input", ToFile: "mutated", Context: 3}
		if err := difflib.WriteUnifiedDiff(out, ud); err != nil {
			return results, err
		}
	} else if _, err := out.Write(after.Bytes()); err != nil {
		return results, err
	}
	if len(denials) > 0 {
		return results, errors.Join(denials...)
	}
	return results, nil
}
