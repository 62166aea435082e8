{{/*
TLS of the Python services as clients of external systems, from Secrets (docs/SECURITY.md):
- every service: the OTLP collector's CA (tracing.tls.caSecret) -> <PREFIX>OTLP_TLS_CA_PATH;
- Redis clients (features, ingest, and the gateway whenever it has a Redis URL: shared prediction
  cache, asyncQueue, batchJobs): Redis TLS (redis.tls.secretName: ca.crt, and tls.crt/tls.key
  with redis.tls.clientCertificate) for a rediss:// URL -> <PREFIX>REDIS_TLS_*;
- Kafka clients (logger, monitor, sink, ingest, and the gateway with asyncQueue): librdkafka
  properties for SASL_SSL (kafka.clientConfigSecret, a JSON object with sasl.username/
  sasl.password...) -> <PREFIX>KAFKA_EXTRA (ingest: also PRODUCER_EXTRA of its dead-letter
  producer, monitor: of its webhook-record producer; gateway: ASYNC_KAFKA_EXTRA), and the brokers' CA (kafka.caSecret) mounted at
  /etc/predmesh/kafka-tls/ca.crt (set "ssl.ca.location" to it).
Each define takes the pod spec's dict (root, component, prefix; `module` when set names the service:
the background tier's "gateway-bg" is a gateway).
*/}}
{{- define "predmesh.clientTlsEnv" -}}
{{- $v := .root.Values }}
{{- if $v.tracing.tls.caSecret }}
- name: {{ .prefix }}OTLP_TLS_CA_PATH
  value: /etc/predmesh/otlp-tls/ca.crt
{{- end }}
{{- if and (include "predmesh.redisClient" .) $v.redis.tls.secretName }}
- name: {{ .prefix }}REDIS_TLS_CA_PATH
  value: /etc/predmesh/redis-tls/ca.crt
{{- if $v.redis.tls.clientCertificate }}
- name: {{ .prefix }}REDIS_TLS_CERT_PATH
  value: /etc/predmesh/redis-tls/tls.crt
- name: {{ .prefix }}REDIS_TLS_KEY_PATH
  value: /etc/predmesh/redis-tls/tls.key
{{- end }}
{{- end }}
{{- if $v.kafka.clientConfigSecret.name }}
{{- $service := .module | default .component }}
{{- $names := list }}
{{- if has $service (list "logger" "sink") }}
{{- $names = list "KAFKA_EXTRA" }}
{{- else if has $service (list "ingest" "monitor") }}
{{- $names = list "KAFKA_EXTRA" "PRODUCER_EXTRA" }}
{{- else if and (eq $service "gateway") $v.asyncQueue.enabled }}
{{- $names = list "ASYNC_KAFKA_EXTRA" }}
{{- end }}
{{- range $names }}
- name: {{ $.prefix }}{{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.clientConfigSecret.name }}
      key: {{ $v.kafka.clientConfigSecret.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "predmesh.clientTlsMounts" -}}
{{- $v := .root.Values }}
{{- if $v.tracing.tls.caSecret }}
- name: otlp-tls
  mountPath: /etc/predmesh/otlp-tls
  readOnly: true
{{- end }}
{{- if and (include "predmesh.redisClient" .) $v.redis.tls.secretName }}
- name: redis-tls
  mountPath: /etc/predmesh/redis-tls
  readOnly: true
{{- end }}
{{- if and (include "predmesh.kafkaClient" .) $v.kafka.caSecret }}
- name: kafka-tls
  mountPath: /etc/predmesh/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "predmesh.clientTlsVolumes" -}}
{{- $v := .root.Values }}
{{- if $v.tracing.tls.caSecret }}
- name: otlp-tls
  secret:
    secretName: {{ $v.tracing.tls.caSecret }}
    defaultMode: 0440
{{- end }}
{{- if and (include "predmesh.redisClient" .) $v.redis.tls.secretName }}
- name: redis-tls
  secret:
    secretName: {{ $v.redis.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if and (include "predmesh.kafkaClient" .) $v.kafka.caSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $v.kafka.caSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* "true" when the component talks to Redis (the gateway sets `redisClient` in its pod dict when it
renders a Redis URL), else "". */}}
{{- define "predmesh.redisClient" -}}
{{- if or (has (.module | default .component) (list "features" "ingest")) .redisClient -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the component talks to Kafka (the gateway only with asyncQueue), else "". */}}
{{- define "predmesh.kafkaClient" -}}
{{- $service := .module | default .component -}}
{{- if or (has $service (list "logger" "monitor" "sink" "ingest")) (and (eq $service "gateway") .root.Values.asyncQueue.enabled) -}}
true
{{- end -}}
{{- end -}}
