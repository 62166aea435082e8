{{/*
The gateway's Deployment, for the edge's gateways (gateway.yaml) and, with backgroundTier, the
tier's gateway (_background.tpl); dict(root, background). Both get the same settings: routing
table, API keys, logger, Redis (shared prediction cache, async queue, batch jobs), Kafka, mTLS.
With the tier on, the edge's gateways run no background worker (BATCH_WORKER/ASYNC_WORKER=false;
they still accept, report and cancel batch jobs and async requests, whose state is in Redis and
Kafka) and the tier's gateway runs both, against the tier's features and inference. The tier's
gateway has no Service: nothing calls it (Envoy's endpoints are the EndpointSlices of the edge
gateways' Service, kubelet probes the pod's port, NetworkPolicies select pods by label).
*/}}
{{- define "predmesh.gateway" -}}
{{- $root := .root }}
{{- $ctx := dict }}
{{- $_ := include "predmesh.tierContext" (dict "root" $root "name" "gateway" "background" .background "out" $ctx) }}
{{- $v := $ctx.values }}
{{- $suffix := ternary "-bg" "" $ctx.background }}
{{- $features := include "predmesh.dnsTarget" (dict "root" $root "component" (printf "features%s" $suffix) "values" $root.Values.features) }}
{{- $inference := include "predmesh.dnsTarget" (dict "root" $root "component" (printf "inference%s" $suffix) "values" $root.Values.inference) }}
{{- if not $ctx.background }}{{- /* gateway.targets: the edge's gateways only; the tier calls its own */}}
{{- $features = $v.targets.features | default $features }}
{{- $inference = $v.targets.inference | default $inference }}
{{- end }}
{{- $logger := $v.targets.logger | default (ternary (include "predmesh.dnsTarget" (dict "root" $root "component" "logger" "values" $root.Values.logger)) "" $root.Values.logger.enabled) }}
{{- $apiKeysSecret := include "predmesh.gateway.apiKeysSecret" $root }}
{{- $env := printf `
- name: PREDMESH_GATEWAY_FEATURES_TARGET
  value: %q
- name: PREDMESH_GATEWAY_INFERENCE_TARGET
  value: %q
- name: PREDMESH_GATEWAY_LOGGER_TARGET
  value: %q
- name: PREDMESH_GATEWAY_ROUTING_PATH
  value: /etc/predmesh/routing/routing.yaml` $features $inference $logger }}
{{- /* The key table is a mounted file, re-read on change: rotating keys needs no restart (no checksum). */}}
{{- if $apiKeysSecret }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_API_KEYS_PATH
  value: /etc/predmesh/api-keys/PREDMESH_GATEWAY_API_KEYS` $env }}
{{- end }}
{{- with $root.Values.asyncQueue }}{{- if .enabled }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_ASYNC_KAFKA_BOOTSTRAP
  value: %q
- name: PREDMESH_GATEWAY_ASYNC_REQUESTS_TOPIC
  value: %q
- name: PREDMESH_GATEWAY_ASYNC_RESULTS_TOPIC
  value: %q
- name: PREDMESH_GATEWAY_ASYNC_DEAD_LETTER_TOPIC
  value: %q
- name: PREDMESH_GATEWAY_ASYNC_RESULT_TTL_S
  value: %q
- name: PREDMESH_GATEWAY_CALLBACK_HORIZON_S
  value: %q` $env $root.Values.kafka.bootstrapServers .requestsTopic .resultsTopic .deadLetterTopic (toString .resultTtlS) (toString .callbackHorizonS) }}
{{- $_ := set $ctx "redisClient" true }}
{{- if $root.Values.redis.existingSecret }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_ASYNC_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: %s
      key: %s` $env $root.Values.redis.existingSecret $root.Values.redis.existingSecretKey }}
{{- else }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_ASYNC_REDIS_URL
  value: %q` $env (required "redis.url is required for asyncQueue (or redis.existingSecret)" $root.Values.redis.url) }}
{{- end }}
{{- end }}{{- end }}
{{- with $root.Values.batchJobs }}{{- if .enabled }}
{{- if not .allowedRoots }}{{- fail "batchJobs.allowedRoots is required when batchJobs.enabled (where jobs may read and write)" }}{{- end }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_BATCH_ALLOWED_ROOTS
  value: %q
- name: PREDMESH_GATEWAY_BATCH_ITEMS_PER_CALL
  value: %q
- name: PREDMESH_GATEWAY_BATCH_DUTY_CYCLE
  value: %q
- name: PREDMESH_GATEWAY_BATCH_YIELD_MAX_MS
  value: %q
- name: PREDMESH_GATEWAY_BATCH_WORKERS
  value: %q
- name: PREDMESH_GATEWAY_BATCH_PACE
  value: %q` $env (toJson .allowedRoots) (toString .itemsPerCall) (toString .dutyCycle) (toString .yieldMaxMs) (toString .workers) (toString .pace) }}
{{- if not $root.Values.asyncQueue.enabled }}{{- /* the async queue sets the same Redis URL already */}}
{{- $_ := set $ctx "redisClient" true }}
{{- if $root.Values.redis.existingSecret }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_ASYNC_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: %s
      key: %s` $env $root.Values.redis.existingSecret $root.Values.redis.existingSecretKey }}
{{- else }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_ASYNC_REDIS_URL
  value: %q` $env (required "redis.url is required for batchJobs (or redis.existingSecret)" $root.Values.redis.url) }}
{{- end }}
{{- end }}
{{- end }}{{- end }}
{{- /* Background workers: unset (every replica runs them) unless the background tier takes them over. */}}
{{- if $root.Values.backgroundTier.enabled }}
{{- $workers := ternary "true" "false" $ctx.background }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_BATCH_WORKER
  value: %q
- name: PREDMESH_GATEWAY_ASYNC_WORKER
  value: %q` $env $workers $workers }}
{{- end }}
{{- /* Prediction cache: shared through the chart's Redis (where the ingestion service publishes
invalidations) when some model has a `cache` policy; otherwise in-process only or not used.
One Redis or a Redis Cluster (redis+cluster://): the gateway picks its shared level by the URL. */}}
{{- if include "predmesh.gateway.sharedCache" $root }}
{{- $_ := set $ctx "redisClient" true }}{{- /* redis.tls files mounted and PREDMESH_GATEWAY_REDIS_TLS_* set */}}
{{- if $root.Values.redis.existingSecret }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_CACHE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: %s
      key: %s` $env $root.Values.redis.existingSecret $root.Values.redis.existingSecretKey }}
{{- else }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_CACHE_REDIS_URL
  value: %q` $env $root.Values.redis.url }}
{{- end }}
{{- end }}
{{- if $v.allowAnonymous }}
{{- $env = printf `%s
- name: PREDMESH_GATEWAY_ALLOW_ANONYMOUS
  value: "true"` $env }}
{{- end }}
{{- $volumes := printf `
- name: routing
  configMap:
    name: %s` (include "predmesh.componentName" (dict "root" $root "component" "routing")) }}
{{- $mounts := `
- name: routing
  mountPath: /etc/predmesh/routing
  readOnly: true` }}
{{- if $apiKeysSecret }}
{{- $volumes = printf `%s
- name: api-keys
  secret:
    secretName: %s
    defaultMode: 0400` $volumes $apiKeysSecret }}
{{- $mounts = printf `%s
- name: api-keys
  mountPath: /etc/predmesh/api-keys
  readOnly: true` $mounts }}
{{- end }}
{{- $_ := set $ctx "env" $env }}
{{- $_ := set $ctx "volumes" $volumes }}
{{- $_ := set $ctx "volumeMounts" $mounts }}
{{- $_ := set $ctx "checksums" dict }}
{{ include "predmesh.pythonDeployment" $ctx }}
{{- if not $ctx.background }}
---
{{ include "predmesh.grpcServices" $ctx }}
{{- end }}
{{- end -}}

{{/* Name of the Secret holding the gateways' API key table, or "" without keys; takes the root. */}}
{{- define "predmesh.gateway.apiKeysSecret" -}}
{{- if .Values.gateway.apiKeysExistingSecret -}}
{{- .Values.gateway.apiKeysExistingSecret -}}
{{- else if .Values.gateway.apiKeys -}}
{{- printf "%s-api-keys" (include "predmesh.componentName" (dict "root" . "component" "gateway")) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the gateways share the prediction cache through the chart's Redis (some model has a
`cache` policy, gateway.cacheSharedRedis, a Redis URL or Secret), else ""; takes the root. */}}
{{- define "predmesh.gateway.sharedCache" -}}
{{- $cached := false }}
{{- range $name, $spec := .Values.models }}{{- if $spec.cache }}{{- $cached = true }}{{- end }}{{- end }}
{{- if and $cached .Values.gateway.cacheSharedRedis (or .Values.redis.existingSecret .Values.redis.url) -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the gateways talk to Redis (shared prediction cache, asyncQueue, batchJobs), else "";
takes the root. Their NetworkPolicy egress follows it. */}}
{{- define "predmesh.gateway.redis" -}}
{{- if or .Values.asyncQueue.enabled .Values.batchJobs.enabled (include "predmesh.gateway.sharedCache" .) -}}
true
{{- end -}}
{{- end -}}
