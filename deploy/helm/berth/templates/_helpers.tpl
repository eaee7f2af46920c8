{{- define "berth.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "berth.labels" -}}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The mode, checked: a typo must not silently fall back to the embedded mode. */}}
{{- define "berth.mode" -}}
{{- if not (has .Values.mode (list "embedded" "scaleout")) -}}
{{- fail (printf "mode must be embedded or scaleout, not %q" .Values.mode) -}}
{{- end -}}
{{- .Values.mode -}}
{{- end -}}

{{/* berth locks its data directory: the embedded mode runs exactly one replica. */}}
{{- define "berth.replicas" -}}
{{- if eq (include "berth.mode" .) "scaleout" -}}
{{- .Values.replicaCount -}}
{{- else -}}
1
{{- end -}}
{{- end -}}

{{- define "berth.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "berth.fullname" .) -}}
{{- end -}}

{{- define "berth.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "berth.fullname" .)) -}}
{{- end -}}

{{/* The port of metrics.listen ("0.0.0.0:9090" -> 9090). */}}
{{- define "berth.metricsPort" -}}
{{- .Values.metrics.listen | splitList ":" | last -}}
{{- end -}}
