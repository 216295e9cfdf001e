{{/*
Helpers of the saga-tracker chart. The templates use a small subset of Helm's template language
(if/else, define/include, toYaml, nindent, quote, default, required, printf): tracker/tests/helm_chart
renders them with its own renderer, which knows exactly that subset.
*/}}

{{/* The name of every object: <release>-saga-tracker, or fullnameOverride (at most 40 characters). */}}
{{- define "saga-tracker.fullname" -}}
{{ default (printf "%s-saga-tracker" .Release.Name) .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the chart's pods (plus app.kubernetes.io/component per workload). */}}
{{- define "saga-tracker.selectorLabels" -}}
app.kubernetes.io/name: saga-tracker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "saga-tracker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{ include "saga-tracker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret with database-url (and the tokens): the chart's or secret.existingSecret. */}}
{{- define "saga-tracker.secretName" -}}
{{ default (include "saga-tracker.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* The container image. */}}
{{- define "saga-tracker.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Environment shared by the tracker and the jobs (an EnvVar list). */}}
{{- define "saga-tracker.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "saga-tracker.secretName" . }}
      key: database-url
{{- if .Values.database.schema }}
- name: DATABASE_SCHEMA
  value: {{ .Values.database.schema | quote }}
{{- end }}
- name: KAFKA_BROKERS
  value: {{ required "kafka.brokers is required (host:port[,host:port...])" .Values.kafka.brokers | quote }}
- name: TRACKER_TOPIC
  value: {{ .Values.kafka.topic | quote }}
- name: TRACKER_DLQ_TOPIC
  value: {{ .Values.kafka.dlqTopic | quote }}
- name: TRACKER_GROUP_ID
  value: {{ .Values.kafka.groupId | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- if .Values.extraEnv }}
{{ toYaml .Values.extraEnv }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the tracker and the jobs (not the service account: the hook Job runs
before the chart's ServiceAccount exists). */}}
{{- define "saga-tracker.podSpec" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- if .Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml .Values.image.pullSecrets | nindent 2 }}
{{- end }}
{{- end }}
