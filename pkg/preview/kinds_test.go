package preview

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// TestNotices: an object whose pod template mutate cannot place is named, once, with its
// document; placed objects, objects without pods and a Rollout that takes its pods from a
// Deployment are not.
func TestNotices(t *testing.T) {
	in, err := os.ReadFile("testdata/custom-kinds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	list := `{"apiVersion":"v1","kind":"List","items":[` +
		`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"pushgateway"}]}}}}}},` +
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"template":"{}"}}]}`
	var out bytes.Buffer
	res, err := Stream(strings.NewReader(string(in)+"---\n"+list+"\n"), &out, policy.Default(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range Notices(res) {
		got = append(got, n.String())
	}
	want := []string{
		"document 6: Service/pushgateway-knative: pod template at spec.template not mutated: mutate does not know this kind (the webhook still mutates the pods created from it)",
		"document 8: Deployment/partial: no pod template at spec.template: not mutated",
		"document 9: Widget/w: pod template at spec.jobTemplate.spec.template not mutated: mutate does not know this kind (the webhook still mutates the pods created from it)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("notices:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	mutated := map[string]bool{}
	for _, r := range res {
		if r.Mutated {
			mutated[r.Kind+"/"+r.Name] = true
		}
	}
	for _, k := range []string{"Rollout/pushgateway", "CloneSet/pushgateway", "PodTemplate/pushgateway-template", "ReplicationController/legacy"} {
		if !mutated[k] {
			t.Errorf("%s not mutated", k)
		}
	}
	if len(mutated) != 4 {
		t.Errorf("mutated %v, want exactly the four placed kinds", mutated)
	}
}

// TestLists: each item of a List is mutated as its own document would be, in either format,
// and nothing else of the List changes.
func TestLists(t *testing.T) {
	item := func(name string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"` + name + `"},"spec":{"template":{"metadata":{"labels":{"app.kubernetes.io/name":"pushgateway"}},"spec":{"containers":[{"name":"pushgateway","image":"p"}]}}}}`
	}
	for _, tc := range []struct {
		name, in string
		mutated  []bool
	}{
		{"kubectl List, JSON", `{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[` + item("a") + `,{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}},` + item("b") + `]}`, []bool{true, false, true}},
		{"API list kind", `{"apiVersion":"apps/v1","kind":"DeploymentList","metadata":{"resourceVersion":"7"},"items":[` + item("a") + `]}`, []bool{true}},
		{"API list, items without their kind", `{"apiVersion":"apps/v1","kind":"StatefulSetList","items":[` + strings.Replace(item("a"), `"apiVersion":"apps/v1","kind":"Deployment",`, "", 1) + `]}`, []bool{true}},
		{"List of a List", `{"kind":"List","items":[{"kind":"List","items":[` + item("a") + `]}]}`, []bool{true}},
		{"kubectl List, YAML", "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n- " + item("a") + "\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n", []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Stream(strings.NewReader(tc.in+"\n"), &out, policy.Default(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || !res[0].Mutated || len(res[0].Items) != len(tc.mutated) {
				t.Fatalf("results %+v", res)
			}
			if k := res[0].Items[0].Kind; k != "Deployment" && k != "StatefulSet" && k != "List" {
				t.Errorf("first item's kind %q", k)
			}
			for i, want := range tc.mutated {
				if got := res[0].Items[i].Mutated; got != want {
					t.Errorf("item %d mutated %v, want %v", i, got, want)
				}
			}
			checkStream(t, []byte(tc.in+"\n"), policy.Default())
		})
	}
	// A kind that only ends in "List" is an ordinary object, and items that are not objects
	// are passed over.
	for _, in := range []string{
		"apiVersion: example.com/v1\nkind: AllowList\nspec:\n  cidrs: [10.0.0.0/8]\n",
		"kind: List\nitems: [1, two, [3]]\n",
	} {
		var out bytes.Buffer
		if _, err := Stream(strings.NewReader(in), &out, policy.Default(), Options{}); err != nil || out.String() != in {
			t.Errorf("%q: changed to %q (%v)", in, out.String(), err)
		}
	}
}

// TestDiffJSON: the diff of a one-line JSON document is shown indented, one changed value a
// line, while the output itself stays on one line.
func TestDiffJSON(t *testing.T) {
	in := `{"kind":"Pod","metadata":{"labels":{"pushgateway-lifecycle.io/inject":"true"}},"spec":{"containers":[{"name":"p"}]}}` + "\n"
	var out bytes.Buffer
	if _, err := Stream(strings.NewReader(in), &out, policy.Default(), Options{Diff: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n-        \"name\": \"p\"\n+        \"name\": \"p\",\n+        \"lifecycle\": {\n", "\n+    \"terminationGracePeriodSeconds\": 45\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diff lacks %q:\n%s", want, out.String())
		}
	}
}

// TestListDenial: with onInvalid: reject, a denied item of a List stays as it was and is
// reported; the other items are still mutated, in either format.
func TestListDenial(t *testing.T) {
	reject, err := policy.Parse([]byte("onInvalid: reject\n"))
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name, ann string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","labels":{"app.kubernetes.io/name":"pushgateway"},"annotations":{` + ann + `}},"spec":{"containers":[{"name":"pushgateway"}]}}`
	}
	list := `{"apiVersion":"v1","kind":"List","items":[` + pod("bad", `"pushgateway-lifecycle.io/pre-stop-sleep":"soon"`) + `,` + pod("good", "") + `]}`
	var obj any
	if err := json.Unmarshal([]byte(list), &obj); err != nil {
		t.Fatal(err)
	}
	asYAML, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{"json": list + "\n", "yaml": string(asYAML)} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Stream(strings.NewReader(in), &out, reject, Options{})
			if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "Pod bad") || strings.Contains(err.Error(), "Pod good") {
				t.Fatalf("err = %v, want the denial of Pod bad only", err)
			}
			if len(res) != 1 || len(res[0].Items) != 2 || res[0].Items[0].Mutated || !res[0].Items[1].Mutated {
				t.Fatalf("results %+v", res)
			}
			if n := strings.Count(out.String(), "pushgateway-lifecycle.io/status"); n != 1 {
				t.Errorf("%d status annotations in the output, want the good pod's only:\n%s", n, out.String())
			}
			checkStream(t, []byte(in), reject)
		})
	}
}

// TestDocsListKinds: docs/mutate.md names every kind mutate places.
func TestDocsListKinds(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mutate.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range HandledKinds() {
		group, kind, custom := strings.Cut(k, "/")
		if !custom {
			kind = group
		}
		if !bytes.Contains(doc, []byte("`"+kind+"`")) || (custom && !bytes.Contains(doc, []byte("`"+group+"`"))) {
			t.Errorf("docs/mutate.md does not name %s", k)
		}
	}
}

// TestKubectlOutputMinimalDiff: on what kubectl v1.37.2 printed for a real API server
// (testdata/kubectl-*: `get deploy -o yaml|json`, `get pod -o json`, `get --raw` of a
// DeploymentList), the diff only adds the webhook's lines: the one line it removes is the old
// grace period, or (JSON) a line that gains its comma; List fields, key order and the
// sequence style of kubectl's YAML are untouched.
func TestKubectlOutputMinimalDiff(t *testing.T) {
	for _, name := range []string{"kubectl-get-deploy-list.yaml", "kubectl-get-deploy-list.json", "kubectl-get-pod.json", "kubectl-get-raw-deploymentlist.json"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile("testdata/" + name)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			res, err := Stream(bytes.NewReader(in), &out, policy.Default(), Options{Diff: true})
			if err != nil {
				t.Fatal(err)
			}
			if !res[0].Mutated || len(Notices(res)) > 0 {
				t.Fatalf("mutated %v, notices %v", res[0].Mutated, Notices(res))
			}
			added := map[string]bool{}
			var removed []string
			for _, l := range strings.Split(out.String(), "\n") {
				switch {
				case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
				case strings.HasPrefix(l, "+"):
					added[l[1:]] = true
				case strings.HasPrefix(l, "-"):
					removed = append(removed, l[1:])
				}
			}
			// The readinessProbe's two timings are rewritten in place, where kubectl put them
			// (only the upstream chart's Deployments have one: kubectl-get-pod.json does not).
			graces, timings := 0, 0
			for _, l := range removed {
				switch {
				case strings.Contains(l, "terminationGracePeriodSeconds"):
					graces++
				case strings.Contains(l, `initialDelaySeconds`) || strings.Contains(l, `periodSeconds`):
					timings++
				case added[l+","]:
				default:
					t.Errorf("removed line %q", l)
				}
			}
			wantTimings := 2
			if !bytes.Contains(in, []byte("/-/ready")) {
				wantTimings = 0
			}
			if graces != 1 || timings != wantTimings || len(added) < 7 {
				t.Errorf("%d grace lines, %d probe timing lines (want %d) removed, %d lines added:\n%s", graces, timings, wantTimings, len(added), out.String())
			}
		})
	}
}
