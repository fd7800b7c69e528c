#!/usr/bin/env bash
# Benchmark Quarry's registry against CNCF distribution in one run, with
# the same clients (curl, wrk) on loopback, and nginx serving the same file
# with sendfile as the ceiling for pulls. (zot and zb cannot be built here:
# the module proxy refuses zotregistry.dev; see hack/README.md.) Writes the table to
# docs/benchmarks.md. Called by `make bench` (which builds the tools and
# the release binary and exports QUARRY_TOOL_* first).
#
# Knobs: BENCH_BLOB_MB (default 1024), BENCH_SECONDS (wrk duration, 10),
#        BENCH_RUNS (repetitions of each transfer, 5; the best is kept).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/bench-lib.sh
source "$root/hack/bench-lib.sh"
blob_mb=${BENCH_BLOB_MB:-1024}
seconds=${BENCH_SECONDS:-10}
runs=${BENCH_RUNS:-5}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
need() {
  if [ -z "${!1:-}" ] || [ ! -x "${!1}" ]; then
    echo "bench: $1 is not set or not executable; run 'make bench' (it runs 'make tools-bench')" >&2
    exit 2
  fi
}
for v in QUARRY_TOOL_DISTRIBUTION QUARRY_TOOL_NGINX QUARRY_TOOL_WRK QUARRY_TOOL_AB; do need "$v"; done
[ -x "$quarry_bin" ] || { echo "bench: $quarry_bin missing; run 'cargo build --release -p quarry-registry'" >&2; exit 2; }

# On disk, not tmpfs: fsync must mean something.
work=$(mktemp -d /var/tmp/quarry-bench.XXXXXX)
chmod 755 "$work"   # nginx workers run unprivileged and must read the file
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

q_port=15101 d_port=15102 n_port=15104
log() { echo "bench: $*" >&2; }

# --- servers ------------------------------------------------------------
"$quarry_bin" --listen 127.0.0.1:$q_port --storage-path "$work/quarry" 2>"$work/quarry.log" &
q_pid=$!; pids+=("$q_pid")

start_distribution_fs "$work" "$d_port"
d_pid=$!; pids+=("$d_pid")

mkdir -p "$work/static" "$work/nginx"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events {}
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$n_port; root $work/static; }
}
NGINX
"$QUARRY_TOOL_NGINX" -c "$work/nginx.conf" -p "$work/nginx" &
n_pid=$!; pids+=("$n_pid")

for p in $q_port $d_port $n_port; do wait_port "$p"; done
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }
sleep 1
q_idle=$(rss_kib $q_pid); d_idle=$(rss_kib $d_pid)

# --- content ----------------------------------------------------------------
log "writing a ${blob_mb} MiB random blob"
head -c $((blob_mb * 1024 * 1024)) /dev/urandom >"$work/static/blob"
blob="$work/static/blob"
digest="sha256:$(sha256sum "$blob" | cut -d' ' -f1)"
bytes=$(stat -c %s "$blob")

# Disk ceiling: the same bytes written with fsync at the end.
disk_times=()
for _ in $(seq 1 "$runs"); do
  disk_times+=("$( { TIMEFORMAT=%R; time dd if="$blob" of="$work/ddcopy" bs=1M conv=fsync status=none; } 2>&1 )")
  rm -f "$work/ddcopy"
done
disk_s=$(printf '%s\n' "${disk_times[@]}" | sort -g | head -1)


log "large-blob push"
q_push=$(push_best "http://127.0.0.1:$q_port"); q_peak=$(hwm_kib $q_pid)
d_push=$(push_best "http://127.0.0.1:$d_port"); d_peak=$(hwm_kib $d_pid)

log "large-blob pull"
q_pull=$(pull_best "http://127.0.0.1:$q_port/v2/bench/push1/blobs/$digest")
d_pull=$(pull_best "http://127.0.0.1:$d_port/v2/bench/push1/blobs/$digest")
n_pull=$(pull_best "http://127.0.0.1:$n_port/blob")

# A small image for manifest requests.
small_cfg='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
small_config="sha256:$(printf '%s' "$small_cfg" | sha256sum | cut -d' ' -f1)"
small_image() { # base
  local base=$1 cfg=$small_cfg cdig=$small_config man url
  url=$(session_url "$base" "$(start_session "$base" bench/small)" "$cdig")
  curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary "$cfg" "$url"
  man="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cdig\",\"size\":${#cfg}},\"layers\":[]}"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$man" "$base/v2/bench/small/manifests/v1")
  [ "$code" = 201 ] || { echo "bench: manifest push to $base answered $code" >&2; exit 1; }
}

rps() { # method url
  local out
  if [ "$1" = HEAD ]; then
    # wrk waits for a body after HEAD; ab -i sends HEAD properly.
    out=$("$QUARRY_TOOL_AB" -q -i -k -c 16 -t "$seconds" -n 10000000 -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$2" 2>&1)
    if grep -q '^Non-2xx' <<<"$out"; then echo "bench: non-2xx answers from $2:" >&2; echo "$out" >&2; exit 1; fi
    awk '/^Requests per second/{printf "%.0f", $4}' <<<"$out"
    return
  fi
  out=$("$QUARRY_TOOL_WRK" -t2 -c16 -d"${seconds}s" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$2")
  if grep -q 'Non-2xx' <<<"$out"; then echo "bench: non-2xx answers from $2:" >&2; echo "$out" >&2; exit 1; fi
  awk '/^Requests\/sec/{printf "%.0f", $2}' <<<"$out"
}

log "manifest GET/HEAD at concurrency 16"
for b in $q_port $d_port; do small_image "http://127.0.0.1:$b"; done
q_get=$(rps GET "http://127.0.0.1:$q_port/v2/bench/small/manifests/v1")
d_get=$(rps GET "http://127.0.0.1:$d_port/v2/bench/small/manifests/v1")
q_head=$(rps HEAD "http://127.0.0.1:$q_port/v2/bench/small/manifests/v1")
d_head=$(rps HEAD "http://127.0.0.1:$d_port/v2/bench/small/manifests/v1")

log "small blob GET at concurrency 16"
q_blob=$(rps GET "http://127.0.0.1:$q_port/v2/bench/small/blobs/$small_config")
d_blob=$(rps GET "http://127.0.0.1:$d_port/v2/bench/small/blobs/$small_config")

q_push_r=$(mbps "$q_push"); d_push_r=$(mbps "$d_push"); disk_r=$(mbps "$disk_s")
q_pull_r=$(mbps "$q_pull"); d_pull_r=$(mbps "$d_pull"); n_pull_r=$(mbps "$n_pull")
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }

report="$root/docs/benchmarks.md"
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (hack/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores,"
  echo "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); every server and client on this one machine over loopback."
  echo "Blob: ${blob_mb} MiB of random bytes; transfers are the best of ${runs}; wrk runs ${seconds}s with 2 threads, 16 connections."
  echo "Peer: CNCF distribution ($(basename "$(dirname "$QUARRY_TOOL_DISTRIBUTION")")); ceiling for pulls: nginx with sendfile; for pushes: dd with fsync."
  echo "zot is not in this table: it cannot be built from the module proxy this machine reaches (hack/README.md)."
  echo
  echo "| measure | quarry | distribution | ceiling | quarry / distribution | target |"
  echo "|---|---|---|---|---|---|"
  echo "| blob push MiB/s (POST + PUT, curl) | $q_push_r | $d_push_r | disk with fsync: $disk_r | $(ratio "$q_push_r" "$d_push_r") | >= 1.5x distribution; >= 0.8 of disk (now $(ratio "$q_push_r" "$disk_r")) |"
  echo "| blob pull MiB/s (GET, curl) | $q_pull_r | $d_pull_r | nginx sendfile: $n_pull_r | $(ratio "$q_pull_r" "$d_pull_r") | >= distribution; >= 0.9 of nginx (now $(ratio "$q_pull_r" "$n_pull_r")) |"
  echo "| manifest GET req/s, c=16 (wrk) | $q_get | $d_get | | $(ratio "$q_get" "$d_get") | >= 2x distribution |"
  echo "| manifest HEAD req/s, c=16 (ab -i -k) | $q_head | $d_head | | $(ratio "$q_head" "$d_head") | >= 2x distribution |"
  echo "| small blob GET req/s, c=16 (wrk) | $q_blob | $d_blob | | $(ratio "$q_blob" "$d_blob") | |"
  echo "| idle RSS MiB | $(mib "$q_idle") | $(mib "$d_idle") | | | quarry < 20 |"
  echo "| peak RSS MiB during ${blob_mb} MiB push | $(mib "$q_peak") | $(mib "$d_peak") | | | quarry < 64 |"
} >"$report"
log "operator: create -> Ready, 100 resources, no-op resync"
if [ -x "$root/target/debug/quarry-operator-bench" ]; then
  { echo; "$root/target/debug/quarry-operator-bench"; } >>"$report"
fi
cat "$report"
