#!/usr/bin/env bash
# End to end on a real cluster: kind + podman/docker. For machines that
# have them (this project's CI machine does not: `make e2e` runs the same
# scenario against the local control plane instead).
#
#   hack/kind-e2e.sh            create a cluster, test, delete it
#   KEEP_CLUSTER=1 hack/kind-e2e.sh   leave the cluster for inspection
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-quarry-e2e}
version=${VERSION:-0.1.0}
port=${LOCAL_PORT:-15000}
ns=apps

need() { command -v "$1" >/dev/null || { echo "kind-e2e: $1 is required" >&2; exit 2; }; }
need kind; need kubectl; need helm; need skopeo
engine=$(command -v podman || command -v docker || true)
[ -n "$engine" ] || { echo "kind-e2e: podman or docker is required" >&2; exit 2; }

work=$(mktemp -d)
forward_pid=
cleanup() {
  if [ -n "$forward_pid" ]; then kill "$forward_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  if [ -z "${KEEP_CLUSTER:-}" ]; then kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "--- cluster and images"
kind create cluster --name "$cluster" --wait 120s
for target in registry operator; do
  "$engine" build --target "$target" -t "quarry-$target:$version" -f "$root/Containerfile" "$root"
  "$engine" save "quarry-$target:$version" -o "$work/$target.tar"
  kind load image-archive "$work/$target.tar" --name "$cluster"
done

echo "--- operator (Helm) and a registry"
helm install quarry-operator "$root/charts/quarry-operator" -n quarry --create-namespace --wait \
  --set image.repository=quarry-operator,image.tag="$version",image.pullPolicy=Never \
  --set registryImage=quarry-registry
kubectl create namespace "$ns"
kubectl apply -n "$ns" -f "$root/deploy/examples/minimal.yaml"
kubectl wait -n "$ns" --for=condition=Ready qreg/registry --timeout=180s
kubectl port-forward -n "$ns" svc/registry-registry "$port:5000" >/dev/null 2>&1 &
forward_pid=$!
sleep 3

echo "--- CA and credentials from the cluster (secure by default)"
kubectl get cm -n "$ns" registry-registry-ca -o jsonpath='{.data.ca\.crt}' > "$work/ca.crt"
mkdir -p "$work/certs.d" && cp "$work/ca.crt" "$work/certs.d/ca.crt"
user=$(kubectl get secret -n "$ns" registry-registry-credentials -o jsonpath='{.data.admin-username}' | base64 -d)
pass=$(kubectl get secret -n "$ns" registry-registry-credentials -o jsonpath='{.data.admin-password}' | base64 -d)

echo "--- push and pull over HTTPS"
skopeo login --cert-dir "$work/certs.d" --authfile "$work/auth.json" -u "$user" -p "$pass" "127.0.0.1:$port"
skopeo copy --dest-cert-dir "$work/certs.d" --authfile "$work/auth.json" docker://docker.io/library/busybox:latest "docker://127.0.0.1:$port/e2e/busybox:1"
skopeo inspect --cert-dir "$work/certs.d" --authfile "$work/auth.json" "docker://127.0.0.1:$port/e2e/busybox:1" >/dev/null
(cd "$work" && helm create demo >/dev/null && helm package demo >/dev/null)
echo "$pass" | helm registry login "127.0.0.1:$port" --ca-file "$work/ca.crt" -u "$user" --password-stdin
helm push "$work/demo-0.1.0.tgz" "oci://127.0.0.1:$port/charts" --ca-file "$work/ca.crt"
helm pull "oci://127.0.0.1:$port/charts/demo" --version 0.1.0 --ca-file "$work/ca.crt" -d "$work"

echo "--- a refused artifact"
kubectl patch -n "$ns" qreg/registry --type merge -p '{"spec":{"features":{"helm":false}}}'
kubectl wait -n "$ns" --for=condition=Ready qreg/registry --timeout=180s
kill "$forward_pid"
kubectl port-forward -n "$ns" svc/registry-registry "$port:5000" >/dev/null 2>&1 &
forward_pid=$!
sleep 3
if helm push "$work/demo-0.1.0.tgz" "oci://127.0.0.1:$port/refused" --ca-file "$work/ca.crt" 2>"$work/refusal"; then
  echo "kind-e2e: a Helm chart was accepted with features.helm=false" >&2
  exit 1
fi
grep -q FEATURE_HELM_OCI_SUPPORT "$work/refusal" || { cat "$work/refusal" >&2; exit 1; }
echo "kind-e2e: passed"
