#!/usr/bin/env bash
# Runs every fuzz target of engine/fuzz (one per decoder of repository bytes) for SECONDS each
# (default 1800) or RUNS executions (CAIRN_FUZZ_RUNS, default 10 million), whichever comes
# first, one after the other in a single process, and prints per target the
# executions done and what it found. Exits non-zero on any crash, timeout (10 s) or
# allocation over 64 MiB. Needs nightly; installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh [SECONDS]
#   CAIRN_FUZZ_TARGETS="pack tree" scripts/fuzz.sh 600     # some targets only
#   CAIRN_FUZZ_RUNS=0 scripts/fuzz.sh 600                  # no execution cap: SECONDS each
#   CAIRN_FUZZ_MERGE=1 scripts/fuzz.sh 600                 # then minimise what the run found
#                                                          # into engine/fuzz/corpus (to commit)
#
# New inputs go to a work corpus outside the clone ($CAIRN_FUZZ_WORK, default
# ~/.cache/cairn-fuzz-work/<target>); the committed corpus is read, never written, unless
# CAIRN_FUZZ_MERGE=1. A finding lands in engine/fuzz/artifacts/<target>/: fix it, keep the
# input there (the replay test, tests/it/fuzz_corpus.rs, runs it on stable from then on).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-1800}"
runs="${CAIRN_FUZZ_RUNS:-10000000}"
run_cap=()
[ "$runs" -gt 0 ] && run_cap=(-runs="$runs")
fuzz_dir=engine/fuzz
target_dir="${CAIRN_FUZZ_TARGET_DIR:-$HOME/.cache/cairn-fuzz-target}"
work="${CAIRN_FUZZ_WORK:-$HOME/.cache/cairn-fuzz-work}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

opts=(--fuzz-dir "$fuzz_dir" --target-dir "$target_dir")
all=$(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
read -r -a targets <<<"${CAIRN_FUZZ_TARGETS:-$(echo $all)}"
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz.sh: no fuzz targets" >&2; exit 1; }
cargo +nightly fuzz build "${opts[@]}"

start=$(date +%s)
total=0
found=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$fuzz_dir/artifacts/$t"
  log="$work/$t.log"
  t0=$(date +%s)
  set +e
  cargo +nightly fuzz run "${opts[@]}" "$t" "$work/$t" "$fuzz_dir/corpus/$t" -- \
    -max_total_time="$seconds" "${run_cap[@]}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 \
    -print_final_stats=1 -artifact_prefix="$fuzz_dir/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+$' || true)
  [ -n "$execs" ] || execs=$(grep -Eo '^Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
  [ -n "$execs" ] || execs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  execs="${execs:-0}"
  total=$((total + execs))
  if [ "$rc" -eq 0 ]; then
    result="nothing found"
  else
    artifact=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
    kind=$(grep -Eo 'ERROR: libFuzzer: [a-z-]+|panicked at [^:]+:[0-9]+' "$log" | head -1 || true)
    result="FOUND (exit $rc): ${kind:-see $log} ${artifact:+-> $artifact}"
    found+=("$t")
  fi
  printf '%-14s %12d executions in %5ds  %s\n' "$t" "$execs" "$(($(date +%s) - t0))" "$result"
  if [ "${CAIRN_FUZZ_MERGE:-0}" = 1 ]; then
    cp -n "$work/$t"/* "$fuzz_dir/corpus/$t"/ 2>/dev/null || true
    cargo +nightly fuzz cmin "${opts[@]}" "$t" "$fuzz_dir/corpus/$t" >"$work/$t.cmin.log" 2>&1
  fi
done
echo "fuzz.sh: ${#targets[@]} targets, $total executions in $(($(date +%s) - start))s, ${#found[@]} with findings${found[*]:+: ${found[*]}}"
[ "${#found[@]}" -eq 0 ]
