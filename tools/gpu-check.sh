#!/usr/bin/env bash
# The engine on a real GPU, in one run: the device check (native wgpu held to Flex), the page's
# engine on Dawn (Chrome's WebGPU) held to the native CLI, and timings of both, into one results
# file. For a Linux x86-64 machine with a GPU driver and nothing else: no Rust, no Node, no
# internet. Everything it runs comes from the folder that tools/gpu-pack.sh fills:
#
#   emerge            the native CLI (default features: wgpu + fusion, WGSL, no autotune)
#   emerge-<variant>  optional builds for the investigation (autotune, spirv, autotune-checks)
#   node, dawn.node   Node.js and Dawn's Node addon (the npm package `webgpu`), maybe .xz
#   pkg/              the wasm-bindgen output the page loads
#   dawn/, grid.mjs   the Dawn harness (tests/dawn/harness.mjs and its helpers)
#   tools/, data/     the trainer's bench, the page's recipe and its training digits
#   models/mnist.bpk  the shipped model
#   *.deb             the Vulkan loader and GL dispatch (libvulkan1, libglvnd0, libegl1, …),
#                     used where the machine has none
#
#   tools/gpu-check.sh FOLDER [RESULTS]      (RESULTS defaults to FOLDER/results.md)
#
# Every step has its own time limit; the whole run stays under 8 minutes. Without a GPU it runs
# on the SwiftShader Vulkan driver (VK_ICD_FILENAMES), slowly, with a smaller check (QUICK=1).
set -uo pipefail
DIR=$(cd "${1:?usage: gpu-check.sh FOLDER [RESULTS]}" && pwd)
RESULTS=${2:-$DIR/results.md}
QUICK=${QUICK:-0}
SECONDS=0
cd "$DIR"
: >"$RESULTS"
say() { printf '%s\n' "$@" | tee -a "$RESULTS"; }
# Runs a step with a time limit, its output into the results as a code block.
step() {
  local title=$1 limit=$2
  shift 2
  say "" "## $title" "" '```' "\$ $*"
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$RESULTS"
  local status=${PIPESTATUS[0]}
  say "(exit $status after $((SECONDS - started)) s)" '```'
  return "$status"
}

# --- set-up: unpack, find the Vulkan loader and a driver -----------------------------------
# shellcheck source=tools/gpu-setup.sh
source "$DIR/gpu-setup.sh"

say "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')" ""
say "- machine: $(uname -m), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
command -v nvidia-smi >/dev/null && say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
say "- Vulkan loader: $(ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' | head -n 1 | sed 's/.*=> //')"
say "- Vulkan driver: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-found by the loader}}"
say "- Vulkan drivers on the machine: $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>/dev/null | grep json | tr '\n' ' ')"
say "- binaries: $(ls emerge emerge-* 2>/dev/null | grep -v '\.xz$' | tr '\n' ' ')"

MODEL=$DIR/models/mnist.bpk
if [ "$QUICK" = 1 ]; then
  CHECK=(--presets tiny --batches 1 --steps 10 --images 2)
else
  CHECK=(--presets ddpm-cifar10 --batches 1,16 --steps 50 --images 16)
fi

# --- (a) the device check: every build present, each held to Flex ---------------------------
step "(a) device check: emerge (the shipped GPU build)" 150 ./emerge check-devices --model "$MODEL" "${CHECK[@]}"
for variant in emerge-*; do
  [ -x "$variant" ] && [ "${variant%.xz}" = "$variant" ] || continue
  step "(a) device check: $variant" 120 "./$variant" check-devices --model "$MODEL" "${CHECK[@]}"
done

# --- (b) the page's engine on Dawn, against the native CLI --------------------------------
NODE=./node
[ -x "$NODE" ] || NODE=$(command -v node)
DAWN=(--pkg pkg --model "$MODEL" --dawn "$DIR/dawn.node")
step "(b) native reference for the Dawn run (Flex)" 60 ./emerge sample --model "$MODEL" --sampler ddim --eta 1 \
  --steps 10 --count 2 --class 3 --seed 7 --guidance 2 --out "$DIR/native.idx"
step "(b) the page's engine on Dawn: DDIM 10 steps, batch 2, digit 3, seed 7, w = 2" 120 "$NODE" dawn/harness.mjs "${DAWN[@]}" \
  --sampler ddim --eta 1 --steps 10 --batch 2 --class 3 --seed 7 --guidance 2 --expect "$DIR/native.idx"

# --- (c) timings: DDIM 50, DPM-Solver++(2M) 20 and the paper's DDPM, natively and through Dawn --
if [ "$QUICK" = 1 ]; then
  RUNS=("ddim 10 2")
else
  RUNS=("ddim 50 16" "dpmpp_2m 20 16" "ddpm 1000 16")
fi
for run in "${RUNS[@]}"; do
  read -r sampler steps batch <<<"$run"
  eta=()
  [ "$sampler" != ddim ] || eta=(--eta 1) # η is DDIM's alone
  devices=(gpu cpu)
  [ "$steps" -le 50 ] || devices=(gpu) # Flex would need minutes for 1000 steps
  for device in "${devices[@]}"; do
    step "(c) native $device: $sampler $steps steps, batch $batch, w = 1.25" 120 ./emerge sample --device "$device" \
      --model "$MODEL" --sampler "$sampler" "${eta[@]}" --steps "$steps" --count "$batch" --guidance 1.25 --class 7 \
      --out "$DIR/timing-$device-$sampler.idx"
  done
  step "(c) native gpu, kernels launched every step (--no-record): $sampler $steps steps, batch $batch" 120 \
    ./emerge sample --device gpu --no-record --model "$MODEL" --sampler "$sampler" "${eta[@]}" --steps "$steps" \
    --count "$batch" --guidance 1.25 --class 7 --out "$DIR/timing-plain-$sampler.idx"
  for record in "" --no-record; do
    step "(c) Dawn $record: $sampler $steps steps, batch $batch, w = 1.25, a frame read back every step" 150 "$NODE" \
      dawn/harness.mjs "${DAWN[@]}" $record --sampler "$sampler" --eta 1 --steps "$steps" --batch "$batch" --class 7 \
      --guidance 1.25
  done
done
# the batch-1 step (the target is the host cost of one guided step); --no-prepare: the kernels
# compiled by the first step instead of at load
for record in "" --no-record --no-prepare; do
  step "(c) Dawn $record: ddim 50 steps, batch 1, w = 1.25" 120 "$NODE" dawn/harness.mjs "${DAWN[@]}" $record \
    --sampler ddim --eta 1 --steps 50 --batch 1 --class 7 --guidance 1.25
done

# --- (d) launch batching: kernels per GPU submission (tasks_max: cubecl's default 32 natively,
# the page's engine 512, a replayed step in one submit), native and Dawn ------------------------
if [ "$QUICK" != 1 ]; then
  for tasks in 8 128 512; do
    step "(d) native gpu, CUBECL_WGPU_MAX_TASKS=$tasks: ddim 50 steps, batch 16" 60 env CUBECL_WGPU_MAX_TASKS=$tasks \
      ./emerge sample --device gpu --model "$MODEL" --sampler ddim --eta 1 --steps 50 --count 16 --guidance 1.25 \
      --class 7 --out "$DIR/timing-tasks-$tasks.idx"
  done
  for tasks in 32 128; do
    step "(d) Dawn, $tasks kernel launches per submit: ddim 50 steps, batch 16" 150 "$NODE" dawn/harness.mjs "${DAWN[@]}" \
      --tasks-per-submit "$tasks" --sampler ddim --eta 1 --steps 50 --batch 16 --class 7 --guidance 1.25
  done
  step "(d) one forward pass per batch (emerge bench)" 120 ./emerge bench --presets mnist,ddpm-cifar10 --batches 1,16,32 --runs 5
fi

# --- (e) the page's trainer on Dawn: the page's recipe (16/32/32, batch 64) on its digits ------
if [ -f data/training-images.idx.gz ]; then
  step "(e) the page's trainer on Dawn (WebGPU, no fusion): 30 steps of the page's recipe" 150 "$NODE" \
    tools/trainer-bench.mjs --backend webgpu --dawn "$DIR/dawn.node" --pkg pkg --recipe data/trainer.json --data data \
    --digits 6000 --steps 30 --target 3600
fi

say "" "finished in $SECONDS s"
