{{/* The chart name. */}}
{{- define "ecr-mirror-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources. CronJob names are limited to 52 characters (the Job name adds 11),
so it is cut there.
*/}}
{{- define "ecr-mirror-sync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ecr-mirror-sync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecr-mirror-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecr-mirror-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecr-mirror-sync.labels" -}}
helm.sh/chart: {{ include "ecr-mirror-sync.chart" . }}
{{ include "ecr-mirror-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ecr-mirror-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecr-mirror-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecr-mirror-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the policy ConfigMap is mounted: the binary's default policy path. */}}
{{- define "ecr-mirror-sync.policyPath" -}}
/etc/containers/policy.json
{{- end }}

{{/* Where the source credentials Secret is mounted (a directory), and the authfile in it. */}}
{{- define "ecr-mirror-sync.srcAuthDir" -}}
/etc/ecr-mirror-sync/source-auth
{{- end }}
{{- define "ecr-mirror-sync.srcAuthFile" -}}
{{ include "ecr-mirror-sync.srcAuthDir" . }}/config.json
{{- end }}
