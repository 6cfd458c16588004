#!/usr/bin/env bash
# The recipe comparison (issue 13) on the CPU: one short run per arm of tools/recipe-arms.sh (the
# baseline and one change each), all with the same seed and the same number of steps, each
# scored by `emerge eval` on its EMA weights (1000 samples, DDIM with η = 1, w = 1.25, seed 0),
# plus the baseline arm's raw weights (EMA against none). The runs go side by side, one thread
# each: on 2 cores two single-threaded runs made 1.8× the steps per second of one run on both.
#
#   tools/recipe-compare.sh DATA RUNS [STEPS]        (STEPS per run, default 600)
#
# RUNS receives one run directory per arm, evals/<arm>.json, logs/ and table.md. A run already
# there is resumed, or only evaluated when finished, so the script can be stopped and run again.
# EMERGE: the binary (default target/release/emerge); WORKERS: runs at once (default nproc);
# EVAL_STEPS: DDIM steps of each evaluation (default 20; the page's 50 cost 2.5× as much);
# EVAL_COUNT: samples per measurement (default 1000; fewer only to try the script out).
set -euo pipefail
TOOLS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$TOOLS")
DATA=$(cd "${1:?usage: recipe-compare.sh DATA RUNS [STEPS]}" && pwd)
RUNS=$(mkdir -p "${2:?usage: recipe-compare.sh DATA RUNS [STEPS]}" && cd "$2" && pwd)
STEPS=${3:-600}
EMERGE=${EMERGE:-$ROOT/target/release/emerge}
WORKERS=${WORKERS:-$(nproc)}
EVAL_STEPS=${EVAL_STEPS:-20}
EVAL_COUNT=${EVAL_COUNT:-1000}
CLASSIFIER=$ROOT/crates/emerge/assets/mnist-classifier.bpk
# shellcheck source=tools/recipe-arms.sh
source "$TOOLS/recipe-arms.sh"
mkdir -p "$RUNS/evals" "$RUNS/logs"

# Trains arm $1 (resuming it where it stopped) and evaluates its final EMA weights; the baseline
# arm's raw weights too. One thread each, so that WORKERS of them share the cores.
run_arm() {
  local name=$1 spec="" entry
  for entry in "${SHORT[@]}"; do [ "${entry%%|*}" = "$name" ] && spec=${entry#*|}; done
  [ -n "$spec" ] || { echo "no arm named '$name' in recipe-arms.sh" >&2; return 1; }
  local dir=$RUNS/$name final
  final=$(printf 'step-%07d' "$STEPS")
  if [ "$(cat "$dir/checkpoints/latest" 2>/dev/null)" != "$final" ]; then
    local resume=()
    [ -f "$dir/config.json" ] && resume=(--resume)
    # shellcheck disable=SC2086
    RAYON_NUM_THREADS=1 "$EMERGE" train --data "$DATA" --out "$dir" --steps "$STEPS" --seed 0 \
      --sample-every 0 --checkpoint-every 100 --quiet $spec "${resume[@]}" >>"$RUNS/logs/$name.train.log" 2>&1
  fi
  evaluate "$name" "$dir/checkpoints/$final/ema.bpk"
  [ "$name" = baseline ] && evaluate baseline-no-ema "$dir/checkpoints/$final/model.bpk"
  return 0
}

evaluate() {
  local name=$1 model=$2
  [ -f "$RUNS/evals/$name.json" ] && return 0
  RAYON_NUM_THREADS=1 "$EMERGE" eval --model "$model" --data "$DATA" --classifier "$CLASSIFIER" \
    --count "$EVAL_COUNT" --sampler ddim --eta 1 --steps "$EVAL_STEPS" --guidance 1.25 --seed 0 --batch 100 \
    --json "$RUNS/evals/$name.json" >"$RUNS/logs/$name.eval.log" 2>&1
}

if [ "${RECIPE_ARM:-}" ]; then
  run_arm "$RECIPE_ARM"
  exit
fi

# The slowest runs start first (step times on one thread relative to the baseline arm, measured
# here: wide 2.6×, batch 128 2.0×, two blocks per level 1.4×), so the workers finish together.
order=(wide-32-64-128 batch-128 deep-2-blocks)
for entry in "${SHORT[@]}"; do
  case " ${order[*]} " in *" ${entry%%|*} "*) ;; *) order+=("${entry%%|*}") ;; esac
done
failed=0
printf '%s\n' "${order[@]}" |
  xargs -P "$WORKERS" -I{} env RECIPE_ARM={} EMERGE="$EMERGE" EVAL_STEPS="$EVAL_STEPS" \
    EVAL_COUNT="$EVAL_COUNT" bash "$0" "$DATA" "$RUNS" "$STEPS" || failed=1

# table.md: one row per arm, the baseline first.
{
  echo "| arm | arguments to \`emerge train\` | accuracy (w = 1.25) | weakest digit | Fréchet conditional | Fréchet unconditional | training time |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for entry in "${SHORT[@]}" "baseline-no-ema|$BASELINE"; do
    name=${entry%%|*} change=${entry#*|} label=${entry%%|*}
    [ "$name" = baseline-no-ema ] && label="baseline, raw weights (no EMA)"
    json=$RUNS/evals/$name.json
    [ -f "$json" ] || { echo "| $label | \`$change\` | not measured | | | | |"; continue; }
    run=$RUNS/${name%-no-ema}
    seconds=$(tail -n 1 "$run/log.csv" | cut -d, -f5)
    jq -r -L "$TOOLS" --arg name "$label" --arg change "$change" --arg seconds "$seconds" '
      include "eval-format";
      .frechet_floor_train_vs_test as $floor
      | (.conditional_accuracy_per_digit | to_entries | min_by(.value)) as $worst
      | "| \($name) | `\($change)` | \(.conditional_accuracy | pct) | \($worst.key): \($worst.value | pct) | "
        + "\(.frechet_conditional | frechet($floor)) | \(.frechet_unconditional | frechet($floor)) | "
        + "\($seconds | tonumber | round) s |"' "$json"
  done
} >"$RUNS/table.md"
cat "$RUNS/table.md"
if [ "$failed" = 1 ]; then
  echo "some arms failed (see $RUNS/logs): their rows say 'not measured'" >&2
  exit 1
fi
