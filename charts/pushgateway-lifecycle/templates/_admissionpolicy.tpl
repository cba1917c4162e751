{{/*
Helpers of mode: admissionPolicy (templates/admissionpolicy.yaml, generated from
pkg/admissionpolicy). They turn the `policy:` values into the few CEL literals that depend on
the policy; test/chart renders them and compares with `pushgateway-lifecycle admission-policy`.
*/}}

{{/* Seconds of a policy duration: bare seconds, or whole h/m/s components (45s, 1m30s). */}}
{{- define "pgl.admissionPolicySeconds" -}}
{{- $v := .value -}}
{{- if kindIs "string" $v -}}
{{- if regexMatch "^[0-9]+$" $v -}}
{{- $v | atoi -}}
{{- else if and $v (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $v) -}}
{{- $h := regexFind "[0-9]+h" $v | trimSuffix "h" | default "0" | atoi -}}
{{- $m := regexFind "[0-9]+m" $v | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s" $v | trimSuffix "s" | default "0" | atoi -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- else -}}
{{- fail (printf "policy.%s: %q: with mode: admissionPolicy a duration must be bare seconds (45) or whole h/m/s components (45s, 1m30s)" .field $v) -}}
{{- end -}}
{{- else -}}
{{- int64 $v -}}
{{- end -}}
{{- end }}

{{/* The config variables of the generated policies as JSON, after the policy's Validate() checks. */}}
{{- define "pgl.admissionPolicyConfig" -}}
{{- $p := .Values.policy | default dict -}}
{{- $d := $p.defaults | default dict -}}
{{- $l := $p.limits | default dict -}}
{{- $sleep := include "pgl.admissionPolicySeconds" (dict "field" "defaults.preStopSleep" "value" (dig "preStopSleep" "30s" $d)) | atoi -}}
{{- $budget := include "pgl.admissionPolicySeconds" (dict "field" "defaults.shutdownBudget" "value" (dig "shutdownBudget" "15s" $d)) | atoi -}}
{{- $min := include "pgl.admissionPolicySeconds" (dict "field" "limits.minPreStopSleep" "value" (dig "minPreStopSleep" "5s" $l)) | atoi -}}
{{- $max := include "pgl.admissionPolicySeconds" (dict "field" "limits.maxPreStopSleep" "value" (dig "maxPreStopSleep" "300s" $l)) | atoi -}}
{{- $grace := include "pgl.admissionPolicySeconds" (dict "field" "limits.maxTerminationGracePeriod" "value" (dig "maxTerminationGracePeriod" "600s" $l)) | atoi -}}
{{- $action := dig "preStopAction" "sleep" $d -}}
{{- $existing := $p.existingPreStop | default "keep" -}}
{{- $onInvalid := $p.onInvalid | default "warn" -}}
{{- $readiness := $p.readiness | default "tune" -}}
{{- if lt $max $min }}{{ fail "policy.limits.maxPreStopSleep: must be >= limits.minPreStopSleep" }}{{ end -}}
{{- if lt $grace $max }}{{ fail "policy.limits.maxTerminationGracePeriod: must be >= limits.maxPreStopSleep: the grace period has to cover the sleep" }}{{ end -}}
{{- if or (lt $sleep $min) (gt $sleep $max) }}{{ fail "policy.defaults.preStopSleep: must be within limits [minPreStopSleep, maxPreStopSleep]" }}{{ end -}}
{{- if gt (add $sleep $budget) $grace }}{{ fail "policy.defaults.shutdownBudget: defaults.preStopSleep + defaults.shutdownBudget must be <= limits.maxTerminationGracePeriod" }}{{ end -}}
{{- if not (has $action (list "sleep" "exec")) }}{{ fail (printf "policy.defaults.preStopAction: %q: must be sleep or exec" $action) }}{{ end -}}
{{- if not (has $existing (list "keep" "replace")) }}{{ fail (printf "policy.existingPreStop: %q: must be keep or replace" $existing) }}{{ end -}}
{{- if not (has $onInvalid (list "warn" "reject")) }}{{ fail (printf "policy.onInvalid: %q: must be warn or reject" $onInvalid) }}{{ end -}}
{{- if not (has $readiness (list "tune" "keep")) }}{{ fail (printf "policy.readiness: %q: must be tune or keep" $readiness) }}{{ end -}}
{{- toJson (dict
  "cfgSleep" (toString $sleep) "cfgBudget" (toString $budget) "cfgAction" (printf "'%s'" $action)
  "cfgMinSleep" (toString $min) "cfgMaxSleep" (toString $max) "cfgMaxGrace" (toString $grace)
  "cfgKeep" (toString (eq $existing "keep")) "cfgReject" (toString (eq $onInvalid "reject"))
  "cfgTuneReadiness" (toString (eq $readiness "tune"))
  "action" (ternary "Deny" "Warn" (eq $onInvalid "reject"))) -}}
{{- end }}

{{/* The pod selection (the policy's selector, or the inject label) as CEL over .root. */}}
{{- define "pgl.admissionPolicySelection" -}}
{{- $p := .policy | default dict -}}
{{- $l := printf "%s.metadata.?labels.orValue({})" .root -}}
{{- $sel := dict "matchExpressions" (list (dict "key" "app.kubernetes.io/name" "operator" "In" "values" (list "prometheus-pushgateway" "pushgateway"))) -}}
{{- if hasKey $p "selector" }}{{ $sel = $p.selector | default dict }}{{ end -}}
{{- $clauses := list -}}
{{- range $k, $v := ($sel.matchLabels | default dict) -}}
{{- $clauses = append $clauses (printf "('%s' in %s && %s['%s'] == '%s')" $k $l $l $k $v) -}}
{{- end -}}
{{- range ($sel.matchExpressions | default list) -}}
{{- $vals := list -}}
{{- range (.values | default list) }}{{ $vals = append $vals (printf "'%s'" .) }}{{ end -}}
{{- $list := printf "[%s]" (join ", " $vals) -}}
{{- if eq .operator "In" -}}
{{- $clauses = append $clauses (printf "('%s' in %s && %s['%s'] in %s)" .key $l $l .key $list) -}}
{{- else if eq .operator "NotIn" -}}
{{- $clauses = append $clauses (printf "!('%s' in %s && %s['%s'] in %s)" .key $l $l .key $list) -}}
{{- else if eq .operator "Exists" -}}
{{- $clauses = append $clauses (printf "'%s' in %s" .key $l) -}}
{{- else if eq .operator "DoesNotExist" -}}
{{- $clauses = append $clauses (printf "!('%s' in %s)" .key $l) -}}
{{- else -}}
{{- fail (printf "policy.selector.matchExpressions: operator %q: must be In, NotIn, Exists or DoesNotExist" .operator) -}}
{{- end -}}
{{- end -}}
{{- printf "%s[?'pushgateway-lifecycle.io/inject'].orValue('') == 'true' || (%s)" $l (ternary (join " && " $clauses) "true" (gt (len $clauses) 0)) -}}
{{- end }}

{{- define "pgl.admissionPolicyLabels" -}}
helm.sh/chart: {{ include "pgl.chart" . }}
{{ include "pgl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-policy
{{- end }}
