// Package annotations holds the user-facing contract of pushgateway-lifecycle: every label and
// annotation key it reads or writes, and the one parser for each setting. The keys are API:
// renaming one breaks every workload that uses it.
package annotations

// Prefix is shared by every key this product owns, so that `kubectl get pod -o yaml | grep
// pushgateway-lifecycle.io/` shows everything it looked at or wrote.
const Prefix = "pushgateway-lifecycle.io/"

// Namespace label.
const (
	// LabelInjection on a Namespace opts the namespace in when set to InjectionEnabled. It is read
	// by the webhook configuration's namespaceSelector, never by the handler, so opting a namespace
	// in or out needs no call to the API server on the admission path.
	LabelInjection = Prefix + "injection"
	// InjectionEnabled is the only value of LabelInjection that opts a namespace in.
	InjectionEnabled = "enabled"
)

// Pod label.
const (
	// LabelInject = "true" on a pod selects it whatever the policy's selector says: the escape
	// hatch for Pushgateway pods that do not carry the upstream chart's labels.
	LabelInject = Prefix + "inject"
	// LabelStartupCheck = "true" marks the dry-run pod of `pushgateway-lifecycle check` (the
	// chart's post-install hook): a webhook entry of its own, scoped to the release namespace,
	// sends exactly that pod to the webhook, which no other pod in that namespace is.
	LabelStartupCheck = Prefix + "startup-check"
)

// Pod annotations (set them on the workload's pod template).
const (
	// AnnotationInject = "false" opts one pod out; the status annotation records why. "true" is
	// accepted and changes nothing (selection is by label, see LabelInject).
	AnnotationInject = Prefix + "inject"
	// AnnotationPreStopSleep is how long the preStop hook waits before the container gets SIGTERM,
	// so that pushes routed to the pod while its endpoint is being removed still succeed.
	AnnotationPreStopSleep = Prefix + "pre-stop-sleep"
	// AnnotationShutdownBudget is the time the process needs after SIGTERM to finish in-flight
	// pushes and write its persistence file.
	AnnotationShutdownBudget = Prefix + "shutdown-budget"
	// AnnotationTerminationGracePeriod sets the total grace period explicitly instead of deriving
	// it from the sleep and the shutdown budget.
	AnnotationTerminationGracePeriod = Prefix + "termination-grace-period"
	// AnnotationPreStopAction chooses the hook: ActionSleep, ActionExec or ActionAuto.
	AnnotationPreStopAction = Prefix + "pre-stop-action"
	// AnnotationContainers names, comma-separated, the containers that get the hook.
	AnnotationContainers = Prefix + "containers"
	// AnnotationStatus is written by the webhook: what it did to the pod, or why it did nothing.
	AnnotationStatus = Prefix + "status"
	// AnnotationHandoff = "off" starts one pod at once even while a terminating predecessor
	// still mounts its volume (no SchedulingGateHandoff) and gives a pod without persistence
	// no drain (no ConditionAcceptingPushes readiness gate); "auto" follows the policy.
	AnnotationHandoff = Prefix + "handoff"
	// AnnotationReadiness = "keep" leaves the Pushgateway container's readinessProbe timing as
	// written; "tune" follows the policy.
	AnnotationReadiness = Prefix + "readiness"
)

// SchedulingGateHandoff holds a replacement pod unscheduled while a terminating pod still
// mounts the same volume, so that it loads the persistence file only after its predecessor's
// shutdown persist. The controller removes it.
const SchedulingGateHandoff = Prefix + "handoff"

// ConditionAcceptingPushes is the readiness gate of a pod whose store does not survive it (no
// persistence file on a volume that outlives the pod): the only copy of what it acknowledged
// is what Prometheus scraped. The controller sets the condition True as soon as it sees the
// pod, and the drain webhook sets it False at the pod's DELETE: the terminating pod then leaves
// every Service's serving endpoints, so pushes are refused (the client sees it and retries)
// instead of acknowledged after Prometheus' last scrape, while Prometheus, which scrapes the
// pod's own address, still collects the rest during the preStop sleep. A pod opts out with
// AnnotationHandoff = "off".
const ConditionAcceptingPushes = Prefix + "accepting-pushes"

// Values of AnnotationHandoff (and of the policy's handoff.mode).
const (
	HandoffAuto = "auto"
	HandoffOff  = "off"
)

// Values of AnnotationReadiness (and of the policy's readiness).
const (
	ReadinessTune = "tune"
	ReadinessKeep = "keep"
)

// Keys owned by Kubernetes that decide whether a pod is mutated at all.
const (
	// AnnotationMirror marks a static pod's mirror; the kubelet, not the API, owns its spec.
	AnnotationMirror = "kubernetes.io/config.mirror"
	// LabelAppName is the label the upstream prometheus-pushgateway chart puts on its pods; the
	// default selector matches it.
	LabelAppName = "app.kubernetes.io/name"
)

// Values of AnnotationPreStopAction.
const (
	// ActionSleep uses the native lifecycle sleep action (no shell needed in the image).
	ActionSleep = "sleep"
	// ActionExec runs ["/bin/sh", "-c", "sleep N"] for clusters or tools that predate the
	// sleep action.
	ActionExec = "exec"
	// ActionAuto takes the policy's defaults.preStopAction.
	ActionAuto = "auto"
)
