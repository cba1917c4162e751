// Package check is `pushgateway-lifecycle check`, the startup API check the chart runs as a
// post-install and post-upgrade hook (and as `helm test`), in the manner of cert-manager's
// startupapicheck: `helm install --wait` returns once the Deployment is ready, which is not
// the moment the API server can call the webhook (caBundle injected, Service routed,
// certificate trusted); under failurePolicy Ignore a Pushgateway pod created in that gap is
// silently unpatched. The check asks the API server itself: it creates a Pushgateway-shaped
// pod with dry-run, so nothing is stored, and succeeds only when what the API server would
// store carries the preStop hook and a grace period that covers it.
package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// Options of one check.
type Options struct {
	// Namespace the dry-run pod is created in: the release namespace, where a webhook entry
	// (or admission policy binding) of its own selects exactly that pod by LabelStartupCheck.
	Namespace string
	// Timeout bounds the whole check; Interval is the wait between two attempts.
	Timeout, Interval time.Duration
	// Container is the name of the pod's Pushgateway container; Image its image (never
	// pulled: the pod is not stored).
	Container, Image string
	// Out receives one line per failed attempt (when the reason changes) and the result.
	Out io.Writer
}

// Defaults are the flags' defaults.
func Defaults() Options {
	return Options{Timeout: 2 * time.Minute, Interval: 2 * time.Second, Container: "pushgateway", Image: "quay.io/prometheus/pushgateway:v1.11.3"}
}

// Validate returns every error in o.
func (o Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace: empty; want the namespace the release is installed in"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout: %s; want a positive duration (2m)", o.Timeout))
	}
	if o.Interval <= 0 || (o.Timeout > 0 && o.Interval > o.Timeout) {
		errs = append(errs, fmt.Errorf("--interval: %s; want a positive duration no longer than --timeout (2s)", o.Interval))
	}
	if o.Container == "" || o.Image == "" {
		errs = append(errs, errors.New("--container and --image: want non-empty names"))
	}
	return errors.Join(errs...)
}

// Pod is the dry-run pod: selected by the explicit opt-in label, its container named by the
// containers annotation (so that a policy with other container names still patches it), and
// marked with LabelStartupCheck.
func Pod(o Options) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "pushgateway-lifecycle-startup-check",
			Namespace:   o.Namespace,
			Labels:      map[string]string{annotations.LabelInject: "true", annotations.LabelStartupCheck: "true"},
			Annotations: map[string]string{annotations.AnnotationContainers: o.Container},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: o.Container, Image: o.Image}}},
	}
}

// Result is what one successful attempt saw.
type Result struct {
	// Hook is the preStop hook as stored ("sleep 30s", "exec [/bin/sh -c sleep 30]").
	Hook string
	// Grace is the stored terminationGracePeriodSeconds.
	Grace int64
	// Status is the pushgateway-lifecycle.io/status annotation (empty when the admission
	// policy mode wrote none).
	Status string
	// Attempts and Elapsed until success.
	Attempts int
	Elapsed  time.Duration
}

// Judge returns what the stored pod shows, or why it is not the product's mutation.
func Judge(stored *corev1.Pod, container string) (Result, error) {
	var c *corev1.Container
	for i := range stored.Spec.Containers {
		if stored.Spec.Containers[i].Name == container {
			c = &stored.Spec.Containers[i]
		}
	}
	if c == nil {
		return Result{}, fmt.Errorf("the API server returned the pod without its container %q", container)
	}
	status := stored.Annotations[annotations.AnnotationStatus]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		if status != "" {
			return Result{}, fmt.Errorf("the pod came back without a preStop hook on %q; the product's status says %q", container, status)
		}
		return Result{}, fmt.Errorf("the pod came back without a preStop hook on %q and without %s: nothing mutated it (mode webhook: the API server did not call the webhook, or failed to and ignored it; mode admissionPolicy: the MutatingAdmissionPolicy or its binding is not in force yet)", container, annotations.AnnotationStatus)
	}
	var hook string
	var sleep int64
	switch h := c.Lifecycle.PreStop; {
	case h.Sleep != nil:
		hook, sleep = fmt.Sprintf("sleep %ds", h.Sleep.Seconds), h.Sleep.Seconds
	case h.Exec != nil:
		hook = fmt.Sprintf("exec %v", h.Exec.Command)
	default:
		return Result{}, fmt.Errorf("the pod's preStop hook on %q is neither sleep nor exec", container)
	}
	if stored.Spec.TerminationGracePeriodSeconds == nil {
		return Result{}, errors.New("the pod came back without terminationGracePeriodSeconds")
	}
	grace := *stored.Spec.TerminationGracePeriodSeconds
	if grace <= sleep {
		return Result{}, fmt.Errorf("terminationGracePeriodSeconds %d does not cover the preStop %s: the product's grace period is missing", grace, hook)
	}
	return Result{Hook: hook, Grace: grace, Status: status}, nil
}

// Run tries until the API server stores the product's mutation or the timeout passes; the
// error names the last reason.
func Run(ctx context.Context, cs kubernetes.Interface, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	var last string
	giveUp := func(attempts int) error {
		return fmt.Errorf("no Pushgateway pod created in namespace %s gets the product's mutation after %s (%d attempts); last: %s", o.Namespace, o.Timeout, attempts, last)
	}
	for attempt := 1; ; attempt++ {
		res, err := once(ctx, cs, o)
		if err == nil {
			res.Attempts, res.Elapsed = attempt, time.Since(start)
			return res, nil
		}
		// An attempt cut short by the check's own deadline says nothing about the cluster;
		// the reason the operator needs is the one before it.
		if ctx.Err() != nil && last != "" {
			return Result{}, giveUp(attempt - 1)
		}
		if err.Error() != last {
			last = err.Error()
			_, _ = fmt.Fprintf(o.Out, "attempt %d (%s): %s\n", attempt, time.Since(start).Round(time.Second), last)
		}
		select {
		case <-ctx.Done():
			return Result{}, giveUp(attempt)
		case <-time.After(o.Interval):
		}
	}
}

func once(ctx context.Context, cs kubernetes.Interface, o Options) (Result, error) {
	// Each attempt gets at most the webhook's longest timeout plus the API server's own work,
	// so that one hung call cannot use the whole budget.
	actx, cancel := context.WithTimeout(ctx, 35*time.Second)
	defer cancel()
	pod := Pod(o)
	stored, err := cs.CoreV1().Pods(o.Namespace).Create(actx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return Result{}, fmt.Errorf("dry-run create of pod %s/%s: %w", o.Namespace, pod.Name, err)
	}
	return Judge(stored, o.Container)
}
