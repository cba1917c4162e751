// Package termination replays the kubelet's termination sequence, as a pod spec dictates it,
// against real Pushgateway processes and counts the pushes that a pod replacement loses.
package termination

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// defaultGraceSeconds is what the apiserver fills in when a pod spec has no
// terminationGracePeriodSeconds (the upstream chart sets none).
const defaultGraceSeconds = 30

// minimumGracePeriod is the kubelet's floor on the stop window left after the preStop hook
// (minimumGracePeriodInSeconds in pkg/kubelet/kuberuntime). This is the "one-off 2 s extension" of
// the documentation: the hook gets no extra time, the container gets at least 2 s after SIGTERM.
const minimumGracePeriod = 2 * time.Second

// Termination is what the kubelet reads from a pod spec to stop the Pushgateway container.
type Termination struct {
	Container    string
	PreStop      string // human-readable, e.g. `sleep 30s` or `exec sh -c "sleep 30"`
	PreStopSleep time.Duration
	HasPreStop   bool
	Grace        time.Duration
	// The readiness probe's schedule: the kubelet probes first after ReadyDelay, then every
	// ReadyPeriod, so a replacement joins the Service no sooner than that.
	ReadyDelay  time.Duration
	ReadyPeriod time.Duration
}

func (t Termination) String() string {
	p := "no preStop"
	if t.HasPreStop {
		p = "preStop " + t.PreStop
	}
	return fmt.Sprintf("%s, grace %s", p, t.Grace)
}

// FromManifests reads multi-document YAML (a rendered chart, the output of
// `pushgateway-lifecycle mutate`) and returns the termination settings of the Pushgateway
// container of the first Deployment, StatefulSet or Pod in it.
func FromManifests(data []byte) (Termination, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return Termination{}, errors.New("no Deployment, StatefulSet or Pod in the manifests")
		}
		if err != nil {
			return Termination{}, err
		}
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return Termination{}, err
		}
		var spec *corev1.PodSpec
		switch meta.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				return Termination{}, fmt.Errorf("reading the Deployment: %w", err)
			}
			spec = &d.Spec.Template.Spec
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				return Termination{}, fmt.Errorf("StatefulSet: %w", err)
			}
			spec = &s.Spec.Template.Spec
		case "Pod":
			var p corev1.Pod
			if err := yaml.UnmarshalStrict(doc, &p); err != nil {
				return Termination{}, fmt.Errorf("Pod: %w", err)
			}
			spec = &p.Spec
		default:
			continue
		}
		return FromPodSpec(spec)
	}
}

// FromPodSpec picks the Pushgateway container the way the webhook does (named pushgateway, or
// image .../pushgateway, or the only container) and reads its preStop and the pod's grace period.
func FromPodSpec(spec *corev1.PodSpec) (Termination, error) {
	var c *corev1.Container
	for i := range spec.Containers {
		cc := &spec.Containers[i]
		if cc.Name == "pushgateway" || imageName(cc.Image) == "pushgateway" {
			c = cc
			break
		}
	}
	if c == nil && len(spec.Containers) == 1 {
		c = &spec.Containers[0]
	}
	if c == nil {
		return Termination{}, errors.New("no Pushgateway container in the pod spec")
	}
	t := Termination{Container: c.Name, Grace: defaultGraceSeconds * time.Second}
	if spec.TerminationGracePeriodSeconds != nil {
		t.Grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	t.ReadyPeriod = 10 * time.Second // the API default of periodSeconds
	if rp := c.ReadinessProbe; rp != nil {
		t.ReadyDelay = time.Duration(rp.InitialDelaySeconds) * time.Second
		if rp.PeriodSeconds > 0 {
			t.ReadyPeriod = time.Duration(rp.PeriodSeconds) * time.Second
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return t, nil
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		t.HasPreStop = true
		t.PreStopSleep = time.Duration(h.Sleep.Seconds) * time.Second
		t.PreStop = fmt.Sprintf("sleep %s", t.PreStopSleep)
	case h.Exec != nil:
		n, err := execSleepSeconds(h.Exec.Command)
		if err != nil {
			return Termination{}, err
		}
		t.HasPreStop = true
		t.PreStopSleep = time.Duration(n) * time.Second
		t.PreStop = fmt.Sprintf("exec %q", h.Exec.Command)
	default:
		// An httpGet/tcpSocket hook's duration depends on the program it calls; replaying it
		// would be guessing, so refuse rather than silently treat it as instant.
		return Termination{}, fmt.Errorf("container %s: preStop %+v is neither a sleep action nor an exec sleep; cannot replay it", c.Name, *h)
	}
	return t, nil
}

var sleepCmd = regexp.MustCompile(`^\s*(?:exec\s+)?sleep\s+(\d+)\s*$`)

// execSleepSeconds understands the shapes people write for a sleeping preStop:
// ["sh","-c","sleep 30"], ["/bin/sh","-c","sleep 30"] and ["sleep","30"].
func execSleepSeconds(cmd []string) (int64, error) {
	var script string
	switch {
	case len(cmd) == 3 && path.Base(cmd[0]) == "sh" && cmd[1] == "-c":
		script = cmd[2]
	case len(cmd) == 2 && path.Base(cmd[0]) == "sleep":
		script = "sleep " + cmd[1]
	default:
		return 0, fmt.Errorf("exec preStop %q is not a plain sleep; cannot replay it", cmd)
	}
	m := sleepCmd.FindStringSubmatch(script)
	if m == nil {
		return 0, fmt.Errorf("exec preStop %q is not a plain sleep; cannot replay it", cmd)
	}
	return strconv.ParseInt(m[1], 10, 64)
}

func imageName(image string) string {
	if i := strings.IndexAny(image, "@"); i >= 0 {
		image = image[:i]
	}
	last := image[strings.LastIndex(image, "/")+1:]
	if i := strings.Index(last, ":"); i >= 0 {
		last = last[:i]
	}
	return last
}

// Plan is the kubelet's schedule for one container, in pod time (unscaled), from the moment the
// pod is deleted.
type Plan struct {
	SIGTERMAt time.Duration
	SIGKILLAt time.Duration
	// Floored reports that the kubelet's 2 s minimum stop window, not the grace period, set
	// SIGKILLAt (the preStop used up the grace period).
	Floored bool
}

// StopWindow is the time the process has between SIGTERM and SIGKILL.
func (p Plan) StopWindow() time.Duration { return p.SIGKILLAt - p.SIGTERMAt }

// PlanFor follows kuberuntime's killContainer: the preStop hook runs with the grace period as
// its timeout, the time it took (whole seconds, truncated) is subtracted, the remainder is
// raised to at least 2 s, and that is the stop window the runtime gives after SIGTERM.
func PlanFor(t Termination) Plan {
	grace := t.Grace.Truncate(time.Second)
	var hook time.Duration
	if t.HasPreStop && grace > 0 {
		hook = min(t.PreStopSleep, grace)
	}
	window := grace - hook
	floored := false
	if window < minimumGracePeriod {
		window = minimumGracePeriod
		floored = true
	}
	return Plan{SIGTERMAt: hook, SIGKILLAt: hook + window, Floored: floored}
}
