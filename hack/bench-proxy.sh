#!/usr/bin/env bash
# Pull-through cache: the first pull of a 256 MiB blob through a Quarry cache
# namespace against pulling it from the upstream directly (throughput and
# time to first byte), the cached pull against a normal local pull, and the
# same first and cached pulls through CNCF distribution's proxy mode, all in
# one run. The upstream is distribution on loopback. Each round uses a fresh
# random blob, so every "first" pull really misses.
# Replaces the "## Pull-through cache" section of docs/benchmarks.md. Called
# by `make bench` (QUARRY_TOOL_* exported, the release registry built).
#
# Knobs: BENCH_PROXY_ROUNDS (3), BENCH_PROXY_MIB (256).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/bench-lib.sh
source "$root/hack/bench-lib.sh"
rounds=${BENCH_PROXY_ROUNDS:-3}
mib=${BENCH_PROXY_MIB:-256}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
if [ -z "${QUARRY_TOOL_DISTRIBUTION:-}" ] || [ ! -x "$QUARRY_TOOL_DISTRIBUTION" ]; then
  echo "bench-proxy: QUARRY_TOOL_DISTRIBUTION is not set; run 'make bench'" >&2; exit 2
fi
[ -x "$quarry_bin" ] || { echo "bench-proxy: $quarry_bin missing; run 'make bench'" >&2; exit 2; }

work=$(mktemp -d /var/tmp/quarry-bench-proxy.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "bench-proxy: $*" >&2; }

up_port=15501 q_port=15502 dp_port=15503
up=http://127.0.0.1:$up_port q=http://127.0.0.1:$q_port dp=http://127.0.0.1:$dp_port
load_at_start=$(cut -d' ' -f1 /proc/loadavg)

mkdir -p "$work/up" "$work/dproxy"
start_distribution_fs "$work/up" "$up_port"
pids+=("$!")
# distribution's proxy mode asks its remote for /v2/ at start and panics
# when nobody answers yet.
wait_port "$up_port"
cat >"$work/quarry.yaml" <<YAML
FEATURE_PROXY_CACHE: true
PROXY_CACHE_NAMESPACES:
  - {namespace: cache, upstream_registry: "127.0.0.1:$up_port", insecure: true}
YAML
"$quarry_bin" --listen "127.0.0.1:$q_port" --storage-path "$work/quarry" --config "$work/quarry.yaml" 2>"$work/quarry.log" &
pids+=("$!")
cat >"$work/dproxy.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $work/dproxy/data}
http: {addr: 127.0.0.1:$dp_port}
proxy: {remoteurl: "$up"}
YAML
"$QUARRY_TOOL_DISTRIBUTION" serve "$work/dproxy.yml" >"$work/dproxy.log" 2>&1 &
pids+=("$!")
for p in $up_port $q_port $dp_port; do wait_port "$p"; done

# GET a URL; "<ttfb> <total>" in seconds, or exit on a non-200.
timed_get() {
  local out
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer} %{time_total}' "$1")
  [ "${out%% *}" = 200 ] || { log "GET $1 answered ${out%% *}"; exit 1; }
  echo "${out#* }"
}

# A blob of $mib MiB random bytes pushed to $1/v2/$2; sets blob, digest, bytes.
blob=$work/blob
new_blob() {
  head -c "${mib}M" /dev/urandom >"$blob"
  digest="sha256:$(sha256sum "$blob" | cut -d' ' -f1)"
  # shellcheck disable=SC2034  # read by mbps (bench-lib.sh)
  bytes=$(stat -c %s "$blob")
}
push_to() { # base repo
  local out
  out=$(push_once "$1" "$2"); [ "${out% *}" = 201 ] || { log "push to $1/$2 answered ${out% *}"; exit 1; }
}

declare -A ttfb total
record() { # name "ttfb total"
  local t=${2% *} s=${2#* }
  ttfb[$1]+="$t "; total[$1]+="$s "
}
for r in $(seq 1 "$rounds"); do
  log "round $r of $rounds: a fresh $mib MiB blob"
  new_blob
  push_to "$up" "bench/img$r"
  record direct "$(timed_get "$up/v2/bench/img$r/blobs/$digest")"
  record quarry_first "$(timed_get "$q/v2/cache/bench/img$r/blobs/$digest")"
  record dproxy_first "$(timed_get "$dp/v2/bench/img$r/blobs/$digest")"
  # Both caches commit after the last byte went out; give them a moment.
  sleep 2
  record quarry_cached "$(timed_get "$q/v2/cache/bench/img$r/blobs/$digest")"
  record dproxy_cached "$(timed_get "$dp/v2/bench/img$r/blobs/$digest")"
  # Pushed only now: stored before, the cache's first pull would find it.
  push_to "$q" "local/img$r"
  record quarry_local "$(timed_get "$q/v2/local/img$r/blobs/$digest")"
done

# Median of the rounds (the first pulls are one per round: the best would
# flatter whoever got the quietest round).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
declare -A med_t med_s
for k in direct quarry_first dproxy_first quarry_cached dproxy_cached quarry_local; do
  med_t[$k]=$(echo "${ttfb[$k]}" | median)
  med_s[$k]=$(echo "${total[$k]}" | median)
done
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
section=$work/section.md
{
  echo "## Pull-through cache"
  echo
  echo "Produced by \`make bench\` (hack/bench-proxy.sh) on $(date -u +%Y-%m-%d), $(nproc) cores; load average $load_at_start at the start."
  echo "Upstream: CNCF distribution ($(basename "$QUARRY_TOOL_DISTRIBUTION"), filesystem) on loopback. Each of $rounds rounds pushes a fresh"
  echo "random blob of $mib MiB to it, then pulls it: directly from the upstream; through a Quarry cache namespace (first pull: a"
  echo "miss, streamed while it is written and hashed); through distribution's proxy mode (\`proxy.remoteurl\`, first pull); again"
  echo "through both (cached); and, for comparison, the same bytes pushed to Quarry normally and pulled. curl, whole body, medians"
  echo "of the rounds. Time to first byte is curl's \`time_starttransfer\`."
  echo
  echo "| pull | TTFB ms | total ms | MiB/s |"
  echo "|---|---|---|---|"
  for k in direct quarry_first dproxy_first quarry_cached dproxy_cached quarry_local; do
    case $k in
      direct) name="upstream, directly" ;;
      quarry_first) name="Quarry cache, first pull" ;;
      dproxy_first) name="distribution proxy, first pull" ;;
      quarry_cached) name="Quarry cache, cached" ;;
      dproxy_cached) name="distribution proxy, cached" ;;
      quarry_local) name="Quarry, pushed locally" ;;
    esac
    echo "| $name | $(ms "${med_t[$k]}") | $(ms "${med_s[$k]}") | $(mbps "${med_s[$k]}") |"
  done
  echo
  echo "| goal (ratio) | Quarry | distribution proxy |"
  echo "|---|---|---|"
  echo "| first pull, throughput vs the upstream directly (goal ≥ 0.9) | $(ratio "${med_s[direct]}" "${med_s[quarry_first]}") | $(ratio "${med_s[direct]}" "${med_s[dproxy_first]}") |"
  echo "| first pull, time to first byte / the upstream's (goal ≤ 1.2) | $(ratio "${med_t[quarry_first]}" "${med_t[direct]}") | $(ratio "${med_t[dproxy_first]}" "${med_t[direct]}") |"
  echo "| cached pull, throughput vs Quarry's local pull (goal ≈ 1.0) | $(ratio "${med_s[quarry_local]}" "${med_s[quarry_cached]}") | $(ratio "${med_s[quarry_local]}" "${med_s[dproxy_cached]}") |"
} >"$section"

report="$root/docs/benchmarks.md"
touch "$report"
awk '/^## Pull-through cache$/ {skip = 1; next} skip && /^## / {skip = 0} !skip {line[++n] = $0}
     END {while (n > 0 && line[n] == "") n--; for (i = 1; i <= n; i++) print line[i]}' "$report" >"$work/report.md"
{ cat "$work/report.md"; echo; cat "$section"; } >"$report"
cat "$section"
