package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// Paths served by `pushgateway-lifecycle serve`.
const (
	MutatePodPath         = "/mutate-v1-pod"
	ValidateWorkloadsPath = "/validate-workloads"
	// WebhookNamespace is where the webhook itself would run in a cluster; the configurations
	// exclude it so that the webhook never sits on its own pods' creation path.
	WebhookNamespace = "pushgateway-lifecycle-system"
	// ConfigName names both webhook configurations.
	ConfigName = "pushgateway-lifecycle"
)

// PodSelectionCEL is the pod selection of the core contract as a CEL match condition: the
// upstream chart's label, or the explicit opt-in label. It has to be CEL because an
// objectSelector cannot say "this OR that".
const PodSelectionCEL = `has(object.metadata.labels) && (` +
	`('app.kubernetes.io/name' in object.metadata.labels && object.metadata.labels['app.kubernetes.io/name'] in ['prometheus-pushgateway', 'pushgateway']) || ` +
	`('pushgateway-lifecycle.io/inject' in object.metadata.labels && object.metadata.labels['pushgateway-lifecycle.io/inject'] == 'true'))`

// The validating webhook's match conditions: the pod selection on the workload's pod template,
// no controller owner (what controllers write from a template is never checked), and on
// UPDATE a changed template (see pkg/webhook's WorkloadValidator, which makes the same choices).
var (
	TemplateSelectionCEL = `(has(object.spec.template) && has(object.spec.template.metadata) && ` +
		strings.ReplaceAll(PodSelectionCEL, "object.metadata", "object.spec.template.metadata") + `) || ` +
		`(has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && has(object.spec.jobTemplate.spec.template) && has(object.spec.jobTemplate.spec.template.metadata) && ` +
		strings.ReplaceAll(PodSelectionCEL, "object.metadata", "object.spec.jobTemplate.spec.template.metadata") + `)`
	NotControllerOwnedCEL  = `!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)`
	WorkloadSpecChangedCEL = `request.operation != 'UPDATE' || (has(object.spec.template) ? ` +
		`(!has(oldObject.spec.template) || object.spec.template != oldObject.spec.template || has(object.spec.replicas) != has(oldObject.spec.replicas) || (has(object.spec.replicas) && object.spec.replicas != oldObject.spec.replicas) || has(object.spec.strategy) != has(oldObject.spec.strategy) || (has(object.spec.strategy) && object.spec.strategy != oldObject.spec.strategy)) : ` +
		`(!has(object.spec.jobTemplate) || !has(oldObject.spec.jobTemplate) || object.spec.jobTemplate != oldObject.spec.jobTemplate))`
)

// WebhookConfigs is what gets registered with the apiserver.
type WebhookConfigs struct {
	Mutating   *admissionv1.MutatingWebhookConfiguration
	Validating *admissionv1.ValidatingWebhookConfiguration
}

// DefaultWebhookConfigs is the harness's own definition of the webhook configurations, the
// same content the chart ships (namespace opt-in, kube-system and the webhook's namespace
// excluded, the contract's pod selection, CREATE on pods only, fail open, 2 s timeout). The
// e2e suite registers the chart's rendering (ChartWebhookConfigs); `make run` registers this
// one, which needs no helm, and TestDefaultWebhookConfigsMatchChart keeps the two identical.
func DefaultWebhookConfigs() WebhookConfigs {
	none := admissionv1.SideEffectClassNone
	noneOnDryRun := admissionv1.SideEffectClassNoneOnDryRun
	drainTimeout := int32(5)
	ignore := admissionv1.Ignore
	ifNeeded := admissionv1.IfNeededReinvocationPolicy
	timeout := int32(2)
	equivalent := admissionv1.Equivalent
	nsSelector := func() *metav1.LabelSelector {
		return &metav1.LabelSelector{
			MatchLabels: map[string]string{annotations.LabelInjection: annotations.InjectionEnabled},
			MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key:      corev1.LabelMetadataName,
				Operator: metav1.LabelSelectorOpNotIn,
				Values:   []string{"kube-system", WebhookNamespace},
			}},
		}
	}
	path := func(p string) admissionv1.WebhookClientConfig {
		return admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
			Namespace: WebhookNamespace, Name: ConfigName, Path: &p,
		}}
	}
	allScope := admissionv1.AllScopes
	namespaced := admissionv1.NamespacedScope
	fail := admissionv1.Fail
	never := admissionv1.NeverReinvocationPolicy
	return WebhookConfigs{
		Mutating: &admissionv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigName},
			Webhooks: []admissionv1.MutatingWebhook{{
				Name:         "pods.pushgateway-lifecycle.io",
				ClientConfig: path(MutatePodPath),
				Rules: []admissionv1.RuleWithOperations{{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"},
						Resources: []string{"pods"}, Scope: &allScope,
					},
				}},
				NamespaceSelector: nsSelector(),
				// Opted-out pods are still sent (the handler records why it skipped them);
				// the objectSelector only keeps out what can never be ours.
				ObjectSelector: &metav1.LabelSelector{},
				MatchConditions: []admissionv1.MatchCondition{{
					Name: "pushgateway-pods", Expression: PodSelectionCEL,
				}},
				MatchPolicy:             &equivalent,
				SideEffects:             &none,
				FailurePolicy:           &ignore,
				ReinvocationPolicy:      &ifNeeded,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			}, {
				// The startup check's dry-run pod in the webhook's own namespace, and nothing
				// else (pkg/check; the chart's startupCheck).
				Name:         "startup-check.pushgateway-lifecycle.io",
				ClientConfig: path(MutatePodPath),
				Rules: []admissionv1.RuleWithOperations{{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"},
						Resources: []string{"pods"}, Scope: &namespaced,
					},
				}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: WebhookNamespace}},
				ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{annotations.LabelStartupCheck: "true"}},
				MatchPolicy:             &equivalent,
				SideEffects:             &none,
				FailurePolicy:           &fail,
				ReinvocationPolicy:      &never,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
		Validating: &admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigName},
			Webhooks: []admissionv1.ValidatingWebhook{{
				Name:              "workloads.pushgateway-lifecycle.io",
				ClientConfig:      path(ValidateWorkloadsPath),
				Rules:             workloadRules(allScope),
				NamespaceSelector: nsSelector(),
				ObjectSelector:    &metav1.LabelSelector{},
				MatchConditions: []admissionv1.MatchCondition{
					{Name: "pushgateway-pod-templates", Expression: TemplateSelectionCEL},
					{Name: "not-controller-owned", Expression: NotControllerOwnedCEL},
					{Name: "workload-spec-changed", Expression: WorkloadSpecChangedCEL},
				},
				MatchPolicy:             &equivalent,
				SideEffects:             &none,
				FailurePolicy:           &ignore,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			}, {
				// The drain: at the DELETE of a pod with the readiness gate, the condition goes
				// False before the deletion is stored.
				Name:         "drain.pushgateway-lifecycle.io",
				ClientConfig: path(DrainPodPath),
				Rules: []admissionv1.RuleWithOperations{{
					Operations: []admissionv1.OperationType{admissionv1.Delete},
					Rule: admissionv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"},
						Resources: []string{"pods"}, Scope: &namespaced,
					},
				}},
				NamespaceSelector:       nsSelector(),
				ObjectSelector:          &metav1.LabelSelector{},
				MatchConditions:         []admissionv1.MatchCondition{{Name: "drained-pods", Expression: DrainedPodsCEL}},
				MatchPolicy:             &equivalent,
				SideEffects:             &noneOnDryRun,
				FailurePolicy:           &ignore,
				TimeoutSeconds:          &drainTimeout,
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
	}
}

// DrainPodPath is the drain webhook's path (pkg/webhook.PathDrainPods).
const DrainPodPath = "/drain-v1-pod"

// DrainedPodsCEL sends the drain webhook only the DELETE of a live pod with the readiness gate.
const DrainedPodsCEL = "!has(oldObject.metadata.deletionTimestamp) && has(oldObject.spec.readinessGates) && oldObject.spec.readinessGates.exists(g, g.conditionType == 'pushgateway-lifecycle.io/accepting-pushes')"

// PointAt returns a copy whose every webhook calls baseURL (e.g. https://127.0.0.1:9443) plus
// the path its Service reference named (or its URL's path), trusting caBundle.
func (c WebhookConfigs) PointAt(baseURL string, caBundle []byte) WebhookConfigs {
	out := WebhookConfigs{}
	rewrite := func(cc *admissionv1.WebhookClientConfig, fallback string) {
		p := fallback
		if cc.Service != nil && cc.Service.Path != nil {
			p = *cc.Service.Path
		} else if cc.URL != nil {
			if i := strings.Index(strings.TrimPrefix(*cc.URL, "https://"), "/"); i >= 0 {
				p = strings.TrimPrefix(*cc.URL, "https://")[i:]
			}
		}
		u := strings.TrimSuffix(baseURL, "/") + p
		cc.URL = &u
		cc.Service = nil
		cc.CABundle = append([]byte(nil), caBundle...)
	}
	if c.Mutating != nil {
		out.Mutating = c.Mutating.DeepCopy()
		out.Mutating.ResourceVersion = ""
		for i := range out.Mutating.Webhooks {
			rewrite(&out.Mutating.Webhooks[i].ClientConfig, MutatePodPath)
		}
	}
	if c.Validating != nil {
		out.Validating = c.Validating.DeepCopy()
		out.Validating.ResourceVersion = ""
		for i := range out.Validating.Webhooks {
			rewrite(&out.Validating.Webhooks[i].ClientConfig, ValidateWorkloadsPath)
		}
	}
	return out
}

// Register creates or replaces the configurations (a nil one is skipped).
func (cp *ControlPlane) Register(ctx context.Context, c WebhookConfigs) error {
	if m := c.Mutating; m != nil {
		api := cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
		old, err := api.Get(ctx, m.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, m, metav1.CreateOptions{})
		case err == nil:
			m = m.DeepCopy()
			m.ResourceVersion = old.ResourceVersion
			_, err = api.Update(ctx, m, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("register MutatingWebhookConfiguration %s: %w", c.Mutating.Name, err)
		}
	}
	if v := c.Validating; v != nil {
		api := cp.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations()
		old, err := api.Get(ctx, v.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, v, metav1.CreateOptions{})
		case err == nil:
			v = v.DeepCopy()
			v.ResourceVersion = old.ResourceVersion
			_, err = api.Update(ctx, v, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("register ValidatingWebhookConfiguration %s: %w", c.Validating.Name, err)
		}
	}
	return nil
}

// Unregister deletes the configurations (missing ones are fine).
func (cp *ControlPlane) Unregister(ctx context.Context, c WebhookConfigs) error {
	if c.Mutating != nil {
		err := cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, c.Mutating.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if c.Validating != nil {
		err := cp.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, c.Validating.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// ProbePod is a minimal pod that the pod selection matches (explicit opt-in label).
func ProbePod(namespace string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "harness-probe",
			Namespace: namespace,
			Labels:    map[string]string{annotations.LabelInject: "true"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}}},
	}
}

// WaitForWebhook returns once the apiserver calls the mutating webhook for pods in namespace
// (which must be opted in). The apiserver picks up a new or changed webhook configuration
// from an informer, a moment after the write; until then pods would pass unmutated. It
// creates a probe pod with dry-run until the stored-to-be object carries the status
// annotation, so nothing is left behind.
func (cp *ControlPlane) WaitForWebhook(ctx context.Context, namespace string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		got, err := cp.Clientset.CoreV1().Pods(namespace).Create(ctx, ProbePod(namespace), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			if _, ok := got.Annotations[annotations.AnnotationStatus]; ok {
				return nil
			}
			lastErr = fmt.Errorf("probe pod came back without %s", annotations.AnnotationStatus)
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("webhook not called by the apiserver within %s: %w", timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitForWebhookGone is the converse: it returns once a dry-run probe pod comes back
// without the status annotation (configuration removed or server down and failing open).
func (cp *ControlPlane) WaitForWebhookGone(ctx context.Context, namespace string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		got, err := cp.Clientset.CoreV1().Pods(namespace).Create(ctx, ProbePod(namespace), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			if _, ok := got.Annotations[annotations.AnnotationStatus]; !ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("webhook still applied after %s (last error: %w)", timeout, err)
			}
			return fmt.Errorf("webhook still applied after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// workloadRules are the validated kinds of engine.Workloads, one rule per API group: the
// chart's list is compared with this (test/chart), so both follow the one table.
func workloadRules(scope admissionv1.ScopeType) []admissionv1.RuleWithOperations {
	var out []admissionv1.RuleWithOperations
	for _, g := range engine.ValidatedGroups() {
		out = append(out, admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
			Rule:       admissionv1.Rule{APIGroups: []string{g.Group}, APIVersions: []string{"v1"}, Resources: g.Resources, Scope: &scope},
		})
	}
	return out
}
