#!/usr/bin/env bash
# Snapshot, unchanged snapshot and restore of one data set, in one run, release build, into:
#   local        a repository directory
#   serve-local  `cairn serve` over TLS on loopback, in front of a directory
#   s3           the test S3 server (s3s-fs on loopback, over TLS)
#   serve-s3     `cairn serve` over TLS on loopback, in front of that S3 server
# then 8 clients backing up at once through one `cairn serve`, with the server's peak RSS.
# Prints seconds per step and the ratio to local storage. Every restore is compared with the
# data. The unchanged snapshot and the restore run in rounds over all four (best round counts).
# Restores are written to a tmpfs when there is one (RESTORE_DIR): what is compared is the way to
# the repository, and a disk's own noise would swamp it (on ext4 without a journal, as on this
# machine, creating files soon after many were deleted takes a slow path in the inode
# allocator, so whichever restore followed a deletion would be slower).
#
# Usage: benches/serve-compare.sh [DIR]
#   DIR  the data (default: built under $WORK: /usr/include, /usr/share/doc, 200 MiB random,
#        shared libraries; about 600 MiB)
# Environment: WORK (scratch, default a temp dir), KEEP=1 keeps it, CONNECTIONS (default 4),
# ROUNDS (default 3), RESTORE_DIR (default a directory in /dev/shm if writable, else in WORK).
# The servers run on the same machine and share its cores with cairn. Every repository gets the
# same key-derivation cost (Argon2id, 64 MiB, 3 passes; init would calibrate each one to about
# 0.5 s, and that calibration's noise alone moved an unchanged snapshot by 0.2 s).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-cli >&2
cairn="$CARGO_TARGET_DIR/release/cairn"
s3_bin="$CARGO_TARGET_DIR/release/cairn-s3-server"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-servecmp.XXXXXX")}"
CONNECTIONS="${CONNECTIONS:-4}"
ROUNDS="${ROUNDS:-3}"
mkdir -p "$WORK"
own_restore_dir=""
if [ -z "${RESTORE_DIR:-}" ]; then
  RESTORE_DIR=$(mktemp -d /dev/shm/cairn-servecmp.XXXXXX 2>/dev/null || echo "$WORK/restores")
  own_restore_dir=$RESTORE_DIR
fi
mkdir -p "$RESTORE_DIR"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
  [ -z "$own_restore_dir" ] || rm -rf "$own_restore_dir"
}
trap cleanup EXIT

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_inputs "${1:-}"

# The test S3 server.
mkdir -p "$WORK/s3/bench"
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_EC2_METADATA_DISABLED=true
coproc S3 { exec "$s3_bin" "$WORK/s3" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$tls/server.pem" "$tls/server.p8"; }
pids+=("$S3_PID")
s3_url=""
while read -r kind url <&"${S3[0]}"; do
  [ "$kind" = https ] && s3_url=$url
  [ "$kind" = ready ] && break
done
[ -n "$s3_url" ] || { echo "the test S3 server did not start" >&2; exit 1; }
s3_port=${s3_url##*:}

# An admin identity for every repository.
"$cairn" serve add-identity bench --identities "$WORK/identities.toml" --repository '*=admin' > "$WORK/token"

# Starts `cairn serve` in front of $1 (a directory or an s3: URL); sets serve_port, serve_pid.
start_serve() {
  local log="$WORK/serve-$2.out"
  "$cairn" --cacert "$tls/ca.pem" serve --storage "$1" --listen 127.0.0.1:0 \
    --identities "$WORK/identities.toml" --log "$WORK/serve-$2.log" \
    --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" > "$log" 2>&1 &
  serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 1 100); do
    grep -q "listening on" "$log" 2>/dev/null && break
    sleep 0.1
  done
  serve_port=$(sed -n 's|.*listening on https://127.0.0.1:\([0-9]*\).*|\1|p' "$log")
  [ -n "$serve_port" ] || { cat "$log" >&2; exit 1; }
}

mkdir -p "$WORK/served"
start_serve "$WORK/served" local
local_serve_port=$serve_port
start_serve "s3:https://localhost:$s3_port/bench/served" s3
s3_serve_port=$serve_port

echo bench-password > "$WORK/pw"
export CAIRN_PASSWORD_FILE="$WORK/pw"
settle() { sync; sleep 1; }
secs() { /usr/bin/time -f %e -o "$WORK/t" "$@" > "$WORK/out" 2>&1 || { cat "$WORK/out" >&2; exit 1; }; cat "$WORK/t"; }

declare -A T
targets=(local serve-local s3 serve-s3)
# The command line of cairn for target $1, in array `c`.
client() {
  local repo
  case $1 in
    local) repo=(-r "$WORK/local") ;;
    serve-local) repo=(-r "rest:https://localhost:$local_serve_port/repo" --server-token-file "$WORK/token") ;;
    s3) repo=(-r "s3:https://localhost:$s3_port/bench/repo") ;;
    serve-s3) repo=(-r "rest:https://localhost:$s3_serve_port/repo" --server-token-file "$WORK/token") ;;
  esac
  c=("$cairn" "${repo[@]}" --cacert "$tls/ca.pem" --cache-dir "$WORK/cache-$1" --storage-connections "$CONNECTIONS")
}
# Keeps the lower of T[$1] and $2.
best() { if [ -z "${T[$1]:-}" ] || awk -v a="$2" -v b="${T[$1]}" 'BEGIN { exit !(a < b) }'; then T[$1]=$2; fi; }
for where in "${targets[@]}"; do
  client "$where"
  "${c[@]}" init --kdf-iterations 3 > /dev/null
  settle; T[$where,snapshot]=$(secs "${c[@]}" snapshot "$data")
done
# The steps that can be repeated run in rounds, each round over every target in turn, and the
# best round counts: the machine is shared and noisy.
for _ in $(seq 1 "$ROUNDS"); do
  for where in "${targets[@]}"; do
    client "$where"
    settle; best "$where,unchanged" "$(secs "${c[@]}" snapshot "$data")"
    target="$RESTORE_DIR/restore-$where"
    settle; best "$where,restore" "$(secs "${c[@]}" restore latest --target "$target")"
    diff -r --no-dereference "$data" "$target/${data#/}" > /dev/null || { echo "$where: the restore differs" >&2; exit 1; }
    rm -rf "$target"
  done
done

# 8 clients at once through one server, each into its own repository, of an eighth of the data
# each (whole top-level entries, dealt round-robin).
start_serve "$WORK/served" eight
mapfile -t entries < <(find "$data" -mindepth 2 -maxdepth 2 | sort)
for i in $(seq 0 7); do mkdir -p "$WORK/eighth-$i"; done
for n in "${!entries[@]}"; do echo "${entries[$n]}" >> "$WORK/eighth-$((n % 8))/list"; done
start=$(date +%s.%N)
clients=()
for i in $(seq 0 7); do
  (
    c=("$cairn" -r "rest:https://localhost:$serve_port/eight-$i" --server-token-file "$WORK/token" \
      --cacert "$tls/ca.pem" --cache-dir "$WORK/cache-eight-$i")
    "${c[@]}" init --kdf-iterations 3 > /dev/null 2>&1
    mapfile -t mine < "$WORK/eighth-$i/list"
    "${c[@]}" snapshot "${mine[@]}" > "$WORK/eight-$i.out" 2>&1
  ) &
  clients+=("$!")
done
for job in "${clients[@]}"; do
  wait "$job" || { cat "$WORK"/eight-*.out >&2; exit 1; }
done
eight_secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
peak_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$serve_pid/status")

mib=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
echo
echo "| step ($mib MiB) | local | cairn serve, local | S3 | cairn serve, S3 | serve-local / local | serve-S3 / S3 |"
echo "|---|---|---|---|---|---|---|"
for step in snapshot unchanged restore; do
  awk -v step="$step" -v l="${T[local,$step]}" -v sl="${T[serve-local,$step]}" -v s="${T[s3,$step]}" \
    -v ss="${T[serve-s3,$step]}" 'BEGIN {
    printf "| %s | %.2f s | %.2f s | %.2f s | %.2f s | %.2fx | %.2fx |\n", step, l, sl, s, ss, sl / l, ss / s }'
done
echo
echo "8 clients at once through one cairn serve (an eighth of the data each): ${eight_secs} s; the server's peak RSS $((peak_kib / 1024)) MiB"
