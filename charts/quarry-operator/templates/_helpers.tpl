{{- define "quarry.labels" -}}
app.kubernetes.io/name: quarry-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quarry
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "quarry.selector" -}}
app.kubernetes.io/name: quarry-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "quarry.fullname" -}}
{{- if eq .Release.Name "quarry-operator" -}}quarry-operator{{- else -}}{{ printf "%s-quarry-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
