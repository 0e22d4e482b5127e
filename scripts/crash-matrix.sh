#!/usr/bin/env bash
# The whole crash-point matrix (tests/it/crash_matrix/): every command that changes the
# repository killed with SIGKILL at each of its storage writes, and its rerun killed too, each
# crash followed by the checks (every slot opens, check --read-data, every snapshot restores
# byte for byte, the rerun completes). `.ci/run` runs a sample of it with the suite; this runs
# all of it and prints the figures (RELIABILITY.md has those of the last full run).
# CAIRN_CRASH_JOBS (default 2) crash points run at once.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
export CARGO_TERM_COLOR=never
# The matrix runs `cairn-killable` (`cairn` with kill points, a binary of the tests crate)
# and checks with the shipped `cairn`, built on its own last (see scripts/test.sh).
cargo build --workspace --all-targets --locked
cargo build -p cairn-cli --locked
CAIRN_CRASH_POINTS=all cargo test -p cairn-tests --test it --locked -- \
  crash_matrix:: --nocapture --test-threads 1
