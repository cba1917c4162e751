{{/* Chart name. */}}
{{- define "pgl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every resource. */}}
{{- define "pgl.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pgl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pgl.labels" -}}
helm.sh/chart: {{ include "pgl.chart" . }}
{{ include "pgl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "pgl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pgl.certSecretName" -}}
{{- if .Values.certManager.enabled }}
{{- printf "%s-tls" (include "pgl.fullname" .) }}
{{- else }}
{{- default (printf "%s-certs" (include "pgl.fullname" .)) .Values.certRotation.secretName }}
{{- end }}
{{- end }}

{{/* Both webhook configurations carry the full name: the rotator's RBAC names them. */}}
{{- define "pgl.webhookConfigName" -}}
{{- include "pgl.fullname" . }}
{{- end }}

{{/* Namespaces never sent to the webhook: kube-system, the release namespace, and the list. */}}
{{- define "pgl.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace }}
{{- range .Values.webhook.excludedNamespaces }}{{ $ns = append $ns . }}{{ end }}
{{- toJson (uniq $ns) }}
{{- end }}

{{- define "pgl.namespaceSelector" -}}
{{- $exclude := dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" (include "pgl.excludedNamespaces" . | fromJsonArray) }}
{{- if eq .Values.webhook.scope "cluster" }}
matchExpressions:
  - {{ toJson $exclude }}
{{- else }}
{{- with .Values.webhook.namespaceSelector.matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
  {{- range .Values.webhook.namespaceSelector.matchExpressions }}
  - {{ toJson . }}
  {{- end }}
  - {{ toJson $exclude }}
{{- end }}
{{- end }}

{{/*
The pod selection of the core contract as CEL: app.kubernetes.io/name in the list, or the
explicit opt-in label. The default renders exactly the expression the e2e suite proves.
*/}}
{{- define "pgl.podSelectionCEL" -}}
{{- $names := list }}
{{- range .Values.webhook.podSelection.appNames }}{{ $names = append $names (printf "'%s'" .) }}{{ end -}}
has(object.metadata.labels) && (('app.kubernetes.io/name' in object.metadata.labels && object.metadata.labels['app.kubernetes.io/name'] in [{{ join ", " $names }}]) || ('pushgateway-lifecycle.io/inject' in object.metadata.labels && object.metadata.labels['pushgateway-lifecycle.io/inject'] == 'true'))
{{- end }}

{{/*
The same selection on a workload's pod template: spec.template, or a CronJob's
spec.jobTemplate.spec.template. has() guards every step: an evaluation error would skip the
call (failurePolicy Ignore) or refuse the write (Fail).
*/}}
{{- define "pgl.templateSelectionCEL" -}}
{{- $sel := include "pgl.podSelectionCEL" . -}}
(has(object.spec.template) && has(object.spec.template.metadata) && {{ $sel | replace "object.metadata" "object.spec.template.metadata" }}) || (has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && has(object.spec.jobTemplate.spec.template) && has(object.spec.jobTemplate.spec.template.metadata) && {{ $sel | replace "object.metadata" "object.spec.jobTemplate.spec.template.metadata" }})
{{- end }}

{{/* No ownerReference with controller: true (a Deployment's ReplicaSets, a CronJob's Jobs). */}}
{{- define "pgl.notControllerOwnedCEL" -}}
!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)
{{- end }}

{{/* A CREATE, or an UPDATE whose pod template differs from the stored one. */}}
{{- define "pgl.templateChangedCEL" -}}
request.operation != 'UPDATE' || (has(object.spec.template) ? (!has(oldObject.spec.template) || object.spec.template != oldObject.spec.template || has(object.spec.replicas) != has(oldObject.spec.replicas) || (has(object.spec.replicas) && object.spec.replicas != oldObject.spec.replicas) || has(object.spec.strategy) != has(oldObject.spec.strategy) || (has(object.spec.strategy) && object.spec.strategy != oldObject.spec.strategy)) : (!has(object.spec.jobTemplate) || !has(oldObject.spec.jobTemplate) || object.spec.jobTemplate != oldObject.spec.jobTemplate))
{{- end }}

{{- define "pgl.certManagerAnnotation" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s-serving" .Release.Namespace (include "pgl.fullname" .) }}
{{- end }}
{{- end }}

{{- define "pgl.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "pgl.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- end }}

{{/* The startup check's deadline: its own timeout plus a minute to pull the image and start. */}}
{{- define "pgl.startupCheckDeadline" -}}
{{- $t := .Values.startupCheck.timeout }}
{{- $s := 0 }}
{{- if hasSuffix "m" $t }}{{ $s = mul (trimSuffix "m" $t | int) 60 }}{{ else }}{{ $s = trimSuffix "s" $t | int }}{{ end }}
{{- add $s 60 }}
{{- end }}

{{/* The pod of the startup check, shared by the hook Job and the `helm test` pod. */}}
{{- define "pgl.startupCheckPodSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ .name }}
restartPolicy: Never
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: check
    image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      - check
      - --namespace={{ $root.Release.Namespace }}
      - --timeout={{ $root.Values.startupCheck.timeout }}
    terminationMessagePolicy: FallbackToLogsOnError
    resources:
      requests:
        cpu: 10m
        memory: 32Mi
      limits:
        memory: 64Mi
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
{{- end }}

{{/* Labels of the check's pods: not the webhook's selector labels, so that neither its Service,
     its PodDisruptionBudget nor its NetworkPolicy selects them. */}}
{{- define "pgl.startupCheckLabels" -}}
helm.sh/chart: {{ include "pgl.chart" . }}
app.kubernetes.io/name: {{ include "pgl.name" . }}-startup-check
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: startup-check
{{- end }}
