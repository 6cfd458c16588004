#!/usr/bin/env bash
# The sampler table of a model's card (issue 25): `emerge eval` (conditional and unconditional
# samples, 1000 each by default, seed 0) once per sampler and step count, to choose the model's
# recommended request (`emerge recommend`) from it.
#
#   tools/sampler-table.sh MODEL DATA OUT [SETTING…]
#
# A SETTING is SAMPLER:STEPS with SAMPLER one of ddim (η = 1), ddim0 (η = 0), dpmpp_2m,
# sde_dpmpp_2m; the default list is below. OUT receives evals/<setting>.json, logs/ and table.md;
# a setting already measured is not measured again, so the script can be stopped and run again.
# The evaluations go side by side, one thread each. EMERGE: the binary (default
# target/release/emerge); WORKERS: evaluations at once (default nproc); COUNT: samples per
# measurement (default 1000); BATCH: images sampled at once (default 100: speed only, each image
# has its own noise); DEVICE: cpu (default) or gpu. table.md needs jq.
set -euo pipefail
TOOLS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$TOOLS")
usage="usage: sampler-table.sh MODEL DATA OUT [SAMPLER:STEPS…]"
MODEL=$(realpath "${1:?$usage}")
DATA=$(cd "${2:?$usage}" && pwd)
OUT=$(mkdir -p "${3:?$usage}" && cd "$3" && pwd)
shift 3
SETTINGS=("$@")
[ ${#SETTINGS[@]} -gt 0 ] || for steps in 10 15 20 25 50; do
  SETTINGS+=("ddim0:$steps" "ddim:$steps" "dpmpp_2m:$steps" "sde_dpmpp_2m:$steps")
done
EMERGE=${EMERGE:-$ROOT/target/release/emerge}
WORKERS=${WORKERS:-$(nproc)}
COUNT=${COUNT:-1000}
BATCH=${BATCH:-100}
DEVICE=${DEVICE:-cpu}
[ -f "$MODEL" ] || { echo "no model file at $MODEL" >&2; exit 1; }
for setting in "${SETTINGS[@]}"; do
  [[ $setting =~ ^(ddim0?|dpmpp_2m|sde_dpmpp_2m):[0-9]+$ ]] ||
    { echo "'$setting' is not SAMPLER:STEPS (e.g. sde_dpmpp_2m:20)" >&2; exit 1; }
done
mkdir -p "$OUT/evals" "$OUT/logs"

# The eval options of a sampler name.
sampler_args() {
  case $1 in
    ddim0) echo --sampler ddim --eta 0 ;;
    ddim) echo --sampler ddim --eta 1 ;;
    *) echo --sampler "$1" ;;
  esac
}

# Measures one setting unless its report is there.
measure() {
  local setting=$1 json=$OUT/evals/$1.json
  [ -f "$json" ] && return 0
  # shellcheck disable=SC2046 # the sampler's options are words
  RAYON_NUM_THREADS=1 "$EMERGE" eval --device "$DEVICE" --model "$MODEL" --data "$DATA" \
    $(sampler_args "${setting%:*}") --steps "${setting#*:}" --count "$COUNT" --seed 0 --batch "$BATCH" \
    --json "$json" >"$OUT/logs/$setting.log" 2>&1
}

if [ "${TABLE_SETTING:-}" ]; then
  measure "$TABLE_SETTING"
  exit
fi
failed=0
printf '%s\n' "${SETTINGS[@]}" |
  xargs -P "$WORKERS" -I{} env TABLE_SETTING={} EMERGE="$EMERGE" COUNT="$COUNT" BATCH="$BATCH" \
    DEVICE="$DEVICE" bash "$0" "$MODEL" "$DATA" "$OUT" || failed=1

command -v jq >/dev/null || { echo "measured; table.md needs jq (run again where it is)" >&2; exit "$failed"; }
{
  echo "| sampler | steps | conditional accuracy | per digit 0–9 | Fréchet, conditional | Fréchet, unconditional | seconds |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for setting in "${SETTINGS[@]}"; do
    json=$OUT/evals/$setting.json
    [ -f "$json" ] || { echo "| ${setting%:*} | ${setting#*:} | not measured | | | | |"; continue; }
    jq -r -L "$TOOLS" '
      include "eval-format";
      .frechet_floor_train_vs_test as $floor
      | .settings.request as $r
      | ($r.sampler | {ddim: "DDIM η = \(.eta)", dpmpp_2m: "DPM-Solver++(2M)",
          sde_dpmpp_2m: "SDE-DPM-Solver++(2M)"}[.kind]) as $sampler
      | "| \($sampler) | \($r.steps) | \(.conditional_accuracy | pct) | \(.conditional_accuracy_per_digit | per_digit) | "
        + "\(.frechet_conditional | frechet($floor)) | \(.frechet_unconditional | frechet($floor)) | \(.seconds | round) |"' "$json"
  done
} >"$OUT/table.md"
cat "$OUT/table.md"
[ "$failed" = 0 ] || echo "some settings failed (see $OUT/logs): their rows say 'not measured'" >&2
exit "$failed"
