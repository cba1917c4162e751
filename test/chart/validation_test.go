package chart

import (
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// conditionNames lists a validating webhook's matchConditions by name.
func conditionNames(w admissionv1.ValidatingWebhook) []string {
	var out []string
	for _, c := range w.MatchConditions {
		out = append(out, c.Name)
	}
	return out
}

// The validating webhook is sent only selected pod templates, never a controller's objects and
// never an UPDATE that keeps the template; without podSelection the last two still hold (they
// are what keeps the webhook off the controllers' path). The expressions are the harness's,
// which the e2e suite proves on a real API server.
func TestValidatingMatchConditions(t *testing.T) {
	want := map[string]string{
		"pushgateway-pod-templates": harness.TemplateSelectionCEL,
		"not-controller-owned":      harness.NotControllerOwnedCEL,
		"workload-spec-changed":     harness.WorkloadSpecChangedCEL,
	}
	for _, tc := range []struct {
		name   string
		values map[string]any
		names  []string
	}{
		{"default", nil, []string{"pushgateway-pod-templates", "not-controller-owned", "workload-spec-changed"}},
		{"podSelection off", map[string]any{"webhook": map[string]any{"podSelection": map[string]any{"enabled": false}}},
			[]string{"not-controller-owned", "workload-spec-changed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v admissionv1.ValidatingWebhookConfiguration
			render(t, tc.values).one(t, "ValidatingWebhookConfiguration", &v)
			w := v.Webhooks[0]
			if got := conditionNames(w); !slices.Equal(got, tc.names) {
				t.Fatalf("matchConditions %v, want %v", got, tc.names)
			}
			for _, c := range w.MatchConditions {
				if c.Expression != want[c.Name] {
					t.Errorf("%s:\n got %s\nwant %s", c.Name, c.Expression, want[c.Name])
				}
			}
		})
	}
	t.Run("custom appNames reach the template selection", func(t *testing.T) {
		var v admissionv1.ValidatingWebhookConfiguration
		render(t, nil, ciFiles(t)["custom-policy"]).one(t, "ValidatingWebhookConfiguration", &v)
		got := v.Webhooks[0].MatchConditions[0].Expression
		for _, s := range []string{"object.spec.template.metadata.labels['app.kubernetes.io/name'] in ['my-pushgateway']",
			"object.spec.jobTemplate.spec.template.metadata.labels['app.kubernetes.io/name'] in ['my-pushgateway']"} {
			if !strings.Contains(got, s) {
				t.Errorf("template selection lacks %q:\n%s", s, got)
			}
		}
	})
}

// A drain must not wait on replicas that serve nothing: unready webhook pods may always be
// evicted, in the chart and in config/.
func TestPDBEvictsUnhealthyPods(t *testing.T) {
	check := func(t *testing.T, r rendered) {
		t.Helper()
		var pdb policyv1.PodDisruptionBudget
		r.one(t, "PodDisruptionBudget", &pdb)
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("unhealthyPodEvictionPolicy %v, want AlwaysAllow", p)
		}
	}
	t.Run("chart", func(t *testing.T) { check(t, render(t, nil)) })
	t.Run("kustomize", func(t *testing.T) { check(t, kustomize(t, "config/default")) })
}

// The opt-in NetworkPolicy admits the webhook and health ports from anywhere and the metrics
// port (only when metrics are on) from metricsFrom; nothing else reaches the pods.
func TestNetworkPolicy(t *testing.T) {
	if n := len(render(t, nil).all("NetworkPolicy")); n != 0 {
		t.Errorf("%d NetworkPolicies rendered by default, want none (opt-in)", n)
	}
	type rule struct {
		ports []int32
		from  int
	}
	rules := func(t *testing.T, r rendered) (*networkingv1.NetworkPolicy, []rule) {
		t.Helper()
		var np networkingv1.NetworkPolicy
		r.one(t, "NetworkPolicy", &np)
		var out []rule
		for _, in := range np.Spec.Ingress {
			var ports []int32
			for _, p := range in.Ports {
				if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP || p.Port == nil || p.Port.Type != intstr.Int || p.EndPort != nil {
					t.Errorf("port %+v: want one numbered TCP port", p)
					continue
				}
				ports = append(ports, p.Port.IntVal)
			}
			out = append(out, rule{ports, len(in.From)})
		}
		return &np, out
	}
	for _, tc := range []struct {
		name   string
		values map[string]any
		file   string
		want   []rule
	}{
		{name: "ci file", file: "network-policy", want: []rule{{[]int32{9443, 8081}, 0}, {[]int32{8080}, 1}}},
		{name: "metrics from anywhere", values: map[string]any{"networkPolicy": map[string]any{"enabled": true}},
			want: []rule{{[]int32{9443, 8081}, 0}, {[]int32{8080}, 0}}},
		{name: "metrics off, other ports", values: map[string]any{"networkPolicy": map[string]any{"enabled": true},
			"metricsPort": 0, "healthPort": 9090, "webhook": map[string]any{"port": 10250}},
			want: []rule{{[]int32{10250, 9090}, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var files []string
			if tc.file != "" {
				files = append(files, ciFiles(t)[tc.file])
			}
			r := render(t, tc.values, files...)
			np, got := rules(t, r)
			if !slices.EqualFunc(got, tc.want, func(a, b rule) bool { return slices.Equal(a.ports, b.ports) && a.from == b.from }) {
				t.Errorf("ingress rules %+v, want %+v", got, tc.want)
			}
			if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
				t.Errorf("policyTypes %v, want [Ingress] (egress stays open for the rotator)", np.Spec.PolicyTypes)
			}
			var d struct {
				Spec struct {
					Template struct {
						Metadata struct {
							Labels map[string]string `json:"labels"`
						} `json:"metadata"`
					} `json:"template"`
				} `json:"spec"`
			}
			deps := r.all("Deployment")
			if len(deps) != 1 {
				t.Fatal("no Deployment")
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(deps[0].Object, &d); err != nil {
				t.Fatal(err)
			}
			for k, v := range np.Spec.PodSelector.MatchLabels {
				if d.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("podSelector %v does not select the webhook pods (labels %v)", np.Spec.PodSelector.MatchLabels, d.Spec.Template.Metadata.Labels)
				}
			}
			if len(np.Spec.PodSelector.MatchLabels) == 0 {
				t.Error("empty podSelector: the policy would cover every pod of the namespace")
			}
		})
	}
	if _, err := harness.RenderChart(namespace, map[string]any{"networkPolicy": map[string]any{"enabled": true, "metricsFrom": []any{map[string]any{"namespaceSelectr": map[string]any{}}}}}); err == nil {
		t.Error("a misspelled metricsFrom peer rendered without error")
	}
}
