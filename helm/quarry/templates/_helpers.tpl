{{/* Chart name, truncated to what Kubernetes names allow. */}}
{{- define "quarry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, or just the release when it already says quarry. */}}
{{- define "quarry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "quarry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "quarry.labels" -}}
helm.sh/chart: {{ include "quarry.chart" . }}
app.kubernetes.io/name: {{ include "quarry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quarry
{{- end -}}

{{/*
Per-service helpers take a dict: (dict "root" $ "name" "retriever" "svc" $svc).
*/}}
{{- define "quarry.svcName" -}}
{{- printf "%s-%s" (include "quarry.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "quarry.svcSelector" -}}
app.kubernetes.io/name: {{ include "quarry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "quarry.svcLabels" -}}
{{ include "quarry.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Name of the port serving /healthz, /readyz and /metrics. */}}
{{- define "quarry.probePort" -}}
{{- if .svc.ports.http -}}http{{- else -}}metrics{{- end -}}
{{- end -}}

{{/* QUARRY_<NAME>_ADDR for a service name ("llm-gateway" -> QUARRY_LLM_GATEWAY_ADDR). */}}
{{- define "quarry.addrVar" -}}
{{- printf "QUARRY_%s_ADDR" (. | upper | replace "-" "_") -}}
{{- end -}}

{{- define "quarry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "quarry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "quarry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "quarry.pgSecretName" -}}
{{- if .Values.postgres.existingSecret -}}
{{- .Values.postgres.existingSecret -}}
{{- else -}}
{{- printf "%s-postgres" (include "quarry.fullname" .) -}}
{{- end -}}
{{- end -}}
