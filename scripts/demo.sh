#!/usr/bin/env bash
# A real backup job, end to end: build cairn, create a local repository with a
# generated password file, snapshot a directory of real files, restore it and verify every
# byte, then forget/prune and check --read-data as a nightly job would, rotate the repository
# key and re-encrypt, and verify the audit log.
# Usage: scripts/demo.sh [SOURCE_DIR] (default: /usr/share/doc).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
# The dev profile, as scripts/test.sh builds it: its dependencies (RocksDB, BLAKE3, zstd, the
# ciphers) are optimised there too, and building them once serves both scripts, where a
# release build would compile the bundled RocksDB a second time (about 20 minutes on 2 cores).
# Only cairn-cli, so the binary has none of the test-only engine features the workspace build
# turns on (test-vectors, fuzzing); that costs a rebuild of the engine, not of RocksDB.
# `cargo install --path cli` makes the stripped release binary users run.
cargo build --locked -p cairn-cli
cairn="$CARGO_TARGET_DIR/debug/cairn"
src="$(realpath "${1:-/usr/share/doc}")"
work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
head -c 32 /dev/urandom | base64 > "$work/password"
export CAIRN_REPOSITORY="$work/repo" CAIRN_PASSWORD_FILE="$work/password" CAIRN_CACHE_DIR="$work/cache"
"$cairn" init --recovery-code-out "$work/recovery-code"
"$cairn" snapshot "$src"
"$cairn" snapshot "$src"   # unchanged: adds almost nothing
"$cairn" snapshots
"$cairn" restore latest --target "$work/restored"
diff -r --no-dereference "$src" "$work/restored$src" && echo "demo: restored tree matches $src byte for byte"
"$cairn" --recovery-code-file "$work/recovery-code" snapshots --json > /dev/null && echo "demo: the recovery code opens the repository"
"$cairn" forget --keep-last 1 --prune     # what a nightly job does after its snapshot
"$cairn" check --read-data && echo "demo: every pack and blob verified"
"$cairn" key rotate --reencrypt            # new repository key; old data re-encrypted, old epoch retired
"$cairn" restore latest --target "$work/restored-after-rotation" --json > /dev/null
diff -r --no-dereference "$src" "$work/restored-after-rotation$src" && echo "demo: restore after key rotation matches"
"$cairn" key list
"$cairn" audit log
"$cairn" audit verify && echo "demo: the audit chain is whole and matches the repository"
du -sh "$work/repo" | sed 's/^/demo: repository size /'
