#!/usr/bin/env bash
# Peak RSS of one snapshot into an empty repository (1x) and into one already holding ten
# times as much distinct data (10x), release build, same data, same run. Shows whether memory
# grows with the repository (the index cache is the part that could).
#
# Usage: benches/rss-scale.sh [DIR]
#   DIR   the data snapshotted in both cases (default: /usr/share/doc and /usr/include copied
#         under $WORK, about 250 MiB)
# Environment: WORK (scratch, default a temp dir), KEEP=1 keeps it, SCALE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-cli >&2
cairn="$CARGO_TARGET_DIR/release/cairn"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-rss.XXXXXX")}"
SCALE="${SCALE:-10}"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
data="${1:-}"
if [ -z "$data" ]; then
  data="$WORK/data"
  [ -d "$data" ] || { mkdir -p "$data"; cp -a /usr/share/doc "$data/doc"; cp -a /usr/include "$data/include"; }
fi
bytes=$(du -sb "$data" | cut -f1)
mib=$((bytes >> 20))
echo password > "$WORK/pw"
export CAIRN_PASSWORD_FILE="$WORK/pw"

# filler N: about as much distinct data as DIR (random and text files, different per N).
filler() {
  local d="$WORK/filler"
  rm -rf "$d"; mkdir -p "$d"
  python3 - "$d" "$1" "$mib" <<'PY'
import os, random, sys
root, seed, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
words = [f"w{seed}x{i}" for i in range(5000)]
done, i = 0, 0
while done < mib << 20:
    size = rnd.choice([4 << 10, 64 << 10, 1 << 20, 8 << 20])
    with open(os.path.join(root, f"f{i}"), "wb") as f:
        if i % 2:
            f.write(rnd.randbytes(size))
        else:
            f.write(" ".join(rnd.choice(words) for _ in range(size // 6)).encode()[:size])
    done += size; i += 1
PY
}

measure() {
  local repo=$1 label=$2
  sync; sleep 1
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$cairn" -r "$repo" --cache-dir "$WORK/cache" snapshot "$data" > /dev/null
  read -r secs rss < "$WORK/t"
  echo "$label: $secs s, peak RSS $((rss / 1024)) MiB, repository $(du -sh "$repo" | cut -f1)"
}

"$cairn" -r "$WORK/r1" --cache-dir "$WORK/cache" init > /dev/null
measure "$WORK/r1" "1x (empty repository)"
"$cairn" -r "$WORK/r10" --cache-dir "$WORK/cache" init > /dev/null
for n in $(seq 1 "$SCALE"); do
  filler "$n"
  "$cairn" -r "$WORK/r10" --cache-dir "$WORK/cache" snapshot "$WORK/filler" > /dev/null
done
rm -rf "$WORK/filler"
measure "$WORK/r10" "${SCALE}x (repository holding ${SCALE}x $mib MiB of other data)"
