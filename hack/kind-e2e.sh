#!/usr/bin/env bash
# End to end on real pods: a kind cluster on this machine, the images built
# here, the operator installed with Helm, a registry from
# deploy/examples/minimal.yaml, real clients through a port-forward, and the
# cluster pulling an image from the registry it runs.
#
#   make kind-e2e                     tools, static binaries, then this script
#   hack/kind-e2e.sh                  the same, with the tools already built
#   KIND_NODE_IMAGE=stock hack/kind-e2e.sh
#                                     kind's own node image and CNI (a machine
#                                     with a network; kind pulls its image)
#   KEEP_CLUSTER=1 hack/kind-e2e.sh   leave the cluster for inspection
#
# By default the node image is assembled here (hack/kind-node-image.sh) and
# nothing is pulled from any registry: test images are made with crane and
# pushed into the registry under test. Tools come from hack/tools.sh
# (QUARRY_TOOL_* in the environment, as `make kind-e2e` sets them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-quarry-e2e}
version=${VERSION:-0.1.0}
port=${LOCAL_PORT:-15000}
ns=apps
op_ns=quarry
started=$SECONDS

say() { echo "kind-e2e: [$((SECONDS - started))s] $*"; }
# The reason is printed again after the state dump, so that the last lines
# of a failed run (all a CI summary may keep) say what failed.
failure=
die() { failure=$*; echo "kind-e2e: FAILED: $*" >&2; exit 1; }
trap 'failure="line $LINENO exited $?: $BASH_COMMAND"' ERR
tool() { # name: the QUARRY_TOOL_<NAME> path, else hack/tools.sh path
  local var
  var=QUARRY_TOOL_$(tr 'a-z-' 'A-Z_' <<<"$1")
  if [ -n "${!var:-}" ]; then echo "${!var}"; else "$root/hack/tools.sh" path "$1"; fi
}
kind=$(tool kind)
kubectl=$(tool kubectl)
helm=$(tool helm)
skopeo=$(tool skopeo)
crane=$(tool crane)
oras=$(tool oras)
cosign=$(tool cosign)

"$root/hack/docker-engine.sh" ensure
engine=$(command -v podman || command -v docker)
KIND_EXPERIMENTAL_PROVIDER=$(basename "$engine")
export KIND_EXPERIMENTAL_PROVIDER

work=$(mktemp -d)
export KUBECONFIG=$work/kubeconfig DOCKER_CONFIG=$work/docker HELM_CONFIG_HOME=$work/helm \
  HELM_CACHE_HOME=$work/helm-cache HELM_DATA_HOME=$work/helm-data
mkdir -p "$DOCKER_CONFIG"
forward_pid=
cleanup() {
  status=$?
  if [ "$status" != 0 ] && [ -f "$KUBECONFIG" ]; then
    echo "--- state at failure" >&2
    "$kubectl" get pods -A -o wide >&2 || true
    "$kubectl" get qreg -A -o yaml >&2 || true
    "$kubectl" get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -30 >&2 || true
    "$kubectl" logs -n "$op_ns" deploy/quarry-operator --tail=40 >&2 2>/dev/null || true
  fi
  if [ -n "$forward_pid" ]; then kill "$forward_pid" 2>/dev/null || true; fi
  if [ -z "${KEEP_CLUSTER:-}" ]; then "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  if [ "$status" != 0 ]; then echo "kind-e2e: FAILED: ${failure:-exit status $status}" >&2; fi
  exit "$status"
}
trap cleanup EXIT

# --- node image and cluster ---------------------------------------------------
if [ "${KIND_NODE_IMAGE:-local}" = stock ]; then
  node_image=
  network=""
else
  t=$SECONDS
  node_image=$("$root/hack/kind-node-image.sh")
  say "node image $node_image ready in $((SECONDS - t))s ($("$engine" image inspect -f '{{.Size}}' "$node_image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
  # kindnetd is not built here: a static bridge in the node serves one node.
  network="networking: {disableDefaultCNI: true, podSubnet: 10.244.0.0/16}"
fi
cat >"$work/cluster.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
$network
containerdConfigPatches:
- |
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  etcd: {local: {imageTag: $("$root/hack/tools.sh" version etcd)}}
- |
  kind: KubeletConfiguration
  failCgroupV1: false
EOF
[ -n "$node_image" ] || sed -i '/etcd: {local/d' "$work/cluster.yaml"
"$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
t=$SECONDS
"$kind" create cluster --name "$cluster" --config "$work/cluster.yaml" ${node_image:+--image "$node_image"} \
  --kubeconfig "$KUBECONFIG" --wait 180s
say "cluster created and Ready in $((SECONDS - t))s"
node=$cluster-control-plane

# --- images: the same static binaries, FROM scratch --------------------------
t=$SECONDS
"$root/hack/images.sh" "$version" >/dev/null
for target in registry operator; do
  # Loaded under the names a release uses, so the chart's and deploy/'s
  # defaults resolve from the node's store (IfNotPresent, nothing pulled).
  "$engine" tag "quarry-$target:$version" "ghcr.io/quarry-dev/quarry-$target:$version"
  "$engine" save "ghcr.io/quarry-dev/quarry-$target:$version" -o "$work/$target.tar"
  "$kind" load image-archive "$work/$target.tar" --name "$cluster"
done
say "images built and loaded in $((SECONDS - t))s"

# --- the operator with Helm, under the restricted PodSecurity level ------------
restricted() { # namespace
  "$kubectl" create namespace "$1"
  "$kubectl" label namespace "$1" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
}
restricted "$op_ns"
t=$SECONDS
"$helm" install quarry-operator "$root/charts/quarry-operator" -n "$op_ns" --wait --timeout 180s
say "operator pod Ready (Helm) in $((SECONDS - t))s"

restricted "$ns"
if [ -n "$node_image" ]; then
  # kind's fallback provisioner (kubernetes.io/host-path) makes root-owned
  # 0755 folders and, being hostPath, ignores the pod's fsGroup; kind's
  # stock local-path provisioner makes them 0777. Provide the claim's
  # volume the way local-path would.
  "$engine" exec "$node" sh -c 'mkdir -p /var/local-path/registry-data && chmod 0777 /var/local-path/registry-data'
  "$kubectl" apply -f - <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-registry-data}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: standard
  claimRef: {namespace: $ns, name: registry-data}
  hostPath: {path: /var/local-path/registry-data, type: Directory}
YAML
fi
t=$SECONDS
"$kubectl" apply -n "$ns" -f "$root/deploy/examples/minimal.yaml"
"$kubectl" wait -n "$ns" --for=condition=Ready qreg/registry --timeout=240s
say "registry Ready (QuarryRegistry applied -> pod Ready) in $((SECONDS - t))s"
[ "$("$kubectl" get pvc -n "$ns" registry-data -o jsonpath='{.status.phase}')" = Bound ] || die "the registry's PVC is not Bound"

forward() {
  if [ -n "$forward_pid" ]; then kill "$forward_pid" 2>/dev/null || true; wait "$forward_pid" 2>/dev/null || true; fi
  "$kubectl" port-forward -n "$ns" svc/registry-registry "$port:5000" >"$work/forward.log" 2>&1 &
  forward_pid=$!
  local i
  for i in $(seq 1 30); do
    if curl -s -o /dev/null --cacert "$work/ca.crt" "https://127.0.0.1:$port/v2/" 2>/dev/null; then return 0; fi
    sleep 1
  done
  cat "$work/forward.log" >&2
  die "port-forward to svc/registry-registry did not answer"
}

# --- clients over HTTPS, with the cluster's CA and the generated admin --------
"$kubectl" get cm -n "$ns" registry-registry-ca -o jsonpath='{.data.ca\.crt}' >"$work/ca.crt"
mkdir -p "$work/certs.d" && cp "$work/ca.crt" "$work/certs.d/ca.crt"
user=$("$kubectl" get secret -n "$ns" registry-registry-credentials -o jsonpath='{.data.admin-username}' | base64 -d)
pass=$("$kubectl" get secret -n "$ns" registry-registry-credentials -o jsonpath='{.data.admin-password}' | base64 -d)
forward
reg=127.0.0.1:$port
export SSL_CERT_FILE=$work/ca.crt # Go clients (crane, oras, cosign, helm)
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.crt" "https://$reg/v2/")" = 401 ] ||
  die "the registry answers /v2/ without credentials (it must be secure by default)"

say "a test image, made here and pushed with crane"
"$crane" auth login "$reg" -u "$user" -p "$pass"
mkdir -p "$work/layer/bin"
cp "$(tool pause)" "$work/layer/bin/pause"
tar -C "$work/layer" -cf "$work/layer.tar" bin
"$crane" append -f "$work/layer.tar" -t "$reg/e2e/pause:base"
"$crane" mutate --entrypoint /bin/pause -t "$reg/e2e/pause:1" "$reg/e2e/pause:base" >/dev/null
digest=$("$crane" digest "$reg/e2e/pause:1")

say "skopeo: login, copy, inspect"
"$skopeo" login --cert-dir "$work/certs.d" --authfile "$work/auth.json" -u "$user" -p "$pass" "$reg"
"$skopeo" copy --src-cert-dir "$work/certs.d" --dest-cert-dir "$work/certs.d" --authfile "$work/auth.json" \
  "docker://$reg/e2e/pause:1" "docker://$reg/e2e/copied:1"
copied=$("$skopeo" inspect --cert-dir "$work/certs.d" --authfile "$work/auth.json" --format '{{.Digest}}' "docker://$reg/e2e/copied:1")
[ "$copied" = "$digest" ] || die "skopeo's copy has digest $copied, the source $digest"

say "helm: push and pull a chart"
(cd "$work" && "$helm" create demo >/dev/null && "$helm" package demo >/dev/null)
echo "$pass" | "$helm" registry login "$reg" --ca-file "$work/ca.crt" -u "$user" --password-stdin
"$helm" push "$work/demo-0.1.0.tgz" "oci://$reg/charts" --ca-file "$work/ca.crt"
mkdir -p "$work/pulled" && "$helm" pull "oci://$reg/charts/demo" --version 0.1.0 --ca-file "$work/ca.crt" -d "$work/pulled"
[ -f "$work/pulled/demo-0.1.0.tgz" ] || die "helm pull brought no chart"

say "oras: an artifact and a referrer"
echo "sbom of pause:1" >"$work/sbom.json"
"$oras" login "$reg" -u "$user" -p "$pass" --ca-file "$work/ca.crt" >/dev/null
(cd "$work" && "$oras" attach --ca-file "$work/ca.crt" --artifact-type application/spdx+json \
  "$reg/e2e/pause@$digest" sbom.json >/dev/null)
"$oras" discover --ca-file "$work/ca.crt" --format json "$reg/e2e/pause@$digest" >"$work/referrers.json"
grep -q 'application/spdx+json' "$work/referrers.json" || die "oras discover does not list the SBOM referrer"

say "cosign: sign and verify"
cosign_() { HOME=$work TUF_ROOT=$work/.sigstore SIGSTORE_NO_CACHE=true COSIGN_PASSWORD='' COSIGN_YES=true "$cosign" "$@"; }
(cd "$work" && cosign_ generate-key-pair >/dev/null 2>&1) || die "cosign generate-key-pair failed"
cosign_ sign --key "$work/cosign.key" --tlog-upload=false "$reg/e2e/pause@$digest" >"$work/cosign.log" 2>&1 ||
  { cat "$work/cosign.log" >&2; die "cosign sign failed"; }
cosign_ verify --key "$work/cosign.pub" --insecure-ignore-tlog=true "$reg/e2e/pause@$digest" >"$work/cosign.log" 2>&1 ||
  { cat "$work/cosign.log" >&2; die "cosign verify failed"; }

# --- the cluster pulls from the registry it runs --------------------------------
say "a pod whose image is in the registry, pulled by the node's containerd"
svc_host=registry-registry.$ns.svc
cluster_ip=$("$kubectl" get svc -n "$ns" registry-registry -o jsonpath='{.spec.clusterIP}')
# The node resolves names with its own /etc/hosts and DNS, not the
# cluster's: name the Service there, and trust the registry's CA for it.
"$engine" exec "$node" sh -c "echo '$cluster_ip $svc_host' >>/etc/hosts"
"$engine" exec "$node" mkdir -p "/etc/containerd/certs.d/$svc_host:5000"
"$engine" cp "$work/ca.crt" "$node:/etc/containerd/certs.d/$svc_host:5000/ca.crt"
"$engine" exec -i "$node" sh -c "cat >/etc/containerd/certs.d/$svc_host:5000/hosts.toml" <<EOF
server = "https://$svc_host:5000"
[host."https://$svc_host:5000"]
  capabilities = ["pull", "resolve"]
  ca = "/etc/containerd/certs.d/$svc_host:5000/ca.crt"
EOF
"$kubectl" apply -n "$ns" -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: pulled-from-quarry}
spec:
  imagePullSecrets: [{name: registry-registry-pull}]
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: pause
    image: $svc_host:5000/e2e/pause@$digest
    imagePullPolicy: Always
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
"$kubectl" wait -n "$ns" --for=condition=Ready pod/pulled-from-quarry --timeout=120s ||
  die "the pod with an image from the registry did not start"

# --- data survives the pod ------------------------------------------------------
say "deleting the registry pod: same volume, same digests"
old_pod=$("$kubectl" get pods -n "$ns" -l app.kubernetes.io/name=quarry-registry,app.kubernetes.io/instance=registry -o jsonpath='{.items[0].metadata.name}')
"$kubectl" delete pod -n "$ns" "$old_pod" --wait=true
"$kubectl" rollout status -n "$ns" deploy/registry-registry --timeout=180s
forward
after=$("$crane" digest "$reg/e2e/pause:1")
[ "$after" = "$digest" ] || die "after the pod was replaced e2e/pause:1 is $after, was $digest"
mkdir -p "$work/pulled-again" && "$helm" pull "oci://$reg/charts/demo" --version 0.1.0 --ca-file "$work/ca.crt" -d "$work/pulled-again"

# --- the operator restarting writes nothing ----------------------------------
say "operator pod restart: nothing rewritten"
versions() {
  "$kubectl" get -n "$ns" deploy/registry-registry svc/registry-registry secret/registry-config \
    secret/registry-registry-tls secret/registry-registry-credentials cm/registry-registry-ca pvc/registry-data \
    -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}'
}
before=$(versions)
"$kubectl" delete pod -n "$op_ns" -l app.kubernetes.io/name=quarry-operator --wait=true
"$kubectl" rollout status -n "$op_ns" deploy/quarry-operator --timeout=120s
"$kubectl" wait -n "$ns" --for=condition=Ready qreg/registry --timeout=60s
sleep 10 # the new operator's first reconcile has run
now=$(versions)
[ "$before" = "$now" ] || die "the restarted operator rewrote objects: $(diff <(echo "$before") <(echo "$now") || true)"

# --- a refused artifact: the policy rolls the pod -------------------------------
say "spec.features.helm=false: new pod, Helm pushes refused"
generation=$("$kubectl" get deploy -n "$ns" registry-registry -o jsonpath='{.metadata.generation}')
"$kubectl" patch -n "$ns" qreg/registry --type merge -p '{"spec":{"features":{"helm":false}}}'
for _ in $(seq 1 60); do
  [ "$("$kubectl" get deploy -n "$ns" registry-registry -o jsonpath='{.metadata.generation}')" != "$generation" ] && break
  sleep 1
done
"$kubectl" rollout status -n "$ns" deploy/registry-registry --timeout=180s
"$kubectl" wait -n "$ns" --for=condition=Ready qreg/registry --timeout=120s
forward
if "$helm" push "$work/demo-0.1.0.tgz" "oci://$reg/refused" --ca-file "$work/ca.crt" 2>"$work/refusal"; then
  die "a Helm chart was accepted with features.helm=false"
fi
grep -q FEATURE_HELM_OCI_SUPPORT "$work/refusal" || { cat "$work/refusal" >&2; die "the refusal does not name FEATURE_HELM_OCI_SUPPORT"; }

# --- garbage collection: a deleted image's blobs go; the operator tells ---------
say "spec.garbageCollection every 5s: a deleted image's layer goes, an Event and a condition tell"
say "(same rollout: spec.mirroring of e2e/pause from the registry's own Service, over HTTPS with its CA ConfigMap)"
generation=$("$kubectl" get deploy -n "$ns" registry-registry -o jsonpath='{.metadata.generation}')
"$kubectl" create secret generic -n "$ns" mirror-login --from-literal=username="$user" --from-literal=password="$pass"
"$kubectl" patch -n "$ns" qreg/registry --type merge -p '{"spec":{"garbageCollection":{"interval":"5s","gracePeriod":"5s"},
  "mirroring":{"interval":"10s","repositories":[{"repository":"mirrored/pause","upstream":"'"$svc_host"':5000/e2e/pause",
  "credentialsSecret":"mirror-login","caConfigMap":"registry-registry-ca"}]}}}'
for _ in $(seq 1 60); do
  [ "$("$kubectl" get deploy -n "$ns" registry-registry -o jsonpath='{.metadata.generation}')" != "$generation" ] && break
  sleep 1
done
"$kubectl" rollout status -n "$ns" deploy/registry-registry --timeout=180s
"$kubectl" wait -n "$ns" --for=condition=Ready qreg/registry --timeout=120s
forward
mkdir -p "$work/garbage"
head -c 65536 /dev/urandom >"$work/garbage/noise"
tar -C "$work/garbage" -cf "$work/garbage.tar" noise
"$crane" append -f "$work/garbage.tar" -t "$reg/e2e/garbage:1" >/dev/null
garbage=$("$crane" digest "$reg/e2e/garbage:1")
layer=$("$crane" manifest "$reg/e2e/garbage:1" | grep -o 'sha256:[0-9a-f]\{64\}' | tail -1)
"$crane" blob "$reg/e2e/garbage@$layer" >/dev/null || die "the new layer $layer does not pull"
"$crane" delete "$reg/e2e/garbage@$garbage"
gone=
for _ in $(seq 1 90); do
  if ! "$crane" blob "$reg/e2e/garbage@$layer" >/dev/null 2>&1; then gone=yes; break; fi
  sleep 1
done
[ -n "$gone" ] || die "the deleted image's layer $layer still pulls after 90 s of sweeps every 5 s"
[ "$("$crane" digest "$reg/e2e/pause:1")" = "$digest" ] || die "garbage collection touched e2e/pause:1"
"$crane" blob "$reg/e2e/pause@$("$crane" manifest "$reg/e2e/pause:1" | grep -o 'sha256:[0-9a-f]\{64\}' | tail -1)" >/dev/null ||
  die "a layer of the tagged e2e/pause:1 went"
# wait_event REASON PATTERN: an Event of that reason whose message matches
# (grep -E), within two minutes; else the namespace's Events and the status.
wait_event() {
  local _
  for _ in $(seq 1 60); do
    if "$kubectl" get events -n "$ns" --field-selector "reason=$1" -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' |
      grep -qE "$2"; then return 0; fi
    sleep 2
  done
  "$kubectl" get events -n "$ns" >&2
  "$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status}' >&2
  die "no $1 Event matching '$2'"
}
wait_event GarbageCollected 'deleted .* [1-9][0-9]* blobs'
[ "$("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.conditions[?(@.type=="GarbageCollection")].status}')" = True ] ||
  die "condition GarbageCollection is not True: $("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.conditions}')"
say "GC: $("$kubectl" get events -n "$ns" --field-selector reason=GarbageCollected -o jsonpath='{.items[-1:].message}')"

# --- mirroring: the pod copies an image with its signature; the operator tells --
say "spec.mirroring: mirrored/pause follows e2e/pause, signature included; an Event, status.mirrors and a condition tell"
wait_event MirrorSynced "mirrored/pause from $svc_host:5000/e2e/pause: 2 of 2 selected tags copied"
[ "$("$crane" digest "$reg/mirrored/pause:1")" = "$digest" ] || die "mirrored/pause:1 is not e2e/pause:1 ($digest)"
cosign_ verify --key "$work/cosign.pub" --insecure-ignore-tlog=true "$reg/mirrored/pause@$digest" >"$work/cosign.log" 2>&1 ||
  { cat "$work/cosign.log" >&2; die "cosign verify of the mirrored image failed"; }
for _ in $(seq 1 30); do
  [ "$("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.mirrors[0].lastResult}')" = Succeeded ] && break
  sleep 2
done
[ "$("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.mirrors[0].lastResult}')" = Succeeded ] ||
  die "status.mirrors does not tell a succeeded sync: $("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.mirrors}')"
[ "$("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.conditions[?(@.type=="Mirroring")].status}')" = True ] ||
  die "condition Mirroring is not True: $("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.conditions}')"
say "mirror: $("$kubectl" get qreg -n "$ns" registry -o jsonpath='{.status.mirrors[0]}')"

# --- chart upgrade and uninstall; then kubectl apply -k deploy/ -----------------
say "helm upgrade, then uninstall"
"$helm" upgrade quarry-operator "$root/charts/quarry-operator" -n "$op_ns" --set logLevel=debug --wait --timeout 120s
[ "$("$kubectl" get deploy -n "$op_ns" quarry-operator -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="RUST_LOG")].value}')" = debug ] ||
  die "helm upgrade did not reach the operator's Deployment"
"$helm" uninstall quarry-operator -n "$op_ns" --wait --timeout 120s
"$kubectl" get qreg -n "$ns" registry >/dev/null || die "uninstalling the chart removed the QuarryRegistry (the CRD must stay)"

say "kubectl apply -k deploy/"
"$kubectl" apply -k "$root/deploy" >/dev/null
"$kubectl" label namespace quarry-system pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
"$kubectl" rollout status -n quarry-system deploy/quarry-operator --timeout=120s
"$kubectl" wait -n "$ns" --for=condition=Ready qreg/registry --timeout=120s
"$kubectl" get pods -n quarry-system -o wide

# --- S3 on real pods: MinIO in the cluster, three registry pods on one bucket ---
say "S3: MinIO as a pod (image made here), deploy/examples/s3-replicas.yaml with 3 replicas"
minio_user=quarry-e2e
minio_password=quarry-e2e-$RANDOM$RANDOM
mkdir -p "$work/minio-image/tmp"
chmod 1777 "$work/minio-image/tmp"
cp "$(tool minio)" "$work/minio-image/minio"
tar -C "$work/minio-image" --numeric-owner -cf - . |
  "$engine" import --change 'USER 65532:65532' --change 'ENTRYPOINT ["/minio"]' - quarry-e2e/minio:1 >/dev/null
"$engine" save quarry-e2e/minio:1 -o "$work/minio.tar"
"$kind" load image-archive "$work/minio.tar" --name "$cluster"
restricted storage
"$kubectl" apply -n storage -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio}
spec:
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: minio
        image: quarry-e2e/minio:1
        imagePullPolicy: Never
        args: [server, /data, --address, ":9000", --quiet]
        env:
        - {name: MINIO_ROOT_USER, value: $minio_user}
        - {name: MINIO_ROOT_PASSWORD, value: $minio_password}
        - {name: MINIO_BROWSER, value: "off"}
        - {name: MINIO_UPDATE, value: "off"}
        - {name: HOME, value: /tmp}
        readinessProbe: {httpGet: {path: /minio/health/ready, port: 9000}}
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: data, mountPath: /data}, {name: tmp, mountPath: /tmp}]
      volumes: [{name: data, emptyDir: {}}, {name: tmp, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: minio}
spec:
  selector: {app: minio}
  ports: [{port: 9000, targetPort: 9000}]
YAML
"$kubectl" rollout status -n storage deploy/minio --timeout=120s
minio_ip=$("$kubectl" get svc -n storage minio -o jsonpath='{.spec.clusterIP}')
# The bucket, with a signed S3 request from the node (it reaches ClusterIPs).
code=
for _ in $(seq 1 30); do
  code=$("$engine" exec "$node" curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 aws:amz:us-east-1:s3 \
    --user "$minio_user:$minio_password" "http://$minio_ip:9000/quarry" || true)
  [ "$code" = 200 ] && break
  sleep 1
done
[ "$code" = 200 ] || die "creating the bucket in MinIO answered $code"

t=$SECONDS
sed -e "s/AWS_ACCESS_KEY_ID: registry/AWS_ACCESS_KEY_ID: $minio_user/" \
  -e "s/AWS_SECRET_ACCESS_KEY: change-me/AWS_SECRET_ACCESS_KEY: $minio_password/" \
  "$root/deploy/examples/s3-replicas.yaml" | "$kubectl" apply -n "$ns" -f -
"$kubectl" wait -n "$ns" --for=condition=Ready qreg/shared --timeout=240s
"$kubectl" rollout status -n "$ns" deploy/shared-registry --timeout=180s
ready=$("$kubectl" get deploy -n "$ns" shared-registry -o jsonpath='{.status.readyReplicas}')
[ "$ready" = 3 ] || die "shared-registry has $ready ready pods, not 3"
say "three registry pods on the bucket Ready in $((SECONDS - t))s"

# Pushes through the Service from the node (kube-proxy spreads connections
# over the pods), with crane and the registry's CA copied in.
shared_host=shared-registry.$ns.svc
shared_ip=$("$kubectl" get svc -n "$ns" shared-registry -o jsonpath='{.spec.clusterIP}')
"$engine" exec "$node" sh -c "echo '$shared_ip $shared_host' >>/etc/hosts"
"$kubectl" get cm -n "$ns" shared-registry-ca -o jsonpath='{.data.ca\.crt}' >"$work/shared-ca.crt"
s3_user=$("$kubectl" get secret -n "$ns" shared-registry-credentials -o jsonpath='{.data.admin-username}' | base64 -d)
s3_pass=$("$kubectl" get secret -n "$ns" shared-registry-credentials -o jsonpath='{.data.admin-password}' | base64 -d)
"$engine" exec "$node" mkdir -p /quarry-e2e/layers
"$engine" cp "$crane" "$node:/quarry-e2e/crane"
"$engine" cp "$work/shared-ca.crt" "$node:/quarry-e2e/ca.crt"
in_node() { "$engine" exec -e SSL_CERT_FILE=/quarry-e2e/ca.crt -e DOCKER_CONFIG=/quarry-e2e/docker "$node" "$@"; }
in_node /quarry-e2e/crane auth login "$shared_host:5000" -u "$s3_user" -p "$s3_pass" >/dev/null
pushes=24
for i in $(seq 1 "$pushes"); do
  mkdir -p "$work/s3-layer-$i"
  head -c $((256 * 1024 + i)) /dev/urandom >"$work/s3-layer-$i/data"
  tar -C "$work/s3-layer-$i" -cf "$work/s3-layer-$i.tar" data
  "$engine" cp "$work/s3-layer-$i.tar" "$node:/quarry-e2e/layers/$i.tar"
done
# push_range FROM TO [KILL_AT]: push images FROM..TO, eight at a time; with
# KILL_AT, force-delete one registry pod once that push has started. A
# push crane reports done leaves a .status file; its output has the digest.
push_range() {
  local from=$1 to=$2 kill_at=${3:-} i victim pids=()
  for i in $(seq "$from" "$to"); do
    (in_node /quarry-e2e/crane append -f "/quarry-e2e/layers/$i.tar" -t "$shared_host:5000/s3/img-$i:1" \
      >"$work/push-$i.out" 2>"$work/push-$i.err" && echo ok >"$work/push-$i.status") &
    pids+=($!)
    if [ "$i" = "$kill_at" ]; then
      victim=$("$kubectl" get pods -n "$ns" -l app.kubernetes.io/instance=shared -o jsonpath='{.items[0].metadata.name}')
      "$kubectl" delete pod -n "$ns" "$victim" --grace-period=0 --force >/dev/null 2>&1
      say "killed $victim during the pushes"
    fi
    # Not a bare `wait`: that would also wait for the port-forward.
    if [ $((i % 8)) = 0 ]; then wait "${pids[@]}" || true; pids=(); fi
  done
  if [ ${#pids[@]} -gt 0 ]; then wait "${pids[@]}" || true; fi
}
# pods_without_pushes IP...: those of the given pods that received no blob bytes.
pods_without_pushes() {
  local ip received
  for ip in "$@"; do
    received=$("$engine" exec "$node" curl -sk "https://$ip:5000/metrics" | awk '/^quarry_blob_bytes_received_total/ {print $2}')
    if [ "${received:-0}" = 0 ]; then echo "$ip"; fi
  done
}
pod_ips=$("$kubectl" get pods -n "$ns" -l app.kubernetes.io/instance=shared -o jsonpath='{range .items[*]}{.status.podIP}{" "}{end}')
read -ra pod_ips <<<"$pod_ips"
[ "${#pod_ips[@]}" = 3 ] || die "expected 3 shared registry pods, found ${#pod_ips[@]}: ${pod_ips[*]}"
push_range 1 12
# kube-proxy picks a pod per connection at random: 12 pushes miss one of
# three pods about 2 % of the time, so up to 12 more are pushed (same
# layers, other names) before concluding that the Service does not spread.
extra=0
idle=$(pods_without_pushes "${pod_ips[@]}")
while [ -n "$idle" ] && [ "$extra" -lt 12 ]; do
  extra=$((extra + 1))
  in_node /quarry-e2e/crane append -f "/quarry-e2e/layers/$extra.tar" -t "$shared_host:5000/s3/spread-$extra:1" >/dev/null ||
    die "push s3/spread-$extra:1 failed"
  idle=$(pods_without_pushes "${pod_ips[@]}")
done
[ -z "$idle" ] || die "registry pod(s) ${idle//$'\n'/ } received no blob bytes after $((12 + extra)) pushes: the Service did not spread them"
say "$((12 + extra)) pushes through the Service reached all three pods"
push_range 13 "$pushes" 15
"$kubectl" rollout status -n "$ns" deploy/shared-registry --timeout=180s
failed=0
for i in $(seq 1 "$pushes"); do
  if [ ! -f "$work/push-$i.status" ]; then
    failed=$((failed + 1))
    in_node /quarry-e2e/crane append -f "/quarry-e2e/layers/$i.tar" -t "$shared_host:5000/s3/img-$i:1" >"$work/push-$i.out" ||
      die "push $i failed again after the pod was replaced"
  fi
done
say "$pushes pushes, $failed interrupted by the kill and pushed again"
for i in $(seq 1 "$pushes"); do
  want=$(sed -n 's/.*@\(sha256:[0-9a-f]*\).*/\1/p' "$work/push-$i.out" | tail -1)
  [ -n "$want" ] || die "crane printed no digest for push $i: $(cat "$work/push-$i.out")"
  got=$(in_node /quarry-e2e/crane digest "$shared_host:5000/s3/img-$i:1") || die "s3/img-$i:1 is gone"
  [ "$got" = "$want" ] || die "s3/img-$i:1 is $got, was pushed as $want"
  layer=$(in_node /quarry-e2e/crane manifest "$shared_host:5000/s3/img-$i:1" | jq -r '.layers[0].digest')
  sum=$(in_node /quarry-e2e/crane blob "$shared_host:5000/s3/img-$i@$layer" | sha256sum | cut -d' ' -f1)
  [ "sha256:$sum" = "$layer" ] || die "layer $layer of s3/img-$i:1 reads back as sha256:$sum"
done
say "every acknowledged push is readable through the Service after the kill"

say "memory of the running cluster: $("$engine" stats --no-stream --format '{{.MemUsage}}' "$node")"
say "passed"
