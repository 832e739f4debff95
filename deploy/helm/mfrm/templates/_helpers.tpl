{{/*
Names and labels shared by every template.
*/}}

{{- define "mfrm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-mfrm, or the release name alone when it already says mfrm; 63 characters at most. */}}
{{- define "mfrm.fullname" -}}
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

{{- define "mfrm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mfrm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mfrm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mfrm.labels" -}}
helm.sh/chart: {{ include "mfrm.chart" . }}
{{ include "mfrm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "mfrm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mfrm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the daemon acts on action pods through the Kubernetes API. */}}
{{- define "mfrm.usesKubernetesApi" -}}
{{- if and (eq .Values.backend "openwhisk") (eq .Values.openwhisk.containerFactory "kubernetes") }}true{{- end }}
{{- end }}

{{/* True (non-empty) when the OpenWhisk API key is passed to the pod. */}}
{{- define "mfrm.passesAuth" -}}
{{- if and (eq .Values.backend "openwhisk") .Values.openwhisk.auth.existingSecret }}true{{- end }}
{{- end }}

{{/* Where the Secret of docker.tls is mounted (settings openwhisk.docker_tls_dir). */}}
{{- define "mfrm.dockerTlsDir" -}}
/etc/mfrm-docker-tls
{{- end }}

{{/*
The settings file: the operator's `settings` with the keys the chart owns laid over them (the
schema refuses those keys in `settings`, so nothing is silently overwritten). One default is
filled in only where the operator gave none: with the Docker socket mounted, the one invoker's
engine is that socket.
*/}}
{{- define "mfrm.settingsYaml" -}}
{{- $openwhisk := dict
      "api_host" .Values.openwhisk.apiHost
      "runtime" .Values.openwhisk.containerFactory
      "kubernetes_namespace" .Values.openwhisk.namespace }}
{{- with .Values.docker.tls }}{{- if .existingSecret }}
{{- $_ := set $openwhisk "docker_tls_dir" (include "mfrm.dockerTlsDir" $) }}
{{- end }}{{- end }}
{{- $owned := dict
      "daemon" (dict
        "backend" .Values.backend
        "metrics_host" "0.0.0.0"
        "metrics_port" (int .Values.metrics.port)
        "checkpoint_dir" (printf "%s/checkpoints" (trimSuffix "/" .Values.persistence.mountPath)))
      "output" (dict
        "out_dir" (printf "%s/runs" (trimSuffix "/" .Values.persistence.mountPath)))
      "openwhisk" $openwhisk }}
{{- $operator := deepCopy (default (dict) .Values.settings) }}
{{- $operatorOpenwhisk := default (dict) (get $operator "openwhisk") }}
{{- if and .Values.docker.socket.enabled (eq .Values.openwhisk.containerFactory "docker") (not (hasKey $operatorOpenwhisk "docker_hosts")) }}
{{- $_ := set $operatorOpenwhisk "docker_hosts" (dict "invoker0" "unix:///var/run/docker.sock") }}
{{- $_ := set $operator "openwhisk" $operatorOpenwhisk }}
{{- end }}
{{- $settings := mustMergeOverwrite $operator $owned }}
{{- toYaml $settings }}
{{- end }}
