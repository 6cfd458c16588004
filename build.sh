#!/usr/bin/env bash
# The one entry point of the project.
#   ./build.sh serve   set up, build the wasm module and serve the demo on 127.0.0.1
#   ./build.sh site    build the static site into ./site (what GitHub Pages publishes)
#   ./build.sh test    everything CI runs: formatting, the page's unit tests, clippy, unit tests,
#                      the device check, the wasm build, the browser tests and the engine on Dawn
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
  if ! rustup target list --installed | grep -x wasm32-unknown-unknown >/dev/null; then
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

# One build of the engine: `cargo build` of emerge-web with the features given, then
# wasm-bindgen's glue as pkg/NAME.js and pkg/NAME_bg.wasm.
build_module() {
  local name=$1
  shift
  log "building the wasm module $name (profile wasm-release, features: $*)"
  cargo build --locked --profile wasm-release --target wasm32-unknown-unknown -p emerge-web "$@"
  # The profile keeps the name section (so wasm-bindgen can read the target features); the
  # output drops it.
  wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
    --out-dir pkg --out-name "$name" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/emerge_web.wasm"
}

# The page's engine in two builds, so that a visitor downloads one backend: WebGPU, and the CPU
# (Flex) only where WebGPU is missing or fails; the trainer (autodiff) likewise on WebGPU (without
# fusion) and on the CPU, loaded only by a reader who trains. No wasm-opt: `-Oz` (binaryen 132)
# shrinks the raw modules by a quarter but makes them larger gzip-compressed, as servers send them
# (WebGPU 3.03 → 3.17 MB, CPU 0.49 → 0.57 MB), and takes minutes.
build_wasm() {
  ensure_wasm_toolchain
  rm -rf pkg
  build_module emerge_web --no-default-features --features webgpu
  build_module emerge_cpu --no-default-features --features cpu
  build_module emerge_train --no-default-features --features train
  build_module emerge_train_gpu --no-default-features --features train-webgpu
  write_module_sizes
}

# pkg/modules.json: each module's bytes (wasm and glue), raw and gzip -9 as a server sends them,
# for the embed's Play button to say what it will download.
write_module_sizes() {
  local json='{' separator='' name raw gzip
  for name in emerge_web emerge_cpu emerge_train emerge_train_gpu; do
    raw=$(cat "pkg/${name}_bg.wasm" "pkg/$name.js" | wc -c)
    gzip=$(($(gzip -9 -c "pkg/${name}_bg.wasm" | wc -c) + $(gzip -9 -c "pkg/$name.js" | wc -c)))
    json+="$separator\"$name\": {\"bytes\": $((raw)), \"gzip_bytes\": $gzip}"
    separator=', '
  done
  echo "$json}" >pkg/modules.json
  log "module sizes: $(cat pkg/modules.json)"
}

# Without a GPU, native wgpu (the device check) and Dawn (the engine outside the browser) run on
# the SwiftShader Vulkan driver that Debian's chromium package ships, through the Vulkan loader.
SWIFTSHADER=/usr/lib/chromium/vk_swiftshader_icd.json
ensure_vulkan() {
  if ! ldconfig -p | grep 'libvulkan.so.1' >/dev/null || [ ! -f "$SWIFTSHADER" ]; then
    echo "the tests need the Vulkan loader and Chromium's SwiftShader: apt-get install libvulkan1 chromium" >&2
    exit 1
  fi
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
}

# The site: www/ plus the wasm-bindgen output, every URL relative, and the trainer's digits.
assemble_site() {
  rm -rf site
  cp -r www site
  cp -r pkg site/pkg
  bundle_training_digits
}

# The page trainer's digits, 600 of each class from MNIST's training split, where EMERGE_MNIST
# (default ../shared/data/mnist) has it: the data set is never committed, so a site built without
# it has a manifest of no digits, and a trainer that says so.
bundle_training_digits() {
  local mnist="${EMERGE_MNIST:-$ROOT/../shared/data/mnist}"
  if [ -e "$mnist/train-images-idx3-ubyte.gz" ] || [ -e "$mnist/train-images-idx3-ubyte" ]; then
    node tools/training-digits.mjs "$mnist" site/data --per-class 600
  else
    log "no MNIST training split in $mnist (set EMERGE_MNIST): the site's trainer will say it has no digits"
    echo '{ "count": 0 }' >site/data/training-digits.json
  fi
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
    ensure_vulkan
    log "formatting and syntax (cargo fmt --check, node --check on every module)"
    cargo fmt --all --check
    for module in www/js/*.js www/js/views/*.js tests/*.mjs tools/*.mjs tests/e2e/*.mjs tests/dawn/*.mjs tests/unit/*.mjs; do node --check "$module"; done
    log "the page's unit tests (node --test tests/unit: settings.js, no browser)"
    node --test tests/unit/
    log "clippy, warnings as errors: native, and wasm32 (the core and the page's engine compile there)"
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy --locked --target wasm32-unknown-unknown -p emerge-core -p emerge-web -- -D warnings
    cargo clippy --locked --target wasm32-unknown-unknown -p emerge-web --no-default-features --features webgpu -- -D warnings
    cargo clippy --locked --target wasm32-unknown-unknown -p emerge-web --no-default-features --features train -- -D warnings
    cargo clippy --locked --target wasm32-unknown-unknown -p emerge-web --no-default-features --features train-webgpu -- -D warnings
    log "unit tests (release build: burn is too slow unoptimised)"
    VK_ICD_FILENAMES=$SWIFTSHADER cargo test --release --workspace --locked
    log "device check: native wgpu on SwiftShader's Vulkan held to Flex (small cases: it is emulated)"
    VK_ICD_FILENAMES=$SWIFTSHADER "$CARGO_TARGET_DIR/release/emerge" check-devices --require-gpu \
      --presets tiny --batches 1 --steps 10 --images 2
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
