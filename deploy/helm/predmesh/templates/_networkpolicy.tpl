{{/*
NetworkPolicy building blocks (templates/networkpolicy.yaml).
*/}}

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
