{{/* Names and labels shared by every template. */}}

{{/* The chart name, or .Values.nameOverride. */}}
{{- define "sipfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release-scoped name of every object: .Values.fullnameOverride, else the
release name, suffixed with the chart name unless the release name has it.
*/}}
{{- define "sipfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's objects: the fullname plus "-operator". */}}
{{- define "sipfleet.operatorName" -}}
{{- printf "%s-operator" (include "sipfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them after install. */}}
{{- define "sipfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sipfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The standard app.kubernetes.io labels on every object the chart creates. */}}
{{- define "sipfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "sipfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sipfleet
{{- end }}

{{/* Labels of the operator's own objects: the standard labels plus the component. */}}
{{- define "sipfleet.operatorLabels" -}}
{{ include "sipfleet.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "sipfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sipfleet.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference "repository:tag", the tag defaulting to the chart's appVersion. */}}
{{- define "sipfleet.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) }}
{{- end }}
