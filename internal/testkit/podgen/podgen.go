// Package podgen builds the pods the benchmarks run on, from the upstream prometheus-pushgateway
// chart's rendered Deployment (the owners' fixture), in the form the API server sends them to a
// mutating webhook: defaulted, with the service-account volume and default tolerations added
// by the built-in admission plugins that run before webhooks, and with managedFields. That
// form, not the bare template, is what the webhook decodes on every pod create.
package podgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
)

// Namespace the generated pods live in.
const Namespace = "monitoring"

// FixturePath is the upstream chart's default rendering, in the repository (test/testdata).
func FixturePath() (string, error) {
	return fixtures.UpstreamChartFile("default.yaml")
}

// UpstreamDeployment is the Deployment of the upstream chart's default rendering.
func UpstreamDeployment() (*appsv1.Deployment, error) {
	p, err := FixturePath()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil || tm.Kind != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(doc, &d); err != nil {
			return nil, fmt.Errorf("podgen: %s: %w", p, err)
		}
		return &d, nil
	}
	return nil, fmt.Errorf("podgen: no Deployment in %s", p)
}

// TemplatePod is the chart's pod template as a bare Pod, what a client posts to create it.
func TemplatePod() (*corev1.Pod, error) {
	d, err := UpstreamDeployment()
	if err != nil {
		return nil, err
	}
	return templatePod(d), nil
}

func templatePod(d *appsv1.Deployment) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	pod.GenerateName = d.Name + "-7d9c8b6f5d-"
	pod.Namespace = d.Namespace
	return pod
}

// Realistic is the upstream chart's pod as a Deployment's ReplicaSet creates it and as the API
// server hands it to a mutating webhook (about 3 KB of JSON).
func Realistic() (*corev1.Pod, error) {
	d, err := UpstreamDeployment()
	if err != nil {
		return nil, err
	}
	pod := templatePod(d)
	pod.Labels["pod-template-hash"] = "7d9c8b6f5d"
	ctrl, block := true, true
	pod.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d.Name + "-7d9c8b6f5d",
		UID: "0b6f2a51-8d4e-4f1c-9a3e-2c7d5e9f1a42", Controller: &ctrl, BlockOwnerDeletion: &block,
	}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: &metav1.Time{Time: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(managedFieldsV1),
	}}
	defaultPod(pod)
	return pod, nil
}

// The kube-controller-manager's entry for the chart's pod, as the API server records it.
const managedFieldsV1 = `{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app.kubernetes.io/instance":{},"f:app.kubernetes.io/managed-by":{},"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/version":{},"f:helm.sh/chart":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0b6f2a51-8d4e-4f1c-9a3e-2c7d5e9f1a42\"}":{}}},"f:spec":{"f:automountServiceAccountToken":{},"f:containers":{"k:{\"name\":\"pushgateway\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:initialDelaySeconds":{},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":9091,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:readinessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:initialDelaySeconds":{},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},"f:volumeMounts":{".":{},"k:{\"mountPath\":\"/data\"}":{".":{},"f:mountPath":{},"f:name":{}}}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{".":{},"f:fsGroup":{},"f:runAsNonRoot":{},"f:runAsUser":{}},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{},"f:volumes":{".":{},"k:{\"name\":\"storage-volume\"}":{".":{},"f:emptyDir":{},"f:name":{}}}}}`

// defaultPod applies what the API server does to a pod before mutating webhooks see it: the
// scheme defaults (core/v1 SetDefaults_*), the ServiceAccount admission plugin's token volume
// and the DefaultTolerationSeconds plugin's tolerations.
func defaultPod(pod *corev1.Pod) {
	s := &pod.Spec
	grace := int64(30)
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = &grace
	}
	s.RestartPolicy = corev1.RestartPolicyAlways
	s.DNSPolicy = corev1.DNSClusterFirst
	s.SchedulerName = corev1.DefaultSchedulerName
	s.DeprecatedServiceAccount = s.ServiceAccountName
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	links, prio := true, int32(0)
	preempt := corev1.PreemptLowerPriority
	s.EnableServiceLinks, s.Priority, s.PreemptionPolicy = &links, &prio, &preempt
	tolSec := int64(300)
	s.Tolerations = append(s.Tolerations,
		corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &tolSec},
		corev1.Toleration{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &tolSec},
	)
	expiry := int64(3607)
	mode := int32(0o644)
	s.Volumes = append(s.Volumes, corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{DefaultMode: &mode, Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &expiry, Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}},
	}})
	for i := range s.Containers {
		c := &s.Containers[i]
		if c.TerminationMessagePath == "" {
			c.TerminationMessagePath = corev1.TerminationMessagePathDefault
		}
		if c.TerminationMessagePolicy == "" {
			c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
		}
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
		for j := range c.Ports {
			if c.Ports[j].Protocol == "" {
				c.Ports[j].Protocol = corev1.ProtocolTCP
			}
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if p == nil {
				continue
			}
			if p.PeriodSeconds == 0 {
				p.PeriodSeconds = 10
			}
			if p.SuccessThreshold == 0 {
				p.SuccessThreshold = 1
			}
			if p.FailureThreshold == 0 {
				p.FailureThreshold = 3
			}
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-x7k2p", ReadOnly: true,
			MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
	}
}

// Sized is the realistic pod grown to at least size bytes of JSON the way big pods grow: a
// sidecar with many environment variables and mounts, and configMap volumes (fields the
// webhook does not need, as in most big pods).
func Sized(size int) (*corev1.Pod, error) {
	pod, err := Realistic()
	if err != nil {
		return nil, err
	}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
		Name: "config-reloader", Image: "ghcr.io/example/config-reloader:v0.9.1",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")}},
		TerminationMessagePath: corev1.TerminationMessagePathDefault, TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		ImagePullPolicy: corev1.PullIfNotPresent,
	})
	side := &pod.Spec.Containers[len(pod.Spec.Containers)-1]
	for i := 0; ; i++ {
		n, err := JSONSize(pod)
		if err != nil {
			return nil, err
		}
		if n >= size {
			return pod, nil
		}
		name := "config-" + strconv.Itoa(i)
		if i%4 == 3 {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "pgw-" + name}}}})
			side.VolumeMounts = append(side.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: "/etc/" + name, ReadOnly: true})
			continue
		}
		side.Env = append(side.Env, corev1.EnvVar{Name: "RELOADER_SETTING_" + strconv.Itoa(i),
			Value: "https://reloader.example.internal/settings/" + strconv.Itoa(i) + "?mode=watch"})
	}
}

// ManyEnv is the realistic pod whose pushgateway container has n environment variables.
func ManyEnv(n int) (*corev1.Pod, error) {
	pod, err := Realistic()
	if err != nil {
		return nil, err
	}
	c := &pod.Spec.Containers[0]
	for i := 0; i < n; i++ {
		c.Env = append(c.Env, corev1.EnvVar{Name: "PUSHGATEWAY_VAR_" + strconv.Itoa(i), Value: "value-" + strconv.Itoa(i)})
	}
	return pod, nil
}

// ManyContainers is the realistic pod with n containers, every one running the Pushgateway
// image, so every one gets a hook: the worst case for the decision and the patch.
func ManyContainers(n int) (*corev1.Pod, error) {
	pod, err := Realistic()
	if err != nil {
		return nil, err
	}
	base := pod.Spec.Containers[0]
	pod.Spec.Containers = pod.Spec.Containers[:0]
	for i := 0; i < n; i++ {
		c := *base.DeepCopy()
		if i > 0 {
			c.Name = "pushgateway-" + strconv.Itoa(i)
			c.Ports[0].ContainerPort = 9091 + int32(i)
			c.Ports[0].Name = "metrics-" + strconv.Itoa(i)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	return pod, nil
}

// Case is one benchmark input.
type Case struct {
	Name string
	Pod  *corev1.Pod
}

// Cases are the benchmark inputs, in report order: realistic (~3 KB), 16 KB, 64 KB, 1,000
// environment variables, 50 containers.
func Cases() ([]Case, error) {
	var out []Case
	add := func(name string, p *corev1.Pod, err error) error {
		if err != nil {
			return err
		}
		out = append(out, Case{name, p})
		return nil
	}
	r, err := Realistic()
	if err := add("realistic", r, err); err != nil {
		return nil, err
	}
	p16, err := Sized(16 << 10)
	if err := add("16KB", p16, err); err != nil {
		return nil, err
	}
	p64, err := Sized(64 << 10)
	if err := add("64KB", p64, err); err != nil {
		return nil, err
	}
	env, err := ManyEnv(1000)
	if err := add("env1000", env, err); err != nil {
		return nil, err
	}
	many, err := ManyContainers(50)
	if err := add("containers50", many, err); err != nil {
		return nil, err
	}
	return out, nil
}

// JSONSize is the length of the pod's JSON encoding.
func JSONSize(pod *corev1.Pod) (int, error) {
	b, err := json.Marshal(pod)
	return len(b), err
}

// Review wraps pod JSON in the AdmissionReview the API server posts for a pod CREATE. The
// "object" is pod's JSON verbatim, so callers can reuse one pod encoding.
func Review(uid string, podJSON []byte) []byte {
	var b strings.Builder
	b.Grow(len(podJSON) + 1024)
	b.WriteString(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"`)
	b.WriteString(uid)
	b.WriteString(`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestResource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"` + Namespace + `","operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller",` +
		`"uid":"5c1f0e2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]},` +
		`"object":`)
	b.Write(podJSON)
	b.WriteString(`,"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}`)
	return []byte(b.String())
}

// CrowdPod is pod i of the unrelated workloads that crowd a cluster in the memory tests (the
// handoff informer must not hold them): a realistic size (~1.5 KB: labels, annotations, env,
// resources), in namespace "crowd".
func CrowdPod(i int) *corev1.Pod {
	app := fmt.Sprintf("app-%d", i%200)
	env := make([]corev1.EnvVar, 5)
	for k := range env {
		env[k] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", k), Value: strings.Repeat("v", 40)}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%d", app, i), Namespace: "crowd",
			Labels: map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "app.kubernetes.io/version": "1.2.3",
				"team": "team-" + strconv.Itoa(i%17), "pod-template-hash": "5d8f9c7b6"},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "checksum/config": strings.Repeat("a", 64)},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.com/team/" + app + ":1.2.3", Env: env,
			Args: []string{"--config=/etc/app/config.yaml", "--log-level=info"},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
		}}, Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: app},
		}}}},
	}
}
