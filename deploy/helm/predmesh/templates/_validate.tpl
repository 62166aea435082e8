{{/*
Checks JSON Schema cannot express; called once from routing-configmap.yaml. Each failure
names the offending value so `helm install/upgrade/template` stops with a clear message.
*/}}
{{- define "predmesh.validate" -}}
{{- $gw := .Values.gateway }}
{{- if and (not $gw.apiKeys) (not $gw.apiKeysExistingSecret) (not $gw.allowAnonymous) }}
{{- fail "gateway: no API keys (gateway.apiKeys or gateway.apiKeysExistingSecret): the edge would refuse every call. Set keys, or gateway.allowAnonymous=true to serve unauthenticated traffic on purpose" }}
{{- end }}
{{- if and .Values.triton.enabled (include "predmesh.mtlsCertificates" .) (not .Values.triton.adminKey.existingSecret) }}
{{- fail "triton: with mtls.enabled, set triton.adminKey.existingSecret (a Secret holding Triton's admin key): its plaintext HTTP endpoint stays on for the kubelet probes and must refuse everything but health, and model control over gRPC must be the orchestrator's alone" }}
{{- end }}
{{- if and .Values.redis.tls.secretName (not .Values.redis.existingSecret) (not (or (hasPrefix "rediss://" .Values.redis.url) (hasPrefix "rediss+cluster://" .Values.redis.url))) }}
{{- fail "redis.tls.secretName is set but redis.url is not rediss:// (the connection would be plaintext)" }}
{{- end }}
{{- range $model, $spec := .Values.models }}
{{- if not $spec.versions }}
{{- fail (printf "models.%s.versions must list at least one version" $model) }}
{{- end }}
{{- $sum := 0 }}
{{- $seen := dict }}
{{- range $i, $arm := $spec.versions }}
{{- $version := toString $arm.version }}
{{- if not $version }}
{{- fail (printf "models.%s.versions[%d].version must be set" $model $i) }}
{{- end }}
{{- if hasKey $seen $version }}
{{- fail (printf "models.%s.versions lists version %q twice" $model $version) }}
{{- end }}
{{- $_ := set $seen $version true }}
{{- $w := $arm.weight }}
{{- if or (kindIs "invalid" $w) (lt (float64 $w) 0.0) (gt (float64 $w) 100.0) (ne (float64 $w) (float64 (int $w))) }}
{{- fail (printf "models.%s.versions[%d].weight must be an integer between 0 and 100 (got %v)" $model $i $w) }}
{{- end }}
{{- $sum = add $sum (int $w) }}
{{- end }}
{{- if ne (int $sum) 100 }}
{{- fail (printf "models.%s: canary weights must sum to 100, got %d (versions: %s)" $model (int $sum) (include "predmesh.armsSummary" $spec.versions)) }}
{{- end }}
{{- range $i, $step := ($spec.fallback | default list) }}
{{- if and (eq (toString $step.type) "model") (eq (toString $step.model) $model) }}
{{- fail (printf "models.%s.fallback[%d]: a model cannot fall back to itself" $model $i) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.backgroundTier.enabled }}
{{- if not (or .Values.batchJobs.enabled .Values.asyncQueue.enabled) }}
{{- fail "backgroundTier.enabled needs batchJobs.enabled or asyncQueue.enabled: the tier runs only their workers (batch-job chunks, durable async requests) and would have nothing to do" }}
{{- end }}
{{- if not (and .Values.gateway.enabled .Values.features.enabled .Values.inference.enabled) }}
{{- fail "backgroundTier.enabled needs gateway, features and inference enabled: the tier runs copies of them" }}
{{- end }}
{{- end }}
{{- $mr := .Values.modelRepository }}
{{- if and (eq $mr.type "pvc") (not $mr.pvc.claimName) }}
{{- fail "modelRepository.pvc.claimName is required when modelRepository.type=pvc" }}
{{- end }}
{{- if and (eq $mr.type "objectStorage") (not $mr.objectStorage.uri) }}
{{- fail "modelRepository.objectStorage.uri is required when modelRepository.type=objectStorage" }}
{{- end }}
{{- range $name := list "envoy" "controlplane" "gateway" "features" "inference" "ortWorker" "logger" "monitor" "sink" "triton" }}
{{- $as := (index $.Values $name).autoscaling | default dict }}
{{- if and $as.enabled (gt (int $as.minReplicas) (int $as.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%d) must not exceed maxReplicas (%d)" $name (int $as.minReplicas) (int $as.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- range $name := list "controlplane" "gateway" "features" "inference" "ortWorker" "logger" "monitor" "sink" }}
{{- if eq (int (index $.Values $name).port) (int $.Values.metrics.port) }}
{{- fail (printf "metrics.port (%d) must differ from %s.port (its gRPC port)" (int $.Values.metrics.port) $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $pool := .Values.inference.modelPool | default dict }}
{{- if and .Values.ortWorker.enabled (or (gt (int64 ($pool.maxBytes | default 0)) 0) (gt (int64 ($pool.maxModels | default 0)) 0)) (ne (toString (.Values.ortWorker.modelControl | default "auto")) "none") }}
{{- if or (gt (int .Values.ortWorker.replicaCount) 1) .Values.ortWorker.autoscaling.enabled }}
{{- fail "inference.modelPool drives ORT workers by explicit model control, which needs one address per worker: behind the load-balanced ort-worker Service use ortWorker.modelPool (worker-local pools) instead, or run one worker (replicaCount 1, autoscaling off)" }}
{{- end }}
{{- end }}
{{- $wpool := .Values.ortWorker.modelPool | default dict }}
{{- if and (or (gt (int64 ($wpool.maxBytes | default 0)) 0) (gt (int64 ($wpool.maxModels | default 0)) 0)) (eq (toString (.Values.ortWorker.modelControl | default "auto")) "explicit") }}
{{- fail "ortWorker.modelPool (worker-local pools) and ortWorker.modelControl=explicit exclude each other" }}
{{- end }}
{{- $tas := .Values.triton.autoscaling }}
{{- if not (kindIs "invalid" $tas.idleReplicaCount) }}
{{- if not $tas.keda.enabled }}
{{- fail "triton.autoscaling.idleReplicaCount needs triton.autoscaling.keda.enabled=true (an HPA cannot scale below minReplicas)" }}
{{- end }}
{{- if ge (int $tas.idleReplicaCount) (int $tas.minReplicas) }}
{{- fail (printf "triton.autoscaling.idleReplicaCount (%d) must be below minReplicas (%d)" (int $tas.idleReplicaCount) (int $tas.minReplicas)) }}
{{- end }}
{{- end }}
{{- if and .Values.logger.autoscaling.enabled .Values.logger.journal.persistence.enabled (eq .Values.logger.journal.persistence.whenScaled "Delete") }}
{{- fail "logger: autoscaling with journal.persistence.whenScaled=Delete would drop unreplayed journals on scale-down" }}
{{- end }}
{{- end -}}

{{- define "predmesh.armsSummary" -}}
{{- $parts := list }}
{{- range . }}
{{- $parts = append $parts (printf "%v=%v" .version .weight) }}
{{- end }}
{{- join ", " $parts }}
{{- end -}}
