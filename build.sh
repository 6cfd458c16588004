#!/usr/bin/env bash
# The one entry point of the project.
#   ./build.sh serve   set up, build the wasm module and serve the demo on 127.0.0.1
#   ./build.sh site    build the static site into ./site (what GitHub Pages publishes)
#   ./build.sh test    everything CI runs: unit tests, the wasm build, the browser tests
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

# Builds are slow on small machines: share one target directory between clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/emerge-target}"
PORT="${PORT:-8000}"

log() { printf '\n==> %s\n' "$*"; }

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_toolchain() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the rustup target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
  local want have
  want=$(wasm_bindgen_version)
  have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" != "$want" ]; then
    log "installing wasm-bindgen-cli $want (found: ${have:-none}; takes minutes once)"
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

build_wasm() {
  ensure_wasm_toolchain
  log "building the wasm module (profile wasm-release)"
  cargo build --locked --profile wasm-release --target wasm32-unknown-unknown -p emerge-web
  rm -rf pkg
  wasm-bindgen --target web --no-typescript --out-dir pkg \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/emerge_web.wasm"
  if command -v wasm-opt >/dev/null; then
    log "wasm-opt -O2"
    wasm-opt -O2 --enable-bulk-memory --enable-nontrapping-float-to-int pkg/emerge_web_bg.wasm -o pkg/emerge_web_bg.wasm
  fi
}

# The site: www/ plus the wasm-bindgen output, every URL relative.
assemble_site() {
  rm -rf site
  cp -r www site
  cp -r pkg site/pkg
}

ensure_node_packages() {
  if [ ! -d tests/node_modules/playwright-core ]; then
    log "installing the test's node packages"
    (cd tests && npm ci --no-audit --no-fund)
  fi
}

case "${1:-}" in
  serve)
    build_wasm
    assemble_site
    ensure_node_packages
    log "serving the demo (Ctrl-C stops)"
    exec node tests/serve.mjs site "$PORT"
    ;;
  site)
    build_wasm
    assemble_site
    ;;
  test)
    ensure_wasm_toolchain
    log "unit tests (release build: burn is too slow unoptimised)"
    cargo test --release --workspace --locked
    log "the core library compiles for wasm32-unknown-unknown"
    cargo check --locked --target wasm32-unknown-unknown -p emerge-core
    build_wasm
    assemble_site
    ensure_node_packages
    log "browser tests (headless Chromium, WebGPU on SwiftShader)"
    (cd tests && EMERGE_SITE="$ROOT/site" EMERGE_CLI="$CARGO_TARGET_DIR/release/emerge" npm test)
    ;;
  *)
    echo "usage: $0 serve|site|test" >&2
    exit 2
    ;;
esac
