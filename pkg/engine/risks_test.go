package engine

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

func i32(n int32) *int32 { return &n }

// persisting gives the Pushgateway container a persistence file under a mount of volume vol.
func persisting(vol string, args ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Args = append(c.Args, args...)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: "/data"})
	}
}

func TestRisks(t *testing.T) {
	pol, err := policy.Load("")
	if err != nil {
		t.Fatal(err)
	}
	claim := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "storage-volume", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pgw"}}})
	}
	empty := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "storage-volume", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	host := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "storage-volume", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/pgw"}}})
	}
	file := persisting("storage-volume", "--persistence.file=/data/pushgateway.data")
	for _, c := range []struct {
		name string
		w    Workload
		// want are the codes, in order; contains a piece of the first message.
		want     []string
		contains string
	}{
		{"recreate with a claim: only the crash bound", Workload{Kind: "Deployment", Strategy: "Recreate", Pod: pgwPod(claim, file)},
			[]string{RiskCrash}, "every 5m"},
		{"rolling update with a claim", Workload{Kind: "Deployment", Pod: pgwPod(claim, file)},
			[]string{RiskTwoWriters, RiskCrash}, "RollingUpdate (the default)"},
		{"rolling update with a hostPath", Workload{Kind: "Deployment", Strategy: "RollingUpdate", Pod: pgwPod(host, file)},
			[]string{RiskTwoWriters, RiskCrash}, "Recreate"},
		{"the interval as a separate argument", Workload{Kind: "Deployment", Strategy: "Recreate",
			Pod: pgwPod(claim, persisting("storage-volume", "--persistence.file", "/data/x", "--persistence.interval", "30s"))},
			[]string{RiskCrash}, "every 30s"},
		{"the community chart's persistence: a claim but no flag", Workload{Kind: "Deployment", Strategy: "Recreate", Pod: pgwPod(claim, persisting("storage-volume"))},
			[]string{RiskNoPersistence}, "without --persistence.file"},
		{"no volume at all", Workload{Kind: "Deployment", Strategy: "Recreate", Pod: pgwPod()},
			[]string{RiskNoPersistence}, "lost on every replacement"},
		{"file on an emptyDir", Workload{Kind: "Deployment", Strategy: "Recreate", Pod: pgwPod(empty, file)},
			[]string{RiskNoPersistence}, `volume "storage-volume", which lives and dies`},
		{"file outside every mount", Workload{Kind: "Deployment", Strategy: "Recreate",
			Pod: pgwPod(claim, persisting("storage-volume", "--persistence.file=/tmp/pg.data"))},
			[]string{RiskNoPersistence}, "the container's own filesystem"},
		{"a mount that only shares a prefix is not the file's", Workload{Kind: "Deployment", Strategy: "Recreate",
			Pod: pgwPod(claim, persisting("storage-volume", "--persistence.file=/database/pg.data"))},
			[]string{RiskNoPersistence}, "own filesystem"},
		{"two replicas", Workload{Kind: "Deployment", Strategy: "Recreate", Replicas: i32(2), Pod: pgwPod(claim, file)},
			[]string{RiskReplicas, RiskCrash}, "replicas: 2"},
		{"a StatefulSet's claim template: one file per ordinal", Workload{Kind: "StatefulSet", ClaimTemplates: []string{"storage-volume"}, Pod: pgwPod(file)},
			[]string{RiskCrash}, "every 5m"},
		{"a StatefulSet with two replicas", Workload{Kind: "StatefulSet", Replicas: i32(2), ClaimTemplates: []string{"storage-volume"}, Pod: pgwPod(file)},
			[]string{RiskReplicas, RiskCrash}, "replicas: 2"},
		{"a DaemonSet has no replicas field", Workload{Kind: "DaemonSet", Pod: pgwPod(host, file)},
			[]string{RiskCrash}, "every 5m"},
		{"not selected: none", Workload{Kind: "Deployment", Pod: pgwPod(func(p *corev1.Pod) { p.Labels = nil })}, nil, ""},
		{"opted out: none", Workload{Kind: "Deployment", Pod: pgwPod(withAnn(annotations.AnnotationInject, "false"))}, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.w.Pod, "monitoring", pol)
			rs := Risks(&c.w, &d)
			var codes []string
			for _, r := range rs {
				codes = append(codes, r.Code)
				if r.Info != (r.Code == RiskCrash) {
					t.Errorf("%s: Info = %v", r.Code, r.Info)
				}
			}
			if !slices.Equal(codes, c.want) {
				t.Fatalf("codes %v, want %v: %v", codes, c.want, rs)
			}
			if len(rs) > 0 && !strings.Contains(rs[0].Message, c.contains) {
				t.Errorf("first message does not say %q: %s", c.contains, rs[0].Message)
			}
		})
	}
}
