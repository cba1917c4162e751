package drift

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/audit"
)

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
