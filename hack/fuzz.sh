#!/usr/bin/env bash
# Fuzz every target under fuzz/fuzz_targets (quarry_registry::fuzzing) for
# FUZZ_SECONDS each (default 60) with cargo-fuzz on the nightly toolchain.
# New interesting inputs go to a scratch corpus (the committed one,
# fuzz/corpus/<target>, stays small and is only read); a crash stops the
# run with the input under fuzz/artifacts/<target>/: fix the cause, then
# copy the input to fuzz/regressions/<target>/, which `make test` replays.
#
#   make fuzz                     tools, then this script
#   FUZZ_SECONDS=600 make fuzz    longer
#   FUZZ_TARGETS="manifest" make fuzz
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
cargo_fuzz=${QUARRY_TOOL_CARGO_FUZZ:-$("$root/hack/tools.sh" path cargo-fuzz)}
rustup toolchain list 2>/dev/null | grep -q '^nightly' ||
  { echo "fuzz: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 2; }
targets=${FUZZ_TARGETS:-$(find "$root/fuzz/fuzz_targets" -name '*.rs' -printf '%f\n' | sed 's|\.rs$||' | sort)}
scratch=$(mktemp -d /var/tmp/quarry-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

cd "$root/fuzz"
# Called as cargo would call it; rustup's proxy picks the toolchain.
export RUSTUP_TOOLCHAIN=nightly
"$cargo_fuzz" fuzz build
summary=()
for t in $targets; do
  mkdir -p "$scratch/$t"
  echo "fuzz: $t for ${seconds}s"
  log="$scratch/$t.log"
  if ! "$cargo_fuzz" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: FAILED: $t crashed; the input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=$(find "$scratch/$t" -type f | wc -l)
  summary+=("$t: ${runs:-?} runs in ${seconds}s, ${found} new corpus inputs, no crash")
done
printf 'fuzz: %s\n' "${summary[@]}"
