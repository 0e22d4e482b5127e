#!/usr/bin/env bash
# A write-only snapshot against a full-key snapshot of the same data, in one run (issue 23):
# the initial snapshot of the mixed data set into a fresh repository, then an unchanged one,
# each opened with a key file (full, or write-only), alternating the order every round. Release
# build, warm page cache. Prints the fastest time of each and the ratio write-only / full.
#
# Usage: benches/write-only.sh [DATA_DIR]   (default: the mixed data set, made in $WORK)
# Environment: WORK (scratch directory, default a temp dir), ROUNDS (default 3), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-cli >&2
cairn="$CARGO_TARGET_DIR/release/cairn"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-write-only.XXXXXX")}"
ROUNDS="${ROUNDS:-3}"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
data="${1:-$WORK/data}"
[ -n "${1:-}" ] || mixed_data "$data"
data="$(cd "$data" && pwd)"
find "$data" -type f -exec cat {} + > /dev/null
echo "data: $(du -sh "$data" | cut -f1) in $(find "$data" -type f | wc -l) files" >&2
export CAIRN_PASSWORD="write-only-bench-$$"

# elapsed seconds of one snapshot: which (full | write-only) step (initial | unchanged)
snap() {
  local which=$1 repo="$WORK/repo-$1"
  local start end
  start=$(date +%s.%N)
  "$cairn" -r "$repo" --cache-dir "$WORK/cache-$which" --key-file "$WORK/$which.key" --quiet snapshot "$data"
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

fresh() { # which
  rm -rf "$WORK/repo-$1" "$WORK/cache-$1" "$WORK/admin-$1" "$WORK/$1.key"
  "$cairn" -r "$WORK/repo-$1" --cache-dir "$WORK/admin-$1" --quiet init --no-recovery-code >/dev/null
  local flags=()
  [ "$1" = write-only ] && flags=(--write-only)
  "$cairn" -r "$WORK/repo-$1" --cache-dir "$WORK/admin-$1" --quiet key add "${flags[@]}" --new-key-file "$WORK/$1.key" >/dev/null
}

declare -A best
for round in $(seq "$ROUNDS"); do
  order=(full write-only)
  [ $((round % 2)) = 0 ] && order=(write-only full)
  for which in "${order[@]}"; do
    fresh "$which"
    for step in initial unchanged; do
      t=$(snap "$which")
      key="$which $step"
      if [ -z "${best[$key]:-}" ] || [ "$(echo "$t < ${best[$key]}" | bc)" = 1 ]; then best[$key]=$t; fi
    done
  done
done
printf '%-10s %10s %12s %8s\n' step full write-only ratio
for step in initial unchanged; do
  f=${best["full $step"]} w=${best["write-only $step"]}
  printf '%-10s %9.2fs %11.2fs %7.2fx\n' "$step" "$f" "$w" "$(echo "$w / $f" | bc -l)"
done
printf 'repository MiB: full %s, write-only %s\n' "$(( $(du -sb "$WORK/repo-full" | cut -f1) / 1048576 ))" \
  "$(( $(du -sb "$WORK/repo-write-only" | cut -f1) / 1048576 ))"
