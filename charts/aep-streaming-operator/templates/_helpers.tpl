{{/*
Names, labels, the image reference, and the operator's RBAC rules, each written once.
*/}}

{{- define "aep-streaming-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource: the release name when it already holds the chart name (the default release
`aep-streaming-operator` gives `aep-streaming-operator`, as in deploy/), otherwise "<release>-<chart>".
*/}}
{{- define "aep-streaming-operator.fullname" -}}
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

{{- define "aep-streaming-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aep-streaming-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aep-streaming-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "aep-streaming-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "aep-streaming-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aep-streaming-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
repository[:tag][@digest]. A digest pins the exact image; the tag is kept beside it for readers (the runtime pulls
by digest and ignores the tag).
*/}}
{{- define "aep-streaming-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- $reference := .Values.image.repository }}
{{- if $tag }}{{ $reference = printf "%s:%s" $reference $tag }}{{ end }}
{{- if .Values.image.digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .Values.image.digest) }}
{{- fail (printf "image.digest must look like sha256:<64 hex digits>, got %q" .Values.image.digest) }}
{{- end }}
{{- $reference = printf "%s@%s" $reference .Values.image.digest }}
{{- end }}
{{- $reference }}
{{- end }}

{{/*
The one namespace the operator watches, or "" for all. The operator takes one `--namespace`, so a list of more
than one is refused here rather than half-honoured.
*/}}
{{- define "aep-streaming-operator.watchNamespace" -}}
{{- $namespaces := .Values.watchNamespaces | default list }}
{{- if gt (len $namespaces) 1 }}
{{- fail (printf "watchNamespaces has %d entries (%s): the operator watches one namespace or all of them. Install one release per namespace (each with its own name and release namespace), or leave watchNamespaces empty to watch all namespaces." (len $namespaces) (join ", " $namespaces)) }}
{{- end }}
{{- if $namespaces }}
{{- $namespace := first $namespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $namespace) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name" $namespace) }}
{{- end }}
{{- $namespace }}
{{- end }}
{{- end }}

{{/*
THE OPERATOR'S RBAC RULES, written once. In cluster-wide mode one ClusterRole holds all of them, in this order,
and tools/test-install.sh checks that they equal the ClusterRole rules of deploy/operator/rbac.yaml (the source of truth:
change both together). In namespaced mode "namespacedRules" go into a Role in the watched namespace and
"definitionRule" alone into a ClusterRole (CRDs are cluster-scoped).
*/}}
{{- define "aep-streaming-operator.rules.objects" -}}
# Watch StreamingConnections (the controller's main watch) and add/remove the
# streaming.aep-operator.dev/cleanup finalizer (a patch of metadata.finalizers; spec is never written).
- apiGroups: ["streaming.aep-operator.dev"]
  resources: ["streamingconnections"]
  verbs: ["get", "list", "watch", "patch"]
# Write status (connectionId, inletUrl, conditions, the create-pending marker) through the status
# subresource with server-side apply.
- apiGroups: ["streaming.aep-operator.dev"]
  resources: ["streamingconnections/status"]
  verbs: ["patch"]
# Watch StreamingDataflows (the dataflow controller's main watch) and add/remove the same finalizer (a
# patch of metadata.finalizers; spec is never written). A dataflow's StreamingConnection is read through
# the streamingconnections rule above, and a connection waits for the dataflows that use it (list/watch).
- apiGroups: ["streaming.aep-operator.dev"]
  resources: ["streamingdataflows"]
  verbs: ["get", "list", "watch", "patch"]
# Write status (flowId, the ids of the source and target connections and the mapping set, conditions,
# the create-pending marker) through the status subresource with server-side apply.
- apiGroups: ["streaming.aep-operator.dev"]
  resources: ["streamingdataflows/status"]
  verbs: ["patch"]
# Read the credentials Secret named by spec.credentialsRef, in the object's own namespace (get), and
# watch Secret metadata (list/watch) so that a rotated Secret reconciles the objects that use it.
# The operator never creates, changes or deletes Secrets, and keeps no Secret data in a cache.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Publish the inlet ConfigMap (and a dataflow's) with server-side apply (patch; create when it does not
# exist yet), read it to refuse taking over one it does not own, watch its own ConfigMaps to repair
# edits, and delete the old one when spec.configMap.name changes. Their ownerReference names the
# StreamingConnection or StreamingDataflow as controller without blockOwnerDeletion, so no update on
# <kind>/finalizers is needed.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}

{{- define "aep-streaming-operator.rules.definitions" -}}
# Read whether the kind's own CRD is being deleted: then the operator orphans instead of deleting in
# Adobe (deleting the CRD is an uninstall, never a decision to delete the data). Only these two CRDs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames:
    - streamingconnections.streaming.aep-operator.dev
    - streamingdataflows.streaming.aep-operator.dev
  verbs: ["get"]
{{- end }}

{{- define "aep-streaming-operator.rules.events" -}}
# Record events (Created, Adopted, Recreated, Deleted, Orphaned and every failure reason); patch
# updates the count of a repeated event instead of creating a new one.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Every rule of deploy/operator/rbac.yaml's ClusterRole, in its order. */}}
{{- define "aep-streaming-operator.rules.clusterWide" -}}
{{ include "aep-streaming-operator.rules.objects" . }}
{{ include "aep-streaming-operator.rules.definitions" . }}
{{ include "aep-streaming-operator.rules.events" . }}
{{- end }}

{{/* The namespaced share of them: everything but the cluster-scoped CRD read. */}}
{{- define "aep-streaming-operator.rules.namespaced" -}}
{{ include "aep-streaming-operator.rules.objects" . }}
{{ include "aep-streaming-operator.rules.events" . }}
{{- end }}
