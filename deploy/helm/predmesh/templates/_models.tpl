{{/*
Model repository (modelRepository.type image | pvc | objectStorage): path, volumes, mounts and
init containers of the orchestrator, ORT workers, monitor and Triton.
*/}}

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

{{/*
Triton runs NVIDIA's image, which does not hold our models: with modelRepository.type=image an
init container from OUR image (same tag/digest as the Python services) copies image.path into
an emptyDir that Triton reads at /models. Other types use the shared volume/mount/init helpers.
*/}}
{{- define "predmesh.modelRepository.tritonVolumes" -}}
{{- $mr := .Values.modelRepository -}}
{{- if eq $mr.type "image" }}
- name: models
  emptyDir:
    sizeLimit: {{ $mr.image.sizeLimit }}
{{- else }}
{{- include "predmesh.modelRepository.volumes" . }}
{{- end }}
{{- end -}}

{{- define "predmesh.modelRepository.tritonMounts" -}}
{{- if eq .Values.modelRepository.type "image" }}
- name: models
  mountPath: /models
  readOnly: true
{{- else }}
{{- include "predmesh.modelRepository.mounts" . }}
{{- end }}
{{- end -}}

{{/* dict(root, component, values) like the other init helpers. */}}
{{- define "predmesh.modelRepository.tritonInitContainers" -}}
{{- $mr := .root.Values.modelRepository -}}
{{- if eq $mr.type "image" }}
- name: copy-models
  image: {{ include "predmesh.image" (dict "root" .root "image" .root.Values.image) }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["cp", "-R", {{ printf "%s/." (trimSuffix "/" $mr.image.path) | quote }}, "/models/"]
  resources:
    {{- toYaml $mr.image.resources | nindent 4 }}
  securityContext:
    {{- include "predmesh.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /models
{{- else }}
{{- include "predmesh.modelRepository.initContainers" . }}
{{- end }}
{{- end -}}
