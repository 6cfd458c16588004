#!/usr/bin/env bash
# Fills one folder with everything tools/gpu-check.sh needs on a GPU machine that has neither
# Rust nor Node nor internet: the native CLI (and, with VARIANTS, builds for the investigation),
# the page's pkg/ (sampling and the WebGPU trainer), Node.js, Dawn's Node addon, the trainer's
# bench, recipe and digits, the Vulkan loader and the shipped model. Large
# files are xz-compressed (gpu-check.sh unpacks them).
#
#   tools/gpu-pack.sh FOLDER                     the shipped GPU build only
#   VARIANTS="autotune spirv" tools/gpu-pack.sh FOLDER
#   DATA=<MNIST dir> tools/gpu-pack.sh FOLDER    also the data set and the classifier, for
#                                                tools/gpu-train.sh (11 MB more)
#   DAWN=0 …                                     without Node, Dawn and pkg/ (29 MB less: room
#                                                for a variant within the 64 MiB a run carries)
#
# Run from a checkout after ./build.sh site (or it runs that) and with tests/node_modules
# installed (./build.sh test or `cd tests && npm ci`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mkdir -p "${1:?usage: gpu-pack.sh FOLDER}" && cd "$1" && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/emerge-target}"
pack() { xz -9 -T0 -c "$1" >"$OUT/$2.xz"; }

cargo build --release --locked -p emerge
rm -f "$OUT"/emerge-*
strip -o "$OUT/emerge" "$CARGO_TARGET_DIR/release/emerge"
xz -9 -T0 -f "$OUT/emerge"
for variant in ${VARIANTS:-}; do
  cargo build --release --locked -p emerge --features "$variant"
  strip -o "$OUT/emerge-$variant" "$CARGO_TARGET_DIR/release/emerge"
  xz -9 -T0 -f "$OUT/emerge-$variant"
done
# Leave the default build in place for whatever runs next.
[ -z "${VARIANTS:-}" ] || cargo build --release --locked -p emerge

rm -rf "$OUT/pkg" "$OUT/dawn" "$OUT/node.xz" "$OUT/dawn.node.xz" "$OUT/grid.mjs"
if [ "${DAWN:-1}" != 0 ]; then
  [ -f pkg/emerge_web_bg.wasm ] || ./build.sh site
  mkdir "$OUT/pkg"
  for module in emerge_web emerge_cpu emerge_train_gpu; do
    cp "pkg/$module.js" "$OUT/pkg/"
    pack "pkg/${module}_bg.wasm" "pkg/${module}_bg.wasm"
  done
  pack "$(command -v node)" node
  pack tests/node_modules/webgpu/dist/linux-x64/dawn.node dawn.node
  mkdir -p "$OUT/dawn" "$OUT/tools" "$OUT/tests/dawn" "$OUT/data"
  cp tests/dawn/harness.mjs tests/dawn/webgpu.mjs "$OUT/dawn/" && cp tests/grid.mjs "$OUT/"
  # the page's trainer on Dawn: the bench, the page's recipe and its digits (where the site has them)
  cp tools/trainer-bench.mjs "$OUT/tools/" && cp tests/dawn/webgpu.mjs "$OUT/tests/dawn/"
  cp www/data/trainer.json "$OUT/data/"
  cp site/data/training-*.idx.gz "$OUT/data/" 2>/dev/null || echo "no site/data/training-*.idx.gz: build the site with EMERGE_MNIST for the trainer's step"
fi
mkdir -p "$OUT/models"
cp www/models/mnist.bpk "$OUT/models/"
cp tools/gpu-setup.sh tools/gpu-check.sh tools/gpu-train.sh tools/recipe-arms.sh "$OUT/"
if [ -n "${DATA:-}" ]; then
  mkdir -p "$OUT/mnist"
  cp "$DATA"/*-ubyte.gz "$OUT/mnist/"
  cp crates/emerge/assets/mnist-classifier.bpk "$OUT/models/"
fi
(cd "$OUT" && rm -f ./*.deb && apt-get download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2 >/dev/null)
du -sh "$OUT"
ls -la "$OUT"
echo "packed into $OUT from $ROOT"
