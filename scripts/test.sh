#!/usr/bin/env bash
# The whole test suite: formatting, clippy, unit, property, vector and integration tests.
# Builds go to a persistent target directory outside the clone (the bundled RocksDB takes
# ~20 minutes to build once on 2 cores; afterwards rebuilds take seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
export CARGO_TERM_COLOR=never
start=$(date +%s)
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
echo "test.sh: all tests passed in $(( $(date +%s) - start ))s"
