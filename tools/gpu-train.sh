#!/usr/bin/env bash
# Training on a GPU machine, in one time-boxed run: the recipe comparison (short runs that each
# change one thing from the baseline recipe, same seed and same number of steps), two longer runs
# of the recipe the CPU screen kept (batch 64 and 128) that export EMA checkpoints for the page's
# training timeline, and `emerge eval` of everything (1000 samples; guidance sweeps with and
# without an interval for the long runs). All runs train at once: a training step is
# launch-bound (on an H100 one run alone took 0.36 s per step of 128 images with the GPU 44 % busy; eleven side by
# side took 2.4 s per step each, 1.6× the images per second of one alone; both with kernel
# fusion, which computes wrong gradients. Without fusion ten side by side took 1.8 to 2.2 s per
# step each, about 360 images per second in all: 50 steps per short run in this budget, too few
# to compare recipes). The runs' lengths come from a calibration: every recipe takes a few steps
# side by side and the step times measured under that load size the runs to the time left.
# Models trained elsewhere are evaluated first, each alone (13 s per 1000-sample evaluation on
# an H100, against about 800 s on 2 CPU cores; side by side with ten training runs, one took
# 90 s or more).
#
#   tools/gpu-train.sh FOLDER RESULTS [SECONDS]      (SECONDS: the whole run's budget, default 540)
#
# FOLDER is filled by `DATA=<MNIST dir> tools/gpu-pack.sh FOLDER` (with VARIANTS=autotune, the
# autotuned build trains if its training rows of `check-devices` pass on this GPU at the batch
# sizes the runs use; otherwise the shipped build does). RESULTS receives at most eight
# files (the device machine returns no more): results.tar.xz (logs, evals, sample grids) and one
# tar per long run (its final model and timeline). Without a GPU (DEVICE=cpu, or SwiftShader) it
# runs the same plan, short (QUICK=1).
set -uo pipefail
DIR=$(cd "${1:?usage: gpu-train.sh FOLDER RESULTS [SECONDS]}" && pwd)
RESULTS=$(mkdir -p "${2:?usage: gpu-train.sh FOLDER RESULTS [SECONDS]}" && cd "$2" && pwd)
BUDGET=${3:-540}
DEVICE=${DEVICE:-gpu}
QUICK=${QUICK:-0}
SECONDS=0
cd "$DIR"
# shellcheck source=tools/gpu-setup.sh
source "$DIR/gpu-setup.sh"
WORK=$DIR/work
rm -rf "$WORK" && mkdir -p "$WORK/runs" "$WORK/evals" "$WORK/logs"
say() { printf '%s\n' "$@" | tee -a "$WORK/summary.md"; }
DATA=$DIR/mnist
CLASSIFIER=$DIR/models/mnist-classifier.bpk

# The recipe arms: BASELINE, SHORT (name|arguments), and KEPT: what the 600-step screen on the
# CPU kept (tools/recipe-compare.sh; the model card's table).
# shellcheck source=tools/recipe-arms.sh
source "$DIR/recipe-arms.sh"
LONG=(
  "long-kept|$KEPT"
  "long-kept-batch-128|$KEPT --batch-size 128"
)
TIMELINE=0,250,500,1000,2000,4000
if [ "$QUICK" = 1 ]; then
  SHORT=("${SHORT[@]:0:2}")
  LONG=("long-quick|$BASELINE")
  TIMELINE=0,2
fi
# Nothing new starts after this moment, so the results are packed in time.
DEADLINE=$(($(date +%s) + BUDGET - 25))
EVAL_COUNT=1000
[ "$QUICK" = 1 ] && EVAL_COUNT=20

say "# GPU training, $(date -u '+%Y-%m-%d %H:%M UTC'), budget $BUDGET s, device $DEVICE" ""
command -v nvidia-smi >/dev/null && say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
say "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

# Which build trains: the autotuned one where its loss and gradients match Flex at the runs'
# batch sizes on this GPU, else the shipped one (WGSL, no fusion, no autotune). Tuning is slow:
# on an H100 the check's first backward pass alone took 74 s, and the whole check over 150 s.
EMERGE=./emerge
if [ "$DEVICE" = gpu ] && [ -x ./emerge-autotune ]; then
  if timeout --kill-after=5 240 ./emerge-autotune check-devices --require-gpu --presets tiny --batches 64,128 \
    --steps 5 --images 2 >"$WORK/logs/check-autotune.log" 2>&1; then
    EMERGE=./emerge-autotune
  fi
  say "- autotuned build's check-devices at batches 64 and 128: $(tail -n 1 "$WORK/logs/check-autotune.log") ($SECONDS s)"
fi
say "- training with $EMERGE"
export EMERGE

# The page's engine on this GPU through Dawn, before the training loads it (timings alone).
if [ "$QUICK" != 1 ] && [ -x ./node ] && [ -f dawn.node ]; then
  for batch in 1 16; do
    timeout --kill-after=5 40 ./node dawn/harness.mjs --pkg pkg --model models/mnist.bpk --dawn "$DIR/dawn.node" \
      --sampler ddim --eta 1 --steps 50 --batch "$batch" --class 7 --guidance 1.25 \
      --json "$WORK/logs/dawn-batch-$batch.json" >"$WORK/logs/dawn-batch-$batch.log" 2>&1
    say "- the page's engine on Dawn, DDIM 50 steps, batch $batch: $(tail -c 400 "$WORK/logs/dawn-batch-$batch.log" | tr '\n' ' ')"
  done
fi

# Trains recipe $2 (name|arguments) into $WORK/runs/$1 for $3 steps, in the background, killed
# after $4 s (its newest checkpoint stays); its process id in TRAINING.
train() {
  local dir=$1 spec=$2 steps=$3 limit=$4
  shift 4
  local args=${spec#*|}
  # shellcheck disable=SC2086
  timeout --kill-after=5 "$limit" "$EMERGE" train --device "$DEVICE" --data "$DATA" --out "$dir" \
    --steps "$steps" --seed 0 --quiet $args "$@" >"$dir.log" 2>&1 &
  TRAINING=$!
}

# Seconds per step of a run from its log.csv (steps 6 to the last: compilation excluded).
seconds_per_step() {
  awk -F, 'NR == 7 { t0 = $5; s0 = $1 } END { if ($1 > s0) printf "%.4f", ($5 - t0) / ($1 - s0); else print 1 }' "$1/log.csv"
}

# --- calibration: every run side by side for a few steps ------------------------------------
CAL_STEPS=20
[ "$QUICK" = 1 ] && CAL_STEPS=8
for spec in "${SHORT[@]}" "${LONG[@]}"; do
  train "$WORK/calibrate-${spec%%|*}" "$spec" "$CAL_STEPS" 120 --sample-every 0 --checkpoint-every 100000
done
wait
say "" "## calibration ($CAL_STEPS steps each, all side by side; $SECONDS s so far)" "" "| run | s/step |" "| --- | --- |"
declare -A PER_STEP
for spec in "${SHORT[@]}" "${LONG[@]}"; do
  name=${spec%%|*}
  if [ -f "$WORK/calibrate-$name/log.csv" ]; then
    PER_STEP[$name]=$(seconds_per_step "$WORK/calibrate-$name")
  else
    say "| $name | failed: $(tail -n 3 "$WORK/calibrate-$name.log" | tr '\n' ' ') |"
    cp "$WORK/summary.md" "$RESULTS/"
    exit 1
  fi
  say "| $name | ${PER_STEP[$name]} |"
done
mv "$WORK"/calibrate-*.log "$WORK/logs/" 2>/dev/null
rm -rf "$WORK"/calibrate-*

# Exports run $1's EMA weights to $WORK/models/$1.bpk.
export_run() {
  "$EMERGE" export --run "$WORK/runs/$1" --out "$WORK/models" --name "$1" >>"$WORK/logs/export.log" 2>&1
}
# Evaluates model $1 into evals/$2.json (and .md) with the remaining arguments, within $3 s
# (and not past the deadline).
evaluate() {
  local model=$1 name=$2 limit=$3 now
  shift 3
  now=$(date +%s)
  [ $((now + 20)) -lt "$DEADLINE" ] || return 0
  [ $((now + limit)) -lt "$DEADLINE" ] || limit=$((DEADLINE - now))
  timeout --kill-after=5 "$limit" "$EMERGE" eval --device "$DEVICE" --model "$model" --data "$DATA" \
    --classifier "$CLASSIFIER" --count "$EVAL_COUNT" --batch 500 --json "$WORK/evals/$name.json" "$@" \
    >"$WORK/evals/$name.md" 2>"$WORK/logs/eval-$name.log"
}
# Runs the queued commands (one per line of $1), $2 at a time.
parallel() { xargs -P "$2" -I{} bash -c '{}' <"$1"; }
export -f evaluate
export WORK DEVICE DATA CLASSIFIER EVAL_COUNT DEADLINE

# Guidance cases, most telling first (the deadline may stop a queue): the default w, a banded
# w = 2, no guidance, … The bands are those of tools/guidance-sweep.sh for the cosine schedule
# the kept recipe trains with: t ≤ 560 spans the noise levels of the linear schedule's t ≤ 300.
GUIDANCE_CASES=("w1.25|--guidance 1.25" "w2-band0-560|--guidance 2 --guidance-interval 0-560" "w1|--guidance 1"
  "w2|--guidance 2" "w3-band0-560|--guidance 3 --guidance-interval 0-560" "w1.5|--guidance 1.5" "w3|--guidance 3"
  "w2-band0-300|--guidance 2 --guidance-interval 0-300" "w3-band0-300|--guidance 3 --guidance-interval 0-300")

# --- models trained elsewhere (models/candidates/*.bpk): evaluated first, one at a time --------
# The page's default, the guidance sweep, then the paper's DDPM with all T steps (300 samples:
# about 80 s), within a third of the budget.
: >"$WORK/queue-candidates"
DDPM_COUNT=300
[ "$QUICK" = 1 ] && DDPM_COUNT=10
for model in "$DIR"/models/candidates/*.bpk; do
  [ -e "$model" ] || continue
  name=$(basename "$model" .bpk)
  {
    for case in "${GUIDANCE_CASES[@]}"; do echo "evaluate $model $name-${case%%|*} 60 ${case#*|}"; done
    echo "EVAL_COUNT=$DDPM_COUNT evaluate $model $name-ddpm1000 150 --guidance 1.25 --sampler ddpm"
  } >>"$WORK/queue-candidates"
done
[ "$QUICK" = 1 ] && sed -n '1p;$p' "$WORK/queue-candidates" >"$WORK/queue-quick" && mv "$WORK/queue-quick" "$WORK/queue-candidates"
CANDIDATES_END=$(($(date +%s) + BUDGET / 3))
while read -r command; do
  [ "$(date +%s)" -lt "$CANDIDATES_END" ] || break
  bash -c "$command"
done <"$WORK/queue-candidates"
say "- evaluations of models trained elsewhere done at $SECONDS s"

# --- the runs ---------------------------------------------------------------------------------
# Short runs end 40 % into the time left, long runs at 72 %: the rest is for the evaluations.
left=$((BUDGET - SECONDS))
short_end=$((SECONDS + left * 40 / 100))
long_end=$((SECONDS + left * 72 / 100))
steps_for() { awk -v s="$1" -v p="$2" 'BEGIN { n = int(0.85 * s / p); print (n < 10 ? 10 : n) }'; }
short_steps=1000000
for spec in "${SHORT[@]}"; do
  n=$(steps_for $((short_end - SECONDS)) "${PER_STEP[${spec%%|*}]}")
  [ "$n" -lt "$short_steps" ] && short_steps=$n
done
short_steps=$((short_steps / 10 * 10))
say "" "## runs (started at $SECONDS s)" "" "- short runs: $short_steps steps each (the slowest recipe's share of $((short_end - SECONDS)) s)"
SHORT_PIDS=()
for spec in "${SHORT[@]}"; do
  train "$WORK/runs/${spec%%|*}" "$spec" "$short_steps" $((short_end - SECONDS + 60)) --sample-every 0 \
    --checkpoint-every 500
  SHORT_PIDS+=("$TRAINING")
done
declare -A LONG_STEPS
LONG_PIDS=()
for spec in "${LONG[@]}"; do
  name=${spec%%|*}
  n=$(steps_for $((long_end - SECONDS)) "${PER_STEP[$name]}")
  LONG_STEPS[$name]=$((n / 10 * 10))
  say "- $name: ${LONG_STEPS[$name]} steps (${spec#*|})"
  limit=$((long_end - SECONDS + 60))
  [ "$limit" -lt $((BUDGET - 60 - SECONDS)) ] || limit=$((BUDGET - 60 - SECONDS))
  train "$WORK/runs/$name" "$spec" "${LONG_STEPS[$name]}" "$limit" \
    --timeline "$TIMELINE" --sample-every 1000 --checkpoint-every 250
  LONG_PIDS+=("$TRAINING")
done

# Waits for the short runs, then evaluates them while the long runs go on.
wait "${SHORT_PIDS[@]}"
say "" "- short runs done at $SECONDS s"
: >"$WORK/queue-short"
for spec in "${SHORT[@]}"; do
  name=${spec%%|*}
  export_run "$name" && echo "evaluate $WORK/models/$name.bpk $name 90" >>"$WORK/queue-short"
done
parallel "$WORK/queue-short" 3
say "- short evaluations done at $SECONDS s"
wait "${LONG_PIDS[@]}"
say "- long runs done at $SECONDS s"

# --- the long runs: export, grids, guidance sweeps ------------------------------------------
: >"$WORK/queue-long"
for spec in "${LONG[@]}"; do
  name=${spec%%|*}
  export_run "$name" || continue
  model=$WORK/models/$name.bpk
  "$EMERGE" sample --device "$DEVICE" --model "$model" --digit-rows --columns 10 --out "$WORK/models/$name-digits.png" \
    >>"$WORK/logs/grids.log" 2>&1
  "$EMERGE" sample --device "$DEVICE" --model "$model" --count 100 --guidance 0 --columns 10 \
    --out "$WORK/models/$name-unconditional.png" >>"$WORK/logs/grids.log" 2>&1
done
for case in "${GUIDANCE_CASES[@]}"; do
  for spec in "${LONG[@]}"; do
    name=${spec%%|*}
    [ -f "$WORK/models/$name.bpk" ] && echo "evaluate $WORK/models/$name.bpk $name-${case%%|*} 90 ${case#*|}"
  done
done >>"$WORK/queue-long"
[ "$QUICK" = 1 ] && head -n 2 "$WORK/queue-long" >"$WORK/queue-quick" && mv "$WORK/queue-quick" "$WORK/queue-long"
parallel "$WORK/queue-long" 4
say "- long evaluations done at $SECONDS s"
# The paper's sampler, DDPM with all T steps, for the smaller long run, if the budget allows.
if [ $((DEADLINE - $(date +%s))) -gt 100 ]; then
  name=${LONG[0]%%|*}
  evaluate "$WORK/models/$name.bpk" "$name-ddpm1000" 400 --sampler ddpm
  say "- DDPM evaluation done at $SECONDS s"
fi

# --- results: what comes back -----------------------------------------------------------------
say "" "## evaluations" "" "| eval | cond. acc. % | FD cond | FD uncond | floor | per digit |" "| --- | --- | --- | --- | --- | --- |"
# One number of a report: the value of key $1 in JSON file $2.
field() { tr -d ' \n' <"$2" | grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }
for json in "$WORK"/evals/*.json; do
  [ -e "$json" ] || continue
  per_digit=$(tr -d ' \n' <"$json" | grep -o '"conditional_accuracy_per_digit":\[[^]]*' | cut -d[ -f2)
  say "| $(basename "$json" .json) | $(field conditional_accuracy "$json") | $(field frechet_conditional "$json") | \
$(field frechet_unconditional "$json") | $(field frechet_floor_train_vs_test "$json") | $per_digit |"
done
say "" "finished in $SECONDS s"
for spec in "${SHORT[@]}" "${LONG[@]}"; do
  name=${spec%%|*}
  cp "$WORK/runs/$name/log.csv" "$WORK/logs/$name.csv" 2>/dev/null
  cp "$WORK/runs/$name/config.json" "$WORK/logs/$name.config.json" 2>/dev/null
  mv "$WORK/runs/$name.log" "$WORK/logs/" 2>/dev/null
  cp -r "$WORK/runs/$name/samples" "$WORK/logs/$name-samples" 2>/dev/null
done
tar -C "$WORK" -cJf "$RESULTS/results.tar.xz" summary.md logs evals $(cd "$WORK" && ls models/*.png 2>/dev/null)
for spec in "${LONG[@]}"; do
  name=${spec%%|*}
  # One file per long run, split below the 16 MiB a returned file may hold.
  (cd "$WORK" && tar -cf - "models/$name.bpk" "runs/$name/timeline" 2>/dev/null) | split -b 15M - "$RESULTS/$name.tar.part-"
done
ls -la "$RESULTS"
