#!/usr/bin/env bash
# End-to-end test on a real Kubernetes cluster made with kind: installs Multus, cert-manager
# and this project's image and manifests, then runs upstream's ping-pong scenario across two
# nodes and checks isolation from a second network.
#
# Needs: a Docker engine, kind and kubectl on PATH (or set KIND=..., KUBECTL=...), the
# openvswitch kernel module loadable on the Docker host, network access to pull images.
# It cannot run on the project's CI machines (no Docker engine there).
#
#   tests/k8s-e2e/run.sh            # build image, create cluster, test, delete cluster
#   KEEP_CLUSTER=1 tests/k8s-e2e/run.sh   # leave the cluster for inspection
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
KIND=${KIND:-kind}
KUBECTL=${KUBECTL:-kubectl}
CLUSTER=l2sm-e2e
IMAGE=l2sm:e2e
MULTUS_URL=${MULTUS_URL:-https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/v4.1.4/deployments/multus-daemonset-thick.yml}
CERT_MANAGER_URL=${CERT_MANAGER_URL:-https://github.com/cert-manager/cert-manager/releases/download/v1.16.1/cert-manager.yaml}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.6.0}
# CNI_PLUGINS_URL overrides; by default the release for each node's architecture.
CNI_PLUGINS_URL=${CNI_PLUGINS_URL:-}

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
k() { "$KUBECTL" --context "kind-$CLUSTER" "$@"; }
# retry TRIES DELAY CMD...: runs CMD until it succeeds, at most TRIES times.
retry() {
    local tries=$1 delay=$2 i
    shift 2
    for ((i = 1; i <= tries; i++)); do
        "$@" && return 0
        [ "$i" = "$tries" ] || sleep "$delay"
    done
    return 1
}
# The Go architecture name of a `uname -m`.
go_arch() {
    case "$1" in
        x86_64 | amd64) echo amd64 ;;
        aarch64 | arm64) echo arm64 ;;
        *) fail "unsupported architecture $1 (amd64 and arm64 are)" ;;
    esac
}
# Whether cert-manager's cainjector has put a CA into its own webhook's configuration: until
# then the API server cannot call the webhook and creating an Issuer fails.
ca_injected() {
    [ -n "$(k get validatingwebhookconfiguration cert-manager-webhook \
        -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null)" ]
}

for tool in docker "$KIND" "$KUBECTL" openssl; do
    command -v "$tool" >/dev/null || fail "$tool not found (this script needs docker, kind, kubectl and openssl)"
done
docker info >/dev/null 2>&1 || fail "no Docker engine reachable"

cleanup() {
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "--- diagnostics"
        k get pods -A -o wide || true
        k -n l2sm-system logs deploy/l2sm-operator --tail=100 || true
        k -n l2sm-system logs deploy/l2sm-controller --tail=100 || true
        k -n l2sm-system logs -l app=l2sm-agent --all-containers --tail=100 || true
    fi
    if [ -z "${KEEP_CLUSTER:-}" ]; then
        "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
    exit $rc
}
trap cleanup EXIT

step "image"
docker build -t "$IMAGE" "$root"

step "cluster"
"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
"$KIND" create cluster --config "$here/kind.yaml" --wait 120s
"$KIND" load docker-image "$IMAGE" --name "$CLUSTER"
# Multus's thick plugin delegates to the reference plugins for the cluster network.
for node in $("$KIND" get nodes --name "$CLUSTER"); do
    url=$CNI_PLUGINS_URL
    if [ -z "$url" ]; then
        arch=$(go_arch "$(docker exec "$node" uname -m)")
        url=https://github.com/containernetworking/plugins/releases/download/$CNI_PLUGINS_VERSION/cni-plugins-linux-$arch-$CNI_PLUGINS_VERSION.tgz
    fi
    docker exec "$node" sh -c "curl -fsSL '$url' | tar -xz -C /opt/cni/bin"
done

step "prerequisites: Multus, cert-manager"
k apply -f "$MULTUS_URL"
k apply -f "$CERT_MANAGER_URL"
k -n kube-system rollout status ds/kube-multus-ds --timeout=300s
for d in cert-manager cert-manager-cainjector cert-manager-webhook; do
    k -n cert-manager rollout status "deploy/$d" --timeout=300s
done
# A webhook that is rolled out is not yet usable: wait for the CA injection (bounded).
retry 60 5 ca_injected || fail "cert-manager's cainjector did not fill the webhook's caBundle in 5 min"

step "L2S-M"
k create namespace l2sm-system --dry-run=client -o yaml | k apply -f -
k -n l2sm-system create secret generic l2sm-controller-credentials \
    --from-literal=username=l2sm --from-literal=password="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    --dry-run=client -o yaml | k apply -f -
manifests=$(mktemp)
k kustomize "$root/deploy" | sed "s#l2sm:latest#$IMAGE#g" >"$manifests"
# The Issuer and Certificate go through cert-manager's webhook, which may still refuse
# connections for a moment after its CA is injected: retry, bounded.
retry 12 5 k apply -f "$manifests" || fail "applying deploy/ kept failing (see above)"
rm -f "$manifests"
k -n l2sm-system rollout status deploy/l2sm-controller --timeout=300s
k -n l2sm-system rollout status deploy/l2sm-operator --timeout=300s
k -n l2sm-system rollout status ds/l2sm-switch --timeout=300s

step "overlay and ping-pong"
k apply -f "$root/tests/k8s-e2e/overlay.yaml"
# The agents run in the operator's namespace, named after the Overlay's namespace and name.
agent_sel="app=l2sm-agent,l2sm.l2sm.k8s.local/overlay=overlay-sample,l2sm.l2sm.k8s.local/overlay-namespace=default"
agent_ds=""
for _ in $(seq 1 60); do
    agent_ds=$(k -n l2sm-system get ds -l "$agent_sel" -o name 2>/dev/null || true)
    [ -n "$agent_ds" ] && break
    sleep 2
done
[ -n "$agent_ds" ] || fail "no agent DaemonSet for overlay-sample in l2sm-system"
k -n l2sm-system rollout status "$agent_ds" --timeout=300s

step "switch certificates: issued per node, automatically"
# Each agent pod's init container asked for its node's certificate; the operator signed it
# (no manual step). One issued request per node, each for its own node.
nodes=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
issued=$(k get csr -o jsonpath='{range .items[?(@.spec.signerName=="l2sm.l2sm.k8s.local/switch")]}{.metadata.name}{" "}{.status.certificate}{"\n"}{end}' \
    | awk 'NF == 2 {print $1}')
for n in $nodes; do
    printf '%s\n' "$issued" | grep -q "^l2sm-switch-$n-" || fail "no issued switch certificate request for node $n"
    docker exec "$n" test -s /var/lib/l2sm/switch-tls/tls.crt \
        || fail "node $n has no /var/lib/l2sm/switch-tls/tls.crt"
    [ "$(docker exec "$n" stat -c %a /var/lib/l2sm/switch-tls/tls.key)" = 600 ] \
        || fail "node $n: tls.key is not mode 0600"
done
# A request from someone else than an agent pod is denied, never signed.
key=$(mktemp); req=$(mktemp)
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$key" \
    -subj "/CN=$CLUSTER-worker" -addext "subjectAltName=URI:urn:l2sm:node:$CLUSTER-worker" -out "$req" 2>/dev/null
cat <<YAML | k apply -f -
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: { name: e2e-impostor }
spec:
  request: $(base64 -w0 <"$req")
  signerName: l2sm.l2sm.k8s.local/switch
  usages: [client auth, digital signature]
YAML
rm -f "$key" "$req"
k wait --for=condition=Denied csr/e2e-impostor --timeout=60s || fail "the impostor's request was not denied"
[ -z "$(k get csr e2e-impostor -o jsonpath='{.status.certificate}')" ] || fail "the impostor's request was signed"
k delete csr e2e-impostor
k apply -f "$root/tests/k8s-e2e/ping-pong.yaml"
k wait --for=condition=Ready pod/ping pod/pong --timeout=300s
k get pod ping -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/networks}' | grep -q ping-network \
    || fail "webhook did not write the Multus annotation"
[ "$(k get pod ping -o jsonpath='{.spec.nodeName}')" != "$(k get pod pong -o jsonpath='{.spec.nodeName}')" ] \
    || fail "ping and pong landed on the same node"

step "traffic"
ok=
for _ in $(seq 1 30); do
    if k exec ping -- ping -c 1 -W 1 10.0.0.2 >/dev/null 2>&1; then ok=1; break; fi
    sleep 2
done
[ -n "$ok" ] || fail "ping -> pong over ping-network failed"
k exec ping -- ping -c 5 -i 0.2 10.0.0.2
k wait --for=jsonpath='{.status.internalConnectivity}'=Available l2network/ping-network --timeout=60s

step "isolation: a pod on another network"
cat <<'YAML' | k apply -f -
apiVersion: l2sm.l2sm.k8s.local/v1
kind: L2Network
metadata: { name: other-network, namespace: default }
spec: { type: vnet }
---
apiVersion: v1
kind: Pod
metadata:
  name: intruder
  namespace: default
  labels: { l2sm: "true" }
  annotations: { l2sm/networks: '[{"name": "other-network", "ips": ["10.0.0.3/24"]}]' }
spec:
  containers:
    - { name: c, image: alpine:3.20, command: [sleep, infinity] }
YAML
k wait --for=condition=Ready pod/intruder --timeout=300s
if k exec intruder -- ping -c 3 -W 1 10.0.0.2 >/dev/null 2>&1; then
    fail "a pod on other-network reached ping-network"
fi

step "unknown network is refused"
if out=$(cat <<'YAML' | k apply -f - 2>&1
apiVersion: v1
kind: Pod
metadata:
  name: lost
  namespace: default
  labels: { l2sm: "true" }
  annotations: { l2sm/networks: no-such-network }
spec:
  containers:
    - { name: c, image: alpine:3.20, command: [sleep, infinity] }
YAML
); then
    fail "a pod naming an unknown network was admitted: $out"
fi
echo "$out" | grep -q no-such-network || fail "rejection does not name the network: $out"

step "cleanup of pods and networks"
k delete pod ping pong intruder --wait=true --timeout=120s
k delete l2network ping-network other-network --wait=true --timeout=120s

step "uninstall"
KUBECTL=$KUBECTL "$root/scripts/uninstall.sh" --context "kind-$CLUSTER"
if k get crd -o name | grep -q 'l2sm\.l2sm\.k8s\.local'; then
    fail "CRDs left after scripts/uninstall.sh"
fi
if k get namespace l2sm-system >/dev/null 2>&1; then
    fail "namespace l2sm-system left after scripts/uninstall.sh"
fi
# Idempotent: a second run finds nothing and succeeds.
KUBECTL=$KUBECTL "$root/scripts/uninstall.sh" --context "kind-$CLUSTER"

echo
echo "k8s e2e: PASS"
