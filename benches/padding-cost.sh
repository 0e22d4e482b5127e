#!/usr/bin/env bash
# Repository size and wall times of two `cairn` binaries on the same data, alternating, in one
# run: init, snapshot, restore into a fresh repository per run. Made to measure the cost of
# size padding (format version 2) against the binary before it.
#
# Usage: benches/padding-cost.sh BEFORE_BIN AFTER_BIN [ROUNDS] [PATH...]
#   default ROUNDS 2, PATHs /usr/share /usr/lib. WORK (default /tmp/cairn-padding-cost) holds
#   the repository and the restore target, and is removed at the end.
set -euo pipefail
before="$1"; after="$2"; rounds="${3:-2}"
shift 2; [ $# -gt 0 ] && shift
paths=("$@"); [ ${#paths[@]} -gt 0 ] || paths=(/usr/share /usr/lib)
W="${WORK:-/tmp/cairn-padding-cost}"
export CAIRN_PASSWORD=padding-cost
for r in $(seq 1 "$rounds"); do
  for which in before after; do
    bin=$before; [ "$which" = after ] && bin=$after
    rm -rf "$W"; mkdir -p "$W"
    "$bin" -q -r "$W/repo" --cache-dir "$W/cache" init --no-recovery-code >/dev/null
    sync
    t0=$(date +%s.%N)
    "$bin" -q -r "$W/repo" --cache-dir "$W/cache" snapshot "${paths[@]}" >/dev/null 2>"$W/snapshot.err" || echo "snapshot exit $?"
    t1=$(date +%s.%N)
    size=$(find "$W/repo" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    packs=$(find "$W/repo/data" -type f | wc -l)
    sync
    t2=$(date +%s.%N)
    "$bin" -q -r "$W/repo" --cache-dir "$W/cache" restore latest --target "$W/out" >/dev/null 2>"$W/restore.err" || echo "restore exit $?"
    t3=$(date +%s.%N)
    echo "round=$r bin=$which snapshot_s=$(echo "$t1 - $t0" | bc) restore_s=$(echo "$t3 - $t2" | bc) repo_bytes=$size packs=$packs"
    rm -rf "$W/out"
  done
done
rm -rf "$W"
