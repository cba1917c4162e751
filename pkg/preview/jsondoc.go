package preview

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A JSON document (`kubectl get -o json`, `jq` output) is edited in its own bytes: the
// patch's values are spliced in where the operations point, laid out like their
// neighbours, and every other byte (key order, escapes, number spellings, indentation) stays
// as it came. Re-encoding the document instead would rewrite what the webhook does not
// touch, and converting it to YAML, as the YAML path would, makes it unreadable to jq.
//
// The scanner below only ever runs over bytes that encoding/json has validated (jsonValues),
// so it can skip values by bracket depth without re-checking the grammar.

// jsonValues splits a document into the spans of its top-level JSON values (several when
// objects are concatenated, as `jq '.items[]'` prints them). ok is false when the document
// is not JSON (it is then read as YAML).
func jsonValues(doc []byte) (spans [][2]int, ok bool) {
	start := jsonStart(doc)
	if start < 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(doc[start:]))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false
		}
		end := start + int(dec.InputOffset())
		spans = append(spans, [2]int{end - len(raw), end})
	}
	return spans, len(spans) > 0
}

// jsonStart is the offset of the "{" that opens a JSON document after leading blank and
// comment lines (Helm writes "# Source:" comments), or -1 when the document does not start
// with one. Only objects are read as JSON: any other value is passed through as YAML does.
func jsonStart(doc []byte) int {
	i := 0
	for i < len(doc) {
		switch doc[i] {
		case ' ', '\t', '\r', '\n':
			i++
		case '#':
			nl := bytes.IndexByte(doc[i:], '\n')
			if nl < 0 {
				return -1
			}
			i += nl + 1
		case '{':
			return i
		default:
			return -1
		}
	}
	return -1
}

// jsonStyle is the layout inserted values follow: the document's indentation unit ("" for a
// compact document), line end and key separator.
type jsonStyle struct {
	unit, nl, colon string
}

// detectStyle reads the layout of a top-level value that starts on a line indented by base:
// the unit is the indentation of its first member's line, less base.
func detectStyle(v []byte, base string) *jsonStyle {
	st := &jsonStyle{nl: "\n", colon: ":"}
	if bytes.Contains(v, []byte("\r\n")) {
		st.nl = "\r\n"
	}
	for i := bytes.IndexByte(v, '\n'); i >= 0; {
		j := i + 1
		for j < len(v) && (v[j] == ' ' || v[j] == '\t' || v[j] == '\r') {
			j++
		}
		if j < len(v) && v[j] == '\n' { // a blank line
			i = j
			continue
		}
		st.unit = strings.TrimPrefix(strings.TrimRight(string(v[i+1:j]), "\r"), base)
		break
	}
	if st.unit != "" {
		st.colon = ": "
	}
	if m, _, err := parseObject(v, 0); err == nil && len(m) > 0 {
		if sep := v[m[0].keyEnd:m[0].valStart]; !bytes.ContainsAny(sep, "\r\n") {
			st.colon = string(sep)
		}
	}
	return st
}

// spaced reports whether the document separates keys from values with a space, as
// `kubectl -o json` and Python's json.dumps do; values written on one line then get ", " and
// ": " too.
func (st *jsonStyle) spaced() bool { return strings.HasSuffix(st.colon, " ") }

// respace puts a space after each "," and ":" of compact JSON outside strings.
func respace(c []byte) []byte {
	out := make([]byte, 0, len(c)+len(c)/4)
	for i := 0; i < len(c); i++ {
		switch c[i] {
		case '"':
			end := skipString(c, i)
			out = append(out, c[i:end]...)
			i = end - 1
		case ',', ':':
			out = append(out, c[i], ' ')
		default:
			out = append(out, c[i])
		}
	}
	return out
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the offset after the string that opens at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the offset after the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
		j++
	}
	return j
}

type jsonMember struct {
	key                                string
	keyStart, keyEnd, valStart, valEnd int
}

// parseObject lists the members of the object whose "{" is at b[open] and returns the
// offset of its "}". A key that appears twice is an input error: the API server decoder
// keeps the last, a patch could land in the first.
func parseObject(b []byte, open int) ([]jsonMember, int, error) {
	var ms []jsonMember
	i := skipWS(b, open+1)
	if i < len(b) && b[i] == '}' {
		return nil, i, nil
	}
	for i < len(b) {
		m := jsonMember{keyStart: i, keyEnd: skipString(b, i)}
		key, err := jsonKey(b[m.keyStart:m.keyEnd])
		if err != nil {
			return nil, 0, err
		}
		m.key = key
		i = skipWS(b, m.keyEnd) + 1 // the ":"
		m.valStart = skipWS(b, i)
		m.valEnd = skipValue(b, m.valStart)
		ms = append(ms, m)
		i = skipWS(b, m.valEnd)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		break
	}
	if i >= len(b) || b[i] != '}' {
		return nil, 0, errors.New("malformed JSON object")
	}
	if dup := duplicateKey(ms); dup != "" {
		return nil, 0, fmt.Errorf("key %q appears twice in one object", dup)
	}
	return ms, i, nil
}

func duplicateKey(ms []jsonMember) string {
	if len(ms) < 16 {
		for i := range ms {
			for j := i + 1; j < len(ms); j++ {
				if ms[i].key == ms[j].key {
					return ms[i].key
				}
			}
		}
		return ""
	}
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if seen[m.key] {
			return m.key
		}
		seen[m.key] = true
	}
	return ""
}

// parseArray returns the spans of the elements of the array whose "[" is at b[open].
func parseArray(b []byte, open int) [][2]int {
	var els [][2]int
	i := skipWS(b, open+1)
	for i < len(b) && b[i] != ']' {
		end := skipValue(b, i)
		els = append(els, [2]int{i, end})
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	return els
}

// jsonObject is one JSON object (a document, or an item of a List) as bytes.
type jsonObject struct {
	b []byte
	// base is the indentation of the line b starts on, in the enclosing document.
	base string
	st   *jsonStyle
	// changed: b has been rewritten (it no longer aliases the enclosing document).
	changed bool
}

// lookup returns the span of the value at path, ok false when there is none.
func (o *jsonObject) lookup(path []string) (start, end int, ok bool, err error) {
	i := 0
	for _, t := range path {
		switch {
		case i < len(o.b) && o.b[i] == '{':
			ms, _, err := parseObject(o.b, i)
			if err != nil {
				return 0, 0, false, err
			}
			found := false
			for _, m := range ms {
				if m.key == t {
					i, found = m.valStart, true
					break
				}
			}
			if !found {
				return 0, 0, false, nil
			}
		case i < len(o.b) && o.b[i] == '[':
			els := parseArray(o.b, i)
			n, ok := arrayIndex(t, len(els))
			if !ok {
				return 0, 0, false, nil
			}
			i = els[n][0]
		default:
			return 0, 0, false, nil
		}
	}
	return i, skipValue(o.b, i), true, nil
}

// arrayIndex reads a pointer token as an index into n elements; a token that is not one
// means no such element, as in walk.
func arrayIndex(t string, n int) (int, bool) {
	i, err := strconv.Atoi(t)
	return i, err == nil && i >= 0 && i < n
}

func (o *jsonObject) str(path ...string) string {
	s, e, ok, err := o.lookup(path)
	if err != nil || !ok || o.b[s] != '"' {
		return ""
	}
	var v string
	if json.Unmarshal(o.b[s:e], &v) != nil {
		return ""
	}
	return v
}

func (o *jsonObject) shape(path ...string) shape {
	s, _, ok, err := o.lookup(path)
	switch {
	case err != nil || !ok:
		return shapeAbsent
	case o.b[s] == '{':
		return shapeMap
	case o.b[s] == '[':
		return shapeSeq
	}
	return shapeOther
}

// json is the value's own bytes: the admission handler's decoder reads them as they are.
func (o *jsonObject) json(path ...string) ([]byte, error) {
	s, e, ok, err := o.lookup(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no value at " + strings.Join(path, "."))
	}
	return o.b[s:e], nil
}

// checkDuplicates refuses repeated keys anywhere in v: encoding/json merges or overwrites
// them as it decodes, so the engine and the patch could see different objects. It reads v
// once, with a stack of the keys seen in each open object: re-scanning each nested value at
// every level was quadratic in depth (23.8 s for 7 MiB at depth 4000, issue 26). v is one
// complete JSON value (the splitter has found its end), so the only structure that matters
// is brackets, commas and strings; scalars are skipped byte by byte.
func checkDuplicates(v []byte) error {
	type frame struct {
		object bool
		keys   map[string]struct{}
	}
	var stack []frame
	expectKey := false
	for i := 0; i < len(v); {
		switch c := v[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
			}
			stack = append(stack, frame{object: c == '{'})
			expectKey = c == '{'
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey = false
			i++
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].object
			i++
		case '"':
			end := skipString(v, i)
			if expectKey {
				expectKey = false
				key, err := jsonKey(v[i:end])
				if err != nil {
					return err
				}
				top := &stack[len(stack)-1]
				if top.keys == nil {
					top.keys = make(map[string]struct{}, 8)
				}
				if _, dup := top.keys[key]; dup {
					return fmt.Errorf("key %q appears twice in one object", key)
				}
				top.keys[key] = struct{}{}
			}
			i = end
		default:
			i++
		}
	}
	return nil
}

// maxJSONDepth is encoding/json's own nesting limit: deeper input fails to decode anyway.
const maxJSONDepth = 10000

// jsonKey is the text of a quoted key; only a key with an escape needs a decoder.
func jsonKey(raw []byte) (string, error) {
	if bytes.IndexByte(raw, '\\') < 0 {
		if len(raw) < 2 {
			return "", errors.New("malformed JSON string")
		}
		return string(raw[1 : len(raw)-1]), nil
	}
	var k string
	err := json.Unmarshal(raw, &k)
	return k, err
}

// lineIndent is the indentation of the line that holds b[pos].
func (o *jsonObject) lineIndent(pos int) string {
	if ind, ok := lineIndentAt(o.b, pos); ok {
		return ind
	}
	return o.base
}

// lineIndentAt is the indentation of the line that holds b[pos]; ok is false when that line
// starts before b.
func lineIndentAt(b []byte, pos int) (string, bool) {
	j := bytes.LastIndexByte(b[:pos], '\n')
	if j < 0 {
		return "", false
	}
	k := j + 1
	for k < pos && (b[k] == ' ' || b[k] == '\t') {
		k++
	}
	return string(b[j+1 : k]), true
}

// render encodes v as the document would: indented with its unit from the given line
// indentation, or compact. HTML characters are kept as they are, like kubectl prints them.
func (o *jsonObject) render(v any, indent string, multiline bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if multiline && o.st.unit != "" {
		enc.SetIndent(indent, o.st.unit)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if !multiline && o.st.spaced() {
		out = respace(out)
	}
	if multiline && o.st.nl != "\n" {
		out = bytes.ReplaceAll(out, []byte("\n"), []byte(o.st.nl))
	}
	return out, nil
}

func (o *jsonObject) splice(start, end int, text []byte) {
	o.changed = true
	nb := make([]byte, 0, len(o.b)-(end-start)+len(text))
	nb = append(nb, o.b[:start]...)
	nb = append(nb, text...)
	nb = append(nb, o.b[end:]...)
	o.b = nb
}

func (o *jsonObject) apply(patch []byte) error {
	return applyPatch(patch, func(op *patchOp) error { return o.set(op.parent, op.key, op.value) })
}

// set writes v at key of the object at parent: in place of the old value, or as a new last
// member laid out like the members before it.
func (o *jsonObject) set(parent []string, key string, v any) error {
	ps, _, ok, err := o.lookup(parent)
	if err != nil {
		return err
	}
	if !ok || o.b[ps] != '{' {
		return errors.New("parent is not an object")
	}
	ms, closing, err := parseObject(o.b, ps)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.key == key {
			multiline := o.st.unit != "" && bytes.IndexByte(o.b[ps:closing], '\n') >= 0
			val, err := o.render(v, o.lineIndent(m.keyStart), multiline)
			if err != nil {
				return err
			}
			o.splice(m.valStart, m.valEnd, val)
			return nil
		}
	}
	qkey, err := o.render(key, "", false)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		var text []byte
		if o.st.unit == "" || !o.ownsLine(ps) {
			val, err := o.render(v, "", false)
			if err != nil {
				return err
			}
			text = concat([]byte("{"), qkey, []byte(o.st.colon), val, []byte("}"))
		} else {
			outer := o.lineIndent(ps)
			inner := outer + o.st.unit
			val, err := o.render(v, inner, true)
			if err != nil {
				return err
			}
			text = concat([]byte("{"+o.st.nl+inner), qkey, []byte(o.st.colon), val, []byte(o.st.nl+outer+"}"))
		}
		o.splice(ps, closing+1, text)
		return nil
	}
	// The separator and colon are copied from the object's own last members.
	last := ms[len(ms)-1]
	sep := append([]byte(","), o.b[ps+1:ms[0].keyStart]...)
	if len(ms) > 1 {
		sep = o.b[ms[len(ms)-2].valEnd:last.keyStart]
	} else if bytes.IndexByte(sep, '\n') < 0 && o.st.spaced() {
		sep = []byte(", ")
	}
	colon := o.b[last.keyEnd:last.valStart]
	indent, multiline := "", false
	if nl := bytes.LastIndexByte(sep, '\n'); nl >= 0 {
		indent, multiline = string(sep[nl+1:]), true
	}
	val, err := o.render(v, indent, multiline)
	if err != nil {
		return err
	}
	o.splice(last.valEnd, last.valEnd, concat(sep, qkey, colon, val))
	return nil
}

// ownsLine reports whether the value at pos is the only member on its line ("key": {} or a
// lone {}), so that what is put into it may span lines; in a one-line object it stays on one.
func (o *jsonObject) ownsLine(pos int) bool {
	lineStart := bytes.LastIndexByte(o.b[:pos], '\n') + 1
	i := skipWS(o.b[:pos], lineStart)
	if i < pos && o.b[i] == '"' {
		i = skipWS(o.b[:pos], skipString(o.b, i))
		if i < pos && o.b[i] == ':' {
			i = skipWS(o.b[:pos], i+1)
		}
	}
	return i == pos
}

func concat(parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// eachItem hands every object of the items array to fn as an object of its own, and splices
// the changed ones back: linear in the size of the List, however many items change.
func (o *jsonObject) eachItem(fn func(int, object) error) error {
	s, _, ok, err := o.lookup([]string{"items"})
	if err != nil || !ok {
		return err
	}
	var changes []jsonChange
	defer func() { o.spliceAll(changes) }()
	for i, el := range parseArray(o.b, s) {
		if o.b[el[0]] != '{' {
			continue
		}
		item := &jsonObject{b: o.b[el[0]:el[1]], base: o.lineIndent(el[0]), st: o.st}
		err := fn(i, item)
		if item.changed {
			changes = append(changes, jsonChange{el[0], el[1], item.b})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// jsonChange replaces b[start:end] with text.
type jsonChange struct {
	start, end int
	text       []byte
}

func (o *jsonObject) spliceAll(changes []jsonChange) {
	if len(changes) == 0 {
		return
	}
	n := len(o.b)
	for _, c := range changes {
		n += len(c.text) - (c.end - c.start)
	}
	nb := make([]byte, 0, n)
	prev := 0
	for _, c := range changes {
		nb = append(nb, o.b[prev:c.start]...)
		nb = append(nb, c.text...)
		prev = c.end
	}
	o.b = append(nb, o.b[prev:]...)
	o.changed = true
}
