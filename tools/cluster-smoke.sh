#!/usr/bin/env bash
# Smoke test of a running tools/cluster.sh cluster: checks the behaviours the operator's tests rely on.
#   tools/cluster-smoke.sh [DIR]      (DIR defaults to <repo>/target/cluster; the cluster must be up)
# Checks: kubectl/server versions, ownerReference garbage collection, namespace deletion finishing,
# ServiceAccount + TokenRequest (`kubectl create token`) authenticated and authorised by RBAC,
# CRD with an x-kubernetes-validations (CEL) rule rejecting a bad object. Cleans up after itself.
set -euo pipefail
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${1:-$(dirname "$TOOLS_DIR")/target/cluster}
# shellcheck disable=SC1091
source "$DIR/env"
NS=smoke-$$
PASS=0
ok() { PASS=$((PASS + 1)); printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; exit 1; }
cleanup() {
  kubectl delete ns "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete crd widgets.smoke.aep.invalid --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1fs", b-a}'; }
until_gone() { # timeout-seconds cmd... : wait until cmd fails
  local deadline=$((SECONDS + $1)); shift
  while "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || return 1; sleep 0.2; done
}

kubectl version | grep -q "Server Version: v1" && ok "kubectl $(kubectl version --client | sed -n 's/Client Version: //p') talks to server $(kubectl version | sed -n 's/Server Version: //p')"
kubectl get ns default >/dev/null && ok "namespace default exists"

# ---- garbage collection of an ownerReference dependent
kubectl create ns "$NS" >/dev/null
kubectl -n "$NS" create configmap owner --from-literal=a=b >/dev/null
uid=$(kubectl -n "$NS" get cm owner -o jsonpath='{.metadata.uid}')
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  namespace: $NS
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: "$uid"}]
data: {x: "y"}
EOF
kubectl -n "$NS" get cm dependent >/dev/null || fail "dependent ConfigMap not created"
t=$(now); kubectl -n "$NS" delete cm owner >/dev/null
until_gone 60 kubectl -n "$NS" get cm dependent || fail "garbage collector did not delete the dependent within 60s"
ok "garbage collector deleted the dependent ConfigMap $(since "$t") after its owner"

# ---- ServiceAccount + TokenRequest + RBAC
kubectl -n "$NS" create serviceaccount robot >/dev/null
token=$(kubectl -n "$NS" create token robot --duration=10m)
[[ -n $token ]] || fail "kubectl create token returned nothing"
ok "TokenRequest: kubectl create token issued a token"
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
as_robot() { kubectl --kubeconfig=/dev/null --server="$server" --certificate-authority="$DIR/certs/ca.crt" --token="$token" "$@"; }
who=$(as_robot auth whoami -o jsonpath='{.status.userInfo.username}')
[[ $who == "system:serviceaccount:$NS:robot" ]] || fail "token authenticated as '$who'"
ok "token authenticates as $who"
if out=$(as_robot -n "$NS" get configmaps 2>&1); then fail "robot could list configmaps without a role"; fi
[[ $out == *Forbidden* || $out == *forbidden* ]] || fail "expected Forbidden, got: $out"
ok "without a RoleBinding: Forbidden"
kubectl -n "$NS" create role cm-reader --verb=get,list,watch --resource=configmaps >/dev/null
kubectl -n "$NS" create rolebinding robot-cm-reader --role=cm-reader --serviceaccount="$NS:robot" >/dev/null
deadline=$((SECONDS + 10))
until as_robot -n "$NS" get configmaps >/dev/null 2>&1; do ((SECONDS < deadline)) || fail "still forbidden after RoleBinding"; sleep 0.2; done
ok "with a RoleBinding: allowed"
if as_robot -n "$NS" delete configmap kube-root-ca.crt >/dev/null 2>&1 || as_robot -n "$NS" create configmap x >/dev/null 2>&1; then
  fail "robot can write configmaps with a read-only role"
fi
ok "verbs outside the Role stay forbidden"

# ---- CRD with a CEL validation rule
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.aep.invalid}
spec:
  group: smoke.aep.invalid
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
EOF
kubectl wait --for=condition=Established crd/widgets.smoke.aep.invalid --timeout=30s >/dev/null
deadline=$((SECONDS + 20))
until kubectl -n "$NS" get widgets >/dev/null 2>&1; do ((SECONDS < deadline)) || fail "widgets not served"; sleep 0.2; done
widget() { printf 'apiVersion: smoke.aep.invalid/v1\nkind: Widget\nmetadata: {name: %s, namespace: %s}\nspec: {minReplicas: %s, maxReplicas: %s}\n' "$1" "$NS" "$2" "$3"; }
widget good 1 3 | kubectl apply -f - >/dev/null || fail "valid Widget rejected"
ok "CRD: valid object accepted"
if out=$(widget bad 5 2 | kubectl apply -f - 2>&1); then fail "CEL rule did not reject the bad Widget"; fi
[[ $out == *"minReplicas must not exceed maxReplicas"* ]] || fail "unexpected rejection: $out"
ok "CRD: CEL rule rejected the bad object ($(grep -o 'spec: Invalid value.*' <<<"$out" | head -c 100))"

# ---- GC with a custom-resource owner (as the operator does: CR owns a ConfigMap)
wuid=$(kubectl -n "$NS" get widget good -o jsonpath='{.metadata.uid}')
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned-by-widget
  namespace: $NS
  ownerReferences: [{apiVersion: smoke.aep.invalid/v1, kind: Widget, name: good, uid: "$wuid", controller: true, blockOwnerDeletion: true}]
EOF
t=$(now); kubectl -n "$NS" delete widget good >/dev/null
until_gone 90 kubectl -n "$NS" get cm owned-by-widget || fail "ConfigMap owned by a custom resource not collected within 90s"
ok "garbage collector deleted a ConfigMap owned by a fresh CRD's object $(since "$t") after the owner"

# ---- namespace deletion finishes (namespace controller)
t=$(now)
kubectl delete ns "$NS" --timeout=60s >/dev/null || fail "namespace $NS did not finish deleting"
ok "namespace deletion finished in $(since "$t")"
kubectl delete crd widgets.smoke.aep.invalid >/dev/null
echo "all $PASS checks passed"
