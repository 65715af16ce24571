{{/*
Names, labels and the pieces every role's Deployment shares.
*/}}

{{- define "pro-portal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the prefix of every object, and the value of the
app.kubernetes.io/part-of label that the kubernetes executor's solve pods carry too.
*/}}
{{- define "pro-portal.fullname" -}}
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

{{- define "pro-portal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pro-portal.labels" -}}
helm.sh/chart: {{ include "pro-portal.chart" . }}
{{ include "pro-portal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "pro-portal.fullname" . }}
{{- end }}

{{- define "pro-portal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pro-portal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one role's pods: (dict "root" $ "role" "web") */}}
{{- define "pro-portal.roleSelectorLabels" -}}
{{ include "pro-portal.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "pro-portal.roleLabels" -}}
{{ include "pro-portal.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "pro-portal.image" -}}
{{- $image := .image | default dict -}}
{{- $repository := $image.repository | default .root.Values.image.repository -}}
{{- $tag := $image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end }}

{{/* The Secret the platform's secrets come from: the chart's own, or the site's. */}}
{{- define "pro-portal.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "pro-portal.fullname" .)) }}
{{- end }}

{{/*
The keys of that Secret that are handed to the platform as files, each as X_FILE=/run/secrets/pro/X
(pro_portal/env.py reads a setting X from the file X_FILE names). A JSON list.
*/}}
{{- define "pro-portal.secretFileKeys" -}}
{{- if .Values.secrets.existingSecret }}
{{- toJson .Values.secrets.existingSecretFileKeys }}
{{- else }}
{{- $keys := list "DATABASE_URL" "REDIS_URL" "PRO_SECRET_KEY" "PRO_PLATFORM_KEY" }}
{{- if .Values.secrets.adminPassword }}{{ $keys = append $keys "PRO_ADMIN_PASSWORD" }}{{ end }}
{{- if .Values.secrets.metricsToken }}{{ $keys = append $keys "PRO_METRICS_TOKEN" }}{{ end }}
{{- range $key, $value := .Values.secrets.files }}{{ $keys = append $keys $key }}{{ end }}
{{- toJson $keys }}
{{- end }}
{{- end }}

{{/* The keys handed over as plain environment variables (read by libraries, not by pro_portal/env.py). */}}
{{- define "pro-portal.secretEnvKeys" -}}
{{- if .Values.secrets.existingSecret }}
{{- toJson .Values.secrets.existingSecretEnvKeys }}
{{- else }}
{{- $keys := list }}
{{- if .Values.secrets.awsAccessKeyId }}{{ $keys = append $keys "AWS_ACCESS_KEY_ID" }}{{ end }}
{{- if .Values.secrets.awsSecretAccessKey }}{{ $keys = append $keys "AWS_SECRET_ACCESS_KEY" }}{{ end }}
{{- range $key, $value := .Values.secrets.env }}{{ $keys = append $keys $key }}{{ end }}
{{- toJson $keys }}
{{- end }}
{{- end }}

{{- define "pro-portal.webServiceName" -}}
{{- printf "%s-web" (include "pro-portal.fullname" .) }}
{{- end }}

{{/* Where the roles without a web server, and the kubernetes executor's solve pods, call the API. */}}
{{- define "pro-portal.internalApiUrl" -}}
{{- printf "http://%s.%s.svc:%v" (include "pro-portal.webServiceName" .) .Release.Namespace .Values.web.service.port }}
{{- end }}

{{/* The namespace the kubernetes executor creates its Jobs in (PRO_K8S_NAMESPACE). */}}
{{- define "pro-portal.jobNamespace" -}}
{{- .Values.solves.kubernetes.namespace | default .Release.Namespace }}
{{- end }}

{{/* Every namespace it may create them in (a JSON list): that one, and those PRO_EXECUTOR_QUEUES names. */}}
{{- define "pro-portal.jobNamespaces" -}}
{{- toJson (uniq (prepend .Values.solves.kubernetes.extraNamespaces (include "pro-portal.jobNamespace" .))) }}
{{- end }}

{{/* The storage URL (PRO_STORAGE_URL): given, or the shared volume's mount. */}}
{{- define "pro-portal.storageUrl" -}}
{{- if .Values.storage.url }}
{{- .Values.storage.url }}
{{- else if .Values.storage.sharedVolume.enabled }}
{{- printf "file://%s" .Values.storage.sharedVolume.mountPath }}
{{- else }}
{{- fail "storage: set storage.url (s3://bucket/prefix) or enable storage.sharedVolume (a ReadWriteMany volume every pod mounts): a pod's own disk is not shared storage" }}
{{- end }}
{{- end }}

{{- define "pro-portal.sharedClaimName" -}}
{{- .Values.storage.sharedVolume.existingClaim | default (printf "%s-storage" (include "pro-portal.fullname" .)) }}
{{- end }}

{{/* The host names the web role answers to (PRO_ALLOWED_HOSTS). */}}
{{- define "pro-portal.allowedHosts" -}}
{{- $service := include "pro-portal.webServiceName" . }}
{{- $hosts := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.%s" $service .Release.Namespace .Values.clusterDomain) "127.0.0.1" "localhost" }}
{{- range .Values.web.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end }}
{{- if .Values.publicUrl }}{{ $hosts = append $hosts (urlParse .Values.publicUrl).hostname }}{{ end }}
{{- $hosts = concat $hosts .Values.allowedHosts }}
{{- join "," (uniq $hosts) }}
{{- end }}

{{/* The origins a browser's form posts come from (PRO_CSRF_TRUSTED_ORIGINS). */}}
{{- define "pro-portal.csrfOrigins" -}}
{{- $origins := list }}
{{- if .Values.publicUrl }}
{{- $url := urlParse .Values.publicUrl }}
{{- $origins = append $origins (printf "%s://%s" $url.scheme $url.host) }}
{{- end }}
{{- $tls := list }}
{{- range .Values.web.ingress.tls }}{{ $tls = concat $tls .hosts }}{{ end }}
{{- range .Values.web.ingress.hosts }}
{{- $origins = append $origins (printf "%s://%s" (ternary "https" "http" (has .host $tls)) .host) }}
{{- end }}
{{- join "," (uniq $origins) }}
{{- end }}

{{- define "pro-portal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "pro-portal.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/*
The check of the roles without an HTTP server (a JSON list: the exec probe's command). It asks
the admin database for this pod's node row (apps.cluster.models.Node, named PRO_NODE_NAME) and
fails, saying why, when the node agent has not registered it or its last heartbeat is older than
nodeProbe.heartbeatIntervals intervals (PRO_HEARTBEAT_SECONDS). tests/test_helm_chart.py runs it.
*/}}
{{- define "pro-portal.nodeProbeCommand" -}}
{{- $code := list
  "import sys, django"
  "django.setup()"
  "from django.conf import settings"
  "from django.utils import timezone"
  "from apps.cluster.models import Node"
  "beat = Node.objects.filter(name=settings.PRO_NODE_NAME).values_list('last_heartbeat', flat=True).first()"
  "age = None if beat is None else (timezone.now() - beat).total_seconds()"
  (printf "limit = %v * settings.PRO_HEARTBEAT_SECONDS" .Values.nodeProbe.heartbeatIntervals)
  "sys.exit(0 if age is not None and age <= limit else f'node {settings.PRO_NODE_NAME}: ' + ('not registered' if age is None else f'last heartbeat {age:.0f} s ago, limit {limit:g} s'))"
}}
{{- toJson (list "python" "-c" (join "; " $code)) }}
{{- end }}
