package audit

import "testing"

// The namespace scope that audit and the drift watch share, in both selector forms.
func TestNamespaceScope(t *testing.T) {
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
		sel, err := ParseNamespaceSelector(tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		s := NamespaceScope{NamespaceSelector: sel, Excluded: []string{"kube-system"}}
		if got := s.OptedIn(tc.ns, tc.labels); got != tc.want {
			t.Errorf("%s on %s %v: %v, want %v", tc.sel, tc.ns, tc.labels, got, tc.want)
		}
	}
	for _, bad := range []string{"a in (b", `{"matchLabels":`, `{"matchExpressions":[{"key":"a","operator":"Bogus"}]}`} {
		if _, err := ParseNamespaceSelector(bad); err == nil {
			t.Errorf("ParseNamespaceSelector(%q) = nil error", bad)
		}
	}
}
