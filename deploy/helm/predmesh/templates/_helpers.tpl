{{/*
Names, labels and image references (the pieces every template uses). Helpers that take a
context expect a dict with at least `root` (the top-level context) and `component` (e.g. "gateway").
The other pieces live by concern: _pod.tpl (Python service pods), _models.tpl (model repository),
_scaling.tpl (HPA, PDB), _services.tpl (Services, dns targets), _networkpolicy.tpl, _envoy.tpl,
_validate.tpl; _gateway.tpl, _features.tpl, _inference.tpl (the request path's Deployments, rendered
once per tier) and _background.tpl (the tiers: the real-time one and the optional background tier).
*/}}

{{- define "predmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name, short enough for "<base>-ort-worker-headless" to stay <= 63. */}}
{{- define "predmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "predmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "predmesh.fullname" . -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "predmesh.controlplaneServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "predmesh.componentName" (dict "root" . "component" "controlplane") -}}
{{- else -}}
{{- required "serviceAccount.controlplaneName is required when serviceAccount.create=false" .Values.serviceAccount.controlplaneName -}}
{{- end -}}
{{- end -}}

{{- define "predmesh.sinkServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "predmesh.componentName" (dict "root" . "component" "sink") -}}
{{- else -}}
{{- required "serviceAccount.sinkName is required when serviceAccount.create=false and sink.rollout.enabled" .Values.serviceAccount.sinkName -}}
{{- end -}}
{{- end -}}

{{- define "predmesh.componentName" -}}
{{- printf "%s-%s" (include "predmesh.fullname" .root) .component -}}
{{- end -}}

{{- define "predmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "predmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "predmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: predmesh
{{ include "predmesh.selectorLabels" . }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels selecting every pod of this release (NetworkPolicy default deny). */}}
{{- define "predmesh.releaseSelector" -}}
app.kubernetes.io/name: {{ include "predmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Image reference; dict(root, image). An empty image.repository means the chart's image. */}}
{{- define "predmesh.image" -}}
{{- $img := .image | default .root.Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (toString (default .root.Chart.AppVersion $img.tag)) -}}
{{- end -}}
{{- end -}}
