{{/*
Naming, labels and the pieces shared by every component. Helpers that take a context expect
a dict with at least `root` (the top-level context) and `component` (e.g. "gateway").
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

{{- define "predmesh.podSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.podSecurityContext) (deepCopy (.values.podSecurityContext | default dict))) -}}
{{- end -}}

{{- define "predmesh.securityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.securityContext) (deepCopy (.values.securityContext | default dict))) -}}
{{- end -}}

{{/* preStop sleep + ceil(grace seconds) + margin; dict(root, graceS). */}}
{{- define "predmesh.terminationGrace" -}}
{{- add (int .root.Values.preStopSleepSeconds) (int (ceil .graceS)) (int .root.Values.terminationMarginSeconds) -}}
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
startupProbe:
  {{- toYaml (mergeOverwrite (dict "grpc" (dict "port" (int .values.port)) "periodSeconds" 2 "timeoutSeconds" 2 "failureThreshold" 60) ($probes.startup | default dict)) | nindent 2 }}
readinessProbe:
  {{- toYaml (mergeOverwrite (dict "grpc" (dict "port" (int .values.port)) "periodSeconds" 5 "timeoutSeconds" 2 "failureThreshold" 2) ($probes.readiness | default dict)) | nindent 2 }}
livenessProbe:
  {{- toYaml (mergeOverwrite (dict "grpc" (dict "port" (int .values.port)) "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) ($probes.liveness | default dict)) | nindent 2 }}
{{- end -}}

{{- define "predmesh.scheduling" -}}
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
{{- $annotations = mergeOverwrite $annotations (deepCopy (.values.podAnnotations | default dict)) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Model repository: volume, mount and init container for orchestrator, ORT workers, Triton. */}}
{{- define "predmesh.modelRepository.path" -}}
{{- if eq .Values.modelRepository.type "image" -}}
{{- .Values.modelRepository.image.path -}}
{{- else -}}
/models
{{- end -}}
{{- end -}}

{{- define "predmesh.modelRepository.volumes" -}}
{{- $mr := .Values.modelRepository -}}
{{- if eq $mr.type "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ required "modelRepository.pvc.claimName is required when modelRepository.type=pvc" $mr.pvc.claimName }}
    readOnly: true
{{- else if eq $mr.type "objectStorage" }}
- name: models
  emptyDir:
    sizeLimit: {{ $mr.objectStorage.sizeLimit }}
{{- end }}
{{- end -}}

{{- define "predmesh.modelRepository.mounts" -}}
{{- $mr := .Values.modelRepository -}}
{{- if ne $mr.type "image" }}
- name: models
  mountPath: /models
  readOnly: true
  {{- if and (eq $mr.type "pvc") $mr.pvc.subPath }}
  subPath: {{ $mr.pvc.subPath }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "predmesh.modelRepository.initContainers" -}}
{{- $mr := .root.Values.modelRepository -}}
{{- if eq $mr.type "objectStorage" }}
- name: fetch-models
  image: {{ $mr.objectStorage.image }}
  imagePullPolicy: IfNotPresent
  command:
    {{- toYaml $mr.objectStorage.command | nindent 4 }}
  env:
    - name: MODEL_REPOSITORY_URI
      value: {{ required "modelRepository.objectStorage.uri is required when modelRepository.type=objectStorage" $mr.objectStorage.uri | quote }}
    - name: HOME
      value: /tmp
    {{- range $name, $value := $mr.objectStorage.env }}
    - name: {{ $name }}
      value: {{ $value | toString | quote }}
    {{- end }}
  {{- with $mr.objectStorage.credentialsSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  resources:
    {{- toYaml $mr.objectStorage.resources | nindent 4 }}
  securityContext:
    {{- include "predmesh.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /models
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* HorizontalPodAutoscaler on CPU/memory utilisation; dict(root, component, values, kind). */}}
{{- define "predmesh.hpa" -}}
{{- $as := .values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "predmesh.componentName" . }}
  labels:
    {{- include "predmesh.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind | default "Deployment" }}
    name: {{ include "predmesh.componentName" . }}
  minReplicas: {{ $as.minReplicas }}
  maxReplicas: {{ $as.maxReplicas }}
  metrics:
    {{- if $as.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $as.targetCPUUtilizationPercentage }}
    {{- end }}
    {{- if $as.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $as.targetMemoryUtilizationPercentage }}
    {{- end }}
  {{- with $as.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "predmesh.pdb" -}}
{{- $pdb := .values.pdb -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "predmesh.componentName" . }}
  labels:
    {{- include "predmesh.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $pdb.minAvailable) }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable | default 1 }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "predmesh.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* ClusterIP Service plus a headless twin for client-side (round_robin) balancing. */}}
{{- define "predmesh.grpcServices" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "predmesh.componentName" . }}
  labels:
    {{- include "predmesh.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "predmesh.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .values.port }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "predmesh.componentName" . }}-headless
  labels:
    {{- include "predmesh.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "predmesh.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .values.port }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
{{- end -}}

{{/* dns:/// target of a component's headless Service; dict(root, component, values). */}}
{{- define "predmesh.dnsTarget" -}}
{{- printf "dns:///%s-headless.%s.svc:%v" (include "predmesh.componentName" .) .root.Release.Namespace .values.port -}}
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
terminationGracePeriodSeconds: {{ include "predmesh.terminationGrace" (dict "root" $root "graceS" $v.graceS) }}
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
      {{- with .volumeMounts | default "" | trim }}
      {{- . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
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

{{/* NetworkPolicy peer selecting one component's pods; returns YAML (use with fromYaml). */}}
{{- define "predmesh.np.pod" -}}
podSelector:
  matchLabels:
    {{- include "predmesh.selectorLabels" . | nindent 4 }}
{{- end -}}

{{/*
One NetworkPolicy rule as YAML; dict(key "from"|"to", peers, ports). No peers renders no
`from`/`to`, which Kubernetes reads as "any peer" (the ports still apply).
*/}}
{{- define "predmesh.np.rule" -}}
{{- $rule := dict -}}
{{- if .peers -}}
{{- $_ := set $rule .key .peers -}}
{{- end -}}
{{- $ports := list -}}
{{- range .ports -}}
{{- $ports = append $ports (dict "protocol" "TCP" "port" (int .)) -}}
{{- end -}}
{{- $_ := set $rule "ports" $ports -}}
{{- toYaml $rule -}}
{{- end -}}
