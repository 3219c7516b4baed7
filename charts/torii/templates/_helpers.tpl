{{/* Names, labels and the pieces every role's pod shares. */}}

{{- define "torii.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "torii.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "torii.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "torii.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one role's objects: <fullname>-<role>. Call with (dict "root" $ "role" "worker"). */}}
{{- define "torii.roleName" -}}
{{- printf "%s-%s" (include "torii.fullname" .root) .role | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "torii.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "torii.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: torii
{{- end -}}

{{/* Selector labels of one role. Call with (dict "root" $ "role" "worker"). */}}
{{- define "torii.selectorLabels" -}}
app.kubernetes.io/name: {{ include "torii.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* No default repository: no image of Torii is published, and a made-up default only fails
later, on the nodes, as ImagePullBackOff. */}}
{{- define "torii.image" -}}
{{- $repo := required "image.repository is required: the registry and path you pushed the Torii image to (built from the Dockerfile, docs/install.md), e.g. --set image.repository=registry.example.com/torii" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the key files: the user's, or the one this chart creates. */}}
{{- define "torii.keysSecret" -}}
{{- default (printf "%s-keys" (include "torii.fullname" .)) .Values.keys.existingSecret -}}
{{- end -}}

{{- define "torii.livekitSecret" -}}
{{- default (printf "%s-livekit" (include "torii.fullname" .)) .Values.livekit.existingSecret -}}
{{- end -}}

{{/*
The keys folder of one role, with only the files that role reads (least privilege: the worker
never sees the callout's issuer seed). Call with (dict "root" $ "required" (list …) "optional" (list …)).
*/}}
{{- define "torii.keysVolume" -}}
- name: keys
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "torii.keysSecret" .root }}
          items:
            {{- range .required }}
            - { key: {{ . }}, path: {{ . }} }
            {{- end }}
      {{- with .optional }}
      # Present in one key set or another (JWK pair or HS256 secret): optional.
      - secret:
          name: {{ include "torii.keysSecret" $.root }}
          optional: true
          items:
            {{- range . }}
            - { key: {{ . }}, path: {{ . }} }
            {{- end }}
      {{- end }}
{{- end -}}

{{/*
The role's environment, each variable once: what every role gets, the role's own settings
("chart"), then the user's <role>.env on top (a user value wins over a chart value). Called with
(dict "root" $ "role" "worker" "chart" (dict …) "env" .Values.worker.env).
*/}}
{{- define "torii.env" -}}
{{- $all := dict "TORII_NATS_URL" .root.Values.nats.url "TORII_KEYS_DIR" "/etc/torii/keys" "TORII_KV_REPLICAS" .root.Values.nats.kvReplicas "TORII_HTTP_PORT" .root.Values.httpPort "TORII_LOG_LEVEL" .root.Values.logLevel -}}
{{- $all = merge (deepCopy (default (dict) .env)) (deepCopy .chart) $all -}}
{{- range $name, $value := $all }}
- { name: {{ $name }}, value: {{ $value | toString | quote }} }
{{- end }}
- name: POD_NAME
  valueFrom: { fieldRef: { fieldPath: metadata.name } }
- name: POD_NAMESPACE
  valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
{{- end -}}

{{/* Container pieces every role shares: image, ports, probes, security. */}}
{{- define "torii.containerCommon" -}}
image: {{ include "torii.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
ports:
  - { name: http, containerPort: {{ .root.Values.httpPort }}, protocol: TCP }
livenessProbe:
  httpGet: { path: /healthz, port: http }
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: http }
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: { path: /healthz, port: http }
  periodSeconds: 2
  failureThreshold: 30
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
{{- end -}}

{{/* Pod-level pieces every role shares. */}}
{{- define "torii.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .root.Values.terminationGracePeriodSeconds }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else }}
# Spread replicas over nodes, so a node failure takes at most one.
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "torii.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end -}}
