#!/usr/bin/env bash
# Build the registry and operator images (Containerfile) from the static
# binaries in target/static, with podman or docker; nothing is pulled.
#
#   hack/images.sh [VERSION]                 quarry-registry:VERSION, quarry-operator:VERSION
#   BUILD_IN_CONTAINER=1 hack/images.sh      first build the binaries in the
#                                            Containerfile's `build` stage (needs a network)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-0.1.0}
static=$root/target/static/x86_64-unknown-linux-gnu/release
image_root=$root/target/image-root
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

die() { echo "images: $*" >&2; exit 1; }

"$root/hack/docker-engine.sh" ensure >&2
engine=$(command -v podman || command -v docker)
# Docker's CLI without the buildx plugin needs the classic builder asked
# for; it builds only the stages the target needs here (the final stages
# come first in the Containerfile).
if [ "$(basename "$engine")" = docker ] && ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

if [ -n "${BUILD_IN_CONTAINER:-}" ]; then
  "$engine" build --target build -t quarry-build:"$version" -f "$root/Containerfile" "$root"
  id=$("$engine" create quarry-build:"$version")
  mkdir -p "$static"
  "$engine" cp "$id:/out/quarry-registry" "$static/quarry-registry"
  "$engine" cp "$id:/out/quarry-operator" "$static/quarry-operator"
  "$engine" rm "$id" >/dev/null
fi
for b in quarry-registry quarry-operator; do
  [ -x "$static/$b" ] || die "$static/$b is missing: run make static (or BUILD_IN_CONTAINER=1 on a machine with a network)"
done

# What the images carry besides the binary.
[ -f "$ca_bundle" ] || die "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates; or set CA_BUNDLE)"
rm -rf "$image_root"
mkdir -p "$image_root/etc/ssl/certs" "$image_root/tmp"
chmod 1777 "$image_root/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$image_root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$image_root/etc/group"
cp "$ca_bundle" "$image_root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$image_root/etc/passwd" "$image_root/etc/group" "$image_root/etc/ssl/certs/ca-certificates.crt"

for target in registry operator; do
  "$engine" build -q --target "$target" --build-arg VERSION="$version" \
    -t "quarry-$target:$version" -f "$root/Containerfile" "$root" >/dev/null ||
    die "building quarry-$target:$version failed"
  echo "quarry-$target:$version"
done
