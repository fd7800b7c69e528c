#!/usr/bin/env bash
# Quarry on S3 (MinIO on loopback) against CNCF distribution's S3 driver on
# the same MinIO, same client (curl, wrk), same run; one Quarry replica
# against two behind nginx. Appends a table to docs/benchmarks.md. Called
# by `make bench` after hack/bench.sh (QUARRY_TOOL_* exported).
#
# Knobs: BENCH_S3_BLOB_MB (default 256), BENCH_SECONDS (wrk duration, 10),
#        BENCH_RUNS (repetitions of each transfer, 3 here; the best is kept).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/bench-lib.sh
source "$root/hack/bench-lib.sh"
blob_mb=${BENCH_S3_BLOB_MB:-256}
seconds=${BENCH_SECONDS:-10}
runs=${BENCH_S3_RUNS:-3}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
need() {
  if [ -z "${!1:-}" ] || [ ! -x "${!1}" ]; then
    echo "bench-s3: $1 is not set or not executable; run 'make bench'" >&2
    exit 2
  fi
}
for v in QUARRY_TOOL_DISTRIBUTION QUARRY_TOOL_NGINX QUARRY_TOOL_WRK QUARRY_TOOL_MINIO; do need "$v"; done
[ -x "$quarry_bin" ] || { echo "bench-s3: $quarry_bin missing" >&2; exit 2; }

work=$(mktemp -d /var/tmp/quarry-bench-s3.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "bench-s3: $*" >&2; }

m_port=15201 q1_port=15202 q2_port=15203 lb_port=15204 d_port=15205 qf_port=15206
user=quarry-bench password=quarry-bench-secret

wait_url() {
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench-s3: nothing answers at $1" >&2; return 1
}

load_at_start=$(cut -d' ' -f1 /proc/loadavg)

# --- MinIO and two buckets ------------------------------------------------------
start_minio "$work" "$m_port" "$user" "$password"
pids+=("$!")
make_buckets "$m_port" "$user" "$password" quarry distribution

# --- registries -------------------------------------------------------------------
quarry_s3_config "$m_port" "$user" "$password" quarry >"$work/quarry.yaml"
for p in $q1_port $q2_port; do
  "$quarry_bin" --config "$work/quarry.yaml" --listen "127.0.0.1:$p" 2>"$work/quarry-$p.log" &
  pids+=("$!")
done
"$quarry_bin" --listen 127.0.0.1:$qf_port --storage-path "$work/quarry-fs" 2>"$work/quarry-fs.log" &
pids+=("$!")

start_distribution_s3 "$work" "$m_port" "$user" "$password" distribution "$d_port"
pids+=("$!")

mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream one { server 127.0.0.1:$q1_port; keepalive 32; }
  upstream two { server 127.0.0.1:$q1_port; server 127.0.0.1:$q2_port; keepalive 32; }
  server {
    listen 127.0.0.1:$lb_port;
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    location /one/ { proxy_pass http://one/; }
    location /two/ { proxy_pass http://two/; }
  }
}
NGINX
"$QUARRY_TOOL_NGINX" -c "$work/nginx.conf" -p "$work/nginx" &
pids+=("$!")
for p in $q1_port $q2_port $qf_port $d_port $lb_port; do wait_url "http://127.0.0.1:$p/"; done

# --- transfers ------------------------------------------------------------------------
log "writing a ${blob_mb} MiB random blob"
head -c $((blob_mb * 1024 * 1024)) /dev/urandom >"$work/blob"
blob="$work/blob"
digest="sha256:$(sha256sum "$blob" | cut -d' ' -f1)"
bytes=$(stat -c %s "$blob")

log "push ${blob_mb} MiB"
q_push=$(push_best "http://127.0.0.1:$q1_port")
d_push=$(push_best "http://127.0.0.1:$d_port")
f_push=$(push_best "http://127.0.0.1:$qf_port")
log "pull ${blob_mb} MiB"
q_pull=$(pull_best "http://127.0.0.1:$q1_port/v2/bench/push1/blobs/$digest")
d_pull=$(pull_best "http://127.0.0.1:$d_port/v2/bench/push1/blobs/$digest")
f_pull=$(pull_best "http://127.0.0.1:$qf_port/v2/bench/push1/blobs/$digest")

# --- pull requests/s: one replica vs two, both through nginx ---------------------------
small=$(head -c 4096 /dev/urandom | base64 -w0)
small_digest="sha256:$(printf '%s' "$small" | sha256sum | cut -d' ' -f1)"
small_push() { # base: POST a session, PUT the bytes (distribution does not take monolithic POSTs)
  local url code
  url=$(session_url "$1" "$(start_session "$1" bench/small)" "$small_digest")
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' --data-binary "$small" "$url")
  [ "$code" = 201 ] || { echo "bench-s3: small blob push to $1 answered $code" >&2; exit 1; }
}
small_push "http://127.0.0.1:$q1_port"
small_push "http://127.0.0.1:$d_port"
rps() { # url
  local out
  out=$("$QUARRY_TOOL_WRK" -t2 -c16 -d"${seconds}s" "$1")
  if grep -q 'Non-2xx' <<<"$out"; then echo "bench-s3: non-2xx answers from $1:" >&2; echo "$out" >&2; exit 1; fi
  awk '/^Requests\/sec/{printf "%.0f", $2}' <<<"$out"
}
log "small blob GET req/s, one replica and two"
one_rps=$(rps "http://127.0.0.1:$lb_port/one/v2/bench/small/blobs/$small_digest")
two_rps=$(rps "http://127.0.0.1:$lb_port/two/v2/bench/small/blobs/$small_digest")
q_rps=$(rps "http://127.0.0.1:$q1_port/v2/bench/small/blobs/$small_digest")
d_rps=$(rps "http://127.0.0.1:$d_port/v2/bench/small/blobs/$small_digest")
m_rps=$(rps "http://127.0.0.1:$m_port/minio/health/live")

report="$root/docs/benchmarks.md"
{
  echo
  echo "## S3 storage and replicas"
  echo
  echo "Produced by \`make bench\` (hack/bench-s3.sh) on $(date -u +%Y-%m-%d): MinIO ($(basename "$(dirname "$QUARRY_TOOL_MINIO")")) on loopback on this same machine, one bucket per registry."
  echo "Peer: CNCF distribution's S3 driver on the same MinIO. Blob: ${blob_mb} MiB, best of ${runs}; wrk ${seconds}s, 2 threads, 16 connections."
  echo "Load average when the run started: ${load_at_start} (other work on the machine makes every number here lower and noisier; compare the ratios)."
  echo "Everything (MinIO, registries, nginx, clients) shares the 2 cores, so MinIO's own cost caps what any registry can do here:"
  echo "a second replica adds no CPU, so the replica row shows the cost of the extra hop, not scaling (that needs MinIO and the replicas on separate machines)."
  echo
  echo "| measure | quarry on S3 | distribution on S3 | quarry / distribution | quarry on filesystem | target |"
  echo "|---|---|---|---|---|---|"
  echo "| blob push MiB/s (POST + PUT, curl) | $(mbps "$q_push") | $(mbps "$d_push") | $(ratio "$(mbps "$q_push")" "$(mbps "$d_push")") | $(mbps "$f_push") | >= distribution |"
  echo "| blob pull MiB/s (GET, curl) | $(mbps "$q_pull") | $(mbps "$d_pull") | $(ratio "$(mbps "$q_pull")" "$(mbps "$d_pull")") | $(mbps "$f_pull") | >= distribution |"
  echo "| 4 KiB blob GET req/s (wrk c=16, direct) | $q_rps | $d_rps | $(ratio "$q_rps" "$d_rps") | | |"
  echo
  echo "| pull requests/s through nginx (4 KiB blob, wrk c=16) | result |"
  echo "|---|---|"
  echo "| one replica | $one_rps |"
  echo "| two replicas | $two_rps |"
  echo "| two / one | $(ratio "$two_rps" "$one_rps") (target >= 1.6) |"
  echo "| MinIO's own liveness endpoint, for scale | $m_rps |"
} >>"$report"
tail -20 "$report"
