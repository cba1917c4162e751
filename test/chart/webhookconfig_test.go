package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// Issue 26, least power: with config/static-admission loaded by kube-apiserver as its
// documentation says, as the chart's ServiceAccount (impersonated, with the chart's RBAC), a
// caBundle update of both webhook configurations passes; any change to what decides which
// pods are sent where is denied; an administrator is not restricted. The same policy stored
// through the API is never evaluated for webhook configurations (tried here on 1.37.2: a
// label change by the ServiceAccount passed for 30 s), hence a static manifest.
func TestWebhookConfigPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	root, err := fixtures.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile(filepath.Join(root, "config", "static-admission", "webhook-config-updates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	admission, err := os.ReadFile(filepath.Join(root, "config", "static-admission", "admission-configuration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	static := filepath.Join(dir, "static")
	if err := os.Mkdir(static, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(static, "webhook-config-updates.yaml"), policy, 0o644); err != nil {
		t.Fatal(err)
	}
	const documented = "staticManifestsDir: /etc/kubernetes/admission/static"
	if !bytes.Contains(admission, []byte(documented)) {
		t.Fatalf("admission-configuration.yaml no longer says %q", documented)
	}
	admission = bytes.Replace(admission, []byte(documented), []byte("staticManifestsDir: "+static), 1)
	if err := os.WriteFile(filepath.Join(dir, "admission.yaml"), admission, 0o644); err != nil {
		t.Fatal(err)
	}
	flags := map[string]string{"admission-control-config-file": filepath.Join(dir, "admission.yaml")}
	// Static admission manifests: alpha (off) in 1.36, beta (on) from 1.37; before 1.36 the
	// API server reads no staticManifestsDir and the policy cannot be loaded at all
	// (make test-versions on 1.35.4: the label change passed).
	switch minor, err := harness.KubeMinor(); {
	case err != nil:
		t.Fatal(err)
	case minor < 36:
		t.Skipf("Kubernetes 1.%d has no ManifestBasedAdmissionControlConfig (alpha in 1.36, beta in 1.37)", minor)
	case minor == 36:
		flags["feature-gates"] = "ManifestBasedAdmissionControlConfig=true"
	}
	cp := harness.NewControlPlane(t, harness.Options{APIServerFlags: flags})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cp.CreateNamespace(ctx, namespace, false); err != nil {
		t.Fatal(err)
	}
	applyRendered(ctx, t, cp, 5, "ServiceAccount, ClusterRole(Binding) and two configurations", func(kind, name string) bool {
		return kind == "ServiceAccount" || kind == "MutatingWebhookConfiguration" || kind == "ValidatingWebhookConfiguration" ||
			(strings.HasPrefix(kind, "ClusterRole") && strings.HasSuffix(name, "-cert-rotation"))
	})
	asProduct := asChartServiceAccount(cp)
	const config = "pushgateway-lifecycle"
	mwcs, vwcs := asProduct.AdmissionregistrationV1().MutatingWebhookConfigurations(), asProduct.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	patchMWC := func(ops ...map[string]any) error { return getPatchUpdate(ctx, t, mwcs, config, ops) }
	patchVWC := func(ops ...map[string]any) error { return getPatchUpdate(ctx, t, vwcs, config, ops) }
	relabel := map[string]any{"op": "add", "path": "/metadata/labels/evil", "value": "yes"}

	// The static policy is loaded at start; the wait only covers the informers' first sync.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := patchMWC(relabel)
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			if strings.Contains(err.Error(), "may not change the labels") {
				break
			}
			t.Fatalf("denied, but not by the policy: %v", err)
		}
		if err == nil {
			if err := patchMWC(map[string]any{"op": "remove", "path": "/metadata/labels/evil"}); err != nil && !apierrors.IsInvalid(err) {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			out, _, _ := cp.Kubectl(ctx, nil, "get", "validatingadmissionpolicies", "-o", "yaml")
			t.Fatalf("the policy never denied a label change: last error %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	bundle := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	t.Run("a caBundle update of both configurations passes", func(t *testing.T) {
		m, err := mwcs.Get(ctx, config, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Webhooks {
			m.Webhooks[i].ClientConfig.CABundle = bundle
		}
		if _, err := mwcs.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("mutating: %v", err)
		}
		v, err := vwcs.Get(ctx, config, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range v.Webhooks {
			v.Webhooks[i].ClientConfig.CABundle = bundle
		}
		if _, err := vwcs.Update(ctx, v, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("validating: %v", err)
		}
	})
	const denied = "may change only clientConfig.caBundle"
	for _, tc := range []struct {
		name string
		ops  []map[string]any
	}{
		{"a rule change", []map[string]any{{"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": []string{"*"}}}},
		{"an objectSelector change", []map[string]any{{"op": "replace", "path": "/webhooks/0/objectSelector", "value": map[string]any{"matchLabels": map[string]string{"only": "these"}}}}},
		{"a namespaceSelector change", []map[string]any{{"op": "replace", "path": "/webhooks/0/namespaceSelector", "value": map[string]any{}}}},
		{"a failurePolicy change", []map[string]any{{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Fail"}}},
		{"dropping the matchConditions", []map[string]any{{"op": "remove", "path": "/webhooks/0/matchConditions"}}},
		{"a caBundle with a Service change", []map[string]any{
			{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "TUlJQg=="},
			{"op": "replace", "path": "/webhooks/0/clientConfig/service/name", "value": "evil"},
		}},
	} {
		t.Run(tc.name+" is denied", func(t *testing.T) {
			err := patchMWC(tc.ops...)
			if err == nil || !strings.Contains(err.Error(), denied) {
				t.Fatalf("err = %v, want a denial %q", err, denied)
			}
		})
	}
	t.Run("a rule change of the validating configuration is denied", func(t *testing.T) {
		if err := patchVWC(map[string]any{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 1}); err == nil || !strings.Contains(err.Error(), denied) {
			t.Fatalf("err = %v, want a denial %q", err, denied)
		}
	})
	t.Run("an administrator is not restricted; the ServiceAccount cannot delete", func(t *testing.T) {
		b, _ := json.Marshal([]map[string]any{{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 7}})
		if _, err := cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, config, types.JSONPatchType, b, metav1.PatchOptions{}); err != nil {
			t.Errorf("an administrator's change was denied: %v", err)
		}
		if err := mwcs.Delete(ctx, config, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("delete as the ServiceAccount: %v, want Forbidden by RBAC", err)
		}
	})
}

// applyJSONPatch applies RFC 6902 operations to a typed object in place.
func applyJSONPatch(obj any, ops []map[string]any) error {
	doc, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(ops)
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return err
	}
	if doc, err = p.Apply(doc); err != nil {
		return err
	}
	// Decoded into a zeroed object: json.Unmarshal keeps the fields a removal took out.
	reflect.ValueOf(obj).Elem().SetZero()
	return json.Unmarshal(doc, obj)
}

// getPatchUpdate applies ops to a fresh read of the object and updates it: RBAC grants the
// rotator update, not patch, and this is how it writes.
func getPatchUpdate[T any](ctx context.Context, t *testing.T, c interface {
	Get(context.Context, string, metav1.GetOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
}, name string, ops []map[string]any) error {
	t.Helper()
	obj, err := c.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := applyJSONPatch(obj, ops); err != nil {
		t.Fatal(err)
	}
	_, err = c.Update(ctx, obj, metav1.UpdateOptions{})
	return err
}
