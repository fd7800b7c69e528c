#!/usr/bin/env bash
# Load in the manner of zot's `zb` (which cannot be built here, see
# hack/README.md): concurrent monolithic and chunked pushes of 1/10/100 MiB,
# concurrent pulls, a 75/25 pull/push mix and catalog listing, each case run
# by tests/src/bin/quarry-load-bench.rs against Quarry and CNCF distribution
# in the same run, and against two references: nginx with sendfile serving
# the same sizes (the pull ceiling) and a plain writer that writes and
# fsyncs the same bytes at the same concurrency (the durable-push ceiling).
# Replaces its section of docs/benchmarks.md (between the load-bench
# markers). The same pushes and pulls also run with both registries on
# MinIO (one bucket each) for the S3 backend, and pulls from a Quarry
# serving HTTPS (quarry-tls). Called by `make bench` after hack/bench-gc.sh (QUARRY_TOOL_*
# exported, the release registry and the release load client built).
#
# Knobs: BENCH_LOAD_SCALE (multiplies every request count; 1),
#        BENCH_LOAD_CONCURRENCY (pushes, pulls and the mix; 4),
#        BENCH_LOAD_ROUNDS (every case this many times; the best is kept; 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/bench-lib.sh
source "$root/hack/bench-lib.sh"
scale=${BENCH_LOAD_SCALE:-1}
conc=${BENCH_LOAD_CONCURRENCY:-4}
rounds=${BENCH_LOAD_ROUNDS:-2}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
# Release: the client shares the two cores with the servers, and a debug
# build spends a minute hashing one 100 MiB blob.
load_bench=${QUARRY_LOAD_BENCH_BIN:-$root/target/release/quarry-load-bench}
need() {
  if [ -z "${!1:-}" ] || [ ! -x "${!1}" ]; then
    echo "bench-load: $1 is not set or not executable; run 'make bench' (it runs 'make tools-bench')" >&2
    exit 2
  fi
}
for v in QUARRY_TOOL_DISTRIBUTION QUARRY_TOOL_NGINX QUARRY_TOOL_MINIO QUARRY_TOOL_OPENSSL; do need "$v"; done
for b in "$quarry_bin" "$load_bench"; do
  [ -x "$b" ] || { echo "bench-load: $b missing; run 'make bench'" >&2; exit 2; }
done

# On disk, not tmpfs: fsync must mean something.
work=$(mktemp -d /var/tmp/quarry-bench-load.XXXXXX)
# The largest group of cases (100 MiB pushes) stores about 10 GB.
free_gb=$(df -P -BG "$work" | awk 'NR == 2 {sub(/G/, "", $4); print $4}')
if [ "$free_gb" -lt 16 ]; then
  echo "bench-load: only ${free_gb} GB free under /var/tmp; the benchmark needs 16 GB" >&2
  rmdir "$work"; exit 2
fi
chmod 755 "$work"   # nginx workers run unprivileged and must read the files
pids=() reg_pids=()
cleanup() {
  local status=$? f
  if [ "$status" != 0 ]; then
    for f in "$work"/r/*.log; do
      [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -20 "$f" >&2; }
    done
    df -h "$work" >&2 || true
  fi
  for p in "${pids[@]}" "${reg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "bench-load: $*" >&2; }

q_port=15401 d_port=15402 n_port=15404 m_port=15405 qs_port=15406 ds_port=15407 qt_port=15408
minio_user=quarry-bench minio_password=quarry-bench-secret
started_at=$SECONDS
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
# What else keeps the cores busy: processes above 5 % CPU, by name, not
# counting this benchmark's own (top's second sample is the current one).
busy() {
  top -b -w 512 -n 2 -d 1 -o %CPU 2>/dev/null \
    | awk -v ours="${pids[*]}" 'BEGIN {split(ours, p, " "); for (i in p) mine[p[i]] = 1}
           /^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 && !($1 in mine) && $12 != "top" {c[$12] += $9}
           END {for (k in c) printf "%s %.0f%%\n", k, c[k]}' | sort -k2 -rn | head -6 | paste -sd, - | sed 's/,/, /g'
}
busy_at_start=$(busy)

# --- servers ------------------------------------------------------------
# The registries start afresh, with empty stores under $work/r, before
# each group of cases (fresh_registries), and their stores are removed
# after it: kept, one round's pushes would fill some 29 GB of disk.

# A CA and a server certificate it signs (rustls refuses a CA as the
# server's own), for quarry-tls: the same registry serving HTTPS.
"$QUARRY_TOOL_OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=quarry-bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
"$QUARRY_TOOL_OPENSSL" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/tls.ext"
"$QUARRY_TOOL_OPENSSL" x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/tls.ext" -out "$work/tls.crt" 2>/dev/null

start_registries() {
  local r=$work/r
  mkdir -p "$r"
  "$quarry_bin" --listen 127.0.0.1:$q_port --storage-path "$r/quarry" 2>"$r/quarry.log" &
  reg_pids+=("$!")
  echo "$!" >"$work/quarry.pids"
  "$quarry_bin" --listen 127.0.0.1:$qt_port --storage-path "$r/quarry-tls" --tls-cert "$work/tls.crt" \
    --tls-key "$work/tls.key" 2>"$r/quarry-tls.log" &
  reg_pids+=("$!")
  echo "$!" >>"$work/quarry.pids"
  start_distribution_fs "$r" "$d_port"
  reg_pids+=("$!")
  # Both registries on one MinIO (its data on the same disk), a bucket each.
  start_minio "$r" "$m_port" "$minio_user" "$minio_password"
  reg_pids+=("$!")
  make_buckets "$m_port" "$minio_user" "$minio_password" quarry distribution
  quarry_s3_config "$m_port" "$minio_user" "$minio_password" quarry >"$r/quarry-s3.yaml"
  "$quarry_bin" --config "$r/quarry-s3.yaml" --listen 127.0.0.1:$qs_port 2>"$r/quarry-s3.log" &
  reg_pids+=("$!")
  start_distribution_s3 "$r" "$m_port" "$minio_user" "$minio_password" distribution "$ds_port"
  reg_pids+=("$!")
  for p in $q_port $d_port $qs_port $ds_port; do wait_port "$p"; done
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null --cacert "$work/ca.crt" "https://127.0.0.1:$qt_port/v2/"; then return 0; fi
    sleep 0.05
  done
  log "quarry-tls does not answer on port $qt_port"; return 1
}

fresh_registries() { stop_registries; start_registries; }

stop_registries() {
  local p
  for p in "${reg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${reg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  reg_pids=()
  rm -rf "$work/r"
}

# Peak memory of the two filesystem Quarrys, sampled every 0.2 s: VmRSS
# (which counts the blob pages mapped for sending) and RssAnon (the
# process's own memory), the larger of the two processes' each time.
rss_sampler() {
  local max_rss=0 max_anon=0 rss anon pid
  while sleep 0.2; do
    [ -f "$work/quarry.pids" ] || continue
    while read -r pid; do
      read -r rss anon < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {print r + 0, a + 0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
      if [ "$rss" -gt "$max_rss" ]; then max_rss=$rss; fi
      if [ "$anon" -gt "$max_anon" ]; then max_anon=$anon; fi
    done <"$work/quarry.pids"
    echo "$max_rss $max_anon" >"$work/rss.max"
  done
}
rss_sampler &
pids+=("$!")

# nginx gets both cores (worker_processes auto): it is the ceiling.
mkdir -p "$work/static" "$work/nginx" "$work/writer"
cat >"$work/nginx.conf" <<NGINX
worker_processes auto;
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
pids+=("$!")

wait_port "$n_port"
for mb in 1 10 100; do head -c $((mb * 1024 * 1024)) /dev/urandom >"$work/static/blob-$mb"; done

# --- cases --------------------------------------------------------------
declare -A url=([quarry]="http://127.0.0.1:$q_port" [distribution]="http://127.0.0.1:$d_port"
  [quarry-s3]="http://127.0.0.1:$qs_port" [distribution-s3]="http://127.0.0.1:$ds_port"
  [quarry-tls]="https://127.0.0.1:$qt_port")
registries=(quarry distribution)
on_s3=(quarry-s3 distribution-s3)
n() { echo $(($1 * scale)); }
bench() { # command target args...
  local command=$1 target=$2
  shift 2
  "$load_bench" "$command" --target "$target" "$@" | tee -a "$work/round-$round.jsonl" >&2
}
push_requests() { case $1 in 1) n 200 ;; 10) n 80 ;; 100) n 24 ;; esac; }
pull_requests() { case $1 in 1) n 2000 ;; 10) n 300 ;; 100) n 60 ;; esac; }
s3_pull_requests() { case $1 in 10) n 150 ;; 100) n 24 ;; esac; }

# Every case runs against each target back to back, so a change in the
# machine's other load hits them alike; a round is every case once.
run_round() {
  local mb c t sc
  for mb in 1 10 100; do
    fresh_registries
    log "round $round: push ${mb} MiB, c=$conc"
    for t in "${registries[@]}"; do
      bench push "$t" --url "${url[$t]}" --size-mb "$mb" --concurrency "$conc" --requests "$(push_requests "$mb")"
    done
    bench write writer --dir "$work/writer" --size-mb "$mb" --concurrency "$conc" --requests "$(push_requests "$mb")"
    for t in "${registries[@]}"; do
      bench push "$t" --url "${url[$t]}" --size-mb "$mb" --concurrency "$conc" --requests "$(push_requests "$mb")" --chunked
    done
  done
  fresh_registries
  for sc in "1 $conc" "10 $conc" "100 $conc" "100 2"; do
    read -r mb c <<<"$sc"
    log "round $round: pull ${mb} MiB, c=$c"
    for t in "${registries[@]}"; do
      bench pull "$t" --url "${url[$t]}" --size-mb "$mb" --concurrency "$c" --requests "$(pull_requests "$mb")"
    done
    bench pull nginx --plain-url "http://127.0.0.1:$n_port/blob-$mb" --size-mb "$mb" --concurrency "$c" --requests "$(pull_requests "$mb")"
    if [ "$mb" != 1 ]; then
      bench pull quarry-tls --url "${url[quarry-tls]}" --ca-file "$work/ca.crt" --size-mb "$mb" --concurrency "$c" \
        --requests "$(pull_requests "$mb")"
    fi
  done
  for mb in 10 100; do
    fresh_registries
    log "round $round: S3 (MinIO) push and pull ${mb} MiB, c=$conc"
    for t in "${on_s3[@]}"; do
      bench push "$t" --url "${url[$t]}" --size-mb "$mb" --concurrency "$conc" --requests "$(push_requests "$mb")"
    done
    for t in "${on_s3[@]}"; do
      bench pull "$t" --url "${url[$t]}" --size-mb "$mb" --concurrency "$conc" --requests "$(s3_pull_requests "$mb")"
    done
  done
  fresh_registries
  log "round $round: 75/25 pull/push mix of 10 MiB, c=$conc"
  for t in "${registries[@]}"; do
    bench mix "$t" --url "${url[$t]}" --size-mb 10 --concurrency "$conc" --requests "$(n 240)"
  done
  log "round $round: catalog, 200 repositories, n=100, c=8"
  for t in "${registries[@]}"; do
    bench catalog "$t" --url "${url[$t]}" --repos 200 --concurrency 8 --requests "$(n 3000)"
  done
}

round_files=() busy_mid=
for round in $(seq 1 "$rounds"); do
  run_round
  stop_registries
  round_files+=("$work/round-$round.jsonl")
  if [ "$round" = 1 ]; then busy_mid=$(busy); fi
done

# Per case and target, the round with the most requests/s; the mix's four
# lines (baseline, all, pulls, pushes) come from one round, chosen by `mix`.
results=$work/results.jsonl
awk '
  function key(l) { match(l, /^\{"case":"[^"]*","target":"[^"]*","size_mb":[0-9]+,"concurrency":[0-9]+,/); return substr(l, RSTART, RLENGTH) }
  function num(l, f,   m) { if (!match(l, "\"" f "\":[0-9.]+")) return 0; m = substr(l, RSTART, RLENGTH); sub(/.*:/, "", m); return m + 0 }
  FNR == 1 { r++ }
  {
    k = key($0); g = k; mixed = (k ~ /^\{"case":"mix/)
    if (mixed) sub(/"case":"[^"]*"/, "\"case\":\"mix\"", g)
    line[r, k] = $0; group[k] = g
    if (r == 1) order[++n] = k
    if (!mixed || k ~ /^\{"case":"mix",/) {
      s = num($0, "req_s")
      if (!(g in best) || s > score[g]) { best[g] = r; score[g] = s }
    }
  }
  END { for (i = 1; i <= n; i++) print line[best[group[order[i]]], order[i]] }
' "${round_files[@]}" >"$results"

# --- report -------------------------------------------------------------
field() { sed -nE "s/.*\"$2\":\"?([^\",}]*)\"?[,}].*/\1/p" <<<"$1"; }
get() { # case target size_mb concurrency field
  local line
  line=$(grep -F "{\"case\":\"$1\",\"target\":\"$2\",\"size_mb\":$3,\"concurrency\":$4," "$results" | tail -1)
  if [ -z "$line" ]; then echo n/a; else field "$line" "$5"; fi
}
q_over() { # case size_mb concurrency field other_target
  ratio "$(get "$1" quarry "$2" "$3" "$4")" "$(get "$1" "$5" "$2" "$3" "$4")"
}
busy_at_end=$(busy)
read -r peak_rss peak_anon <"$work/rss.max"
elapsed=$((SECONDS - started_at))
load_at_end=$(cut -d' ' -f1 /proc/loadavg)

section=$work/section.md
{
  echo "<!-- load-bench:start -->"
  echo
  echo "Produced by \`make bench\` (hack/bench-load.sh, client tests/src/bin/quarry-load-bench.rs) on $(date -u +%Y-%m-%d), $(nproc) cores,"
  echo "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); servers and client on this one machine over loopback, stores in /var/tmp (disk); ${elapsed} s in all."
  # The benchmark itself raises the load average; what counts is the start
  # and whether anything else took CPU while it ran.
  if awk -v a="$load_at_start" 'BEGIN { exit !(a < 1) }' && [ -z "$busy_at_start$busy_mid$busy_at_end" ]; then
    echo "Quiet machine: load average ${load_at_start} when the run started, ${load_at_end} at the end (the benchmark's own load)."
  else
    echo "**Measured under load**: load average ${load_at_start} when the run started, ${load_at_end} at the end."
  fi
  echo "Other processes above 5 % CPU (top), at the start: ${busy_at_start:-none}; after round 1: ${busy_mid:-none}; at the end: ${busy_at_end:-none}."
  echo "Other work on the two cores makes every number lower and noisier; read the ratios, which compare targets measured back to back."
  echo
  echo "Each request is timed end to end (push: POST + PUT, or POST + 5 MiB PATCHes with Content-Range + PUT; pull: GET, body read whole)."
  echo "Blobs are random bytes, distinct per push. Peers: CNCF distribution ($(basename "$(dirname "$QUARRY_TOOL_DISTRIBUTION")"), filesystem;"
  echo "\`-s3\` targets: both on one MinIO ($(basename "$(dirname "$QUARRY_TOOL_MINIO")")) on loopback, a bucket each);"
  echo "references: nginx with sendfile serving a file of the same size (pull ceiling) and a plain writer that writes the same bytes"
  echo "at the same concurrency, then fsync, rename, fsync of the directory, with no HTTP and no hashing (durable-push ceiling)."
  echo "Mix: 75 % pulls, 25 % monolithic pushes of 10 MiB; its baseline is the same number of pulls with no pushes, just before."
  echo "Each case ran ${rounds} times (a round is every case once); shown is, per case and target, the round with the most requests/s"
  echo "(the mix's four lines come from one round, chosen by its \`mix\` line)."
  echo "Catalog: 200 repositories (one tiny image each) besides the benchmark's own, \`GET /v2/_catalog?n=100\`."
  echo "Durability: quarry fsyncs the blob and its directory before answering 201; distribution v3.1's filesystem driver fsyncs the"
  echo "blob's data at commit but not the directory it renames it into. With fewer than 100 requests, p99 is the slowest request."
  echo "\`quarry-tls\`: the same binary serving HTTPS (rustls, P-256 certificate made here), its own store; the client trusts its CA."
  echo "Peak memory of the filesystem Quarrys (plain and HTTPS, sampled every 0.2 s): VmRSS $((peak_rss / 1024)) MiB, of which"
  echo "anonymous (RssAnon) $((peak_anon / 1024)) MiB; the rest is blob pages mapped while they are sent, shared with the page cache."
  echo
  echo "| case | MiB | c | target | requests | req/s | MiB/s | p50 ms | p90 ms | p99 ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  while IFS= read -r line; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$(field "$line" case)" "$(field "$line" size_mb)" "$(field "$line" concurrency)" "$(field "$line" target)" \
      "$(field "$line" requests)" "$(field "$line" req_s)" "$(field "$line" mb_s)" \
      "$(field "$line" p50_ms)" "$(field "$line" p90_ms)" "$(field "$line" p99_ms)"
  done <"$results"
  echo
  echo "| goal (ratio) | quarry | distribution |"
  echo "|---|---|---|"
  for mb in 10 100; do
    for mode in monolithic chunked; do
      w=$(get write writer "$mb" "$conc" req_s)
      echo "| durable push ${mb} MiB ${mode}, c=$conc, req/s vs plain writer | $(ratio "$(get "push-$mode" quarry "$mb" "$conc" req_s)" "$w") | $(ratio "$(get "push-$mode" distribution "$mb" "$conc" req_s)" "$w") |"
      echo "| durable push ${mb} MiB ${mode}, c=$conc, req/s quarry / distribution | $(q_over "push-$mode" "$mb" "$conc" req_s distribution) | |"
    done
  done
  for c in 2 "$conc"; do
    echo "| pull 100 MiB, c=$c, MiB/s vs nginx sendfile | $(q_over pull 100 "$c" mb_s nginx) | $(ratio "$(get pull distribution 100 "$c" mb_s)" "$(get pull nginx 100 "$c" mb_s)") |"
  done
  mix_tail() { ratio "$(get mix-pull "$1" 10 "$conc" p99_ms)" "$(get mix-baseline-pull "$1" 10 "$conc" p50_ms)"; }
  echo "| mix 75/25, c=$conc: pull p99 / pull p50 with no pushes | $(mix_tail quarry) | $(mix_tail distribution) |"
  mix_p99() { ratio "$(get mix-pull "$1" 10 "$conc" p99_ms)" "$(get mix-baseline-pull "$1" 10 "$conc" p99_ms)"; }
  echo "| mix 75/25, c=$conc: pull p99 / pull p99 with no pushes | $(mix_p99 quarry) | $(mix_p99 distribution) |"
  echo "| mix 75/25, c=$conc: req/s quarry / distribution | $(q_over mix 10 "$conc" req_s distribution) | |"
  echo "| pull 1 MiB, c=$conc: req/s quarry / distribution | $(q_over pull 1 "$conc" req_s distribution) | |"
  echo "| catalog n=100, c=8: req/s quarry / distribution | $(q_over catalog 0 8 req_s distribution) | |"
  for c in 2 "$conc"; do
    echo "| pull 100 MiB, c=$c, MiB/s over HTTPS / plain HTTP | $(ratio "$(get pull quarry-tls 100 "$c" mb_s)" "$(get pull quarry 100 "$c" mb_s)") | |"
  done
  echo "| peak RssAnon of quarry during the run, MiB (goal < 64) | $((peak_anon / 1024)) | |"
  for mb in 10 100; do
    echo "| S3: push ${mb} MiB, c=$conc, req/s quarry-s3 / distribution-s3 | $(ratio "$(get push-monolithic quarry-s3 "$mb" "$conc" req_s)" "$(get push-monolithic distribution-s3 "$mb" "$conc" req_s)") | |"
    echo "| S3: pull ${mb} MiB, c=$conc, MiB/s quarry-s3 / distribution-s3 | $(ratio "$(get pull quarry-s3 "$mb" "$conc" mb_s)" "$(get pull distribution-s3 "$mb" "$conc" mb_s)") | |"
  done
  echo
  echo "<!-- load-bench:end -->"
} >"$section"

# Replace the block between the markers, or append it with its heading.
report="$root/docs/benchmarks.md"
touch "$report"
if grep -q '^<!-- load-bench:start -->$' "$report" && grep -q '^<!-- load-bench:end -->$' "$report"; then
  awk -v section="$section" '
    /^<!-- load-bench:start -->$/ {while ((getline l < section) > 0) print l; skip = 1; next}
    /^<!-- load-bench:end -->$/ {skip = 0; next}
    !skip' "$report" >"$work/report.md"
  cat "$work/report.md" >"$report"
else
  { echo; echo "## Load (zb-style): concurrent pushes, pulls, mix, catalog"; echo; cat "$section"; } >>"$report"
fi
cat "$section"
