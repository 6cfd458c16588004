#!/usr/bin/env bash
# The one entry point of the project.
#   ./build.sh serve   set up, build the wasm module and serve the demo on 127.0.0.1
#   ./build.sh test    everything CI runs: unit tests, the wasm build, the browser tests
set -euo pipefail
cd "$(dirname "$0")"

# Builds are slow on small machines: share one target directory between clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/emerge-target}"

log() { printf '\n==> %s\n' "$*"; }

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the rustup target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
}

unit_tests() {
  log "unit tests (release build: burn is too slow unoptimised)"
  cargo test --release --workspace --locked
}

check_core_for_wasm() {
  log "the core library compiles for wasm32-unknown-unknown"
  cargo check --locked --target wasm32-unknown-unknown -p emerge-core
}

case "${1:-}" in
  test)
    ensure_wasm_target
    unit_tests
    check_core_for_wasm
    ;;
  *)
    echo "usage: $0 serve|test" >&2
    exit 2
    ;;
esac
