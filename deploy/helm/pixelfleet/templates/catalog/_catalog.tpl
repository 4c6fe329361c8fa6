{{/* Names and environment the catalog's templates and its clients share. */}}
{{/* At most 52 characters: the StatefulSet controller labels each pod with
controller-revision-hash=<name>-<10-character hash>, and a label value stops at 63. */}}
{{- define "pixelfleet.catalog.name" -}}
{{- include "pixelfleet.fullname" . | trunc 44 | trimSuffix "-" }}-catalog
{{- end -}}

{{/* The headless Service: one DNS name per replica, for the requests one replica passes
on to the owner of an image. */}}
{{- define "pixelfleet.catalog.peers" -}}
{{- include "pixelfleet.catalog.name" . }}-peers
{{- end -}}

{{- define "pixelfleet.catalog.selector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: catalog
{{- end -}}

{{/* The Secret with the plain key the clients send, and the one with the digests the
catalog accepts: the chart's, or the ones named in values. */}}
{{- define "pixelfleet.catalog.keySecret" -}}
{{- .Values.catalog.apiKey.existingSecret | default (printf "%s-client" (include "pixelfleet.catalog.name" .)) -}}
{{- end -}}

{{- define "pixelfleet.catalog.hashesSecret" -}}
{{- .Values.catalog.apiKeyHashes.existingSecret | default (printf "%s-keys" (include "pixelfleet.catalog.name" .)) -}}
{{- end -}}

{{/* Changes when the key values change, so the pods that read the Secrets restart with the
new ones (environment variables are read once, at the container's start). */}}
{{- define "pixelfleet.catalog.keyChecksum" -}}
{{- list .Values.catalog.apiKey .Values.catalog.apiKeyHashes | toYaml | sha256sum -}}
{{- end -}}

{{/* Near-duplicate settings, for the catalog and its clients alike: either end may apply
the policy, so both read the same values. */}}
{{- define "pixelfleet.catalog.nearDupEnv" -}}
- name: PIXELFLEET_CATALOG_NEAR_DUP_DISTANCE
  value: {{ .Values.catalog.nearDup.distance | quote }}
- name: PIXELFLEET_CATALOG_NEAR_DUP_POLICY
  value: {{ .Values.catalog.nearDup.policy | quote }}
{{- end -}}

{{/* Is this stage a client of the catalog? Use: include "pixelfleet.catalog.isClient" (list $ $name) */}}
{{- define "pixelfleet.catalog.isClient" -}}
{{- $root := index . 0 -}}
{{- if and $root.Values.catalog.enabled (has (index . 1) $root.Values.catalog.clientStages) -}}
true
{{- end -}}
{{- end -}}

{{/* What a client stage needs: the regular Service (ready replicas only) and the key. */}}
{{- define "pixelfleet.catalog.clientEnv" -}}
- name: PIXELFLEET_CATALOG_URL
  value: "http://{{ include "pixelfleet.catalog.name" . }}:{{ .Values.catalog.port }}"
- name: PIXELFLEET_CATALOG_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "pixelfleet.catalog.keySecret" . }}, key: {{ .Values.catalog.apiKey.secretKey }}}
{{ include "pixelfleet.catalog.nearDupEnv" . }}
{{- end -}}
