{{/* Names and labels shared by every template. */}}
{{- define "pixelfleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pixelfleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The stages, in pipeline order (streams/config/topics.py STAGES; a unit test keeps
the two equal). Use: range $name := include "pixelfleet.stageNames" $ | splitList " " */}}
{{- define "pixelfleet.stageNames" -}}
fetch validate categorize enhance restore compress
{{- end -}}

{{/* One stage's values: stageDefaults overridden key by key by stages.<name>. */}}
{{- define "pixelfleet.stage" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $own := index $root.Values.stages $name | default dict -}}
{{- mergeOverwrite (deepCopy $root.Values.stageDefaults) (deepCopy $own) | toYaml -}}
{{- end -}}

{{/* The topic a stage consumes: validate reads the ingest topic, every other stage
(fetch included) <prefix>.<stage>. */}}
{{- define "pixelfleet.inbox" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- if eq $name "validate" -}}
{{- printf "%s.ingest" $root.Values.config.topic_prefix -}}
{{- else -}}
{{- printf "%s.%s" $root.Values.config.topic_prefix $name -}}
{{- end -}}
{{- end -}}

{{- define "pixelfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pixelfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Environment every pixelfleet container gets: the settings file and the secrets. */}}
{{- define "pixelfleet.env" -}}
- name: PIXELFLEET_CONFIG
  value: /etc/pixelfleet/config.yaml
- name: HOME
  value: /tmp
- name: PIXELFLEET_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.s3Secret.name }}, key: {{ .Values.s3Secret.accessKeyKey }}}
- name: PIXELFLEET_S3_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.s3Secret.name }}, key: {{ .Values.s3Secret.secretKeyKey }}}
{{- if .Values.kafkaSecret.name }}
- name: PIXELFLEET_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafkaSecret.mechanism | quote }}
- name: PIXELFLEET_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ .Values.kafkaSecret.name }}, key: {{ .Values.kafkaSecret.usernameKey }}}
- name: PIXELFLEET_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.kafkaSecret.name }}, key: {{ .Values.kafkaSecret.passwordKey }}}
{{- end }}
{{- if .Values.kafkaTls.caSecret }}
- name: PIXELFLEET_KAFKA_SSL_CA_LOCATION
  value: /etc/pixelfleet-kafka-tls/ca.pem
{{- end }}
{{- end -}}

{{/* The Kafka CA certificate, where one is configured: a volume and where it is mounted. */}}
{{- define "pixelfleet.kafkaTlsMount" -}}
{{- if .Values.kafkaTls.caSecret }}
- {name: kafka-tls, mountPath: /etc/pixelfleet-kafka-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "pixelfleet.kafkaTlsVolume" -}}
{{- if .Values.kafkaTls.caSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafkaTls.caSecret }}
    items: [{key: {{ .Values.kafkaTls.caKey }}, path: ca.pem}]
{{- end }}
{{- end -}}

{{/* Every pod spec of the chart includes this. Kubernetes would otherwise put
<SERVICE>_SERVICE_HOST, <SERVICE>_PORT=tcp://IP:PORT and the like into each container for
every Service in the namespace; under release `pixelfleet` the catalog's Service
`pixelfleet-catalog` becomes PIXELFLEET_CATALOG_SERVICE_HOST and PIXELFLEET_CATALOG_PORT,
which the settings loader (prefix PIXELFLEET_, unknown keys forbidden, catalog.port an
integer) refuses, so no pod would start. The pods find Services through DNS instead. */}}
{{- define "pixelfleet.serviceLinks" -}}
enableServiceLinks: false
{{- end -}}

{{- define "pixelfleet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pixelfleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
