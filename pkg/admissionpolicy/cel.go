package admissionpolicy

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// The CEL below is the engine (pkg/engine, pkg/annotations) written a second time, in the
// only language the API server evaluates in-process. Kubernetes' CEL has no cel.bind, so a
// value that is used several times is bound with a one-element list: [x].map(v, ...)[0].
// Every expression is total on the inputs it can see (annotation strings of any content and
// length, any container list): a runtime error would leave the pod to failurePolicy, which
// is Ignore, so the failure mode is "pod unchanged", never "half patched".

// maxSeconds is annotations.MaxSeconds as a CEL literal.
var maxSeconds = fmt.Sprint(annotations.MaxSeconds)

// maxValueLen bounds the annotation values that the CEL parses at all: a valid setting is a
// few characters, and the bound keeps the regular expressions cheap (and the Go-duration
// arithmetic far from overflow). Longer values are invalid in the policy; the engine would
// accept only zero-padded forms of a valid value there.
const maxValueLen = 64

// Regular expressions, as CEL raw strings (no escaping of backslashes inside).
const (
	// goDurationRE is what time.ParseDuration accepts, restricted so that the sum cannot
	// overflow int64 nanoseconds: at most 9 components, each below 1e18 ns (18 integer digits
	// of ns, 15 of us, 12 of ms, 9 of s, 7 of m, 5 of h; leading zeros do not count, as in
	// Go). A string outside it is invalid for the policy; Go would accept only a value with
	// more components or digits than that, far beyond any limit.
	goDurationRE = `^[-+]?(?:0|(?:(?:0*[0-9]{1,18}(?:\.[0-9]*)?|\.[0-9]+)ns|(?:0*[0-9]{1,15}(?:\.[0-9]*)?|\.[0-9]+)(?:us|µs|μs)|(?:0*[0-9]{1,12}(?:\.[0-9]*)?|\.[0-9]+)ms|(?:0*[0-9]{1,9}(?:\.[0-9]*)?|\.[0-9]+)s|(?:0*[0-9]{1,7}(?:\.[0-9]*)?|\.[0-9]+)m|(?:0*[0-9]{1,5}(?:\.[0-9]*)?|\.[0-9]+)h){1,9})$`
	// ws and nonWS are unicode.IsSpace and its complement (strings.Fields splits on it).
	ws    = `[\t\n\v\f\r\x{85}\p{Z}]`
	nonWS = `[^\t\n\v\f\r\x{85}\p{Z}]`
	// imageRE: the image's last path element without tag or digest is "pushgateway"
	// (engine.imageName).
	imageRE = `^(?:[^@]*/)?pushgateway(?::[^/@]*)?/*(?:@.*)?$`
)

// raw writes a CEL raw string literal; the regular expressions above contain no quote.
func raw(re string) string { return "r'" + re + "'" }

// lit writes a CEL string literal for a key or a fixed text (no quote or backslash in them).
func lit(s string) string {
	if strings.ContainsAny(s, `'\`) {
		panic("admissionpolicy: literal needs escaping: " + s)
	}
	return "'" + s + "'"
}

// bind evaluates body with name bound to value.
func bind(name, value, body string) string {
	return "[" + value + "].map(" + name + ", " + body + ")[0]"
}

// parseSecondsCEL is annotations.ParseSeconds on the string variable v: the seconds, or -1.
func parseSecondsCEL(v string) string {
	digits := bind("t", v+".find('[1-9][0-9]*')",
		"size(t) <= 10 && int('0' + t) <= "+maxSeconds+" ? int('0' + t) : -1")
	dur := bind("d", "duration("+v+")",
		"d >= duration('0s') && int(d) % 1000000000 == 0 ? int(d) / 1000000000 : -1")
	return "size(" + v + ") > " + fmt.Sprint(maxValueLen) + " ? -1 : " +
		v + ".matches('^[0-9]+$') ? " + digits + " : " +
		v + ".matches(" + raw(goDurationRE) + ") ? " + dur + " : -1"
}

// formatSecondsCEL is annotations.FormatSeconds of the non-negative int variable n.
func formatSecondsCEL(n string) string {
	return "(" + n + " > " + maxSeconds + " ? string(" + n + ") + 's' : " +
		n + " >= 3600 ? string(" + n + " / 3600) + 'h' + string(" + n + " % 3600 / 60) + 'm' + string(" + n + " % 60) + 's' : " +
		n + " >= 60 ? string(" + n + " / 60) + 'm' + string(" + n + " % 60) + 's' : string(" + n + ") + 's')"
}

// quoteCEL is annotations.Truncate of the string variable v: strconv.Quote of at most 64
// bytes. Exact for printable text (ASCII of any length; other printable text up to 64
// bytes); CEL cannot cut UTF-8 at a byte count or escape control characters the way
// strconv.Quote does, so any other value is described instead of echoed.
func quoteCEL(v string) string {
	esc := func(s string) string { return s + `.replace('\\', '\\\\').replace('"', '\\"')` }
	return "(" + v + ".matches(r'^[ -~]*$') ? (size(" + v + ") <= 64 ? '\"' + " + esc(v) + " + '\"' : '\"' + " +
		esc(v+".substring(0, 64)") + " + '\"... (' + string(size(" + v + ")) + ' bytes)') : " +
		"size(bytes(" + v + ")) <= 64 && " + v + ".matches(r'^[\\p{L}\\p{M}\\p{N}\\p{P}\\p{S} ]*$') ? '\"' + " + esc(v) + " + '\"' : " +
		"'(a value of ' + string(size(bytes(" + v + "))) + ' bytes with control or non-ASCII characters)')"
}

// invalidPrefix is how field.Invalid with field.OmitValueType starts for an annotation.
func invalidPrefix(key string) string {
	return lit(annotations.Path(key).String() + ": Invalid value: ")
}

// selectorCEL is a label selector as CEL over the label map l. The policy's selector has
// been validated, so keys and values are label syntax and need no escaping.
func selectorCEL(sel *metav1.LabelSelector, l string) (string, error) {
	if sel == nil {
		return "false", nil
	}
	var clauses []string
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		clauses = append(clauses, "("+lit(k)+" in "+l+" && "+l+"["+lit(k)+"] == "+lit(sel.MatchLabels[k])+")")
	}
	for i, r := range sel.MatchExpressions {
		vals := make([]string, len(r.Values))
		for j, v := range r.Values {
			vals[j] = lit(v)
		}
		list := "[" + strings.Join(vals, ", ") + "]"
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			clauses = append(clauses, "("+lit(r.Key)+" in "+l+" && "+l+"["+lit(r.Key)+"] in "+list+")")
		case metav1.LabelSelectorOpNotIn:
			clauses = append(clauses, "!("+lit(r.Key)+" in "+l+" && "+l+"["+lit(r.Key)+"] in "+list+")")
		case metav1.LabelSelectorOpExists:
			clauses = append(clauses, lit(r.Key)+" in "+l)
		case metav1.LabelSelectorOpDoesNotExist:
			clauses = append(clauses, "!("+lit(r.Key)+" in "+l+")")
		default:
			return "", field.NotSupported(field.NewPath("selector", "matchExpressions").Index(i).Child("operator"), r.Operator,
				[]string{string(metav1.LabelSelectorOpIn), string(metav1.LabelSelectorOpNotIn), string(metav1.LabelSelectorOpExists), string(metav1.LabelSelectorOpDoesNotExist)})
		}
	}
	if len(clauses) == 0 {
		return "true", nil
	}
	return strings.Join(clauses, " && "), nil
}
