#!/usr/bin/env bash
# A kind node image assembled on this machine, with nothing pulled from an
# image registry: what `kind build node-image` does, but from the binaries
# hack/tools.sh built (the same Kubernetes build as the local control plane)
# and a Debian base made with debootstrap from the machine's own apt mirror.
#
#   hack/kind-node-image.sh          print the image name, building it if missing
#
# The image is cached in the container engine under a tag derived from this
# script and the pinned versions, so a change to either builds a new one.
# Needs: hack/tools.sh install k8s kind, and a running engine
# (hack/docker-engine.sh ensure).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=$root/hack/tools.sh
engine=${CONTAINER_ENGINE:-docker}
suite=${QUARRY_NODE_SUITE:-bookworm}

die() { echo "kind-node-image: $*" >&2; exit 1; }
path() { "$tools" path "$1"; }

version() { "$tools" version "$1"; }
kube_version=$(version kubeadm)
etcd_version=$(version etcd)
coredns_version=$(version coredns)
pause_version=$(version pause)
node_tools=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd
  containerd crictl cni-plugins coredns pause kind)
# The key covers what the image is made of: this script and the cache path
# (name, version and build flavour) of every tool it copies in.
key=$({
  cat "$0"
  for t in "${node_tools[@]}"; do "$tools" path "$t" 2>/dev/null || echo "$t missing"; done
} | sha256sum | cut -c1-12)
node_image=quarry-kind-node:$kube_version-$key
base_image=quarry-kind-base:$key

if "$engine" image inspect "$node_image" >/dev/null 2>&1; then
  echo "$node_image"
  exit 0
fi

for t in "${node_tools[@]}"; do
  path "$t" >/dev/null || die "$t is missing: run hack/tools.sh install k8s kind"
done
kind_dir=$(go mod download -json "sigs.k8s.io/kind@$(version kind)" |
  sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[ -d "$kind_dir/images/base/files" ] || die "kind's base image files are not in the Go module cache"

work=$(mktemp -d)
build_container=
cleanup() {
  if [ -n "$build_container" ]; then "$engine" rm -f "$build_container" >/dev/null 2>&1 || true; fi
  # A debootstrap that failed midway can leave /proc and /sys mounted in
  # the root it was making: unmount before deleting.
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$work"
}
trap cleanup EXIT
started=$SECONDS
log() { echo "kind-node-image: [$((SECONDS - started))s] $*" >&2; }

# The apt mirror this machine already uses (deb822 or one-line sources).
mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list*"
  echo "$uri"
}

# --- the base: Debian + kind's files + containerd, crictl, CNI plugins --------
build_base() {
  local rootfs=$work/rootfs packages
  packages=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod
  packages=$packages,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,runc,socat,ebtables
  log "debootstrap $suite (minbase) from $(mirror)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

  local files=$kind_dir/images/base/files
  install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
  mkdir -p "$rootfs/kind/bin" "$rootfs/etc/containerd" "$rootfs/etc/systemd/system/kubelet.service.d" "$rootfs/LICENSES"
  install -m 0644 "$files"/kind/README.txt "$rootfs/kind/"
  install -m 0755 "$files"/kind/bin/* "$rootfs/kind/bin/"
  install -m 0644 "$files"/etc/crictl.yaml "$rootfs/etc/"
  install -m 0644 "$files"/etc/default/* "$rootfs/etc/default/"
  install -m 0644 "$files"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
  install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$rootfs/etc/systemd/system/"
  install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
  # containerd: kind's config, with the sandbox image kubeadm expects and
  # restrict_oom_score_adj (a negative oom_score_adj needs CAP_SYS_RESOURCE,
  # which this machine withholds). No fuse-overlayfs (rootless only).
  sed -e "s|sandbox_image = .*|sandbox_image = \"registry.k8s.io/pause:$pause_version\"|" \
    -e 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' \
    "$files/etc/containerd/config.toml" >"$rootfs/etc/containerd/config.toml"
  grep -q "pause:$pause_version" "$rootfs/etc/containerd/config.toml" || die "sandbox_image not set in containerd's config"
  grep -q 'restrict_oom_score_adj = true' "$rootfs/etc/containerd/config.toml" || die "restrict_oom_score_adj not set"
  rm -f "$rootfs/etc/systemd/system/containerd-fuse-overlayfs.service"

  local cd_dir
  cd_dir=$(dirname "$(path containerd)")
  install -m 0755 "$cd_dir/containerd" "$cd_dir/ctr" "$cd_dir/containerd-shim-runc-v2" "$(path crictl)" "$rootfs/usr/local/bin/"
  mkdir -p "$rootfs/opt/cni/bin"
  local cni_dir
  cni_dir=$(dirname "$(path cni-plugins)")
  install -m 0755 "$cni_dir"/bridge "$cni_dir"/loopback "$cni_dir"/ptp "$cni_dir"/host-local "$cni_dir"/portmap "$rootfs/opt/cni/bin/"
  "$cd_dir/ctr" oci spec |
    jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
    jq 'del(.process.rlimits)' >"$rootfs/etc/containerd/cri-base.json"

  # One node, no kindnetd (not on the module proxy): a static bridge network.
  mkdir -p "$rootfs/etc/cni/net.d"
  cat >"$rootfs/etc/cni/net.d/10-quarry-bridge.conflist" <<'JSON'
{"cniVersion": "1.0.0", "name": "kind-local", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON

  # The systemd clean-up kind's base Dockerfile does.
  find "$rootfs/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
    "$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
    "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$rootfs/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$rootfs/sbin/init"
  chroot "$rootfs" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1 ||
    die "systemctl enable in the node's root failed"
  chroot "$rootfs" systemctl mask systemd-binfmt.service >/dev/null 2>&1 || true
  mkdir -p "$rootfs/etc/kubernetes/manifests"
  # What apt leaves behind is not needed in a node.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/var/log/*

  log "importing the base"
  tar -C "$rootfs" --numeric-owner -cf - . | "$engine" import - "$base_image-rootfs" >/dev/null
  # `import` cannot set STOPSIGNAL; a one-line build on top can.
  mkdir -p "$work/base-build"
  printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n' \
    "$base_image-rootfs" >"$work/base-build/Containerfile"
  DOCKER_BUILDKIT=0 "$engine" build -q -t "$base_image" -f "$work/base-build/Containerfile" "$work/base-build" >/dev/null
}

# --- the images kubeadm starts, each FROM scratch + its static binary --------
# (kube-proxy needs iptables and conntrack: it gets the Debian base.)
build_component_images() {
  local list img name binary
  list=$("$(path kubeadm)" config images list --kubernetes-version "$kube_version" 2>/dev/null) ||
    die "kubeadm config images list failed"
  images=()
  for img in $list; do
    name=${img##*/}
    name=${name%%:*}
    case "$name" in
      kube-apiserver | kube-controller-manager | kube-scheduler) binary=$(path "$name") ;;
      etcd) binary=$(path etcd) img=registry.k8s.io/etcd:$etcd_version ;;
      coredns) binary=$(path coredns) img=registry.k8s.io/coredns/coredns:$coredns_version ;;
      pause) binary=$(path pause) img=registry.k8s.io/pause:$pause_version ;;
      kube-proxy) continue ;;
      *) die "kubeadm wants an image this script does not make: $img" ;;
    esac
    scratch_image "$img" "$binary" "$name"
    images+=("$img")
  done
  local proxy=registry.k8s.io/kube-proxy:$kube_version
  mkdir -p "$work/kube-proxy"
  cp "$(path kube-proxy)" "$work/kube-proxy/kube-proxy"
  printf 'FROM %s-rootfs\nCOPY kube-proxy /usr/local/bin/kube-proxy\n' "$base_image" >"$work/kube-proxy/Containerfile"
  DOCKER_BUILDKIT=0 "$engine" build -q -t "$proxy" -f "$work/kube-proxy/Containerfile" "$work/kube-proxy" >/dev/null
  images+=("$proxy")
}

scratch_image() { # image binary name
  local dir=$work/img-$3
  mkdir -p "$dir/usr/local/bin" "$dir/tmp"
  chmod 1777 "$dir/tmp"
  cp "$2" "$dir/usr/local/bin/$3"
  local entry="/usr/local/bin/$3"
  # CoreDNS's manifest gives only args: the image's entrypoint is the program.
  [ "$3" = coredns ] && ln -s usr/local/bin/coredns "$dir/coredns" && entry=/coredns
  tar -C "$dir" --numeric-owner -cf - . |
    "$engine" import --change "ENTRYPOINT [\"$entry\"]" --change 'ENV PATH=/usr/local/bin' - "$1" >/dev/null
}

if ! "$engine" image inspect "$base_image" >/dev/null 2>&1; then build_base; fi
log "component images"
build_component_images

# --- the node: Kubernetes binaries and the images inside containerd ----------
log "assembling $node_image"
build_container=$("$engine" run -d --privileged --entrypoint sleep "$base_image" infinity)
for b in kubeadm kubelet kubectl; do
  "$engine" cp "$(path "$b")" "$build_container:/usr/bin/$b"
done
"$engine" exec "$build_container" sh -c "echo $kube_version >/kind/version"
"$engine" exec -d "$build_container" containerd
for _ in $(seq 1 30); do
  if "$engine" exec "$build_container" ctr version >/dev/null 2>&1; then break; fi
  sleep 1
done
# Import, then check that each image is there; on a machine under load a
# first import has been seen to leave one out (with exit status 0), so the
# missing ones are imported again before giving up.
missing=("${images[@]}")
for attempt in 1 2 3; do
  "$engine" save "${missing[@]}" |
    "$engine" exec -i "$build_container" ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned \
      --all-platforms --no-unpack --digests - >"$work/import.log" 2>&1 || true
  present=$("$engine" exec "$build_container" ctr -n k8s.io images ls -q)
  still=()
  for img in "${missing[@]}"; do
    grep -qx "$img" <<<"$present" || still+=("$img")
  done
  [ "${#still[@]}" -eq 0 ] && break
  log "attempt $attempt: not in the node's containerd yet: ${still[*]}"
  missing=("${still[@]}")
  sleep 2
done
if [ "${#still[@]}" -ne 0 ]; then
  tail -20 "$work/import.log" >&2
  die "${still[*]} did not arrive in the node's containerd (ctr import output above)"
fi
"$engine" exec "$build_container" pkill containerd || true
sleep 2
"$engine" commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$build_container" "$node_image" >/dev/null
log "built $node_image ($("$engine" image inspect -f '{{.Size}}' "$node_image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
echo "$node_image"
