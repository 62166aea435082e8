{{/*
The two tiers of the request path (gateway, features, inference). The real-time tier is the one
behind the Envoy edge. With backgroundTier.enabled a second, background tier runs batch-job chunks
and durable async requests: a gateway (component "gateway-bg") that nothing routes to, calling
features ("features-bg") and inference ("inference-bg") Deployments of its own. Triton and the ORT
workers stay shared. The suffix is "-bg", not "-background": "<fullname>-inference-bg-headless"
must stay a valid Service name (<= 63 characters with the 40-character fullname).
*/}}

{{/*
Pod dict of gateway, features or inference in one tier; dict(root, name, background, out). Fills
`out` (a dict the caller made) with root, component, module, prefix, background and values: the
component's own values, or with `background` its tier twin's, which are the real-time values with
backgroundTier.<name>'s keys put in their place (replicaCount, resources, priorityClassName,
scheduling, pdb; `env` merged over the real-time env), a fixed replica count (no HPA) and no drain
delay (no Envoy health-checks the tier's gateway out).
*/}}
{{- define "predmesh.tierContext" -}}
{{- $values := index .root.Values .name }}
{{- $component := .name }}
{{- if .background }}
{{- $component = printf "%s-bg" .name }}
{{- $realtime := $values }}
{{- $tier := index .root.Values.backgroundTier .name }}
{{- $values = deepCopy $realtime }}
{{- range $key, $value := $tier }}
{{- $_ := set $values $key (deepCopy $value) }}
{{- end }}
{{- $_ := set $values "env" (mergeOverwrite (deepCopy ($realtime.env | default dict)) (deepCopy ($tier.env | default dict))) }}
{{- $_ := set $values "autoscaling" (dict "enabled" false) }}
{{- $_ := set $values "drainDelayS" 0 }}
{{- end }}
{{- $_ := set .out "root" .root }}
{{- $_ := set .out "component" $component }}
{{- $_ := set .out "module" .name }}
{{- $_ := set .out "prefix" (printf "PREDMESH_%s_" (upper .name)) }}
{{- $_ := set .out "background" (.background | default false) }}
{{- $_ := set .out "values" $values }}
{{- end -}}
