package preview

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// TestJSONLayout: a JSON document comes out as JSON, laid out like its input: what is
// inserted follows the indentation, line ends and separators of the members around it, and
// every byte the patch does not touch is kept.
func TestJSONLayout(t *testing.T) {
	replace, err := policy.Parse([]byte("existingPreStop: replace\n"))
	if err != nil {
		t.Fatal(err)
	}
	const inject = `"pushgateway-lifecycle.io/inject": "true"`
	for _, tc := range []struct {
		name, in, want string
		pol            *policy.Policy
	}{
		{name: "compact, as jq -c and Go print it",
			in:   `{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}},"spec":{"containers":[{"name":"p"}]}}`,
			want: `{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"},"annotations":{"pushgateway-lifecycle.io/status":"injected: sleep 30s on p; terminationGracePeriodSeconds 30->45"}},"spec":{"containers":[{"name":"p","lifecycle":{"preStop":{"sleep":{"seconds":30}}}}],"terminationGracePeriodSeconds":45}}`},
		{name: "one line with spaces, as Python prints it",
			in:   `{"kind": "Pod", "metadata": {"labels": {` + inject + `}}, "spec": {"containers": [{"name": "p"}]}}`,
			want: `{"kind": "Pod", "metadata": {"labels": {` + inject + `}, "annotations": {"pushgateway-lifecycle.io/status": "injected: sleep 30s on p; terminationGracePeriodSeconds 30->45"}}, "spec": {"containers": [{"name": "p", "lifecycle": {"preStop": {"sleep": {"seconds": 30}}}}], "terminationGracePeriodSeconds": 45}}`},
		{name: "kubectl: four spaces, an empty map on its own line, a value replaced",
			in: `{
    "kind": "Pod",
    "metadata": {
        "annotations": {},
        "labels": {
            ` + inject + `
        }
    },
    "spec": {
        "containers": [
            {
                "name": "pushgateway"
            }
        ],
        "terminationGracePeriodSeconds": 5
    }
}`,
			want: `{
    "kind": "Pod",
    "metadata": {
        "annotations": {
            "pushgateway-lifecycle.io/status": "injected: sleep 30s on pushgateway; terminationGracePeriodSeconds 5->45"
        },
        "labels": {
            ` + inject + `
        }
    },
    "spec": {
        "containers": [
            {
                "name": "pushgateway",
                "lifecycle": {
                    "preStop": {
                        "sleep": {
                            "seconds": 30
                        }
                    }
                }
            }
        ],
        "terminationGracePeriodSeconds": 45
    }
}`},
		{name: "tabs, CRLF, an existing preStop replaced, an empty map inside a one-line object",
			pol:  replace,
			in:   "{\r\n\t\"kind\": \"Pod\",\r\n\t\"metadata\": {\"labels\": {" + inject + "}, \"annotations\": {}},\r\n\t\"spec\": {\r\n\t\t\"containers\": [\r\n\t\t\t{\r\n\t\t\t\t\"name\": \"pushgateway\",\r\n\t\t\t\t\"lifecycle\": {\r\n\t\t\t\t\t\"preStop\": {\"exec\": {\"command\": [\"sleep\", \"1\"]}}\r\n\t\t\t\t}\r\n\t\t\t}\r\n\t\t]\r\n\t}\r\n}",
			want: "{\r\n\t\"kind\": \"Pod\",\r\n\t\"metadata\": {\"labels\": {" + inject + "}, \"annotations\": {\"pushgateway-lifecycle.io/status\": \"injected: sleep 30s on pushgateway (replaced existing preStop on pushgateway); terminationGracePeriodSeconds 30->45\"}},\r\n\t\"spec\": {\r\n\t\t\"containers\": [\r\n\t\t\t{\r\n\t\t\t\t\"name\": \"pushgateway\",\r\n\t\t\t\t\"lifecycle\": {\r\n\t\t\t\t\t\"preStop\": {\r\n\t\t\t\t\t\t\"sleep\": {\r\n\t\t\t\t\t\t\t\"seconds\": 30\r\n\t\t\t\t\t\t}\r\n\t\t\t\t\t}\r\n\t\t\t\t}\r\n\t\t\t}\r\n\t\t],\r\n\t\t\"terminationGracePeriodSeconds\": 45\r\n\t}\r\n}"},
		{name: "a comment line before the JSON, and escapes kept as written",
			in:   "# Source: chart/templates/pod.json\n" + `{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"},"annotations":{"note":"a\u003cb \/ c"}},"spec":{"containers":[{"name":"p"}]}}`,
			want: "# Source: chart/templates/pod.json\n" + `{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"},"annotations":{"note":"a\u003cb \/ c","pushgateway-lifecycle.io/status":"injected: sleep 30s on p; terminationGracePeriodSeconds 30->45"}},"spec":{"containers":[{"name":"p","lifecycle":{"preStop":{"sleep":{"seconds":30}}}}],"terminationGracePeriodSeconds":45}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = policy.Default()
			}
			var out bytes.Buffer
			if _, err := Stream(strings.NewReader(tc.in+"\n"), &out, pol, Options{}); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(out.String(), "\n"); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			checkStream(t, []byte(tc.in+"\n"), pol)
		})
	}
}
