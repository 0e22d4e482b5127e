#!/usr/bin/env bash
# Installs what building Cairn needs on a fresh Debian/Ubuntu machine (idempotent).
# RocksDB's bindings run bindgen, which needs libclang; the bundled RocksDB needs a C++ compiler.
# The HSM tests run against a real SoftHSM2 token (the PKCS#11 module and softhsm2-util).
set -euo pipefail
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
{ [ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1; } || need+=(softhsm2)
# The soak test runs a pruning process whose clock is 31 minutes ahead (libfaketime).
command -v faketime >/dev/null 2>&1 || need+=(faketime)
# `cairn mount` (and its tests) use FUSE: /dev/fuse, and fusermount3 for users other than root.
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -e /dev/fuse ] || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"; $SUDO modprobe fuse 2>/dev/null || echo "setup: warning: no /dev/fuse; cairn mount cannot work here" >&2; }
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# The S3 tests run against a real S3-compatible server (s3s-fs, tests/s3-server) on loopback.
# It is its own small project; built once into the persistent target directory.
target="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
if [ ! -x "$target/release/cairn-s3-server" ] || [ tests/s3-server/src/main.rs -nt "$target/release/cairn-s3-server" ] \
  || [ tests/s3-server/Cargo.lock -nt "$target/release/cairn-s3-server" ]; then
  echo "setup: building the test S3 server (tests/s3-server)" >&2
  CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet --manifest-path tests/s3-server/Cargo.toml
  touch "$target/release/cairn-s3-server"
fi
