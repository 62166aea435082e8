{{/*
The inference orchestrator's Deployment and Services, for the real-time tier (inference.yaml) and,
with backgroundTier, the tier's own ("inference-bg", _background.tpl); dict(root, background). Both
use the same model repository, routing table (bounded model pool) and the shared ORT workers and
Triton.
ORT_WORKERS / TRITON_TARGET (services/inference/settings.py) are rendered only when the ORT worker
pool / Triton are enabled; without them the orchestrator runs ONNX Runtime in-process.
*/}}
{{- define "predmesh.inference" -}}
{{- $root := .root }}
{{- $ctx := dict }}
{{- $_ := include "predmesh.tierContext" (dict "root" $root "name" "inference" "background" .background "out" $ctx) }}
{{- $env := printf `
- name: PREDMESH_INFERENCE_MODEL_REPOSITORY
  value: %q` (include "predmesh.modelRepository.path" $root) }}
{{- if $root.Values.ortWorker.enabled }}
{{- $env = printf `%s
- name: PREDMESH_INFERENCE_ORT_WORKERS
  value: %q` $env (include "predmesh.dnsTarget" (dict "root" $root "component" "ort-worker" "values" $root.Values.ortWorker)) }}
{{- end }}
{{- if $root.Values.triton.enabled }}
{{- $env = printf `%s
- name: PREDMESH_INFERENCE_TRITON_TARGET
  value: %q` $env (printf "dns:///%s-headless.%s.svc:%v" (include "predmesh.componentName" (dict "root" $root "component" "triton")) $root.Release.Namespace $root.Values.triton.grpcPort) }}
{{- if include "predmesh.mtlsCertificates" $root }}
{{- $env = printf `%s
- name: PREDMESH_INFERENCE_TRITON_TLS
  value: "true"` $env }}
{{- end }}
{{- with $root.Values.triton.adminKey.existingSecret }}
{{- $env = printf `%s
- name: PREDMESH_INFERENCE_TRITON_ADMIN_KEY
  valueFrom:
    secretKeyRef:
      name: %s
      key: %s` $env . $root.Values.triton.adminKey.secretKey }}
{{- end }}
{{- end }}
{{- $pool := $root.Values.inference.modelPool | default dict }}
{{- $volumes := include "predmesh.modelRepository.volumes" $root }}
{{- $mounts := include "predmesh.modelRepository.mounts" $root }}
{{- if or (gt (int64 ($pool.maxBytes | default 0)) 0) (gt (int64 ($pool.maxModels | default 0)) 0) }}
{{- /* Bounded model pool: eager versions come from the gateway's routing table (same ConfigMap). */}}
{{- $env = printf `%s
- name: PREDMESH_INFERENCE_POOL_MAX_BYTES
  value: %q
- name: PREDMESH_INFERENCE_POOL_MAX_MODELS
  value: %q
- name: PREDMESH_INFERENCE_POOL_LOAD_TIMEOUT_MS
  value: %q
- name: PREDMESH_INFERENCE_POOL_EAGER
  value: %q
- name: PREDMESH_INFERENCE_ROUTING_PATH
  value: /etc/predmesh/routing/routing.yaml` $env (toString (int64 ($pool.maxBytes | default 0))) (toString (int64 ($pool.maxModels | default 0))) (toString ($pool.loadTimeoutMs | default 10000)) ($pool.eager | default "") }}
{{- $volumes = printf `%s
- name: routing
  configMap:
    name: %s` $volumes (include "predmesh.componentName" (dict "root" $root "component" "routing")) }}
{{- $mounts = printf `%s
- name: routing
  mountPath: /etc/predmesh/routing
  readOnly: true` $mounts }}
{{- end }}
{{- $_ := set $ctx "env" $env }}
{{- $_ := set $ctx "volumes" $volumes }}
{{- $_ := set $ctx "volumeMounts" $mounts }}
{{- $_ := set $ctx "initContainers" (include "predmesh.modelRepository.initContainers" $ctx) }}
{{ include "predmesh.pythonDeployment" $ctx }}
---
{{ include "predmesh.grpcServices" $ctx }}
{{- end -}}
