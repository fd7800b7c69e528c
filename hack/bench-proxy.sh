#!/usr/bin/env bash
# Pull-through cache: the first pull of a 256 MiB blob through a Quarry cache
# namespace against pulling it from the upstream directly (throughput and
# time to first byte), the cached pull against a normal local pull, and the
# same first and cached pulls through CNCF distribution's proxy mode, all in
# one run. The upstream is distribution, reached two ways: on loopback (no
# limit but the CPU: both caches hash every byte, the direct pull does not)
# and from a network namespace of this machine whose link is shaped to
# 1 Gbit/s (tc tbf), as a real upstream is farther than loopback. Each round
# uses a fresh random blob, so every "first" pull really misses. Time to
# first byte is also measured on small blobs through a relay that delays
# each way by 10 ms (tests/src/bin/quarry-delay-relay.rs: this tc has no
# netem), a 20 ms round trip to the upstream.
# Replaces the "## Pull-through cache" section of docs/benchmarks.md. Called
# by `make bench` (QUARRY_TOOL_* exported, the release registry built).
#
# Knobs: BENCH_PROXY_ROUNDS (5), BENCH_PROXY_MIB (256), BENCH_PROXY_TTFB_PULLS
# (small-blob misses through the delaying relay: 15), BENCH_PROXY_RATE
# (the shaped link, tc's syntax: 1gbit), BENCH_PROXY_SHAPED=0 to leave the
# shaped link out (it needs root, ip and tc; the report says it was left out).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/bench-lib.sh
source "$root/hack/bench-lib.sh"
rounds=${BENCH_PROXY_ROUNDS:-5}
mib=${BENCH_PROXY_MIB:-256}
rate=${BENCH_PROXY_RATE:-1gbit}
shaped=${BENCH_PROXY_SHAPED:-1}
ttfb_pulls=${BENCH_PROXY_TTFB_PULLS:-15}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
relay_bin=${QUARRY_DELAY_RELAY_BIN:-$root/target/release/quarry-delay-relay}
if [ -z "${QUARRY_TOOL_DISTRIBUTION:-}" ] || [ ! -x "$QUARRY_TOOL_DISTRIBUTION" ]; then
  echo "bench-proxy: QUARRY_TOOL_DISTRIBUTION is not set; run 'make bench'" >&2; exit 2
fi
for b in "$quarry_bin" "$relay_bin"; do
  [ -x "$b" ] || { echo "bench-proxy: $b missing; run 'make bench'" >&2; exit 2; }
done

if [ "$shaped" = 1 ]; then
  for t in ip tc; do
    command -v "$t" >/dev/null || { echo "bench-proxy: the shaped link needs $t (iproute2); BENCH_PROXY_SHAPED=0 leaves it out" >&2; exit 2; }
  done
  [ "$(id -u)" = 0 ] || { echo "bench-proxy: the shaped link needs root (a network namespace); BENCH_PROXY_SHAPED=0 leaves it out" >&2; exit 2; }
fi

work=$(mktemp -d /var/tmp/quarry-bench-proxy.XXXXXX)
pids=()
# The namespace of the shaped upstream: a veth pair on a private /30, no
# route beyond it, gone with the namespace.
netns=quarry-bench-$$
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ "$shaped" = 1 ]; then ip netns del "$netns" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "bench-proxy: $*" >&2; }

up_port=15501 q_port=15502 dp_port=15503 dps_port=15504 far_port=15505 dpf_port=15506
up=http://127.0.0.1:$up_port q=http://127.0.0.1:$q_port dp=http://127.0.0.1:$dp_port dps=http://127.0.0.1:$dps_port
far=http://127.0.0.1:$far_port dpf=http://127.0.0.1:$dpf_port
ns_addr=10.254.251.2 host_addr=10.254.251.1 ups=http://10.254.251.2:$up_port
load_at_start=$(cut -d' ' -f1 /proc/loadavg)

# SHA-256 on one core, MiB/s (openssl reports thousands of bytes a second).
sha_rate() {
  "${QUARRY_TOOL_OPENSSL:-openssl}" speed -evp sha256 -bytes 1048576 -seconds 1 2>/dev/null |
    awk '$1 == "sha256" {printf "%.0f", $2 * 1000 / 1048576}'
}
# distribution's proxy mode on port $2 in front of $3, data under $1.
start_distribution_proxy() { # dir port remote
  mkdir -p "$1"
  cat >"$1/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $1/data}
http: {addr: 127.0.0.1:$2}
proxy: {remoteurl: "$3"}
YAML
  "$QUARRY_TOOL_DISTRIBUTION" serve "$1/config.yml" >"$1/log" 2>&1 &
}

mkdir -p "$work/up"
start_distribution_fs "$work/up" "$up_port"
pids+=("$!")
# distribution's proxy mode asks its remote for /v2/ at start and panics
# when nobody answers yet.
wait_port "$up_port"
# The upstream 10 ms away each way.
"$relay_bin" --listen "127.0.0.1:$far_port" --to "127.0.0.1:$up_port" --delay-ms 10 2>"$work/relay.log" &
pids+=("$!")
wait_port "$far_port"
shaped_cache=""
if [ "$shaped" = 1 ]; then
  # The same store served a second time from the namespace, its replies
  # to the host shaped to $rate.
  ip netns add "$netns"
  ip link add "qb$$" type veth peer name "qbn$$"
  ip link set "qbn$$" netns "$netns"
  ip addr add "$host_addr/30" dev "qb$$"; ip link set "qb$$" up
  ip -n "$netns" addr add "$ns_addr/30" dev "qbn$$"; ip -n "$netns" link set "qbn$$" up
  tc -n "$netns" qdisc add dev "qbn$$" root tbf rate "$rate" burst 256kb latency 50ms
  sed "s/addr: 127.0.0.1:$up_port/addr: $ns_addr:$up_port/" "$work/up/distribution.yml" >"$work/up/shaped.yml"
  ip netns exec "$netns" "$QUARRY_TOOL_DISTRIBUTION" serve "$work/up/shaped.yml" >"$work/up/shaped.log" 2>&1 &
  pids+=("$!")
  wait_url "$ups"
  shaped_cache="  - {namespace: cache-shaped, upstream_registry: \"$ns_addr:$up_port\", insecure: true}"
fi
cat >"$work/quarry.yaml" <<YAML
FEATURE_PROXY_CACHE: true
PROXY_CACHE_NAMESPACES:
  - {namespace: cache, upstream_registry: "127.0.0.1:$up_port", insecure: true}
  - {namespace: cache-far, upstream_registry: "127.0.0.1:$far_port", insecure: true}
$shaped_cache
YAML
"$quarry_bin" --listen "127.0.0.1:$q_port" --storage-path "$work/quarry" --config "$work/quarry.yaml" 2>"$work/quarry.log" &
pids+=("$!")
start_distribution_proxy "$work/dproxy" "$dp_port" "$up"
pids+=("$!")
start_distribution_proxy "$work/dproxy-far" "$dpf_port" "$far"
pids+=("$!")
ports="$up_port $q_port $dp_port $dpf_port"
if [ "$shaped" = 1 ]; then
  start_distribution_proxy "$work/dproxy-shaped" "$dps_port" "$ups"
  pids+=("$!")
  ports+=" $dps_port"
fi
for p in $ports; do wait_port "$p"; done

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
# Pulls that can be repeated are: a single 256 MiB pull varies by a third
# from one to the next on this machine.
repeats=5
repeat_get() { # name url
  for _ in $(seq 1 "$repeats"); do record "$1" "$(timed_get "$2")"; done
}
# One link's pulls of the blob in repository $4: directly from $1, through
# Quarry's cache namespace $2, through distribution's proxy $3; names
# suffixed with $5.
pull_through() { # upstream cache-namespace dproxy repo suffix
  record "direct$5" "$(timed_get "$1/v2/$4/blobs/$digest")"
  # Each cache commits after the last byte went out: the cached pull waits
  # a moment, and the other cache's pulls wait until that work is done.
  record "quarry_first$5" "$(timed_get "$q/v2/$2/$4/blobs/$digest")"
  sleep 2
  repeat_get "quarry_cached$5" "$q/v2/$2/$4/blobs/$digest"
  record "dproxy_first$5" "$(timed_get "$3/v2/$4/blobs/$digest")"
  sleep 2
  repeat_get "dproxy_cached$5" "$3/v2/$4/blobs/$digest"
  sleep 2
}
for r in $(seq 1 "$rounds"); do
  log "round $r of $rounds: a fresh $mib MiB blob"
  new_blob
  push_to "$up" "bench/img$r"
  pull_through "$up" cache "$dp" "bench/img$r" ""
  if [ "$shaped" = 1 ]; then
    # Another blob: the caches keep one copy of a blob for all their
    # repositories, so the first one would already be there.
    new_blob
    push_to "$up" "shaped/img$r"
    pull_through "$ups" cache-shaped "$dps" "shaped/img$r" _shaped
  fi
  # Pushed only now: stored before, the cache's first pull would find it.
  push_to "$q" "local/img$r"
  repeat_get quarry_local "$q/v2/local/img$r/blobs/$digest"
done

# Time to first byte 20 ms (a round trip) from the upstream: small blobs,
# each missed once by each cache.
mib_saved=$mib
mib=1
for i in $(seq 1 "$ttfb_pulls"); do
  new_blob
  push_to "$up" "far/img$i"
  record direct_far "$(timed_get "$far/v2/far/img$i/blobs/$digest")"
  record quarry_far "$(timed_get "$q/v2/cache-far/far/img$i/blobs/$digest")"
  record dproxy_far "$(timed_get "$dpf/v2/far/img$i/blobs/$digest")"
done
mib=$mib_saved
# shellcheck disable=SC2034  # read by mbps (bench-lib.sh)
bytes=$((mib * 1048576))

# Median of the rounds (the first pulls are one per round: the best would
# flatter whoever got the quietest round).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
declare -A med_t med_s
for k in "${!total[@]}"; do
  med_t[$k]=$(echo "${ttfb[$k]}" | median)
  med_s[$k]=$(echo "${total[$k]}" | median)
done
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
# The table of one link's pulls, names suffixed with $1.
pull_table() { # suffix
  local k name
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
    [ "$k" = quarry_local ] || k=$k$1
    echo "| $name | $(ms "${med_t[$k]}") | $(ms "${med_s[$k]}") | $(mbps "${med_s[$k]}") |"
  done
}
goal_table() { # suffix
  local s=$1
  echo "| goal (ratio) | Quarry | distribution proxy |"
  echo "|---|---|---|"
  echo "| first pull, throughput vs the upstream directly (goal ≥ 0.9) | $(ratio "${med_s[direct$s]}" "${med_s[quarry_first$s]}") | $(ratio "${med_s[direct$s]}" "${med_s[dproxy_first$s]}") |"
  echo "| first pull, time to first byte / the upstream's (goal ≤ 1.2) | $(ratio "${med_t[quarry_first$s]}" "${med_t[direct$s]}") | $(ratio "${med_t[dproxy_first$s]}" "${med_t[direct$s]}") |"
  echo "| cached pull, throughput vs Quarry's local pull (goal ≈ 1.0) | $(ratio "${med_s[quarry_local]}" "${med_s[quarry_cached$s]}") | $(ratio "${med_s[quarry_local]}" "${med_s[dproxy_cached$s]}") |"
}
section=$work/section.md
{
  echo "## Pull-through cache"
  echo
  echo "Produced by \`make bench\` (hack/bench-proxy.sh) on $(date -u +%Y-%m-%d), $(nproc) cores; load average $load_at_start at the start."
  echo "Upstream: CNCF distribution ($(basename "$QUARRY_TOOL_DISTRIBUTION"), filesystem). Each of $rounds rounds pushes a fresh"
  echo "random blob of $mib MiB to it, then pulls it: directly from the upstream; through a Quarry cache namespace (first pull: a"
  echo "miss, streamed while it is written and hashed), and again 2 s later (cached); the same through distribution's proxy mode"
  echo "(\`proxy.remoteurl\`), 2 s after; and, for comparison, the same bytes pushed to Quarry normally and pulled. curl, whole"
  echo "body, medians (of the rounds; cached and local pulls are repeated $repeats times a round). Time to first byte is curl's"
  echo "\`time_starttransfer\`."
  echo
  echo "### Upstream on loopback"
  echo
  echo "No limit but the CPU: a cache hashes every byte it relays (SHA-256 runs at $(sha_rate) MiB/s on one core here, per"
  echo "\`openssl speed\`), while the direct pull only copies them; on $(nproc) cores the upstream, the cache and curl share the CPU."
  echo
  pull_table ""
  echo
  goal_table ""
  echo
  echo "### Time to first byte, upstream 20 ms away"
  echo
  echo "$ttfb_pulls blobs of 1 MiB, each pulled once directly and once through each cache (a miss), through a relay that"
  echo "delays every byte by 10 ms each way (\`quarry-delay-relay\`, tests/src/bin): a 20 ms round trip to the upstream."
  echo "Medians of the pulls."
  echo
  echo "| pull | TTFB ms | ratio to the direct pull (goal ≤ 1.2) |"
  echo "|---|---|---|"
  echo "| upstream, directly | $(ms "${med_t[direct_far]}") | |"
  echo "| Quarry cache, first pull | $(ms "${med_t[quarry_far]}") | $(ratio "${med_t[quarry_far]}" "${med_t[direct_far]}") |"
  echo "| distribution proxy, first pull | $(ms "${med_t[dproxy_far]}") | $(ratio "${med_t[dproxy_far]}" "${med_t[direct_far]}") |"
  echo
  echo "### Upstream behind a $rate link"
  echo
  if [ "$shaped" = 1 ]; then
    echo "The same upstream store served by a second distribution in a network namespace of this machine, its link to the host"
    echo "shaped to $rate (\`tc qdisc … tbf\`); a separate cache namespace and a separate distribution proxy point at it."
    echo
    pull_table _shaped
    echo
    goal_table _shaped
  else
    echo "Left out of this run (BENCH_PROXY_SHAPED=0)."
  fi
} >"$section"

report="$root/docs/benchmarks.md"
touch "$report"
awk '/^## Pull-through cache$/ {skip = 1; next} skip && /^## / {skip = 0} !skip {line[++n] = $0}
     END {while (n > 0 && line[n] == "") n--; for (i = 1; i <= n; i++) print line[i]}' "$report" >"$work/report.md"
{ cat "$work/report.md"; echo; cat "$section"; } >"$report"
cat "$section"
