package admissionpolicy

import (
	"fmt"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// maxInt64 is math.MaxInt64 as a CEL literal (engine.addCapped saturates there).
const maxInt64 = "9223372036854775807"

// problemVariables are the variables holding one invalid setting each (a list of zero or one
// message), in the order the engine reports them.
var problemVariables = []string{
	"injectProblem", "sleepProblem", "budgetProblem", "graceProblem", "actionProblem",
	"containersProblem", "readinessProblem", "missingProblem", "graceLowProblem",
}

type variable struct{ name, expr string }

// max3 is the largest of three int variables (a list literal of them would have to be
// homogeneous, which the API server's validator cannot prove of variables).
func max3(a, b, c string) string {
	return "(" + a + " >= " + b + " && " + a + " >= " + c + " ? " + a + " : " + b + " >= " + c + " ? " + b + " : " + c + ")"
}

// configVariables are the only policy-dependent variables besides the selector: the chart
// renders exactly these from its values, so its policies equal the generator's.
func configVariables(p *policy.Policy) []variable {
	return []variable{
		{"cfgSleep", strconv.FormatInt(int64(p.Defaults.PreStopSleep), 10)},
		{"cfgBudget", strconv.FormatInt(int64(p.Defaults.ShutdownBudget), 10)},
		{"cfgAction", lit(p.Defaults.PreStopAction)},
		{"cfgMinSleep", strconv.FormatInt(int64(p.Limits.MinPreStopSleep), 10)},
		{"cfgMaxSleep", strconv.FormatInt(int64(p.Limits.MaxPreStopSleep), 10)},
		{"cfgMaxGrace", strconv.FormatInt(int64(p.Limits.MaxTerminationGracePeriod), 10)},
		{"cfgKeep", strconv.FormatBool(p.ExistingPreStop == policy.ExistingPreStopKeep)},
		{"cfgReject", strconv.FormatBool(p.OnInvalid == policy.OnInvalidReject)},
		{"cfgTuneReadiness", strconv.FormatBool(p.Readiness == annotations.ReadinessTune)},
	}
}

// podVariables is engine.Decide in CEL for the pod at root (object, or a workload's template).
func podVariables(root string) []variable {
	v := func(n string) string { return "variables." + n }
	ann := v("ann")
	has := func(key string) string { return lit(key) + " in " + ann }
	get := func(key string) string { return ann + "[" + lit(key) + "]" }
	fmtS := formatSecondsCEL
	durProblem := func(key, in, lo, hi string) string {
		return v(in) + " != -2 && !(" + v(in) + " >= " + lo + " && " + v(in) + " <= " + hi + ") ? [" + get(key) + "].map(x, " +
			invalidPrefix(key) + " + " + quoteCEL("x") + " + ': must be " + annotations.DurationForms + ", from ' + " +
			fmtS(lo) + " + ' to ' + " + fmtS(hi) + ") : []"
	}
	durIn := func(key string) string {
		return has(key) + " ? " + bind("x", get(key), parseSecondsCEL("x")) + " : -2"
	}
	inRange := func(in, lo, hi string) string {
		return v(in) + " >= " + lo + " && " + v(in) + " <= " + hi
	}
	hookEqual := func(c string) string {
		p := c + ".lifecycle.preStop"
		common := "!has(" + p + ".httpGet) && !has(" + p + ".tcpSocket)"
		return "has(" + c + ".lifecycle) && has(" + p + ") && (" + v("action") + " == 'exec' ? " +
			"has(" + p + ".exec) && !has(" + p + ".sleep) && " + common + " && " + p + ".exec.?command.orValue([]) == ['/bin/sh', '-c', 'sleep ' + string(" + v("sleep") + ")] : " +
			"has(" + p + ".sleep) && !has(" + p + ".exec) && " + common + " && " + p + ".sleep.?seconds.orValue(0) == " + v("sleep") + ")"
	}
	// execSleep is engine.HookSleepSeconds for an exec command list k: the seconds, or -1.
	execSleep := bind("k", "p.exec.?command.orValue([])",
		bind("s",
			"size(k) == 3 && k[0].matches(r'^(?:.*/)?(?:sh|bash)/*$') ? (k[1] == '-c' ? k[2] : '') : "+
				"size(k) == 2 && k[0].matches(r'^(?:.*/)?sleep/*$') ? 'sleep ' + k[1] : ''",
			"s.matches("+raw("^"+ws+"*sleep"+ws+"+"+nonWS+"+"+ws+"*$")+") ? "+
				bind("a", "s.find("+raw(nonWS+"+"+ws+"*$")+").find("+raw(nonWS+"+")+")", parseSecondsCEL("a"))+" : -1"))
	keptLength := bind("p", "c.lifecycle.preStop",
		"has(p.sleep) ? p.sleep.?seconds.orValue(0) : has(p.exec) ? "+bind("n", execSleep, "n < 0 ? "+v("sleep")+" : n")+" : "+v("sleep"))
	// sidecarLength is engine.HookSleepSeconds of container c's preStop for otherSleeps: the
	// seconds, or -1 for no hook or one whose length cannot be read.
	sidecarLength := "has(c.lifecycle) && has(c.lifecycle.preStop) ? " +
		bind("p", "c.lifecycle.preStop", "has(p.sleep) ? p.sleep.?seconds.orValue(0) : has(p.exec) ? "+execSleep+" : -1") + " : -1"
	// The init containers and the containers are lists of different CEL types and cannot be
	// concatenated; their names and lengths can (engine.otherSleeps' order: init containers first).
	restartable := v("pod") + ".spec.?initContainers.orValue([]).filter(c, c.?restartPolicy.orValue('') == 'Always')"
	nonTargets := v("containers") + ".filter(c, !(c.name in " + v("targets") + "))"
	status := annotations.AnnotationStatus
	invalidSuffix := "(size(" + v("problems") + ") > 0 ? '; invalid: ' + " + v("problems") + ".join('; ') : '')"
	// The timing of container c's readinessProbe (known to be set); a period of 0 is unset,
	// which the API server defaults to engine.KubernetesDefaultProbePeriod before admission.
	probeDelay := "c.readinessProbe.?initialDelaySeconds.orValue(0)"
	probePeriod := "c.readinessProbe.?periodSeconds.orValue(0)"
	maxPeriod := strconv.Itoa(int(engine.ReadinessMaxPeriod))
	defaultPeriod := strconv.Itoa(int(engine.KubernetesDefaultProbePeriod))

	return []variable{
		{"pod", root},
		{"ann", v("pod") + ".metadata.?annotations.orValue({})"},
		{"optOut", ann + "[?" + lit(annotations.AnnotationInject) + "].orValue('') == 'false'"},
		{"injectProblem", has(annotations.AnnotationInject) + " && !(" + get(annotations.AnnotationInject) + " in ['true', 'false']) ? [" +
			get(annotations.AnnotationInject) + "].map(x, " + invalidPrefix(annotations.AnnotationInject) + " + " + quoteCEL("x") + ` + ': must be "true" or "false"') : []`},
		{"sleepIn", durIn(annotations.AnnotationPreStopSleep)},
		{"sleepProblem", durProblem(annotations.AnnotationPreStopSleep, "sleepIn", v("cfgMinSleep"), v("cfgMaxSleep"))},
		{"budgetIn", durIn(annotations.AnnotationShutdownBudget)},
		{"budgetProblem", durProblem(annotations.AnnotationShutdownBudget, "budgetIn", "0", v("cfgMaxGrace"))},
		{"graceIn", durIn(annotations.AnnotationTerminationGracePeriod)},
		{"graceProblem", durProblem(annotations.AnnotationTerminationGracePeriod, "graceIn", "0", v("cfgMaxGrace"))},
		{"actionProblem", has(annotations.AnnotationPreStopAction) + " && !(" + get(annotations.AnnotationPreStopAction) + " in ['sleep', 'exec', 'auto']) ? [" +
			get(annotations.AnnotationPreStopAction) + "].map(x, " + invalidPrefix(annotations.AnnotationPreStopAction) + " + " + quoteCEL("x") + ` + ': must be one of "sleep", "exec", "auto"') : []`},
		{"containersIn", has(annotations.AnnotationContainers) + " ? " + get(annotations.AnnotationContainers) + ".split(',').map(x, x.trim()) : []"},
		{"containersProblem", has(annotations.AnnotationContainers) + " && " + v("containersIn") + ".exists(x, x == '') ? [" +
			get(annotations.AnnotationContainers) + "].map(x, " + invalidPrefix(annotations.AnnotationContainers) + " + " + quoteCEL("x") +
			" + ': must be a comma-separated list of container names of this pod (pushgateway,sidecar)') : []"},
		{"readinessProblem", has(annotations.AnnotationReadiness) + " && !(" + get(annotations.AnnotationReadiness) + " in [" + lit(annotations.ReadinessTune) + ", " + lit(annotations.ReadinessKeep) + "]) ? [" +
			get(annotations.AnnotationReadiness) + "].map(x, " + invalidPrefix(annotations.AnnotationReadiness) + " + " + quoteCEL("x") +
			" + ': must be " + fmt.Sprintf("%q or %q", annotations.ReadinessTune, annotations.ReadinessKeep) + "') : []"},
		{"containers", v("pod") + ".spec.?containers.orValue([])"},
		{"names", v("containers") + ".map(c, c.name)"},
		{"named", has(annotations.AnnotationContainers) + " && size(" + v("containersProblem") + ") == 0"},
		{"missing", v("named") + " ? " + v("containersIn") + ".filter(x, !(x in " + v("names") + ")) : []"},
		{"missingProblem", "!" + v("optOut") + " && size(" + v("missing") + ") > 0 ? [[" + v("containersIn") + ".join(','), " + v("missing") + ".join(','), " + v("names") + ".join(',')]].map(x, " +
			invalidPrefix(annotations.AnnotationContainers) + " + " + quoteCEL("x[0]") + " + ': names no container of this pod (' + " + quoteCEL("x[1]") +
			" + '); must be a comma-separated list of: ' + " + quoteCEL("x[2]") + ") : []"},
		{"defaultTargets", v("containers") + ".filter(c, c.name == 'pushgateway' || c.?image.orValue('').matches(" + raw(imageRE) + ")).map(c, c.name)"},
		{"targets", v("named") + " && size(" + v("missing") + ") == 0 ? " + v("names") + ".filter(x, x in " + v("containersIn") + ") : " +
			"size(" + v("defaultTargets") + ") == 0 && size(" + v("containers") + ") == 1 ? [" + v("containers") + "[0].name] : " + v("defaultTargets")},
		{"noTarget", "size(" + v("targets") + ") == 0"},
		{"sleep", inRange("sleepIn", v("cfgMinSleep"), v("cfgMaxSleep")) + " ? " + v("sleepIn") + " : " + v("cfgSleep")},
		{"budget", inRange("budgetIn", "0", v("cfgMaxGrace")) + " ? " + v("budgetIn") + " : " + v("cfgBudget")},
		{"action", ann + "[?" + lit(annotations.AnnotationPreStopAction) + "].orValue('') in ['sleep', 'exec'] ? " + get(annotations.AnnotationPreStopAction) + " : " + v("cfgAction")},
		{"targetContainers", v("containers") + ".filter(c, c.name in " + v("targets") + ")"},
		{"same", v("targetContainers") + ".filter(c, " + hookEqual("c") + ").map(c, c.name)"},
		{"kept", v("cfgKeep") + " ? " + v("targetContainers") + ".filter(c, has(c.lifecycle) && has(c.lifecycle.preStop) && !(c.name in " + v("same") + ")) : []"},
		{"keptNames", v("kept") + ".map(c, c.name)"},
		{"change", v("targetContainers") + ".filter(c, !(c.name in " + v("same") + ") && !(c.name in " + v("keptNames") + ")).map(c, c.name)"},
		{"replaced", v("targetContainers") + ".filter(c, c.name in " + v("change") + " && has(c.lifecycle) && has(c.lifecycle.preStop)).map(c, c.name)"},
		{"longest", "int(([0] + " + v("kept") + ".map(c, " + keptLength + ") + (size(" + v("same") + ") + size(" + v("change") + ") > 0 ? [" + v("sleep") + "] : [])).max())"},
		{"targetLengths", v("targetContainers") + ".map(c, c.name in " + v("keptNames") + " ? " + keptLength + " : " + v("sleep") + ")"},
		{"longestName", bind("i", v("targetLengths")+".indexOf("+v("longest")+")", "i < 0 ? '' : "+v("targetContainers")+"[i].name")},
		{"otherLengths", restartable + ".map(c, " + sidecarLength + ") + " + nonTargets + ".map(c, " + sidecarLength + ")"},
		{"otherNames", restartable + ".map(c, c.name) + " + nonTargets + ".map(c, c.name)"},
		{"others", "int(([0] + " + v("otherLengths") + ").max())"},
		{"floor", v("others") + " > " + v("longest") + " ? " + v("others") + " : " + v("longest")},
		{"floorName", v("others") + " > " + v("longest") + " ? " + v("otherNames") + "[" + v("otherLengths") + ".indexOf(" + v("others") + ")] : " + v("longestName")},
		{"parseProblems", v("injectProblem") + " + " + v("sleepProblem") + " + " + v("budgetProblem") + " + " + v("graceProblem") + " + " +
			v("actionProblem") + " + " + v("containersProblem") + " + " + v("readinessProblem") + " + " + v("missingProblem")},
		{"graceLowProblem", "!" + v("optOut") + " && !" + v("noTarget") + " && !(" + v("cfgReject") + " && size(" + v("parseProblems") + ") > 0) && " +
			inRange("graceIn", "0", v("cfgMaxGrace")) + " && " + v("graceIn") + " < " + v("floor") + " ? [" + get(annotations.AnnotationTerminationGracePeriod) + "].map(x, " +
			invalidPrefix(annotations.AnnotationTerminationGracePeriod) + " + " + quoteCEL("x") + " + ': must be at least the longest preStop sleep of the pod, ' + " + fmtS(v("floor")) +
			" + ' (container ' + " + quoteCEL(v("floorName")) + " + '), ' + (" + v("floor") + " > " + v("cfgMaxGrace") +
			" ? 'which is above limits.maxTerminationGracePeriod (' + " + fmtS(v("cfgMaxGrace")) + " + '): remove the annotation' : 'so from ' + " +
			fmtS(v("floor")) + " + ' to ' + " + fmtS(v("cfgMaxGrace")) + ")) : []"},
		{"problems", v("parseProblems") + " + " + v("graceLowProblem")},
		{"graceSet", "has(" + v("pod") + ".spec.terminationGracePeriodSeconds)"},
		{"oldGrace", v("pod") + ".spec.?terminationGracePeriodSeconds.orValue(" + fmt.Sprint(engine.KubernetesDefaultGracePeriod) + ")"},
		{"graceExplicit", inRange("graceIn", "0", v("cfgMaxGrace")) + " && " + v("graceIn") + " >= " + v("floor")},
		{"derived", "int(" + bind("s", v("longest")+" > "+maxInt64+" - "+v("budget")+" ? "+maxInt64+" : "+v("longest")+" + "+v("budget"),
			max3(v("oldGrace"), "s", v("others"))) + ")"},
		{"capped", "!" + v("graceExplicit") + " && " + v("derived") + " > " + v("cfgMaxGrace") + " && " + v("oldGrace") + " <= " + v("cfgMaxGrace")},
		{"newGrace", v("graceExplicit") + " ? " + v("graceIn") + " : " + v("capped") + " ? " + max3(v("cfgMaxGrace"), v("floor"), v("oldGrace")) + " : " + v("derived")},
		{"graceChanged", "!" + v("graceSet") + " || " + v("newGrace") + " != " + v("oldGrace")},
		// engine.readinessChange over the targets: probed are those whose readinessProbe is an
		// httpGet on engine.ReadinessPath (an invalid annotation value tunes, as the policy
		// default); readinessDelay and readinessPeriod name those with a field to lower.
		{"probed", v("cfgTuneReadiness") + " && " + ann + "[?" + lit(annotations.AnnotationReadiness) + "].orValue('') != " + lit(annotations.ReadinessKeep) + " ? " +
			v("targetContainers") + ".filter(c, c.?readinessProbe.?httpGet.?path.orValue('') == " + lit(engine.ReadinessPath) + ") : []"},
		{"readinessDelay", v("probed") + ".filter(c, " + probeDelay + " > 0).map(c, c.name)"},
		{"readinessPeriod", v("probed") + ".filter(c, " + bind("p", probePeriod, "p == 0 || p > "+maxPeriod) + ").map(c, c.name)"},
		{"readinessStatus", v("probed") + ".filter(c, c.name in " + v("readinessDelay") + " || c.name in " + v("readinessPeriod") + ").map(c, '; readiness: ' + (" +
			"(c.name in " + v("readinessDelay") + " ? ['initialDelaySeconds ' + string(" + probeDelay + ") + '->0'] : []) + " +
			"(c.name in " + v("readinessPeriod") + " ? ['periodSeconds ' + string(" + bind("p", probePeriod, "p == 0 ? "+defaultPeriod+" : p") + ") + '->" + maxPeriod + "'] : [])" +
			").join(', ') + ' on ' + c.name).join('')"},
		{"status", "((size(" + v("change") + ") > 0 ? ['injected: ' + " + v("action") + " + ' ' + " + fmtS(v("sleep")) + " + ' on ' + " + v("change") + ".join(',') + " +
			"(size(" + v("replaced") + ") > 0 ? ' (replaced existing preStop on ' + " + v("replaced") + ".join(',') + ')' : '')] : []) + " +
			"(size(" + v("keptNames") + ") > 0 ? ['kept existing preStop on ' + " + v("keptNames") + ".join(',')] : [])" +
			").join('; ')"},
		{"statusText", "(" + v("status") + " != '' ? " + v("status") + " : 'already set: ' + " + v("action") + " + ' ' + " + fmtS(v("sleep")) + " + ' on ' + " + v("targets") + ".join(',')) + '; ' + " +
			"(" + v("graceSet") + " && " + v("newGrace") + " == " + v("oldGrace") + " ? 'terminationGracePeriodSeconds ' + string(" + v("newGrace") + ") : " +
			"'terminationGracePeriodSeconds ' + string(" + v("oldGrace") + ") + '->' + string(" + v("newGrace") + ") + (" + v("capped") + " ? ' (capped by limits.maxTerminationGracePeriod)' : '')) + " +
			v("readinessStatus") + " + " + invalidSuffix},
		{"skipStatus", v("optOut") + " ? 'skipped: inject=false' + " + invalidSuffix + " : " + v("noTarget") + " ? 'skipped: no target container (name one in " +
			annotations.AnnotationContainers + ")' + " + invalidSuffix + " : ''"},
		{"currentStatus", ann + "[?" + lit(status) + "].orValue('')"},
		// annSize is what the pod's annotations weigh against the API server's limit once the
		// status key is added, without the status value (ValidateAnnotationsSize counts bytes).
		{"annSize", "([" + strconv.Itoa(len(status)) + "] + " + ann + ".map(k, k == " + lit(status) + " ? 0 : size(bytes(k)) + size(bytes(" + ann + "[k])))).sum()"},
		{"denied", v("cfgReject") + " && !" + v("optOut") + " && size(" + v("problems") + ") > 0"},
	}
}

func toVariables(vs ...[]variable) []admissionregistrationv1.Variable {
	var out []admissionregistrationv1.Variable
	for _, l := range vs {
		for _, x := range l {
			out = append(out, admissionregistrationv1.Variable{Name: x.name, Expression: x.expr})
		}
	}
	return out
}
