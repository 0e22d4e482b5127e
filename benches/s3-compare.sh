#!/usr/bin/env bash
# Snapshot, unchanged snapshot, restore and check --read-data of one data set into a local
# repository and into the test S3 server (s3s-fs on loopback, over TLS with a private CA made
# here), in one run, release build. Prints MiB/s and the S3/local time ratio per step.
#
# Usage: benches/s3-compare.sh [DIR]
#   DIR  the data (default: built under $WORK: /usr/include, /usr/share/doc, 200 MiB random,
#        shared libraries; about 600 MiB)
# Environment: WORK (scratch, default a temp dir), KEEP=1 keeps it, CONNECTIONS (default 4),
# RESTORE_DIR (default a directory in /dev/shm if writable, else in WORK).
# The server runs on the same machine and shares its cores with cairn (TLS, MD5 ETags). Both
# repositories get the same key-derivation cost (init would calibrate each on its own), and
# restores go to a tmpfs: on ext4 without a journal, files created soon after many were deleted
# take a slow path in the inode allocator, which would charge one restore for the other's
# deletion (see serve-compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-cli >&2
cairn="$CARGO_TARGET_DIR/release/cairn"
server_bin="$CARGO_TARGET_DIR/release/cairn-s3-server"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-s3cmp.XXXXXX")}"
CONNECTIONS="${CONNECTIONS:-4}"
mkdir -p "$WORK"
own_restore_dir=""
if [ -z "${RESTORE_DIR:-}" ]; then
  RESTORE_DIR=$(mktemp -d /dev/shm/cairn-s3cmp.XXXXXX 2>/dev/null || echo "$WORK/restores")
  own_restore_dir=$RESTORE_DIR
fi
mkdir -p "$RESTORE_DIR"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
  [ -z "$own_restore_dir" ] || rm -rf "$own_restore_dir"
}
trap cleanup EXIT

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_inputs "${1:-}"

mkdir -p "$WORK/s3/bench"
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret-key
coproc SERVER { exec "$server_bin" "$WORK/s3" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$tls/server.pem" "$tls/server.p8"; }
server_pid=$SERVER_PID
https=""
while read -r kind url <&"${SERVER[0]}"; do
  [ "$kind" = https ] && https=$url
  [ "$kind" = ready ] && break
done
[ -n "$https" ] || { echo "the test S3 server did not start" >&2; exit 1; }
port=${https##*:}

echo bench-password > "$WORK/pw"
export CAIRN_PASSWORD_FILE="$WORK/pw"
settle() { sync; sleep 1; }
secs() { /usr/bin/time -f %e -o "$WORK/t" "$@" > "$WORK/out" 2>&1 || { cat "$WORK/out" >&2; exit 1; }; cat "$WORK/t"; }

declare -A T
for where in local s3; do
  if [ "$where" = local ]; then
    repo=(-r "$WORK/local")
  else
    repo=(-r "s3:https://localhost:$port/bench/repo" --cacert "$tls/ca.pem")
  fi
  c=("$cairn" "${repo[@]}" --cache-dir "$WORK/cache-$where" --storage-connections "$CONNECTIONS")
  "${c[@]}" init --kdf-iterations 3 > /dev/null
  settle; T[$where,snapshot]=$(secs "${c[@]}" snapshot "$data")
  settle; T[$where,unchanged]=$(secs "${c[@]}" snapshot "$data")
  target="$RESTORE_DIR/restore-$where"
  settle; T[$where,restore]=$(secs "${c[@]}" restore latest --target "$target")
  diff -r --no-dereference "$data" "$target/${data#/}" > /dev/null || { echo "$where: the restore differs" >&2; exit 1; }
  rm -rf "$target"
  settle; T[$where,check]=$(secs "${c[@]}" check --read-data)
done

mib=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
echo
echo "| step ($mib MiB) | local | S3 over TLS (loopback) | S3 time / local time |"
echo "|---|---|---|---|"
for step in snapshot unchanged restore check; do
  l=${T[local,$step]} s=${T[s3,$step]}
  awk -v step="$step" -v l="$l" -v s="$s" -v mib="$mib" 'BEGIN {
    printf "| %s | %.2f s (%.0f MiB/s) | %.2f s (%.0f MiB/s) | %.2fx |\n", step, l, mib / l, s, mib / s, s / l }'
done
