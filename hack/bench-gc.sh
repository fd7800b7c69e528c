#!/usr/bin/env bash
# Garbage collection: Quarry's online sweep against CNCF distribution's
# offline `garbage-collect`, each on a store of ~10,000 blobs it made itself
# through its own API (the same client pushes to both), 1 % of the images
# deleted; on the filesystem and on MinIO. Also: a store with the same
# number of blobs and 100x the layer bytes (a sweep must not cost more), and
# push latency while Quarry sweeps every second against no collection.
# Replaces the "## Garbage collection" section of docs/benchmarks.md. Called
# by `make bench` after hack/bench-s3.sh (QUARRY_TOOL_* exported).
#
# Knobs: BENCH_GC_IMAGES (1000; 10 blobs each), BENCH_GC_LAYER_BYTES (1024),
#        BENCH_GC_BIG_FACTOR (100), BENCH_GC_LATENCY_SECONDS (15 per round),
#        BENCH_GC_LATENCY_ROUNDS (2; GC off and on alternate).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/bench-lib.sh
source "$root/hack/bench-lib.sh"
images=${BENCH_GC_IMAGES:-1000}
layer_bytes=${BENCH_GC_LAYER_BYTES:-1024}
big_factor=${BENCH_GC_BIG_FACTOR:-100}
lat_seconds=${BENCH_GC_LATENCY_SECONDS:-15}
lat_rounds=${BENCH_GC_LATENCY_ROUNDS:-2}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
gc_bench=${QUARRY_GC_BENCH_BIN:-$root/target/debug/quarry-gc-bench}
need() {
  if [ -z "${!1:-}" ] || [ ! -x "${!1}" ]; then
    echo "bench-gc: $1 is not set or not executable; run 'make bench' (it runs 'make tools-bench')" >&2
    exit 2
  fi
}
for v in QUARRY_TOOL_DISTRIBUTION QUARRY_TOOL_MINIO QUARRY_TOOL_STRACE; do need "$v"; done
for b in "$quarry_bin" "$gc_bench"; do
  [ -x "$b" ] || { echo "bench-gc: $b missing; run 'make bench'" >&2; exit 2; }
done

# On disk, not tmpfs, like the other benchmarks.
work=$(mktemp -d /var/tmp/quarry-bench-gc.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "bench-gc: $*" >&2; }
fail() { echo "bench-gc: $*" >&2; exit 1; }

q_port=15301 d_port=15302 big_port=15303 lat_port=15304 m_port=15305 qs_port=15306 ds_port=15307
user=quarry-bench password=quarry-bench-secret
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
started_at=$SECONDS

wait_url() {
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  fail "nothing answers at $1"
}

# start NAME CMD...: in the background, output in $work/NAME.log; the pid in $last_pid.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The value of a `key value` line of a file.
val() { awk -v k="$2" '$1 == k {print $2}' "$1"; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b - a}'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a + b}'; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b / 1048576}'; }

populate() { # name base [options]
  local name=$1 base=$2
  shift 2
  log "populating $name ($images images)"
  "$gc_bench" populate --base "$base" --state "$work/$name.state" --images "$images" --layer-bytes "$layer_bytes" "$@" \
    >"$work/$name.populate" || fail "populating $name failed"
}

verify() { # name base
  "$gc_bench" verify --base "$2" --state "$work/$1.state" >"$work/$1.verify" || fail "$1: the store is wrong after garbage collection"
  log "$1: $(cat "$work/$1.verify")"
}

quarry_blob_files() { find "$1/blobs" -type f | wc -l; }
distribution_blob_files() { find "$1/docker/registry/v2/blobs" -type f -name data | wc -l; }

# Filesystem requests: the syscalls that name a path or a file descriptor
# under the store (opens, stats, directory reads, reads, writes, fsyncs,
# renames, links, unlinks, mkdir/rmdir), counted with strace; and the
# bytes those reads returned. Prints "calls bytes".
fs_syscalls=open,openat,creat,stat,lstat,fstat,newfstatat,statx,access,faccessat,faccessat2,getdents64,read,pread64,readv,write,pwrite64,writev,fsync,fdatasync,rename,renameat,renameat2,link,linkat,unlink,unlinkat,mkdir,mkdirat,rmdir,readlink,readlinkat,utimensat,truncate,ftruncate
fs_requests() { # store trace_file cmd...
  local store=$1 trace=$2
  shift 2
  "$QUARRY_TOOL_STRACE" -f -qq -y -s 4096 -o "$trace" -e trace="$fs_syscalls" "$@" >"$trace.out" 2>&1 \
    || { cat "$trace.out" >&2; fail "$* failed under strace"; }
  awk -v store="$store" '
    function bytes_of(line) { return match(line, /= [0-9]+$/) ? substr(line, RSTART + 2) + 0 : 0 }
    index($0, " resumed>") {
      if ($1 in pending) { if (pending[$1] ~ /^p?readv?(64)?$/) bytes += bytes_of($0); delete pending[$1] }
      next
    }
    index($0, store) == 0 { next }
    {
      calls++
      name = substr($2, 1, index($2, "(") - 1)
      if (index($0, "<unfinished ...>")) { pending[$1] = name; next }
      if (name ~ /^p?readv?(64)?$/) bytes += bytes_of($0)
    }
    END { printf "%d %d\n", calls, bytes }' "$trace"
  rm -f "$trace"
}

# Quarry: a sweep condemns, the next (grace 0) deletes, a third finds
# nothing (the cost of a routine sweep). Appends each summary to
# $work/NAME.sweeps; prints the three durations on one line.
quarry_sweeps() { # name quarry-args...
  local name=$1 t out
  shift
  out=$work/$name.sweeps
  : >"$out"
  sync # what the pushes left unwritten is not the sweep's to flush
  for _ in 1 2 3; do
    t=$(now)
    "$quarry_bin" "$@" gc --grace-seconds 0 >>"$out" || fail "quarry-registry gc on $name failed"
    printf '%s ' "$(since "$t")"
  done
  echo
}

# Quarry's deletions, from the second sweep's summary: "deleted M manifests, L links, B blobs".
quarry_deleted_blobs() { sed -n 2p "$1" | awk '{print $6}'; }

config_files() {
  cat >"$work/quarry-nogc.yaml" <<YAML
FEATURE_GARBAGE_COLLECTION: false
YAML
  cat >"$work/quarry-sweeping.yaml" <<YAML
FEATURE_GARBAGE_COLLECTION: true
GARBAGE_COLLECTION_FREQUENCY: 1
PUSH_TEMP_TAG_EXPIRATION_SEC: 1
YAML
  cat >"$work/distribution-fs.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $work/d-fs}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$d_port}
YAML
  cat >"$work/quarry-s3.yaml" <<YAML
DISTRIBUTED_STORAGE_CONFIG:
  s3: [S3Storage, {host: 127.0.0.1, port: $m_port, is_secure: false, s3_bucket: quarry, storage_path: /registry, s3_access_key: $user, s3_secret_key: $password}]
DISTRIBUTED_STORAGE_PREFERENCE: [s3]
FEATURE_GARBAGE_COLLECTION: false
YAML
  cat >"$work/distribution-s3.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  s3:
    accesskey: $user
    secretkey: $password
    region: us-east-1
    regionendpoint: http://127.0.0.1:$m_port
    bucket: distribution
    forcepathstyle: true
    secure: false
    rootdirectory: /registry
  delete: {enabled: true}
  redirect: {disable: true}
http: {addr: 127.0.0.1:$ds_port}
YAML
}
config_files

# --- MinIO, started first (buckets made while the machine is quiet) -----------------------
start minio env MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$password MINIO_BROWSER=off MINIO_UPDATE=off \
  MINIO_PROMETHEUS_AUTH_TYPE=public HOME="$work" "$QUARRY_TOOL_MINIO" server --quiet --address 127.0.0.1:$m_port --console-address 127.0.0.1:$((m_port + 50)) "$work/minio"
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$m_port/minio/health/ready" && break; sleep 0.1; done
for bucket in quarry distribution; do
  # A MinIO that says it is ready may still answer 503 for a moment under load.
  for _ in $(seq 1 60); do
    code=$(curl -s -o "$work/bucket.answer" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$user:$password" \
      -X PUT "http://127.0.0.1:$m_port/$bucket")
    [ "$code" = 503 ] || break
    sleep 0.5
  done
  [ "$code" = 200 ] || { cat "$work/bucket.answer" >&2; tail "$work/minio.log" >&2; fail "creating bucket $bucket answered $code"; }
done
# --- filesystem: each registry fills its own store --------------------------------
# Quarry serves its store all along (the server's own sweeps off: the CLI
# sweeps, next to it); distribution's collection is offline.
start quarry-fs "$quarry_bin" --config "$work/quarry-nogc.yaml" --storage-path "$work/q-fs" --listen 127.0.0.1:$q_port
q_pid=$last_pid
start distribution-fs "$QUARRY_TOOL_DISTRIBUTION" serve "$work/distribution-fs.yml"
d_pid=$last_pid
wait_url "http://127.0.0.1:$q_port/"
wait_url "http://127.0.0.1:$d_port/"
populate q-fs "http://127.0.0.1:$q_port"
populate d-fs "http://127.0.0.1:$d_port"
stop "$d_pid"
blobs=$(val "$work/q-fs.populate" blobs)
garbage=$(val "$work/q-fs.populate" garbage_blobs)
live_bytes=$(($(val "$work/q-fs.populate" bytes) - $(val "$work/q-fs.populate" garbage_bytes)))
q_files_before=$(quarry_blob_files "$work/q-fs")
d_files_before=$(distribution_blob_files "$work/d-fs")
[ "$q_files_before" = "$blobs" ] || fail "quarry's store holds $q_files_before blobs, expected $blobs"
[ "$d_files_before" = "$blobs" ] || fail "distribution's store holds $d_files_before blobs, expected $blobs"
# Copies: one for strace (it slows what it traces, so it never runs on the
# timed store), the pristine one for the latency runs.
cp -a "$work/q-fs" "$work/q-fs.pristine"
cp -a "$work/q-fs" "$work/trace-q-fs"
cp -a "$work/d-fs" "$work/trace-d-fs"

log "filesystem: distribution garbage-collect (offline)"
sync
t=$(now)
"$QUARRY_TOOL_DISTRIBUTION" garbage-collect --delete-untagged "$work/distribution-fs.yml" >"$work/d-fs.gc" 2>&1 \
  || { tail "$work/d-fs.gc" >&2; fail "distribution garbage-collect failed"; }
d_fs_s=$(since "$t")
d_fs_deleted=$((d_files_before - $(distribution_blob_files "$work/d-fs")))
sed -i "s|$work/d-fs|$work/trace-d-fs|" "$work/distribution-fs.yml"
counts=$(fs_requests "$work/trace-d-fs" "$work/strace-d.txt" \
  "$QUARRY_TOOL_DISTRIBUTION" garbage-collect --delete-untagged "$work/distribution-fs.yml")
read -r d_fs_calls d_fs_read <<<"$counts"
sed -i "s|$work/trace-d-fs|$work/d-fs|" "$work/distribution-fs.yml"

log "filesystem: quarry-registry gc (online, next to the serving registry)"
sweep_times=$(quarry_sweeps q-fs --storage-path "$work/q-fs")
read -r q_fs_t1 q_fs_t2 q_fs_idle <<<"$sweep_times"
q_fs_s=$(add "$q_fs_t1" "$q_fs_t2")
q_fs_deleted=$((q_files_before - $(quarry_blob_files "$work/q-fs")))
trace_q() { fs_requests "$work/trace-q-fs" "$work/strace-q.txt" "$quarry_bin" --storage-path "$work/trace-q-fs" gc --grace-seconds 0; }
counts=$(trace_q); read -r q_c1 q_r1 <<<"$counts"
counts=$(trace_q); read -r q_c2 q_r2 <<<"$counts"
counts=$(trace_q); read -r q_fs_idle_calls _ <<<"$counts"
q_fs_calls=$((q_c1 + q_c2)) q_fs_read=$((q_r1 + q_r2))
[ "$q_fs_deleted" = "$garbage" ] || fail "quarry deleted $q_fs_deleted blobs on the filesystem, expected $garbage ($(cat "$work/q-fs.sweeps"))"
[ "$(quarry_deleted_blobs "$work/q-fs.sweeps")" = "$garbage" ] || fail "quarry's sweep reports: $(sed -n 2p "$work/q-fs.sweeps")"
verify q-fs "http://127.0.0.1:$q_port"
stop "$q_pid"
start distribution-fs-after "$QUARRY_TOOL_DISTRIBUTION" serve "$work/distribution-fs.yml"
d_pid=$last_pid
wait_url "http://127.0.0.1:$d_port/"
verify d-fs "http://127.0.0.1:$d_port"
stop "$d_pid"
rm -rf "$work/q-fs" "$work/d-fs" "$work/trace-q-fs" "$work/trace-d-fs"

# --- the same number of blobs, 100x the layer bytes -------------------------------------
big_bytes=$((layer_bytes * big_factor))
start quarry-big "$quarry_bin" --config "$work/quarry-nogc.yaml" --storage-path "$work/q-big" --listen 127.0.0.1:$big_port
big_pid=$last_pid
wait_url "http://127.0.0.1:$big_port/"
populate q-big "http://127.0.0.1:$big_port" --layer-bytes "$big_bytes"
big_live=$(($(val "$work/q-big.populate" bytes) - $(val "$work/q-big.populate" garbage_bytes)))
big_files_before=$(quarry_blob_files "$work/q-big")
cp -a "$work/q-big" "$work/trace-q-big"
log "large layers: quarry-registry gc"
sweep_times=$(quarry_sweeps q-big --storage-path "$work/q-big")
read -r big_t1 big_t2 _ <<<"$sweep_times"
big_s=$(add "$big_t1" "$big_t2")
[ $((big_files_before - $(quarry_blob_files "$work/q-big"))) = "$garbage" ] || fail "quarry deleted the wrong number of blobs on the large store"
trace_big() { fs_requests "$work/trace-q-big" "$work/strace-big.txt" "$quarry_bin" --storage-path "$work/trace-q-big" gc --grace-seconds 0; }
counts=$(trace_big); read -r b_c1 b_r1 <<<"$counts"
counts=$(trace_big); read -r b_c2 b_r2 <<<"$counts"
big_calls=$((b_c1 + b_c2)) big_read=$((b_r1 + b_r2))
verify q-big "http://127.0.0.1:$big_port"
stop "$big_pid"
rm -rf "$work/q-big" "$work/trace-q-big"

# --- push latency: sweeping every second vs no collection -----------------------------------
# Each round starts from a copy of the populated (1 % garbage) store; GC off
# and on alternate so drifting load on the machine hits both alike.
quarry_metric() { # port name: the sum of a metric's samples
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END{printf "%.3f", s}'
}
lat_errors=0 sweeps=0 sweep_seconds=0
for r in $(seq 1 "$lat_rounds"); do
  for mode in nogc sweeping; do
    rm -rf "$work/lat"
    cp -a "$work/q-fs.pristine" "$work/lat"
    start "lat-$mode-$r" "$quarry_bin" --config "$work/quarry-$mode.yaml" --storage-path "$work/lat" --listen 127.0.0.1:$lat_port
    lat_pid=$last_pid
    wait_url "http://127.0.0.1:$lat_port/"
    sleep 2 # the first sweep starts a second after the start
    log "push latency, $mode, round $r (${lat_seconds}s)"
    "$gc_bench" latency --base "http://127.0.0.1:$lat_port" --seconds "$lat_seconds" \
      --samples "$work/lat-$mode-$r.samples" >"$work/lat-$mode-$r.out" || fail "latency run failed"
    lat_errors=$((lat_errors + $(awk '{print $4}' "$work/lat-$mode-$r.out")))
    if [ "$mode" = sweeping ]; then
      sweeps=$(awk -v a="$sweeps" -v b="$(quarry_metric $lat_port quarry_gc_runs_total)" 'BEGIN{printf "%d", a + b}')
      sweep_seconds=$(add "$sweep_seconds" "$(quarry_metric $lat_port quarry_gc_duration_seconds_sum)")
      grep -q 'garbage collection sweep' "$work/lat-$mode-$r.log" || fail "the sweeping registry logged no sweep that deleted or condemned"
    fi
    stop "$lat_pid"
  done
done
rm -rf "$work/lat" "$work/q-fs.pristine"
pct() { # mode quantile
  cat "$work"/lat-"$1"-*.samples | sort -g | awk -v q="$2" '{v[NR] = $1} END{i = int(q * NR); if (i < q * NR) i++; if (i < 1) i = 1; printf "%.1f", v[i]}'
}
lat_n_off=$(cat "$work"/lat-nogc-*.samples | wc -l)
lat_n_on=$(cat "$work"/lat-sweeping-*.samples | wc -l)
p50_off=$(pct nogc 0.5) p99_off=$(pct nogc 0.99) p50_on=$(pct sweeping 0.5) p99_on=$(pct sweeping 0.99)
lat_window=$((lat_rounds * (lat_seconds + 2)))

# --- MinIO: the S3 part ----------------------------------------------------------------------
# S3 requests MinIO served, per API, from its metrics (v3: not cached).
s3_snapshot() {
  curl -s "http://127.0.0.1:$m_port/minio/metrics/v3/api/requests" \
    | awk '/^minio_api_requests_total\{/ && /type="s3"/ { match($0, /name="[^"]*"/); n[substr($0, RSTART + 6, RLENGTH - 7)] += $NF }
           END { for (k in n) printf "%s %d\n", k, n[k] }' | sort
}
s3_delta() { # before after: "total" then "API n, ..." (largest first)
  awk 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d > 0) { t += d; print d, $1 } } END { print t, "total" }' "$1" "$2" \
    | sort -rn | awk '$2 == "total" {t = $1; next} {s = s (s ? ", " : "") $2 " " $1} END {print t; print s}'
}
start quarry-s3 "$quarry_bin" --config "$work/quarry-s3.yaml" --listen 127.0.0.1:$qs_port
qs_pid=$last_pid
start distribution-s3 "$QUARRY_TOOL_DISTRIBUTION" serve "$work/distribution-s3.yml"
ds_pid=$last_pid
wait_url "http://127.0.0.1:$qs_port/"
wait_url "http://127.0.0.1:$ds_port/"
populate q-s3 "http://127.0.0.1:$qs_port"
populate d-s3 "http://127.0.0.1:$ds_port"
# Both servers stopped while counting, so MinIO serves nothing but the collection.
stop "$qs_pid"
stop "$ds_pid"

log "MinIO: distribution garbage-collect (offline)"
sync
s3_snapshot >"$work/s3.0"
t=$(now)
"$QUARRY_TOOL_DISTRIBUTION" garbage-collect --delete-untagged "$work/distribution-s3.yml" >"$work/d-s3.gc" 2>&1 \
  || { tail "$work/d-s3.gc" >&2; fail "distribution garbage-collect on MinIO failed"; }
d_s3_s=$(since "$t")
s3_snapshot >"$work/s3.1"
log "MinIO: quarry-registry gc"
t=$(now)
"$quarry_bin" --config "$work/quarry-s3.yaml" gc --grace-seconds 0 >"$work/q-s3.sweeps" || fail "quarry-registry gc on MinIO failed"
"$quarry_bin" --config "$work/quarry-s3.yaml" gc --grace-seconds 0 >>"$work/q-s3.sweeps" || fail "quarry-registry gc on MinIO failed"
q_s3_s=$(since "$t")
s3_snapshot >"$work/s3.2"
t=$(now)
"$quarry_bin" --config "$work/quarry-s3.yaml" gc --grace-seconds 0 >>"$work/q-s3.sweeps" || fail "quarry-registry gc on MinIO failed"
q_s3_idle_s=$(since "$t")
s3_snapshot >"$work/s3.3"
delta=$(s3_delta "$work/s3.0" "$work/s3.1"); d_s3_req=$(sed -n 1p <<<"$delta"); d_s3_apis=$(sed -n 2p <<<"$delta")
delta=$(s3_delta "$work/s3.1" "$work/s3.2"); q_s3_req=$(sed -n 1p <<<"$delta"); q_s3_apis=$(sed -n 2p <<<"$delta")
delta=$(s3_delta "$work/s3.2" "$work/s3.3"); q_s3_idle_req=$(sed -n 1p <<<"$delta")
q_s3_deleted=$(quarry_deleted_blobs "$work/q-s3.sweeps")
[ "$q_s3_deleted" = "$garbage" ] || fail "quarry deleted $q_s3_deleted blobs on MinIO, expected $garbage ($(cat "$work/q-s3.sweeps"))"
d_s3_marked=$(grep -E '^[0-9]+ blobs marked' "$work/d-s3.gc" || true)
d_s3_deleted=$(awk '/^[0-9]+ blobs marked/ {print $4 + $7}' "$work/d-s3.gc")
d_fs_eligible=$(awk '/^[0-9]+ blobs marked/ {print $4 + $7}' "$work/d-fs.gc")
start quarry-s3-after "$quarry_bin" --config "$work/quarry-s3.yaml" --listen 127.0.0.1:$qs_port
qs_pid=$last_pid
start distribution-s3-after "$QUARRY_TOOL_DISTRIBUTION" serve "$work/distribution-s3.yml"
ds_pid=$last_pid
wait_url "http://127.0.0.1:$qs_port/"
wait_url "http://127.0.0.1:$ds_port/"
verify q-s3 "http://127.0.0.1:$qs_port"
verify d-s3 "http://127.0.0.1:$ds_port"
stop "$qs_pid"
stop "$ds_pid"

# --- report ------------------------------------------------------------------------------------
pushes=$(val "$work/q-fs.populate" push_seconds)
d_pushes=$(val "$work/d-fs.populate" push_seconds)
section=$work/section.md
{
  echo "## Garbage collection"
  echo
  echo "Produced by \`make bench\` (hack/bench-gc.sh) on $(date -u +%Y-%m-%d), $(nproc) cores, load average $load_at_start when it started; $((SECONDS - started_at)) s in all."
  echo "Store: $images images in $(val "$work/q-fs.populate" repositories) repositories, each a config and 9 layers of $layer_bytes bytes (one layer shared by the"
  echo "images of a repository, one of ten shared by all): $blobs blobs (layers, configs, manifests), $(mib "$(val "$work/q-fs.populate" bytes)") MiB."
  echo "Then $(val "$work/q-fs.populate" deleted_images) images (1 %) are deleted by digest (\`DELETE /v2/<name>/manifests/<digest>\`), which leaves $garbage blobs"
  echo "($(mib "$(val "$work/q-fs.populate" garbage_bytes)") MiB) that nothing references. Each registry made its own store through its own API, with the same client"
  echo "(\`quarry-gc-bench populate\`, tests/src/bin/quarry-gc-bench.rs, 16 requests at a time: quarry ${pushes} s, distribution ${d_pushes} s)."
  echo "Distribution ($(basename "$(dirname "$QUARRY_TOOL_DISTRIBUTION")")): \`registry garbage-collect --delete-untagged\`, offline (server stopped), one pass."
  echo "Quarry: \`quarry-registry gc --grace-seconds 0\` twice, the first condemns and the second deletes (docs/gc.md), on the filesystem next"
  echo "to the registry serving the same store; the time is the two together. MinIO ($(basename "$(dirname "$QUARRY_TOOL_MINIO")")) on loopback, one bucket each."
  echo
  echo "| measure | quarry | distribution | quarry / distribution |"
  echo "|---|---|---|---|"
  echo "| filesystem: sweep time, s | $q_fs_s ($q_fs_t1 + $q_fs_t2) | $d_fs_s | $(ratio "$q_fs_s" "$d_fs_s") |"
  echo "| filesystem: storage requests (syscalls on the store) | $q_fs_calls | $d_fs_calls | $(ratio "$q_fs_calls" "$d_fs_calls") |"
  echo "| filesystem: bytes read from the store | $q_fs_read | $d_fs_read | $(ratio "$q_fs_read" "$d_fs_read") |"
  echo "| filesystem: blobs deleted (garbage: $garbage) | $q_fs_deleted | $d_fs_deleted | |"
  echo "| MinIO: sweep time, s | $q_s3_s | $d_s3_s | $(ratio "$q_s3_s" "$d_s3_s") |"
  echo "| MinIO: S3 requests | $q_s3_req | $d_s3_req | $(ratio "$q_s3_req" "$d_s3_req") |"
  echo "| MinIO: blobs deleted (garbage: $garbage) | $q_s3_deleted | $d_s3_deleted | |"
  echo
  echo "S3 requests by API: quarry: $q_s3_apis; distribution: $d_s3_apis."
  echo "Distribution's own count: filesystem $d_fs_eligible blobs and manifests eligible, MinIO \`$d_s3_marked\`."
  echo "A routine sweep, nothing left to collect (what runs every \`GARBAGE_COLLECTION_FREQUENCY\`): filesystem ${q_fs_idle} s and $q_fs_idle_calls"
  echo "syscalls, MinIO ${q_s3_idle_s} s and $q_s3_idle_req S3 requests. Afterwards (\`quarry-gc-bench verify\`, both registries, both stores) the deleted"
  echo "manifests and their blobs answer 404, every kept tag answers and kept images sharing a repository with a deleted one pull whole."
  echo
  echo "A sweep's cost against the bytes of live blobs: the same store with layers ${big_factor}x larger (filesystem, quarry):"
  echo
  echo "| store | live bytes | sweep time, s (condemn + delete) | syscalls on the store | bytes read |"
  echo "|---|---|---|---|---|"
  echo "| $layer_bytes-byte layers | $(mib "$live_bytes") MiB | $q_fs_s | $q_fs_calls | $q_fs_read |"
  echo "| $big_bytes-byte layers | $(mib "$big_live") MiB | $big_s | $big_calls | $big_read |"
  echo "| large / small (target: ~1) | $(ratio "$big_live" "$live_bytes") | $(ratio "$big_s" "$q_fs_s") | $(ratio "$big_calls" "$q_fs_calls") | $(ratio "$big_read" "$q_fs_read") |"
  echo
  echo "Push latency during sweeps: quarry on the filesystem store above (from its copy before collection), one client pushing"
  echo "an image (config, two 1 KiB layers, manifest; 7 requests) after another and moving one tag, so each push leaves the"
  echo "previous image as garbage. Sweeping: \`GARBAGE_COLLECTION_FREQUENCY: 1\`, \`PUSH_TEMP_TAG_EXPIRATION_SEC: 1\`; $sweeps sweeps in"
  echo "${lat_window} s of runs, $(awk -v s="$sweep_seconds" -v n="$sweeps" 'BEGIN{if (n > 0) printf "%.2f", s / n; else print "n/a"}') s each on average."
  echo "Without: \`FEATURE_GARBAGE_COLLECTION: false\`. $lat_rounds rounds of ${lat_seconds} s each, alternating; refused pushes: $lat_errors."
  echo
  echo "| whole-image push latency | no collection | sweeping every second | sweeping / none | target |"
  echo "|---|---|---|---|---|"
  echo "| p50, ms | $p50_off | $p50_on | $(ratio "$p50_on" "$p50_off") | |"
  echo "| p99, ms | $p99_off | $p99_on | $(ratio "$p99_on" "$p99_off") | <= 1.2 |"
  echo "| pushes | $lat_n_off | $lat_n_on | | |"
  echo
  echo "What is counted. Filesystem requests: every syscall of the collecting process (strace -f, a copy of the same store, as"
  echo "strace slows what it traces) that names a path or a file descriptor under the store: open, stat, directory read"
  echo "(getdents64), read, write, fsync, rename, link, unlink, mkdir, rmdir; bytes read are what those reads returned."
  echo "S3 requests: MinIO's \`minio_api_requests_total{type=\"s3\"}\` before and after, with nothing else using MinIO."
  echo "Sweep times are wall-clock times of the commands, process start included."
} >"$section"

# Replace the section (wherever it is) and put it last.
report="$root/docs/benchmarks.md"
touch "$report"
awk '/^## Garbage collection$/ {skip = 1; next} skip && /^## / {skip = 0} !skip {line[++n] = $0}
     END {while (n > 0 && line[n] == "") n--; for (i = 1; i <= n; i++) print line[i]}' "$report" >"$work/report.md"
{ cat "$work/report.md"; echo; cat "$section"; } >"$report"
cat "$section"
