#!/usr/bin/env bash
# Web UI page times: a repository page with 1,000 tags and a manifest page
# whose referrer tree has 100 referrers, p50/p99 of the server's answer
# (curl's time_total on loopback, the page whole), against the goal of
# 50 ms p99. Rewrites the "## Web UI" section of docs/benchmarks.md.
#
#   make bench                 everything, this included
#   hack/bench-ui.sh           this alone, after cargo build --release -p quarry-registry
#   BENCH_UI_TAGS=200 BENCH_UI_REFERRERS=20 BENCH_UI_REQUESTS=50 hack/bench-ui.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/hack/bench-lib.sh"
tags=${BENCH_UI_TAGS:-1000}
referrers=${BENCH_UI_REFERRERS:-100}
requests=${BENCH_UI_REQUESTS:-200}
quarry_bin=${QUARRY_REGISTRY_BIN:-$root/target/release/quarry-registry}
[ -x "$quarry_bin" ] || { echo "bench-ui: $quarry_bin missing; run 'make bench'" >&2; exit 2; }

work=$(mktemp -d /var/tmp/quarry-bench-ui.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "bench-ui: $*" >&2; }

port=15701 q=http://127.0.0.1:15701
"$quarry_bin" --listen "127.0.0.1:$port" --storage-path "$work/data" 2>"$work/quarry.log" &
pid=$!
wait_port "$port"

sha() { sha256sum "$1" | cut -d' ' -f1; }
put_blob() { # repo file
  local d url
  d="sha256:$(sha "$2")"
  url=$(session_url "$q" "$(start_session "$q" "$1")" "$d")
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$2" "$url")" = 201 ] ||
    { log "blob push to $1 failed"; exit 1; }
  echo "$d"
}
put_manifest() { # repo reference file
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$3" "$q/v2/$1/manifests/$2")" = 201 ] || { log "manifest push $1:$2 failed"; exit 1; }
}

log "filling: $tags tags in bench/tags, $referrers referrers of one manifest in bench/tree"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config.json"
printf 'layer' >"$work/layer"
for repo in bench/tags bench/tree; do
  config=$(put_blob "$repo" "$work/config.json")
  layer=$(put_blob "$repo" "$work/layer")
done
csize=$(stat -c %s "$work/config.json")
manifest() { # annotation-value [subject-digest subject-size]
  local subject=
  [ $# -gt 1 ] && subject=",\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$2\",\"size\":$3},\"artifactType\":\"application/vnd.example.note\""
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":5}],"annotations":{"n":"%s"}%s}' \
    "$config" "$csize" "$layer" "$1" "$subject"
}
for i in $(seq 1 "$tags"); do
  manifest "tag $i" >"$work/m.json"
  put_manifest bench/tags "v$i" "$work/m.json"
done
manifest subject >"$work/subject.json"
put_manifest bench/tree subject "$work/subject.json"
subject="sha256:$(sha "$work/subject.json")"
ssize=$(stat -c %s "$work/subject.json")
for i in $(seq 1 "$referrers"); do
  manifest "referrer $i" "$subject" "$ssize" >"$work/r.json"
  last_referrer=$(sha "$work/r.json")
  put_manifest bench/tree "sha256:$last_referrer" "$work/r.json"
done

# p50 and p99 in ms of `requests` sequential GETs of a page (after 5 to warm up).
page_times() { # url expect-substring
  local i out
  out=$(curl -s "$1")
  case "$out" in *"$2"*) ;; *) log "$1 does not show $2"; exit 1 ;; esac
  for i in $(seq 1 5); do curl -s -o /dev/null "$1"; done
  for i in $(seq 1 "$requests"); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done |
    sort -g | awk '{v[NR] = $1} END {printf "%.1f %.1f %d\n", v[int(NR * 0.5 + 0.5)] * 1000, v[int(NR * 0.99 + 0.5)] * 1000, NR}'
}
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
log "timing the repository page ($requests requests)"
read -r repo_p50 repo_p99 _ < <(page_times "$q/ui/repo/bench/tags" "data-tag=\"v$tags\"")
log "timing the referrer tree page ($requests requests)"
read -r tree_p50 tree_p99 _ < <(page_times "$q/ui/manifest/bench/tree@$subject" "${last_referrer:0:12}")
repo_bytes=$(curl -s "$q/ui/repo/bench/tags" | wc -c)
tree_bytes=$(curl -s "$q/ui/manifest/bench/tree@$subject" | wc -c)

section=$work/section.md
{
  echo "## Web UI"
  echo
  echo "Produced by \`make bench\` (hack/bench-ui.sh) on $(date -u +%Y-%m-%d), $(nproc) cores; load average $load_at_start at the start."
  echo "A release registry on loopback, filesystem storage. $requests sequential GETs of each page with curl after 5 to warm"
  echo "up; the time is curl's \`time_total\` (request to last byte of the page), so it includes loopback transfer."
  echo
  echo "| page | size | p50 ms | p99 ms | goal p99 |"
  echo "|---|---|---|---|---|"
  echo "| repository with $tags tags (\`/ui/repo/…\`) | $((repo_bytes / 1024)) KiB | $repo_p50 | $repo_p99 | < 50 ms |"
  echo "| manifest with $referrers referrers in its tree (\`/ui/manifest/…\`) | $((tree_bytes / 1024)) KiB | $tree_p50 | $tree_p99 | < 50 ms |"
} >"$section"

report="$root/docs/benchmarks.md"
touch "$report"
awk '/^## Web UI$/ {skip = 1; next} skip && /^## / {skip = 0} !skip {line[++n] = $0}
     END {while (n > 0 && line[n] == "") n--; for (i = 1; i <= n; i++) print line[i]}' "$report" >"$work/report.md"
{ cat "$work/report.md"; echo; cat "$section"; } >"$report"
cat "$section"
