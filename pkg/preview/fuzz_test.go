package preview

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// fuzzFixtures reads the upstream chart renders in test/testdata/upstream-chart.
func fuzzFixtures(f *testing.F) [][]byte {
	files, err := fixtures.UpstreamChart()
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// streamSeeds are YAML shapes that trip hand-written document splitters and node patchers.
var streamSeeds = []string{
	"",
	"---\n---\n",
	"--- # Source: x\napiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    pushgateway-lifecycle.io/inject: \"true\"\nspec:\n  containers:\n  - name: pushgateway\n",
	"kind: Pod\nmetadata: {labels: {pushgateway-lifecycle.io/inject: 'true'}, annotations: {pushgateway-lifecycle.io/pre-stop-sleep: 9999999999999999999s}}\nspec: {containers: [{name: a}, {name: a}]}\n",
	"kind: Deployment\nspec:\n  template: &t\n    metadata: {labels: {app.kubernetes.io/name: pushgateway}}\n    spec: {containers: [{name: pushgateway}]}\nother: *t\n",
	"kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          labels: {pushgateway-lifecycle.io/inject: \"true\"}\n        spec:\n          containers: [{name: x}]\n",
	"kind: Pod\nspec: null\n",
	"kind: Pod\nspec:\n  containers: \"no\"\n",
	"- a\n- b\n",
	"just a scalar\n",
	"kind: [Pod]\n",
	"kind: Pod\nmetadata:\n  labels:\n    pushgateway-lifecycle.io/inject: \"true\"\n  annotations: ~\nspec:\n  containers:\n  - name: pushgateway\n    lifecycle: {preStop: {exec: {command: [sh]}}}\n",
	"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"pushgateway-lifecycle.io/inject\":\"true\"}},\"spec\":{\"containers\":[{\"name\":\"p\"}]}}\n",
	"kind: Pod\n\tbad: tab\n",
	"kind: Pod\nmetadata: {labels: {pushgateway-lifecycle.io/inject: \"true\"}}\nspec:\n  containers:\n  - name: \"~1/x\"\n",
}

// FuzzStream: the mutate reader never panics; it fails only with an input error or a
// denial (anything else is our bug, not the user's); and what it writes has the properties
// of checkStream: a fixed point (mutating the output again changes nothing, as Helm
// post-rendering twice must not), JSON documents stay JSON, and each JSON object, List items
// included, is its input with the webhook's patch applied.
func FuzzStream(f *testing.F) {
	for _, d := range fuzzFixtures(f) {
		f.Add(d)
	}
	for _, s := range streamSeeds {
		f.Add([]byte(s))
	}
	for _, s := range listAndJSONSeeds {
		f.Add([]byte(s))
	}
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkStream(t, data, pol) != nil {
			_, _ = Stream(bytes.NewReader(data), io.Discard, pol, Options{Diff: true})
		}
	})
}

// listAndJSONSeeds are the shapes of the List and JSON readers: kubectl's Lists in both
// formats, JSON in every layout (compact, indented by 2 and 4, tabs, CRLF, after a comment,
// several values in one document), escaped and repeated keys, Lists holding non-objects and
// Lists, and the kinds that earn a notice.
var listAndJSONSeeds = []string{
	"apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: a\n  spec:\n    template:\n      metadata:\n        labels:\n          app.kubernetes.io/name: pushgateway\n      spec:\n        containers:\n        - name: pushgateway\n          image: p\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s\n",
	"{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n        {\n            \"apiVersion\": \"apps/v1\",\n            \"kind\": \"Deployment\",\n            \"metadata\": {\n                \"name\": \"a\"\n            },\n            \"spec\": {\n                \"template\": {\n                    \"metadata\": {\n                        \"labels\": {\n                            \"app.kubernetes.io/name\": \"pushgateway\"\n                        }\n                    },\n                    \"spec\": {\n                        \"containers\": [\n                            {\n                                \"name\": \"pushgateway\"\n                            }\n                        ]\n                    }\n                }\n            }\n        }\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n",
	`{"kind":"PodList","items":[{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}},"spec":{"containers":[{"name":"a"}]}},1,"x",null,{"kind":"List","items":[{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"},"annotations":{}},"spec":{"containers":[{"name":"b","lifecycle":{"preStop":{"exec":{"command":["sh"]}}}}],"terminationGracePeriodSeconds":5}}]}]}`,
	"{\r\n  \"kind\": \"Pod\",\r\n  \"metadata\": {\r\n    \"labels\": {\"app.kubernetes.io/name\": \"pushgateway\"}\r\n  },\r\n  \"spec\": {\"containers\": [{\"name\": \"pushgateway\"}]}\r\n}\r\n",
	"{\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\n\t\t\"labels\": {\n\t\t\t\"app.kubernetes.io/name\": \"pushgateway\"\n\t\t},\n\t\t\"annotations\": {}\n\t},\n\t\"spec\": {\n\t\t\"containers\": [\n\t\t\t{\n\t\t\t\t\"name\": \"pushgateway\",\n\t\t\t\t\"lifecycle\": {}\n\t\t\t}\n\t\t]\n\t}\n}\n",
	`{"kind": "Pod", "met\u0061data": {"labels": {"app.kubernetes.io/name": "pushgateway"}}, "spec": {"containers": [{"name": "pushgateway", "image": "a<b>&c"}]}}`,
	`{"kind":"Pod","metadata":{"labels":{"app.kubernetes.io/name":"pushgateway"}},"metadata":{},"spec":{"containers":[{"name":"pushgateway"}]}}`,
	`{"kind":"Pod","Metadata":{"labels":{"app.kubernetes.io/name":"pushgateway"}},"spec":{"containers":[{"name":"pushgateway"}]}}`,
	"# Source: chart/templates/pod.json\n{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"app.kubernetes.io/name\":\"pushgateway\"}},\"spec\":{\"containers\":[{\"name\":\"pushgateway\"}]}}\n{\"kind\":\"Pod\"} 5 \"x\" [1]\n",
	"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"app.kubernetes.io/name\":\"pushgateway\"}},\"spec\":{\"containers\":[{\"name\":\"pushgateway\",\"lifecycle\":{\"preStop\":{\"sleep\":{\"seconds\":1}}}}],\"terminationGracePeriodSeconds\":1e1}}{\"kind\":\"Pod\"}",
	"{\"kind\": \"Deployment\", \"spec\": {\"template\": {\"metadata\": null, \"spec\": {\"containers\": [{\"name\": \"pushgateway\"}]}}}}",
	"{\"kind\": \"Deployment\", \"spec\": {\"template\": {\"spec\": {\"containers\": [{\"name\": \"pushgateway\"}]}}}, \"x\": {\"kind\": \"Pod\"}}\n---\nkind: Pod\n",
	"kind: List\nitems: {a: b}\n---\nkind: AllowList\nspec: {template: {spec: {containers: []}}}\n---\nkind: DeploymentList\nitems: [1, [2], {kind: StatefulSet, spec: {template: {metadata: {labels: {pushgateway-lifecycle.io/inject: 'true'}}, spec: {containers: [{name: c}]}}}}]\n",
	"apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  template:\n    metadata: {labels: {app.kubernetes.io/name: pushgateway}}\n    spec: {containers: [{name: pushgateway}]}\n---\nkind: PodTemplate\ntemplate: {metadata: {labels: {app.kubernetes.io/name: pushgateway}}, spec: {containers: [{name: pushgateway}]}}\n---\napiVersion: example.com/v1\nkind: Widget\nspec: {template: {spec: {containers: [{name: pushgateway}]}}}\n",
	// YAML aliases: a List that contains itself, an item repeated.
	"kind: List\nitems: &a\n- kind: List\n  items: *a\n",
	"&r\nkind: List\nitems:\n- *r\n",
	"kind: List\nitems:\n- &p {kind: Pod, metadata: {labels: {app.kubernetes.io/name: pushgateway}}, spec: {containers: [{name: pushgateway}]}}\n- *p\n- *p\n",
	"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":\"apps.kruise.io/v1alpha1\",\"kind\":\"CloneSet\",\"metadata\":{\"name\":\"c\"},\"spec\":{\"template\":{\"metadata\":{\"labels\":{\"app.kubernetes.io/name\":\"pushgateway\"}},\"spec\":{\"containers\":[{\"name\":\"pushgateway\"}]}}}},{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\",\"spec\":{\"template\":{\"spec\":{\"containers\":[]}}}}]}",
}
