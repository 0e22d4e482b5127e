#!/usr/bin/env bash
# Soak: snapshot, forget + prune, a prune whose clock runs 31 minutes ahead, check, restore
# and key add/remove side by side against one local and one S3 repository, for SECONDS each
# (default 600), then every finished snapshot restored and compared. `.ci/run` runs the same
# test for 30 s (tests/it/soak.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
export CAIRN_S3_SERVER="$CARGO_TARGET_DIR/release/cairn-s3-server"
export CAIRN_SOAK_SECONDS="${1:-600}"
cargo build --workspace --all-targets --locked --quiet
cargo test --locked -p cairn-tests --test it -- soak:: --nocapture --test-threads 2
