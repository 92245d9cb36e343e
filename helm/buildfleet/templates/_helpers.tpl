{{/* Names: the full name is kept to 40 characters so that the longest
resource name made from it (FULLNAME-coordinator-headless) fits in 63. */}}
{{- define "buildfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "buildfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Standard labels; call with (dict "ctx" $ "component" "coordinator"). */}}
{{- define "buildfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "buildfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: buildfleet
{{- end }}

{{- define "buildfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "buildfleet.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* The server image (Dockerfile target runtime). */}}
{{- define "buildfleet.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest }}{{ $i.repository }}@{{ $i.digest }}
{{- else }}{{ $i.repository }}:{{ $i.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* The runner image (Dockerfile target runner): defaults to the server
image's repository and its tag + "-runner". */}}
{{- define "buildfleet.runnerImage" -}}
{{- $r := .Values.runners.image -}}
{{- $repo := $r.repository | default .Values.image.repository -}}
{{- if $r.digest }}{{ $repo }}@{{ $r.digest }}
{{- else }}{{ $repo }}:{{ $r.tag | default (printf "%s-runner" (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}
{{- end }}

{{- define "buildfleet.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* In-cluster URLs (what a TLS certificate must name). */}}
{{- define "buildfleet.coordinatorURL" -}}
{{ include "buildfleet.scheme" . }}://{{ include "buildfleet.fullname" . }}-coordinator.{{ .Release.Namespace }}.svc:{{ int .Values.coordinator.port }}
{{- end }}

{{- define "buildfleet.cacheURL" -}}
{{ include "buildfleet.scheme" . }}://{{ include "buildfleet.fullname" . }}-cache.{{ .Release.Namespace }}.svc:{{ int .Values.cache.port }}
{{- end }}

{{/* Size in MiB of PERCENT of SIZE_GI GiB: (list sizeGi percent). */}}
{{- define "buildfleet.percentMiB" -}}
{{- div (mul (int (index . 0)) 1024 (int (index . 1))) 100 }}MiB
{{- end }}

{{/* Pod-level security for the server roles and a non-root runner: the
image's uid 10001. */}}
{{- define "buildfleet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "buildfleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Liveness, readiness and startup probes of a gRPC server role on PORT:
native gRPC health checks (grpc.health.v1, no token needed); with TLS a TCP
connect, since the kubelet's gRPC probe does not speak TLS.
Call with (dict "ctx" $ "port" N). */}}
{{- define "buildfleet.serverProbes" -}}
{{- $check := printf "grpc:\n  port: %d" (int .port) }}
{{- if .ctx.Values.tls.enabled }}
{{- $check = printf "tcpSocket:\n  port: %d" (int .port) }}
{{- end }}
startupProbe:
  {{- $check | nindent 2 }}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  {{- $check | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  {{- $check | nindent 2 }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* Server-side auth and TLS arguments, and their mounts and volumes. */}}
{{- define "buildfleet.serverAuthArgs" -}}
{{- if .Values.auth.noAuth }}
- --no-auth
{{- else }}
- --tokens
- /etc/buildfleet/tokens/tokens.yaml
{{- end }}
{{- if .Values.tls.enabled }}
- --tls-cert
- /etc/buildfleet/tls/tls.crt
- --tls-key
- /etc/buildfleet/tls/tls.key
{{- if .Values.tls.mutual }}
- --tls-client-ca
- /etc/buildfleet/ca/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{- define "buildfleet.serverAuthMounts" -}}
{{- if not .Values.auth.noAuth }}
- name: tokens
  mountPath: /etc/buildfleet/tokens
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/buildfleet/tls
  readOnly: true
- name: ca
  mountPath: /etc/buildfleet/ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Secret volumes are mounted whole (no subPath) so that a changed Secret
reaches the files, which the servers re-read. */}}
{{- define "buildfleet.serverAuthVolumes" -}}
{{- if not .Values.auth.noAuth }}
- name: tokens
  secret:
    secretName: {{ .Values.auth.serverTokensSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.auth.serverTokensSecret.key }}
        path: tokens.yaml
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.certSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- include "buildfleet.caVolume" . | nindent 0 }}
{{- end }}
{{- end }}

{{- define "buildfleet.caVolume" -}}
- name: ca
  secret:
    secretName: {{ .Values.tls.caSecret }}
    defaultMode: 0444
    items:
      - key: {{ .Values.tls.caKey }}
        path: ca.crt
{{- end }}

{{- define "buildfleet.metricsArgs" -}}
{{- if .Values.metrics.enabled }}
- --metrics-listen
- 0.0.0.0:{{ int .Values.metrics.port }}
{{- end }}
{{- with .Values.tracing.otlpEndpoint }}
- --otlp-endpoint
- {{ . | quote }}
{{- end }}
{{- end }}

{{- define "buildfleet.metricsPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ int .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* Is any autoscaler on? "true" or "". */}}
{{- define "buildfleet.autoscaled" -}}
{{- if or .Values.runners.autoscaling.hpa.enabled .Values.runners.autoscaling.keda.enabled }}true{{ end }}
{{- end }}

{{/* Image pull secrets, if any. */}}
{{- define "buildfleet.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* nodeSelector, tolerations, affinity of one role's values. */}}
{{- define "buildfleet.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
