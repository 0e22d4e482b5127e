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
# The fuzz targets live in their own workspace (running them needs nightly); they must at least
# compile. They depend on cairn-format alone, so they need no RocksDB.
cargo check --manifest-path engine/fuzz/Cargo.toml --locked --bins
# The CLI tests in tests/ drive the `cairn` binary, which `cargo test` does not rebuild (it
# builds bins only for integration tests of their own package): build every target first
# (the crash matrix's `cairn-killable` with them), then `cairn` once more on its own, as
# shipped: the workspace build unified the tests' engine features (test-vectors, fuzzing)
# into it. A test refuses a `cairn` that says it is a test build.
cargo build --workspace --all-targets --locked
cargo build -p cairn-cli --locked
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export CAIRN_S3_SERVER="$CARGO_TARGET_DIR/release/cairn-s3-server"
cargo test --workspace --locked 2>&1 | tee "$log"
# The backup, restore, check, prune and damage tests once more with every repository in a
# bucket of the test S3 server (plain http; the TLS path has tests of its own above).
CAIRN_TEST_BACKEND=s3 cargo test --workspace --test it --locked -- \
  roundtrip:: incremental:: check:: maintenance:: corruption:: dedup:: restore_options:: mount:: 2>&1 | tee -a "$log"
# The same through `cairn serve` (TLS on loopback) in front of a directory, and in front of a
# bucket of the test S3 server.
for backend in rest rest-s3; do
  CAIRN_TEST_BACKEND=$backend cargo test --workspace --test it --locked -- \
    roundtrip:: incremental:: check:: maintenance:: dedup:: 2>&1 | tee -a "$log"
done
# One closing line over every test binary (cargo prints one summary per binary, the last
# often being doc tests with 0 tests).
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo "test.sh: finished in $(( $(date +%s) - start ))s"
echo "tests: ${passed} passed, ${failed} failed"
