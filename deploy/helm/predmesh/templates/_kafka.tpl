{{/*
Kafka topics of the enabled components (kafka.topics: partitions, replication, retention per
role) and the checks that consumers scale by partitions. Used by kafka-topics.yaml (the
provisioning hook Job and the checks) and kafka-lag-scaling.yaml.
*/}}

{{/*
Topics in use as a JSON list of {role, name, partitions, replicationFactor, config}; config holds
retention.ms (retentionMs) and the role's extra `config` map. Roles and their names:
predictions (kafka.topic), shadowPredictions / outcomes (sink.topics.shadow / .outcomes; the
logger's defaults) when the logger or the sink is enabled; retrainWebhooks
(sink.topics.retrainWebhooks) with the monitor's retraining webhook and the sink; featureEvents / featureEventsDlq
(ingest.topic / .dlqTopic) with ingest; asyncRequests / asyncResults / asyncDeadLetters
(asyncQueue.*Topic) with asyncQueue.
*/}}
{{- define "predmesh.kafkaTopics" -}}
{{- $v := .Values }}
{{- $names := dict }}
{{- if or $v.logger.enabled $v.sink.enabled $v.monitor.enabled }}
{{- $_ := set $names "predictions" $v.kafka.topic }}
{{- end }}
{{- if or $v.logger.enabled $v.sink.enabled }}
{{- $_ := set $names "shadowPredictions" $v.sink.topics.shadow }}
{{- $_ := set $names "outcomes" $v.sink.topics.outcomes }}
{{- end }}
{{- if and $v.monitor.enabled $v.monitor.retrainWebhook.url $v.sink.enabled }}
{{- $_ := set $names "retrainWebhooks" $v.sink.topics.retrainWebhooks }}
{{- end }}
{{- if $v.ingest.enabled }}
{{- $_ := set $names "featureEvents" $v.ingest.topic }}
{{- $_ := set $names "featureEventsDlq" $v.ingest.dlqTopic }}
{{- end }}
{{- if $v.asyncQueue.enabled }}
{{- $_ := set $names "asyncRequests" $v.asyncQueue.requestsTopic }}
{{- $_ := set $names "asyncResults" $v.asyncQueue.resultsTopic }}
{{- $_ := set $names "asyncDeadLetters" $v.asyncQueue.deadLetterTopic }}
{{- end }}
{{- $out := list }}
{{- range $role := keys $names | sortAlpha }}
{{- $t := index $v.kafka.topics $role | default dict }}
{{- if not $t.partitions }}
{{- fail (printf "kafka.topics.%s.partitions must be set (topic %q is in use)" $role (index $names $role)) }}
{{- end }}
{{- $config := dict }}
{{- range $k, $val := ($t.config | default dict) }}
{{- $_ := set $config $k (toString $val) }}
{{- end }}
{{- if $t.retentionMs }}
{{- $_ := set $config "retention.ms" (printf "%d" (int64 $t.retentionMs)) }}
{{- end }}
{{- $out = append $out (dict "role" $role "name" (index $names $role) "partitions" (int $t.partitions) "replicationFactor" (int ($t.replicationFactor | default 3)) "config" $config) }}
{{- end }}
{{- toJson $out -}}
{{- end -}}

{{/* Partition count of a topic role (kafka.topics.<role>.partitions); dict(root, role). */}}
{{- define "predmesh.kafkaPartitions" -}}
{{- $t := index .root.Values.kafka.topics .role | default dict -}}
{{- int ($t.partitions | default 0) -}}
{{- end -}}

{{/* Most replicas a component's Deployment can run: autoscaling.maxReplicas, else replicaCount. */}}
{{- define "predmesh.maxReplicas" -}}
{{- if .autoscaling.enabled -}}
{{- int (.autoscaling.maxReplicas | default .replicaCount) -}}
{{- else -}}
{{- int .replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
Consumers of one group scale by partitions: a group member beyond the partition count of its
topics gets nothing to read. Fails the render when the ingestion, monitor or sink consumer group
could run more replicas than its topics have partitions (kafka.topics.<role>.partitions). The
gateways' async-worker group is not checked: gateways scale on requests, and members beyond
kafka.topics.asyncRequests.partitions only idle.
*/}}
{{- define "predmesh.validateKafka" -}}
{{- $v := .Values }}
{{- $checks := list }}
{{- if $v.ingest.enabled }}
{{- $checks = append $checks (list "ingest" $v.ingest (list "featureEvents")) }}
{{- end }}
{{- if $v.monitor.enabled }}
{{- $checks = append $checks (list "monitor" $v.monitor (list "predictions")) }}
{{- end }}
{{- if $v.sink.enabled }}
{{- $checks = append $checks (list "sink" $v.sink (list "predictions" "shadowPredictions" "outcomes")) }}
{{- end }}
{{- range $checks }}
{{- $component := index . 0 }}
{{- $most := 0 }}
{{- $roles := list }}
{{- range index . 2 }}
{{- $p := include "predmesh.kafkaPartitions" (dict "root" $ "role" .) | int }}
{{- $roles = append $roles (printf "%s=%d" . $p) }}
{{- if gt $p $most }}{{ $most = $p }}{{ end }}
{{- end }}
{{- $replicas := include "predmesh.maxReplicas" (index . 1) | int }}
{{- if gt $replicas $most }}
{{- fail (printf "%s: up to %d replicas but its topics have at most %d partitions (kafka.topics: %s): consumers beyond the partition count of one group sit idle; raise the partitions or lower %s.replicaCount/autoscaling.maxReplicas" $component $replicas $most (join ", " $roles) $component) }}
{{- end }}
{{- end }}
{{- end -}}
