#!/bin/bash
# Restores of many small files with two cairn binaries, alternating: 5,000 files of 200 B to
# 8 KB in 50 directories, each restore into a fresh target (no deletes in between: ext4 pays
# for creating inodes right after mass deletes). Prints elapsed, user and system seconds.
# Usage: benches/restore-small-files.sh BEFORE_BIN AFTER_BIN [ROUNDS] [WORKDIR]
set -eu
before=$1 after=$2 rounds=${3:-8} W=${4:-/tmp/cairn-restore-small}
rm -rf "$W" && mkdir -p "$W/src"
python3 - "$W/src" <<'P'
import os, random, sys
random.seed(7)
for d in range(50):
    os.makedirs(f"{sys.argv[1]}/d{d}", exist_ok=True)
    for f in range(100):
        with open(f"{sys.argv[1]}/d{d}/f{f}.txt", "wb") as fh:
            fh.write(os.urandom(random.randint(200, 8000)))
P
echo pw > "$W/pw"
export CAIRN_PASSWORD_FILE=$W/pw
"$after" -q -r "$W/repo" --cache-dir "$W/cache" init --no-recovery-code
"$after" -q -r "$W/repo" --cache-dir "$W/cache" snapshot "$W/src"
for round in $(seq "$rounds"); do
  for b in before after; do
    bin=$before; [ "$b" = after ] && bin=$after
    sync; sleep 1
    /usr/bin/time -f "$b round $round: %e s elapsed, %U user, %S sys" \
      "$bin" -q -r "$W/repo" --cache-dir "$W/cache" restore latest --target "$W/t-$b-$round"
  done
done
rm -rf "$W"
