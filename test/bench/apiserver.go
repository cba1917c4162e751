package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/admissionpolicy"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/harness"
)

// APIMode is the pod-create latency of one mode over all its rounds.
type APIMode struct {
	Mode    string  `json:"mode"` // webhook, map, constant-patch, floor, defaulter, none
	Pods    int     `json:"pods"`
	Errors  int     `json:"errors"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	PodsSec float64 `json:"pods_per_s"`
	// Mutated counts created pods that carry the status annotation (all of them with the
	// webhook, none without): the proof that the mode is what it says.
	Mutated int `json:"mutated"`
	// ServerMeanMs is the webhook server's own mean handling time (controller-runtime's
	// webhook latency histogram) and ServerCPUms its CPU time per pod create: what of the
	// added latency is spent inside the webhook process at all.
	ServerMeanMs float64 `json:"server_mean_ms,omitempty"`
	ServerCPUms  float64 `json:"server_cpu_ms_per_pod,omitempty"`
	// APICallMeanMs is the webhook call as kube-apiserver itself times it
	// (apiserver_admission_webhook_admission_duration_seconds): request encoding, TLS, the
	// round trip and our handler. The rest of the added latency is the API server's own work
	// around the call (applying the patch, decoding the pod again) and CPU contention.
	APICallMeanMs float64 `json:"apiserver_call_mean_ms,omitempty"`
	// StrayCalls counts admission work of another kind during this mode's rounds, by the API
	// server's metrics: policy evaluations in a webhook's rounds, webhook calls in a policy's,
	// either in none's. Not 0 means a peer outlived its removal and the row measures two.
	StrayCalls int `json:"stray_calls"`
	// AsWebhook tells whether the pod this mode makes of the measured one (a dry-run create)
	// is the webhook's, fields set by the API server aside; the constant-patch floor must be.
	AsWebhook *bool `json:"as_webhook,omitempty"`
	// RoundP50ms is the p50 of each round, in round order: how much the mode's p50 moves
	// with the machine's load, which the floor checks allow for.
	RoundP50ms []float64 `json:"round_p50_ms"`
}

// APIOptions for RunAPIServer.
type APIOptions struct {
	Binary string
	// BenchServer is test/bench/cmd/benchserver (the reference servers).
	BenchServer string
	Pods        int // per mode
	Rounds      int // per mode, interleaved
	Parallelism int
}

// RunAPIServer creates Pods of the upstream chart through a real kube-apiserver, in rounds
// that rotate between every peer: this webhook, the generated MutatingAdmissionPolicy, the
// constant-patch and constant-answer floors and the controller-runtime defaulter (each
// registered the same way), and no mutation at all.
func RunAPIServer(ctx context.Context, o APIOptions, log func(string, ...any)) ([]APIMode, error) {
	cp, err := startControlPlane(log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	wh, err := harness.StartWebhookServer(cp.CertDir, harness.WebhookOptions{Binary: o.Binary})
	if err != nil {
		return nil, err
	}
	defer func() { _ = wh.Stop(10 * time.Second) }()

	const ns = "bench"
	if err := cp.CreateNamespace(ctx, ns, true); err != nil {
		return nil, err
	}
	tmpl, err := podgen.TemplatePod()
	if err != nil {
		return nil, err
	}
	tmpl.Namespace = ns
	tmpl.GenerateName = ""
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tmpl.Spec.ServiceAccountName, Namespace: ns}}
	if _, err := cp.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	cfg := cp.RESTConfig()
	// client-go's default limiter (5 QPS) would measure itself.
	cfg.QPS, cfg.Burst = 1e6, 1e6
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// The reference servers (test/bench/servers, on pkg/server's TLS stack) registered the
	// same way as the webhook: the constant answer that does not read the pod (what a webhook
	// call costs the API server whatever the webhook does), the constant patch (the webhook's
	// own answer for the measured pod, precomputed: what any mutating webhook costs at least)
	// and the plain controller-runtime defaulter doing the engine's mutation.
	//
	// The constant patch is computed from the measured pod as the API server hands it to a
	// webhook (defaulted, with the service-account volume and tolerations), taken from a
	// dry-run create while nothing mutates pods: from the bare template the patch "adds" what
	// the API server has already defaulted, which is not the webhook's patch.
	sent, err := client.CoreV1().Pods(ns).Create(ctx, named(tmpl, "probe-as-sent"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return nil, fmt.Errorf("the measured pod as the API server sends it: %w", err)
	}
	// What the store sets after admission.
	sent.UID, sent.ResourceVersion, sent.Generation, sent.CreationTimestamp = "", "", 0, metav1.Time{}
	sent.ManagedFields, sent.Status = nil, corev1.PodStatus{}
	podFile := filepath.Join(cp.Dir, "bench-pod.yaml")
	if b, err := yaml.Marshal(sent); err != nil {
		return nil, err
	} else if err := os.WriteFile(podFile, b, 0o600); err != nil {
		return nil, err
	}
	servers := map[string]*harness.Webhook{"webhook": wh}
	for mode, args := range map[string][]string{
		"floor":          {"--mode=constant-answer"},
		"constant-patch": {"--mode=constant-patch", "--pod=" + podFile},
		"defaulter":      {"--mode=defaulter"},
	} {
		srv, err := harness.StartWebhookServer(cp.CertDir, harness.WebhookOptions{Binary: o.BenchServer, Args: args})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		defer func() { _ = srv.Stop(10 * time.Second) }()
		servers[mode] = srv
	}
	floor := servers["floor"]
	configs := map[string]harness.WebhookConfigs{}
	for mode, srv := range servers {
		c := harness.DefaultWebhookConfigs().PointAt(fmt.Sprintf("https://127.0.0.1:%d", srv.Port), cp.CAData)
		c.Validating = nil
		configs[mode] = c
	}
	// The generated MutatingAdmissionPolicy and the pod ValidatingAdmissionPolicy with their
	// bindings: everything `admission-policy` generates for pods, as the webhook does both.
	gen, err := admissionpolicy.Generate(policy.Default(), admissionpolicy.Options{})
	if err != nil {
		return nil, err
	}
	// map-minimal is the least a MutatingAdmissionPolicy can do (minimalPolicy: default sleep
	// and grace only: no keep/replace, no status, no validation), written after a peer's
	// measured policy: what the whole contract in CEL costs beyond it.
	minimal := minimalPolicy()
	minimalBinding := gen.MutatingBinding.DeepCopy()
	minimalBinding.Name, minimalBinding.Spec.PolicyName = minimal.Name, minimal.Name
	requests := func(srv *harness.Webhook) float64 {
		n, _ := MetricSum(srv.MetricsURL(), "controller_runtime_webhook_requests_total", `webhook="`+harness.MutatePodPath+`"`)
		return n
	}
	apiv1 := cp.Clientset.AdmissionregistrationV1()
	// apiMetrics is the API server's own account of admission so far: the webhook calls
	// (apiserver_admission_webhook_admission_duration_seconds: request encoding, TLS, the round
	// trip, our handler and applying the patch) and the admission policies' evaluations
	// (apiserver_{mutating,validating}_admission_policy_check_duration_seconds, the in-process
	// counterpart), each as a sum of seconds and a count.
	type admissionTotals struct{ callSum, calls, policySum, checks float64 }
	apiMetrics := func() admissionTotals {
		body, err := client.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return admissionTotals{}
		}
		var t admissionTotals
		text := string(body)
		t.callSum, _ = metricSumText(text, "apiserver_admission_webhook_admission_duration_seconds_sum", `type="admit"`)
		t.calls, _ = metricSumText(text, "apiserver_admission_webhook_admission_duration_seconds_count", `type="admit"`)
		for _, kind := range []string{"mutating", "validating"} {
			s, _ := metricSumText(text, "apiserver_"+kind+"_admission_policy_check_duration_seconds_sum", "")
			n, _ := metricSumText(text, "apiserver_"+kind+"_admission_policy_check_duration_seconds_count", "")
			t.policySum += s
			t.checks += n
		}
		return t
	}
	dryRun := func(name string) (*corev1.Pod, error) {
		return client.CoreV1().Pods(ns).Create(ctx, named(tmpl, name), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	// waitMutated returns the first dry-run create of the measured pod that comes back with
	// the status annotation: the peer just registered is the one the API server calls. The
	// measured pod, not harness.ProbePod: the constant patch is the measured pod's and need not
	// apply to another pod (it replaces the readinessProbe's initialDelaySeconds, which the
	// probe pod has not got, and the API server fails a create whose patch does not apply).
	waitMutated := func(mode string) (*corev1.Pod, error) {
		var lastErr error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got, err := dryRun("probe-" + mode)
			if err == nil {
				if _, ok := got.Annotations[annotations.AnnotationStatus]; ok {
					return got, nil
				}
				err = fmt.Errorf("the dry-run pod came back without %s", annotations.AnnotationStatus)
			}
			lastErr = err
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s: not applied within 30s: %w", mode, lastErr)
			}
		}
	}
	// waitGone returns once a dry-run create of the measured pod comes back unmutated without
	// moving count, the removed peer's own count of calls (its server's requests, or the API
	// server's policy evaluations). The absence of the status annotation alone does not tell
	// that a peer is gone when it writes none (the constant answer, map-minimal): a
	// MutatingAdmissionPolicy the API server still applied after its deletion mutated up to
	// a third of the next peer's pods (36, 9 and 16 policy checks in constant-patch rounds,
	// 2026-12-07), and that peer always followed map-minimal.
	waitGone := func(mode string, count func() float64) error {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			before := count()
			got, err := dryRun("probe-gone")
			if err == nil && count() == before && got.Spec.Containers[0].Lifecycle == nil {
				if _, ok := got.Annotations[annotations.AnnotationStatus]; !ok {
					return nil
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s still applied 30s after its removal (last error: %w)", mode, err)
			}
		}
	}
	checks := func() float64 { return apiMetrics().checks }
	// probes are the first mutated dry-run pod of each peer: the pod it makes of the measured one.
	probes := map[string]*corev1.Pod{}

	awaitMutation := func(mode string) error {
		got, err := waitMutated(mode)
		if err == nil && probes[mode] == nil {
			probes[mode] = got
		}
		return err
	}

	current := ""
	setMode := func(mode string) error {
		switch {
		case current == "map-minimal":
			bg := context.Background()
			_ = apiv1.MutatingAdmissionPolicyBindings().Delete(bg, minimalBinding.Name, metav1.DeleteOptions{})
			_ = apiv1.MutatingAdmissionPolicies().Delete(bg, minimal.Name, metav1.DeleteOptions{})
			if err := waitGone(current, checks); err != nil {
				return err
			}
		case current == "map" || current == "map-mutating":
			bg := context.Background()
			_ = apiv1.MutatingAdmissionPolicyBindings().Delete(bg, gen.MutatingBinding.Name, metav1.DeleteOptions{})
			_ = apiv1.MutatingAdmissionPolicies().Delete(bg, gen.Mutating.Name, metav1.DeleteOptions{})
			_ = apiv1.ValidatingAdmissionPolicyBindings().Delete(bg, gen.ValidatingBinding.Name, metav1.DeleteOptions{})
			_ = apiv1.ValidatingAdmissionPolicies().Delete(bg, gen.Validating.Name, metav1.DeleteOptions{})
			if err := waitGone(current, checks); err != nil {
				return err
			}
		case current != "" && current != "none":
			if err := cp.Unregister(ctx, configs[current]); err != nil {
				return err
			}
			srv := servers[current]
			if err := waitGone(current, func() float64 { return requests(srv) }); err != nil {
				return err
			}
		}
		current = mode
		switch mode {
		case "none":
			return nil
		case "map-minimal":
			if _, err := apiv1.MutatingAdmissionPolicies().Create(ctx, minimal, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("map-minimal: %w", err)
			}
			if _, err := apiv1.MutatingAdmissionPolicyBindings().Create(ctx, minimalBinding, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("map-minimal: %w", err)
			}
			// It writes no status annotation: wait until a dry-run pod comes back with a hook.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				probe := tmpl.DeepCopy()
				probe.Name = "probe-minimal"
				got, err := client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err == nil && got.Spec.Containers[0].Lifecycle != nil {
					return nil
				}
				if time.Now().After(deadline) {
					if err == nil {
						err = errors.New("the dry-run pod came back without a preStop hook")
					}
					return fmt.Errorf("map-minimal not applied within 30s: %w", err)
				}
			}
		case "map", "map-mutating":
			creates := []func() error{
				func() error {
					_, err := apiv1.MutatingAdmissionPolicies().Create(ctx, gen.Mutating, metav1.CreateOptions{})
					return err
				},
				func() error {
					_, err := apiv1.MutatingAdmissionPolicyBindings().Create(ctx, gen.MutatingBinding, metav1.CreateOptions{})
					return err
				},
			}
			if mode == "map" {
				creates = append(creates,
					func() error {
						_, err := apiv1.ValidatingAdmissionPolicies().Create(ctx, gen.Validating, metav1.CreateOptions{})
						return err
					},
					func() error {
						_, err := apiv1.ValidatingAdmissionPolicyBindings().Create(ctx, gen.ValidatingBinding, metav1.CreateOptions{})
						return err
					})
			}
			for _, create := range creates {
				if err := create(); err != nil {
					return fmt.Errorf("map: %w", err)
				}
			}
			return awaitMutation(mode)
		case "floor":
			if err := cp.Register(ctx, configs[mode]); err != nil {
				return err
			}
			// The floor mutates nothing: wait until the API server calls it at all.
			before := requests(floor)
			probe := tmpl.DeepCopy()
			probe.Name = "probe-floor"
			for deadline := time.Now().Add(30 * time.Second); requests(floor) == before; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					return fmt.Errorf("the floor webhook was not called within 30s")
				}
				_, _ = client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			}
			return nil
		default:
			if err := cp.Register(ctx, configs[mode]); err != nil {
				return err
			}
			return awaitMutation(mode)
		}
	}

	seq := 0
	modeOf := map[int]string{}
	round := func(n int, mode string) (lat []time.Duration, errs int, wall time.Duration) {
		var mu sync.Mutex
		next := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < o.Parallelism; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					pod := tmpl.DeepCopy()
					pod.Name = "pgw-" + strconv.Itoa(i)
					t := time.Now()
					_, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
					d := time.Since(t)
					mu.Lock()
					if err != nil {
						errs++
						if errs <= 3 {
							log("  create error: %v", err)
						}
					} else {
						lat = append(lat, d)
					}
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < n; i++ {
			modeOf[seq] = mode
			next <- seq
			seq++
		}
		close(next)
		wg.Wait()
		return lat, errs, time.Since(start)
	}

	// "none" stays last: the report reads it as the baseline.
	// map-mutating is the MutatingAdmissionPolicy alone (no validation), to show what the
	// pod ValidatingAdmissionPolicy adds.
	modes := []string{"webhook", "map", "map-mutating", "map-minimal", "constant-patch", "floor", "defaulter", "none"}
	// Warm every path (connections, informers, the servers' TLS sessions) before measuring.
	for _, m := range modes {
		if err := setMode(m); err != nil {
			return nil, err
		}
		round(4*o.Parallelism, m)
	}
	clear(modeOf)

	type acc struct {
		rounds []float64 // p50 ms
		lat    []time.Duration
		errs   int
		wall   time.Duration
	}
	accs := map[string]*acc{}
	for _, m := range modes {
		accs[m] = &acc{}
	}
	per := o.Pods / o.Rounds
	latency := func(srv *harness.Webhook) (sum, count float64) {
		l := `webhook="` + harness.MutatePodPath + `"`
		sum, _ = MetricSum(srv.MetricsURL(), "controller_runtime_webhook_latency_seconds_sum", l)
		count, _ = MetricSum(srv.MetricsURL(), "controller_runtime_webhook_latency_seconds_count", l)
		return sum, count
	}
	type stats struct{ srvSum, srvCount, apiSum, apiCount, stray float64 }
	acct := map[string]*stats{}
	for _, m := range modes {
		acct[m] = &stats{}
	}
	var cpuWebhook time.Duration
	for r := 0; r < o.Rounds; r++ {
		// Each round its own order, so that no mode always follows the same one (a rotation
		// keeps every mode behind the same predecessor): stepping through the modes by a
		// stride coprime with their number changes every mode's predecessor from one round to
		// the next.
		order := roundOrder(modes, r)
		for _, m := range order {
			if err := setMode(m); err != nil {
				return nil, err
			}
			srv := servers[m]
			var s0, c0 float64
			var cpu0 time.Duration
			if srv != nil {
				s0, c0 = latency(srv)
				cpu0, _ = ProcCPU(srv.Pid())
			}
			t0 := apiMetrics()
			lat, errs, wall := round(per, m)
			t1 := apiMetrics()
			st := acct[m]
			switch {
			case srv != nil:
				s1, c1 := latency(srv)
				st.srvSum += s1 - s0
				st.srvCount += c1 - c0
				st.apiSum += t1.callSum - t0.callSum
				st.apiCount += t1.calls - t0.calls
				// Policy evaluations in a webhook's round are another peer's.
				st.stray += t1.checks - t0.checks
				if m == "webhook" {
					cpu1, _ := ProcCPU(srv.Pid())
					cpuWebhook += cpu1 - cpu0
				}
			case m != "none":
				// Per created pod: one check per policy, the mutating one per (re)invocation.
				st.apiSum += t1.policySum - t0.policySum
				st.apiCount += float64(len(lat))
				st.stray += t1.calls - t0.calls
			default:
				st.stray += t1.calls - t0.calls + t1.checks - t0.checks
			}
			a := accs[m]
			a.rounds = append(a.rounds, p50(lat))
			a.lat = append(a.lat, lat...)
			a.errs += errs
			a.wall += wall
		}
		log("  round %d/%d done", r+1, o.Rounds)
	}

	// Which pods got mutated, by the mode they were created in.
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	mutated := map[string]int{}
	for _, p := range pods.Items {
		i, err := strconv.Atoi(p.Name[len("pgw-"):])
		m, measured := modeOf[i]
		if err != nil || !measured {
			continue
		}
		if _, ok := p.Annotations[annotations.AnnotationStatus]; ok {
			mutated[m]++
		}
	}

	var out []APIMode
	for _, mode := range modes {
		a := accs[mode]
		m := APIMode{Mode: mode, Pods: len(a.lat), Errors: a.errs, Mutated: mutated[mode], StrayCalls: int(acct[mode].stray), RoundP50ms: a.rounds}
		if p := probes[mode]; p != nil && probes["webhook"] != nil {
			same := samePod(p, probes["webhook"])
			m.AsWebhook = &same
		}
		if st := acct[mode]; st != nil {
			if st.srvCount > 0 {
				m.ServerMeanMs = st.srvSum / st.srvCount * 1000
				if mode == "webhook" {
					m.ServerCPUms = ms(cpuWebhook) / st.srvCount
				}
			}
			if st.apiCount > 0 {
				m.APICallMeanMs = st.apiSum / st.apiCount * 1000
			}
		}
		sort.Slice(a.lat, func(i, j int) bool { return a.lat[i] < a.lat[j] })
		if len(a.lat) > 0 {
			m.P50ms = ms(a.lat[len(a.lat)*50/100])
			m.P99ms = ms(a.lat[min(len(a.lat)-1, len(a.lat)*99/100)])
			m.PodsSec = float64(len(a.lat)) / a.wall.Seconds()
		}
		out = append(out, m)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// p50 of latencies in ms (0 for none).
func p50(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return ms(s[len(s)/2])
}

// minimalPolicy is the measured reference policy, verbatim.
func minimalPolicy() *admissionregistrationv1.MutatingAdmissionPolicy {
	ignore := admissionregistrationv1.Ignore
	return &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pgl-map-minimal"},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "selected",
				Expression: "object.metadata.?labels[?'app.kubernetes.io/name'].orValue('') in ['prometheus-pushgateway','pushgateway']"}},
			Variables: []admissionregistrationv1.Variable{
				{Name: "sleep", Expression: "object.metadata.?annotations[?'pushgateway-lifecycle.io/pre-stop-sleep'].hasValue() ? duration(object.metadata.annotations['pushgateway-lifecycle.io/pre-stop-sleep']).getSeconds() : 30"},
				{Name: "grace", Expression: "int(object.spec.?terminationGracePeriodSeconds.orValue(30)) > int(variables.sleep) + 15 ? int(object.spec.?terminationGracePeriodSeconds.orValue(30)) : int(variables.sleep) + 15"},
			},
			FailurePolicy:      &ignore,
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
			Mutations: []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch, JSONPatch: &admissionregistrationv1.JSONPatch{
				Expression: `object.spec.containers.filter(c, c.name == 'pushgateway' && !has(c.lifecycle)).map(c,
  JSONPatch{op: 'add', path: '/spec/containers/' + string(object.spec.containers.indexOf(c)) + '/lifecycle',
    value: Object.spec.containers.lifecycle{preStop: Object.spec.containers.lifecycle.preStop{sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: variables.sleep}}}})
+ [JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: variables.grace}]`,
			}}},
		},
	}
}

// named is a copy of the measured pod under name.
func named(tmpl *corev1.Pod, name string) *corev1.Pod {
	p := tmpl.DeepCopy()
	p.Name = name
	return p
}

// roundOrder is round r's order of the modes: from mode r, by a stride coprime with their
// number that changes with the round, so that a mode's predecessor changes too. The stride
// takes the values 1, 2, ... skipping those sharing a factor with len(modes).
func roundOrder(modes []string, r int) []string {
	n := len(modes)
	var strides []int
	for k := 1; k < max(n, 2); k++ {
		if gcd(k, n) == 1 {
			strides = append(strides, k)
		}
	}
	k := strides[r%len(strides)]
	out := make([]string, n)
	for i := range out {
		out[i] = modes[(r+i*k)%n]
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// samePod compares two dry-run pods of the measured pod but for what the API server sets
// per pod: the name, uid and times, and the generated service-account token volume's name.
func samePod(a, b *corev1.Pod) bool {
	norm := func(p *corev1.Pod) *corev1.Pod {
		p = p.DeepCopy()
		p.Name, p.UID, p.ResourceVersion, p.CreationTimestamp, p.ManagedFields = "", "", "", metav1.Time{}, nil
		rename := func(name *string) {
			if strings.HasPrefix(*name, "kube-api-access-") {
				*name = "kube-api-access-"
			}
		}
		for i := range p.Spec.Volumes {
			rename(&p.Spec.Volumes[i].Name)
		}
		for i := range p.Spec.Containers {
			for j := range p.Spec.Containers[i].VolumeMounts {
				rename(&p.Spec.Containers[i].VolumeMounts[j].Name)
			}
		}
		return p
	}
	return apiequality.Semantic.DeepEqual(norm(a), norm(b))
}
