package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/goccy/go-json/jsontext"
	gojsonv2 "github.com/goccy/go-json/v2"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// DecodeJSON decodes with github.com/goccy/go-json/v2, the encoding/json/v2 semantics of Go
// 1.27 without GOEXPERIMENT: keys match case-sensitively, as the API server decodes
// (sigs.k8s.io/json), so a "metAdAtA" key is an unknown field and not the metadata the patch
// addresses; duplicate keys and invalid UTF-8 are errors. It skips the fields PodView does
// not keep several times faster than encoding/json (BenchmarkHandler: 10 us per review in all,
// against 43 us for encoding/json to decode the pod alone). FuzzDecodeDifferential checks it
// against the API server's decoder.
func DecodeJSON(body []byte, into any) error {
	return gojsonv2.Unmarshal(body, into)
}

// DescribeJSONError keeps decoder errors short and free of echoed input.
func DescribeJSONError(err error) string {
	var syn *jsontext.SyntacticError
	var sem *gojsonv2.SemanticError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d%s: %v", syn.ByteOffset, within(string(syn.JSONPointer)), syn.Err)
	case errors.As(err, &sem):
		what := "a JSON value"
		if sem.JSONKind != 0 {
			what = "a JSON " + sem.JSONKind.String()
		}
		msg := fmt.Sprintf("cannot decode %s%s", what, within(string(sem.JSONPointer)))
		if sem.GoType != nil {
			msg += " (expected " + jsonKindOf(sem.GoType) + ")"
		}
		if sem.Err != nil {
			msg += ": " + sem.Err.Error()
		}
		return msg
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())
	case errors.As(err, &te):
		f := te.Field
		if f == "" {
			f = "(top level)"
		}
		return fmt.Sprintf("field %s: cannot decode a JSON %s into %s", annotations.Truncate(f), te.Value, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// jsonKindOf names the JSON a Go type decodes from, for messages that must not expose
// internal type names.
func jsonKindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another type"
}

// within names where in the document an error is, as a JSON pointer ("/request/object/spec").
func within(pointer string) string {
	if pointer == "" {
		return ""
	}
	return " at " + annotations.Truncate(pointer)
}
