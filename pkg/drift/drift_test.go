package drift

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
)

func TestScope(t *testing.T) {
	chart := `{"matchLabels":{"pushgateway-lifecycle.io/injection":"enabled"},"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","pgl"]}]}`
	cluster := `{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","pgl"]}]}`
	for _, tc := range []struct {
		sel, ns string
		labels  map[string]string
		want    bool
	}{
		{chart, "apps", map[string]string{"pushgateway-lifecycle.io/injection": "enabled", "kubernetes.io/metadata.name": "apps"}, true},
		{chart, "apps", map[string]string{"kubernetes.io/metadata.name": "apps"}, false},
		{chart, "pgl", map[string]string{"pushgateway-lifecycle.io/injection": "enabled", "kubernetes.io/metadata.name": "pgl"}, false},
		{cluster, "apps", map[string]string{"kubernetes.io/metadata.name": "apps"}, true},
		{"pushgateway-lifecycle.io/injection=enabled", "apps", map[string]string{"pushgateway-lifecycle.io/injection": "enabled"}, true},
		{"pushgateway-lifecycle.io/injection=enabled", "kube-system", map[string]string{"pushgateway-lifecycle.io/injection": "enabled"}, false},
	} {
		sel, err := ParseSelector(tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		s := Scope{NamespaceSelector: sel, Excluded: []string{"kube-system"}}
		if got := s.OptedIn(tc.ns, tc.labels); got != tc.want {
			t.Errorf("%s on %s %v: %v, want %v", tc.sel, tc.ns, tc.labels, got, tc.want)
		}
	}
	for _, bad := range []string{"a in (b", `{"matchLabels":`, `{"matchExpressions":[{"key":"a","operator":"Bogus"}]}`} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) = nil error", bad)
		}
	}
}

func TestFix(t *testing.T) {
	ctrl := true
	pod := func(kind, name, hash string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-1", Namespace: "apps", Labels: map[string]string{}}}
		if hash != "" {
			p.Labels["pod-template-hash"] = hash
		}
		if kind != "" {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &ctrl}}
		}
		return p
	}
	for _, tc := range []struct {
		p    *corev1.Pod
		want string
	}{
		{pod("ReplicaSet", "pgw-5d8f", "5d8f"), "kubectl rollout restart deployment/pgw -n apps"},
		{pod("StatefulSet", "pgw", ""), "kubectl rollout restart statefulset/pgw -n apps"},
		{pod("", "", ""), "kubectl get pod p-1 -n apps -o yaml | kubectl replace --force -f -"},
		{pod("ReplicaSet", "bare", "x"), "kubectl delete pod -n apps p-1"},
	} {
		if got := Fix(tc.p); !strings.HasPrefix(got, tc.want) {
			t.Errorf("Fix = %q, want it to start with %q", got, tc.want)
		}
	}
	for s, want := range map[audit.State]bool{audit.StateUnprotected: true, audit.StateDrifted: true, audit.StateInvalid: true,
		audit.StateProtected: false, audit.StateOptedOut: false, audit.StateNotOptedIn: false} {
		if Reported(s) != want {
			t.Errorf("Reported(%s) = %v", s, !want)
		}
	}
}
