#!/usr/bin/env bash
# System calls per file of an initial and an unchanged snapshot of DIR, counted by `strace -f -c`
# (every thread), with the page cache dropped before each step when run as root (as a nightly
# job finds it). Prints each step's calls per file, the calls above 0.05 per file, and the
# wall time of each step without strace (strace slows every call: its times are no timings).
#
# Usage: benches/syscalls.sh DIR [CAIRN]
#   CAIRN  the binary to measure (default: a release build of this tree)
# Environment: WORK (scratch directory, default a temp dir), KEEP=1 to keep it.
set -euo pipefail
data=$(realpath "${1:?usage: benches/syscalls.sh DIR [CAIRN]}")
cd "$(dirname "$0")/.."
if [ -n "${2:-}" ]; then
  cairn=$(realpath "$2")
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
  cargo build --release --locked -p cairn-cli >&2
  cairn="$CARGO_TARGET_DIR/release/cairn"
fi
command -v strace >/dev/null || { echo "syscalls.sh needs strace" >&2; exit 2; }
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-syscalls.XXXXXX")}"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
files=$(find "$data" -type f | wc -l)
dirs=$(find "$data" -type d | wc -l)
echo "data: $data, $files files, $dirs directories" >&2
export CAIRN_REPOSITORY="$WORK/repo" CAIRN_CACHE_DIR="$WORK/cache" CAIRN_PASSWORD=syscalls
"$cairn" -q init --no-recovery-code
"$cairn" -q key add --new-key-file "$WORK/key" --label syscalls
export CAIRN_KEY_FILE="$WORK/key"
cold() { [ "$(id -u)" = 0 ] && sync && echo 3 > /proc/sys/vm/drop_caches || true; }

# step NAME: one timed snapshot, then one under strace into a fresh repository copy.
step() {
  local name=$1
  rm -rf "$WORK/before" "$WORK/cache-before"
  cp -a "$WORK/repo" "$WORK/before"
  if [ -d "$WORK/cache" ]; then cp -a "$WORK/cache" "$WORK/cache-before"; fi
  cold
  /usr/bin/time -f "%e s, %M KiB peak" -o "$WORK/time" "$cairn" -q snapshot "$data"
  # The traced run starts from the same repository and cache as the timed one did.
  rm -rf "$WORK/repo" "$WORK/cache"
  mv "$WORK/before" "$WORK/repo"
  if [ -d "$WORK/cache-before" ]; then mv "$WORK/cache-before" "$WORK/cache"; fi
  cold
  strace -f -c -o "$WORK/strace" "$cairn" -q snapshot "$data"
  python3 - "$WORK/strace" "$files" "$name" "$(cat "$WORK/time")" <<'EOF'
import sys
path, files, name, timed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
calls = {}
for line in open(path):
    parts = line.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
        calls[parts[-1]] = int(parts[3])
total = sum(calls.values())
print(f"{name}: {total / files:.2f} calls per file ({total} calls; untraced: {timed})")
for call, n in sorted(calls.items(), key=lambda kv: -kv[1]):
    if n / files >= 0.05:
        print(f"  {call:<16} {n / files:6.2f}")
EOF
}
step initial
step unchanged
