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
	"runtime"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	yaml "go.yaml.in/yaml/v3"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// MaxDocumentBytes bounds one YAML document (the API server's own object limit is 3 MiB).
const MaxDocumentBytes = 8 * 1024 * 1024

// Format is how a document was written.
type Format string

// The formats of a document; a stream may mix them.
const (
	FormatYAML Format = "yaml"
	FormatJSON Format = "json"
)

// Result of one object: a YAML document, one JSON value of a document, or (as Items) one
// item of a List.
type Result struct {
	// Document is the 1-based position of the document in the stream.
	Document   int
	Format     Format
	Kind, Name string
	Decision   engine.Decision
	// Mutated is false for objects left byte for byte as they came; for a List, true when
	// any item was mutated.
	Mutated bool
	// Patches are the JSON patches applied to the object, in order, with paths relative to
	// it: the webhook's own patch for the pod, under the pointer of the pod template (and, first,
	// an empty metadata for a template without one).
	Patches [][]byte
	// Items are the results of a List's items that are objects, in order.
	Items []Result
	// Notices are the objects (this one, or items of this List) read but not placed.
	Notices []Notice
	// Risks are the object's data risks (engine.Risks); RiskNotes collects them.
	Risks []engine.Risk
}

// Options of Stream.
type Options struct {
	// Diff writes a unified diff of the stream instead of the mutated documents.
	Diff bool
}

// Notices collects the notices of a stream's results, in order.
func Notices(results []Result) []Notice {
	var out []Notice
	for _, r := range results {
		out = append(out, r.Notices...)
	}
	return out
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
			// "--- # Source: chart/templates/x.yaml": the comment opens the next document
			// (written on the line after the separator, where Helm writes it) instead of
			// being lost with the separator.
			if c := bytes.TrimLeft(line[3:], " \t"); len(c) > 0 && c[0] == '#' {
				cur.Write(c)
				cur.WriteByte('\n')
			}
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

// Document mutates one document of the stream: a YAML document, or one or more JSON values
// (a document whose first character, after comment lines, is "{"). A List is mutated item by
// item. It returns the document unchanged (same bytes) when nothing in it changes, and one
// result per object: one for a YAML document, one per JSON value.
func Document(doc []byte, pol *policy.Policy) ([]byte, []Result, error) {
	if spans, ok := jsonValues(doc); ok {
		return jsonDocument(doc, spans, pol)
	}
	res := Result{Format: FormatYAML}
	var node yaml.Node
	if err := yaml.Unmarshal(doc, &node); err != nil {
		return nil, nil, &InputError{fmt.Errorf("not valid YAML: %w", err)}
	}
	if err := expandAliases(&node); err != nil {
		return nil, nil, &InputError{fmt.Errorf("not valid for Kubernetes: %w", err)}
	}
	root := &node
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		// A list or a scalar document: not a Kubernetes object, passed through as is.
		return doc, []Result{res}, nil
	}
	r, err := mutateObject(newYAMLObject(root), pol, [2]string{})
	r.Format = FormatYAML
	var ie *InputError
	if !r.Mutated || errors.As(err, &ie) {
		return doc, []Result{r}, err
	}
	// Mutated, possibly with a denial: the denied items of a List stay as they were, the
	// others are written mutated.
	y, encErr := encodeNode(&node)
	if encErr != nil {
		return nil, []Result{r}, encErr
	}
	return y, []Result{r}, err
}

// jsonDocument mutates each object among the JSON values of a document and splices the
// changed ones back; the bytes between values are kept.
func jsonDocument(doc []byte, spans [][2]int, pol *policy.Policy) ([]byte, []Result, error) {
	results := make([]Result, 0, len(spans))
	var changes []jsonChange
	var denials []error
	for _, sp := range spans {
		v := doc[sp[0]:sp[1]]
		if v[0] != '{' {
			results = append(results, Result{Format: FormatJSON})
			continue
		}
		if err := checkDuplicates(v); err != nil {
			return nil, results, &InputError{fmt.Errorf("not valid for Kubernetes: %w", err)}
		}
		base, _ := lineIndentAt(doc, sp[0])
		o := &jsonObject{b: v, base: base, st: detectStyle(v, base)}
		r, err := mutateObject(o, pol, [2]string{})
		r.Format = FormatJSON
		results = append(results, r)
		if o.changed {
			changes = append(changes, jsonChange{sp[0], sp[1], o.b})
		}
		if err != nil {
			if !errors.Is(err, ErrDenied) {
				return nil, results, err
			}
			denials = append(denials, err)
		}
	}
	out := &jsonObject{b: doc}
	out.spliceAll(changes)
	return out.b, results, errors.Join(denials...)
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
// With Diff set it writes a unified diff of the stream instead. Denials are collected: every
// document is still processed so that all denials are reported at once. Notices (objects
// read but not placed) are in the results; see Notices.
func Stream(in io.Reader, out io.Writer, pol *policy.Policy, opts Options) ([]Result, error) {
	docs, err := SplitDocuments(in)
	if err != nil {
		return nil, err
	}
	mutated := mutateAhead(docs, pol, runtime.GOMAXPROCS(0))
	defer mutated.stop()
	return writeStream(docs, out, opts, mutated.next)
}

// writeStream writes the stream of docs, document i as next(i) mutated it (Document's
// results), in order: Stream's writer, whatever computed the documents.
func writeStream(docs [][]byte, out io.Writer, opts Options, next func(i int) ([]byte, []Result, error)) ([]Result, error) {
	results := make([]Result, 0, len(docs))
	var denials []error
	// Without --diff each document is written as soon as it is done, so memory stays at the
	// input plus the documents in flight; the diff needs both streams whole.
	var before, after bytes.Buffer
	w := bufio.NewWriter(out)
	if opts.Diff {
		w = bufio.NewWriter(&after)
	}
	for i, doc := range docs {
		m, res, err := next(i)
		for j := range res {
			res[j].Document = i + 1
			for k := range res[j].Notices {
				res[j].Notices[k].Document = i + 1
			}
		}
		results = append(results, res...)
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
		if i > 0 {
			_, _ = w.WriteString("---\n")
			if opts.Diff {
				before.WriteString("---\n")
			}
		}
		if opts.Diff {
			// A compact JSON document is one line: indented, its diff shows what changed.
			_, _ = w.Write(diffView(m))
			before.Write(diffView(doc))
		} else {
			_, _ = w.Write(m)
		}
	}
	if err := w.Flush(); err != nil {
		return results, err
	}
	if opts.Diff {
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

// ahead runs Document on the documents of a stream in parallel, a bounded window ahead of the
// writer, which takes the results in the documents' order: the output is the same as one
// Document after another, and a Helm chart's many documents use every core (the YAML parse
// and re-encode are most of mutate's time).
type ahead struct {
	done []chan mutatedDoc
	slot chan struct{}
	quit chan struct{}
}

type mutatedDoc struct {
	out []byte
	res []Result
	err error
}

// mutateAhead starts the workers; at most 2*workers documents are in flight or waiting to be
// written, so memory stays bounded on a long stream.
func mutateAhead(docs [][]byte, pol *policy.Policy, workers int) *ahead {
	a := &ahead{done: make([]chan mutatedDoc, len(docs)), slot: make(chan struct{}, 2*max(workers, 1)), quit: make(chan struct{})}
	for i := range a.done {
		a.done[i] = make(chan mutatedDoc, 1)
	}
	go func() {
		for i, doc := range docs {
			select {
			case a.slot <- struct{}{}:
			case <-a.quit:
				return
			}
			go func() {
				out, res, err := Document(doc, pol)
				a.done[i] <- mutatedDoc{out, res, err}
			}()
		}
	}()
	return a
}

// next waits for document i's result and frees its slot; call it for i = 0, 1, ... in order.
func (a *ahead) next(i int) ([]byte, []Result, error) {
	d := <-a.done[i]
	<-a.slot
	return d.out, d.res, d.err
}

// stop ends the feeder when the writer returns early (an input error); documents in flight
// finish into their buffered channels.
func (a *ahead) stop() { close(a.quit) }

// diffView indents the one-line JSON values of a document (json.Indent keeps key order and
// escapes); other documents are returned as they are.
func diffView(doc []byte) []byte {
	spans, ok := jsonValues(doc)
	if !ok {
		return doc
	}
	var out bytes.Buffer
	prev := 0
	for _, sp := range spans {
		out.Write(doc[prev:sp[0]])
		v := doc[sp[0]:sp[1]]
		if bytes.IndexByte(v, '\n') >= 0 || json.Indent(&out, v, "", "  ") != nil {
			out.Write(v)
		}
		prev = sp[1]
	}
	out.Write(doc[prev:])
	return out.Bytes()
}

// HandoffNotes names the objects whose pods the webhook may hold with the handoff gate: that
// depends on other pods at the moment of creation (a terminating predecessor on the same
// claim or hostPath), which an offline preview cannot see, so it is a note and never a patch.
func HandoffNotes(results []Result) []Notice {
	var out []Notice
	eachResult(results, func(r *Result) {
		if len(r.Decision.HandoffKeys) == 0 {
			return
		}
		descs := make([]string, len(r.Decision.HandoffKeys))
		for i, k := range r.Decision.HandoffKeys {
			descs[i] = engine.DescribeVolumeKey(k)
		}
		out = append(out, Notice{Document: r.Document, Kind: r.Kind, Name: r.Name, Reason: "at admission, the webhook (--handoff) holds a new pod with the scheduling gate " +
			annotations.SchedulingGateHandoff + " while a terminating pod still mounts " + strings.Join(descs, ", ") +
			"; mutate cannot see other pods, so the gate is not in this output (the admission-policy mode cannot gate at all)"})
	})
	return out
}

// eachResult calls fn on every result, a List's items before the List itself.
func eachResult(results []Result, fn func(*Result)) {
	for i := range results {
		eachResult(results[i].Items, fn)
		fn(&results[i])
	}
}
