package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleReport is a cluster with one workload of every kind and a pod in every state, added
// out of order: the report must come out sorted.
func sampleReport() *Report {
	b := NewBuilder()
	rs := &Ref{"ReplicaSet", "pgw-7d4b9c"}
	b.AddPod(Pod{Namespace: "team-b", Name: "pgw-7d4b9c-b", State: StateUnprotected, Reason: "no status annotation; would set: x", Owner: rs, Workload: Ref{"Deployment", "pgw"}})
	b.AddPod(Pod{Namespace: "team-b", Name: "pgw-7d4b9c-a", State: StateProtected, Status: "injected: sleep 30s on pushgateway; terminationGracePeriodSeconds 30->45", Owner: rs, Workload: Ref{"Deployment", "pgw"}, SharedVolumes: []string{"claim pgw"}})
	b.AddPod(Pod{Namespace: "team-a", Name: "pgw-0", State: StateDrifted, Reason: "spec differs", Owner: &Ref{"StatefulSet", "pgw"}, Workload: Ref{"StatefulSet", "pgw"}})
	b.AddPod(Pod{Namespace: "team-a", Name: "bare", State: StateInvalid, Reason: "bad sleep", Workload: Ref{"Pod", "bare"}})
	b.AddPod(Pod{Namespace: "team-c", Name: "pgw-x", State: StateNotOptedIn, Reason: "namespace team-c is not opted in", Owner: &Ref{"DaemonSet", "pgw"}, Workload: Ref{"DaemonSet", "pgw"}})
	b.AddPod(Pod{Namespace: "team-c", Name: "nightly-1-q", State: StateOptedOut, Reason: "pushgateway-lifecycle.io/inject=false", Owner: &Ref{"Job", "nightly-1"}, Workload: Ref{"CronJob", "nightly"}})
	b.SetTemplate("team-b", Ref{"Deployment", "pgw"}, TemplateVerdict{State: TemplateMutated, Risks: []engine.Risk{
		{Code: engine.RiskTwoWriters, Message: "Deployment strategy RollingUpdate (the default) with container \"pushgateway\" persisting /data/store on volume \"storage\": ..."},
		{Code: engine.RiskCrash, Info: true, Message: "a crash of container \"pushgateway\" ... every 5m (--persistence.interval)"},
	}})
	b.SetTemplate("team-a", Ref{"StatefulSet", "pgw"}, TemplateVerdict{State: TemplateMutated})
	b.SetTemplate("team-c", Ref{"DaemonSet", "pgw"}, TemplateVerdict{State: TemplateMutated})
	b.SetTemplate("team-c", Ref{"CronJob", "nightly"}, TemplateVerdict{State: TemplateOptedOut})
	b.AddError(Error{Verb: "get", Resource: "replicasets.apps", Namespace: "team-d", Message: "missing permission: get replicasets.apps in namespace team-d (pgw-1)"})
	b.AddError(Error{Verb: "get", Resource: "replicasets.apps", Namespace: "team-d", Message: "missing permission: get replicasets.apps in namespace team-d (pgw-2)"})
	return b.Report(Scope{AllNamespaces: true, Policy: "built-in", WebhookScope: "namespace",
		NamespaceSelector: "pushgateway-lifecycle.io/injection=enabled", ExcludedNames: []string{"kube-system"}})
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestReportGolden(t *testing.T) {
	r := sampleReport()
	for _, f := range []struct{ format, file string }{
		{FormatTable, "report.txt"}, {FormatWide, "report-wide.txt"}, {FormatJSON, "report.json"}, {FormatYAML, "report.yaml"},
	} {
		t.Run(f.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Print(&buf, r, f.format); err != nil {
				t.Fatal(err)
			}
			golden(t, f.file, buf.Bytes())
		})
	}
	if err := Print(&bytes.Buffer{}, r, "xml"); err == nil || !strings.Contains(err.Error(), "wide, json, yaml") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestReportContent(t *testing.T) {
	r := sampleReport()
	if r.APIVersion != APIVersion || r.Kind != Kind {
		t.Errorf("type %s %s", r.APIVersion, r.Kind)
	}
	if r.Summary.Pods != 6 || r.Summary.Workloads != 5 || r.Summary.AllProtected {
		t.Errorf("summary %+v", r.Summary)
	}
	for _, s := range States {
		if r.Summary.ByState[s] != 1 {
			t.Errorf("byState[%s] = %d, want 1", s, r.Summary.ByState[s])
		}
	}
	if len(r.Errors) != 1 {
		t.Errorf("errors %v: a repeated denial must be reported once", r.Errors)
	}
	var got []string
	for _, w := range r.Workloads {
		got = append(got, w.Namespace+"/"+w.Ref().String()+"="+string(w.State))
	}
	want := "team-a/pod/bare=Invalid team-a/statefulset/pgw=Drifted team-b/deployment/pgw=Unprotected team-c/cronjob/nightly=OptedOut team-c/daemonset/pgw=NotOptedIn"
	if strings.Join(got, " ") != want {
		t.Errorf("workloads\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	// JSON and YAML are the same document.
	var viaJSON, viaYAML map[string]any
	var jb, yb bytes.Buffer
	if err := Print(&jb, r, FormatJSON); err != nil {
		t.Fatal(err)
	}
	if err := Print(&yb, r, FormatYAML); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(jb.Bytes(), &viaJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(yb.Bytes(), &viaYAML); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(viaJSON)
	b, _ := json.Marshal(viaYAML)
	if !bytes.Equal(a, b) {
		t.Errorf("JSON and YAML differ:\n%s\n%s", a, b)
	}
}

func TestEmptyReport(t *testing.T) {
	r := NewBuilder().Report(Scope{Namespace: "x"})
	if !r.Summary.AllProtected || r.Pods == nil || r.Workloads == nil {
		t.Errorf("empty report %+v", r)
	}
	var buf bytes.Buffer
	if err := Print(&buf, r, FormatJSON); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"pods": []`) {
		t.Errorf("an empty list must print as [] (a stable schema), got:\n%s", buf.String())
	}
	buf.Reset()
	if err := Print(&buf, r, FormatTable); err != nil || buf.Len() != 0 {
		t.Errorf("empty table printed %q, %v", buf.String(), err)
	}
}

func TestFix(t *testing.T) {
	w := func(kind string, state State, tpl string) *Workload {
		return &Workload{Namespace: "ns", Kind: kind, Name: "pgw", State: state, Template: tpl}
	}
	pods := []string{"p1", "p2"}
	cases := []struct {
		w      *Workload
		reason string
		want   string
	}{
		{w("Deployment", StateProtected, TemplateMutated), "", ""},
		{w("Deployment", StateOptedOut, TemplateOptedOut), "", ""},
		{w("Deployment", StateUnprotected, TemplateMutated), "", "kubectl rollout restart deployment/pgw -n ns"},
		{w("StatefulSet", StateDrifted, TemplateMutated), "", "kubectl rollout restart statefulset/pgw -n ns"},
		{w("DaemonSet", StateUnprotected, ""), "", "kubectl rollout restart daemonset/pgw -n ns"},
		{w("Deployment", StateNotOptedIn, TemplateMutated), "namespace ns is not opted in",
			"kubectl label namespace ns pushgateway-lifecycle.io/injection=enabled && kubectl rollout restart deployment/pgw -n ns"},
		{w("Deployment", StateNotOptedIn, TemplateNeverMutated), "the webhook never mutates a kube-system",
			"none possible: the webhook never mutates a kube-system; run it in another namespace"},
		{w("Deployment", StateInvalid, TemplateInvalid), "", "fix the pod template's annotations (see the pods' reason), then: kubectl rollout restart deployment/pgw -n ns"},
		{w("Pod", StateInvalid, ""), "", "fix the pod's annotations (see its reason), then: kubectl get pod pgw -n ns -o yaml | kubectl replace --force -f -"},
		{w("Pod", StateUnprotected, ""), "", "kubectl get pod pgw -n ns -o yaml | kubectl replace --force -f -"},
		{w("Deployment", StateUnprotected, TemplateNotSelected), "", "label the pod template pushgateway-lifecycle.io/inject=true"},
		{w("Deployment", StateUnprotected, TemplateOptedOut), "", "none: the pod template opts out"},
		{w("CronJob", StateUnprotected, TemplateMutated), "", "none needed: the next run of cronjob/pgw is created through the webhook (to run now: kubectl create job --from=cronjob/pgw pgw-audit -n ns)"},
		{w("Job", StateUnprotected, TemplateMutated), "", "kubectl delete pod -n ns p1 p2 (the Job re-creates them"},
		{w("ReplicaSet", StateUnprotected, TemplateMutated), "", "kubectl delete pod -n ns p1 p2 (replicaset/pgw re-creates them)"},
		{w("Pushgateway", StateUnprotected, ""), "", "kubectl delete pod -n ns p1 p2 (pushgateway/pgw re-creates them)"},
	}
	for _, c := range cases {
		got := Fix(c.w, pods, c.reason)
		if c.want == "" && got != "" || !strings.HasPrefix(got, c.want) {
			t.Errorf("%s %s template %q: fix\n %q\nwant prefix\n %q", c.w.Kind, c.w.State, c.w.Template, got, c.want)
		}
	}
}
