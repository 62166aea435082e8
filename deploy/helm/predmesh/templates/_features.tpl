{{/*
The features service's Deployment and Services, for the real-time tier (features.yaml) and, with
backgroundTier, the tier's own ("features-bg", _background.tpl); dict(root, background). Both read
the same Redis and the registry ConfigMap that features.yaml renders.
*/}}
{{- define "predmesh.features" -}}
{{- $root := .root }}
{{- $ctx := dict }}
{{- $_ := include "predmesh.tierContext" (dict "root" $root "name" "features" "background" .background "out" $ctx) }}
{{- $checksums := dict }}
{{- $env := "" }}
{{- if $root.Values.redis.existingSecret }}
{{- $env = printf `
- name: PREDMESH_FEATURES_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: %s
      key: %s` $root.Values.redis.existingSecret $root.Values.redis.existingSecretKey }}
{{- else }}
{{- $env = printf `
- name: PREDMESH_FEATURES_REDIS_URL
  value: %q` (required "redis.url is required (or redis.existingSecret)" $root.Values.redis.url) }}
{{- end }}
{{- if $root.Values.features.registry }}
{{- $registry := toYaml $root.Values.features.registry }}
{{- /* The registry is read at start-up: a change must roll the pods. */}}
{{- $_ := set $checksums "checksum/feature-registry" ($registry | sha256sum) }}
{{- $env = printf `%s
- name: PREDMESH_FEATURES_REGISTRY_PATH
  value: /etc/predmesh/features/registry.yaml` $env }}
{{- $_ := set $ctx "volumes" (printf `
- name: registry
  configMap:
    name: %s` (include "predmesh.features.registryName" $root)) }}
{{- $_ := set $ctx "volumeMounts" `
- name: registry
  mountPath: /etc/predmesh/features
  readOnly: true` }}
{{- end }}
{{- $_ := set $ctx "env" $env }}
{{- $_ := set $ctx "checksums" $checksums }}
{{ include "predmesh.pythonDeployment" $ctx }}
---
{{ include "predmesh.grpcServices" $ctx }}
{{- end -}}

{{/* Name of the feature registry ConfigMap (features.registry); takes the root. */}}
{{- define "predmesh.features.registryName" -}}
{{- printf "%s-registry" (include "predmesh.componentName" (dict "root" . "component" "features")) -}}
{{- end -}}
