{{/*
Pod and container building blocks of the Python services: security contexts, shutdown,
env, probes, scheduling, pod metadata, the pod spec and its Deployment.
*/}}

{{- define "predmesh.podSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.podSecurityContext) (deepCopy (.values.podSecurityContext | default dict))) -}}
{{- end -}}

{{- define "predmesh.securityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.securityContext) (deepCopy (.values.securityContext | default dict))) -}}
{{- end -}}

{{/* preStop sleep + ceil(drain delay) + ceil(grace seconds) + margin; dict(root, graceS, drainDelayS). */}}
{{- define "predmesh.terminationGrace" -}}
{{- add (int .root.Values.preStopSleepSeconds) (int (ceil (.drainDelayS | default 0))) (int (ceil .graceS)) (int .root.Values.terminationMarginSeconds) -}}
{{- end -}}

{{- define "predmesh.preStop" -}}
{{- if gt (int .root.Values.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ int .root.Values.preStopSleepSeconds }}
{{- end }}
{{- end -}}

{{/*
Env vars every service reads with its own prefix (ServerSettings); dict(root, prefix, values).
Observability comes from the chart-wide `metrics` and `tracing` values.
*/}}
{{- define "predmesh.commonEnv" -}}
- name: {{ .prefix }}HOST
  value: "0.0.0.0"
- name: {{ .prefix }}PORT
  value: {{ .values.port | toString | quote }}
- name: {{ .prefix }}GRACE_S
  value: {{ .values.graceS | toString | quote }}
- name: {{ .prefix }}LOG_LEVEL
  value: {{ .values.logLevel | toString | quote }}
{{- if .values.drainDelayS }}
- name: {{ .prefix }}DRAIN_DELAY_S
  value: {{ .values.drainDelayS | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .values.maxConcurrentRpcs) }}
- name: {{ .prefix }}MAX_CONCURRENT_RPCS
  value: {{ .values.maxConcurrentRpcs | toString | quote }}
{{- end }}
{{- if .root.Values.metrics.enabled }}
- name: {{ .prefix }}METRICS_PORT
  value: {{ .root.Values.metrics.port | toString | quote }}
{{- end }}
- name: {{ .prefix }}OTLP_ENDPOINT
  value: {{ .root.Values.tracing.otlpEndpoint | toString | quote }}
{{- if include "predmesh.mtlsCertificates" .root }}
- name: {{ .prefix }}TLS_CERT_PATH
  value: /etc/predmesh/tls/tls.crt
- name: {{ .prefix }}TLS_KEY_PATH
  value: /etc/predmesh/tls/tls.key
- name: {{ .prefix }}TLS_CA_PATH
  value: /etc/predmesh/tls/ca.crt
- name: {{ .prefix }}HEALTH_PORT
  value: {{ .root.Values.mtls.healthPort | toString | quote }}
{{- end }}
- name: {{ .prefix }}TRACE_SAMPLE_RATIO
  value: {{ .root.Values.tracing.sampleRatio | toString | quote }}
{{- end -}}

{{/* Free-form `env:` map of a component, rendered last so it can override. */}}
{{- define "predmesh.extraEnv" -}}
{{- range $name, $value := .values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Kubernetes-native gRPC probes against grpc.health.v1 on the service port. */}}
{{- define "predmesh.grpcProbes" -}}
{{- $probes := .values.probes | default dict -}}
{{- /* With chart mTLS the service port needs a client certificate: probe the plaintext health-only port. */}}
{{- $port := ternary (int .root.Values.mtls.healthPort) (int .values.port) (eq (include "predmesh.mtlsCertificates" .root) "true") -}}
startupProbe:
  {{- toYaml (mergeOverwrite (dict "grpc" (dict "port" $port) "periodSeconds" 2 "timeoutSeconds" 2 "failureThreshold" 60) ($probes.startup | default dict)) | nindent 2 }}
readinessProbe:
  {{- toYaml (mergeOverwrite (dict "grpc" (dict "port" $port) "periodSeconds" 5 "timeoutSeconds" 2 "failureThreshold" 2) ($probes.readiness | default dict)) | nindent 2 }}
livenessProbe:
  {{- toYaml (mergeOverwrite (dict "grpc" (dict "port" $port) "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) ($probes.liveness | default dict)) | nindent 2 }}
{{- end -}}

{{/* "true" when the chart's own mutual TLS (certificates mode) is on. */}}
{{- define "predmesh.mtlsCertificates" -}}
{{- if and .Values.mtls.enabled (eq .Values.mtls.mode "certificates") }}true{{ end -}}
{{- end -}}

{{/* Placement of a pod: priorityClassName (the background tier's components), nodeSelector,
tolerations, affinity, topologySpreadConstraints. */}}
{{- define "predmesh.scheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod labels and annotations: `checksums` (dict), Prometheus scrape annotations, then the
component's podAnnotations (which win). Scraping: `scrape` (dict(port, path)) when given,
else a Python service's (a context with `prefix`) metrics.port and /metrics.
*/}}
{{- define "predmesh.podMetadata" -}}
labels:
  {{- include "predmesh.labels" . | nindent 2 }}
  {{- with .values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $metrics := .root.Values.metrics }}
{{- $scrape := .scrape | default dict }}
{{- if and (not $scrape) .prefix $metrics.enabled }}
{{- $scrape = dict "port" $metrics.port "path" "/metrics" }}
{{- end }}
{{- $annotations := deepCopy (.checksums | default dict) }}
{{- if and $scrape $metrics.scrapeAnnotations }}
{{- $_ := set $annotations "prometheus.io/scrape" "true" }}
{{- $_ := set $annotations "prometheus.io/port" (toString $scrape.port) }}
{{- $_ := set $annotations "prometheus.io/path" $scrape.path }}
{{- end }}
{{- $mtls := .root.Values.mtls }}
{{- if and $mtls.enabled (eq $mtls.mode "mesh") }}
{{- if eq $mtls.meshType "istio" }}
{{- $_ := set $annotations "sidecar.istio.io/inject" "true" }}
{{- else }}
{{- $_ := set $annotations "linkerd.io/inject" "enabled" }}
{{- end }}
{{- end }}
{{- $annotations = mergeOverwrite $annotations (deepCopy (.values.podAnnotations | default dict)) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod spec of a Python gRPC service. dict keys: root, component, values, prefix, and optional
module (python -m services.<module>.app), env, envFrom, volumes, volumeMounts (YAML list
strings), serviceAccountName, automountToken, initContainers (YAML list string).
*/}}
{{- define "predmesh.pythonPodSpec" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $module := .module | default .component -}}
serviceAccountName: {{ .serviceAccountName | default (include "predmesh.serviceAccountName" $root) }}
automountServiceAccountToken: {{ .automountToken | default false }}
enableServiceLinks: false
terminationGracePeriodSeconds: {{ include "predmesh.terminationGrace" (dict "root" $root "graceS" $v.graceS "drainDelayS" $v.drainDelayS) }}
securityContext:
  {{- include "predmesh.podSecurityContext" . | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .initContainers | default "" | trim }}
initContainers:
  {{- . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "predmesh.image" (dict "root" $root "image" $root.Values.image) }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      {{- toYaml ($v.command | default (list "python" "-m" (printf "services.%s.app" $module))) | nindent 6 }}
    ports:
      - name: grpc
        containerPort: {{ $v.port }}
        protocol: TCP
      {{- if $root.Values.metrics.enabled }}
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
      {{- end }}
    env:
      - name: PYTHONUNBUFFERED
        value: "1"
      - name: PYTHONDONTWRITEBYTECODE
        value: "1"
      {{- include "predmesh.commonEnv" . | trim | nindent 6 }}
      {{- with include "predmesh.clientTlsEnv" . | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with .env | default "" | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with include "predmesh.extraEnv" . | trim }}
      {{- . | nindent 6 }}
      {{- end }}
    {{- with .envFrom | default "" | trim }}
    envFrom:
      {{- . | nindent 6 }}
    {{- end }}
    {{- include "predmesh.grpcProbes" . | trim | nindent 4 }}
    {{- with include "predmesh.preStop" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- include "predmesh.securityContext" . | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if include "predmesh.mtlsCertificates" $root }}
      - name: mesh-tls
        mountPath: /etc/predmesh/tls
        readOnly: true
      {{- end }}
      {{- with include "predmesh.clientTlsMounts" . | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with .volumeMounts | default "" | trim }}
      {{- . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  {{- if include "predmesh.mtlsCertificates" $root }}
  - name: mesh-tls
    secret:
      secretName: {{ include "predmesh.componentName" . }}-tls
      defaultMode: 0400
  {{- end }}
  {{- with include "predmesh.clientTlsVolumes" . | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with .volumes | default "" | trim }}
  {{- . | nindent 2 }}
  {{- end }}
{{- include "predmesh.scheduling" . }}
{{- end -}}

{{/* Deployment of a Python service: pythonPodSpec's dict plus optional checksums (dict). */}}
{{- define "predmesh.pythonDeployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "predmesh.componentName" . }}
  labels:
    {{- include "predmesh.labels" . | nindent 4 }}
spec:
  {{- if not .values.autoscaling.enabled }}
  replicas: {{ .values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 25%
  selector:
    matchLabels:
      {{- include "predmesh.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      {{- include "predmesh.podMetadata" . | nindent 6 }}
    spec:
      {{- include "predmesh.pythonPodSpec" . | nindent 6 }}
{{- end -}}
