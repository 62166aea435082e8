{{/*
Services of the gRPC components and the dns:/// targets that reach them.
*/}}

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
