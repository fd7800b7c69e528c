#!/usr/bin/env bash
# A container engine that can run kind's privileged nodes on this machine.
#
#   hack/docker-engine.sh ensure    use the running engine, or start Debian's dockerd
#   hack/docker-engine.sh stop      stop the dockerd this script started
#
# An engine that already answers (`docker info`) and runs a privileged
# container is used as it is: a laptop's Docker or podman needs nothing.
# Otherwise dockerd (Debian's docker.io, installed by `hack/tools.sh install
# kind`) is started with hack/runc-bounded as its default runtime, and
# forwarded traffic leaving the machine's interface is dropped, so that no
# container reaches beyond this machine. A machine where neither works fails
# with the reason.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${QUARRY_DOCKER_STATE:-$HOME/.cache/quarry/docker}
log=$state/dockerd.log
pidfile=$state/dockerd.pid

die() { echo "docker-engine: $*" >&2; exit 1; }

engine() { command -v podman || command -v docker || true; }

answers() { # engine
  "$1" info >/dev/null 2>&1
}

# kind's nodes are privileged containers; an engine that cannot start one
# cannot run kind. Checked with an image we make here (nothing is pulled).
runs_privileged() { # engine
  local e=$1 out
  if ! "$e" image inspect quarry-probe:1 >/dev/null 2>&1; then
    # An empty image: one file, no base.
    local dir
    dir=$(mktemp -d)
    echo probe >"$dir/probe"
    tar -C "$dir" -cf - probe | "$e" import --change 'CMD ["/probe"]' - quarry-probe:1 >/dev/null
    rm -rf "$dir"
  fi
  # The container cannot exec /probe (not a program); what matters is that
  # runc got as far as starting it with every capability applied.
  out=$("$e" run --rm --privileged --network none quarry-probe:1 2>&1 || true)
  if grep -q 'unable to apply caps' <<<"$out"; then
    echo "$out" >&2
    return 1
  fi
  return 0
}

drop_egress() {
  local dev
  dev=$(ip route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  [ -n "$dev" ] || return 0
  iptables -C DOCKER-USER -o "$dev" -j DROP 2>/dev/null || iptables -I DOCKER-USER -o "$dev" -j DROP
  if command -v ip6tables >/dev/null; then
    ip6tables -C FORWARD -o "$dev" -j DROP 2>/dev/null || ip6tables -I FORWARD -o "$dev" -j DROP 2>/dev/null || true
  fi
  echo "docker-engine: forwarded traffic leaving $dev is dropped (containers stay on this machine)"
}

start_dockerd() {
  command -v dockerd >/dev/null || die "no container engine answers and dockerd is not installed; run: hack/tools.sh install kind (Debian's docker.io), or install podman or Docker"
  [ "$(id -u)" = 0 ] || die "starting dockerd needs root; start your container engine yourself"
  mkdir -p "$state"
  # The wrapper is copied out of the checkout: dockerd keeps its path for
  # as long as it runs, and a checkout can be deleted.
  install -m 0755 "$root/hack/runc-bounded" "$state/runc-bounded"
  echo "docker-engine: starting dockerd (log: $log)"
  nohup dockerd --pidfile "$pidfile" \
    --add-runtime "quarry-runc=$state/runc-bounded" --default-runtime quarry-runc \
    --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
    >"$log" 2>&1 &
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then break; fi
    if ! kill -0 $! 2>/dev/null; then tail -20 "$log" >&2; die "dockerd exited at start"; fi
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -20 "$log" >&2; die "dockerd did not answer within 60 s"; }
}

case "${1:-ensure}" in
  ensure)
    e=$(engine)
    if [ -n "$e" ] && answers "$e"; then
      # Ours, from an earlier run: keep its egress rule in place.
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then drop_egress; fi
      runs_privileged "$e" || die "$e answers but cannot run a privileged container (see above); kind's nodes need one"
      echo "docker-engine: using $e"
      exit 0
    fi
    start_dockerd
    drop_egress
    runs_privileged docker || die "dockerd runs but cannot start a privileged container even through runc-bounded (see above)"
    echo "docker-engine: dockerd ready"
    ;;
  stop)
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")"
      echo "docker-engine: dockerd stopped"
    fi
    ;;
  *) die "usage: hack/docker-engine.sh ensure|stop" ;;
esac
