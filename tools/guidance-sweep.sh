#!/usr/bin/env bash
# The guidance sweep of a model's card (issue 13) on the CPU: `emerge eval --measure conditional`
# once per guidance setting (a scale w, applied at every step or only for LOW ≤ t ≤ HIGH), and
# `--measure unconditional` once (those samples do not depend on w). The evaluations go side by
# side, one thread each: on 2 cores two single-threaded processes do 1.8× the work of one on both.
#
#   tools/guidance-sweep.sh MODEL DATA OUT [SETTING…]
#
# A SETTING is W (every step), W@LOW-HIGH, or the word unconditional; the default list is below
# (its bands: t ≤ 300, and t ≤ 560, which under the cosine schedule spans the noise levels that
# t ≤ 300 spans under the linear one, ᾱ_t ≥ 0.39). OUT receives evals/<setting>.json, logs/ and
# table.md. A setting already measured is not measured again, so the script can be stopped and
# run again. EMERGE: the binary (default target/release/emerge);
# WORKERS: evaluations at once (default nproc); COUNT: samples per measurement (default 1000);
# STEPS: DDIM steps (default 50, the page's); ETA: DDIM's η (default 1: fresh noise at every
# step, as in DDPM; 0: deterministic); BATCH: images sampled at once (default 100);
# DEVICE: cpu (default) or gpu (then WORKERS=2 and BATCH=500: two at once keep an H100 busy). Measuring needs
# only the binary; table.md needs jq, so on a machine without it run the script again where jq
# is, on the returned OUT (nothing is measured twice).
set -euo pipefail
TOOLS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$TOOLS")
usage="usage: guidance-sweep.sh MODEL DATA OUT [SETTING…]"
MODEL=$(realpath "${1:?$usage}")
DATA=$(cd "${2:?$usage}" && pwd)
OUT=$(mkdir -p "${3:?$usage}" && cd "$3" && pwd)
shift 3
SETTINGS=("$@")
[ ${#SETTINGS[@]} -gt 0 ] || SETTINGS=(unconditional 1 1.25 1.5 2 3 2@0-300 3@0-300 2@0-560 3@0-560)
EMERGE=${EMERGE:-$ROOT/target/release/emerge}
WORKERS=${WORKERS:-$(nproc)}
COUNT=${COUNT:-1000}
STEPS=${STEPS:-50}
ETA=${ETA:-1}
BATCH=${BATCH:-100}
DEVICE=${DEVICE:-cpu}
[ -f "$MODEL" ] || { echo "no model file at $MODEL" >&2; exit 1; }
for setting in "${SETTINGS[@]}"; do
  [[ $setting =~ ^(unconditional|[0-9]+([.][0-9]+)?(@[0-9]+-[0-9]+)?)$ ]] ||
    { echo "'$setting' is not W, W@LOW-HIGH (e.g. 2@0-300) or unconditional" >&2; exit 1; }
done
mkdir -p "$OUT/evals" "$OUT/logs"

# Measures one setting ("unconditional", W or W@LOW-HIGH) unless its report is there.
measure() {
  local setting=$1 json=$OUT/evals/$1.json args
  [ -f "$json" ] && return 0
  case $setting in
    unconditional) args=(--measure unconditional) ;;
    *@*) args=(--measure conditional --guidance "${setting%@*}" --guidance-interval "${setting#*@}") ;;
    *) args=(--measure conditional --guidance "$setting" --guidance-interval all) ;;
  esac
  RAYON_NUM_THREADS=1 "$EMERGE" eval --device "$DEVICE" --model "$MODEL" --data "$DATA" \
    --count "$COUNT" --sampler ddim --steps "$STEPS" --eta "$ETA" --seed 0 --batch "$BATCH" "${args[@]}" --json "$json" \
    >"$OUT/logs/$setting.log" 2>&1
}

if [ "${SWEEP_SETTING:-}" ]; then
  measure "$SWEEP_SETTING"
  exit
fi

failed=0
printf '%s\n' "${SETTINGS[@]}" |
  xargs -P "$WORKERS" -I{} env SWEEP_SETTING={} EMERGE="$EMERGE" COUNT="$COUNT" STEPS="$STEPS" \
    ETA="$ETA" BATCH="$BATCH" DEVICE="$DEVICE" bash "$0" "$MODEL" "$DATA" "$OUT" || failed=1
command -v jq >/dev/null || { echo "no jq here: table.md not written (run again where jq is)" >&2; exit "$failed"; }

# table.md: the unconditional line (when asked for), then one row per guidance setting in the
# order given.
{
  if [[ " ${SETTINGS[*]} " == *" unconditional "* ]] && [ -f "$OUT/evals/unconditional.json" ]; then
    jq -r -L "$TOOLS" 'include "eval-format"; .frechet_floor_train_vs_test as $floor
      | "Unconditional samples (w = 0, \(.settings.request.images) of them): Fréchet distance \(.frechet_unconditional | frechet($floor)), "
      + "per class 0–9 \(.unconditional_histogram | map(tostring) | join(" / ")) (\(.seconds | round) s, \(.device // "Flex (CPU)")).\n"' \
      "$OUT/evals/unconditional.json"
  fi
  echo "| w | applied at | samples | conditional accuracy | per digit 0–9 | Fréchet distance (× floor) | time |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for setting in "${SETTINGS[@]}"; do
    [ "$setting" = unconditional ] && continue
    json=$OUT/evals/$setting.json
    if [ ! -f "$json" ]; then
      where="every step"
      [[ $setting == *@* ]] && where="${setting#*@}"
      echo "| ${setting%@*} | $where | not measured | | | | |"
      continue
    fi
    jq -r -L "$TOOLS" 'include "eval-format"; .frechet_floor_train_vs_test as $floor
      | (.settings.request.guidance.interval | if . then "\(.[0]) ≤ t ≤ \(.[1])" else "every step" end) as $where
      | "| \(.settings.request.guidance.scale) | \($where) | \(.settings.request.images) | \(.conditional_accuracy | pct) | "
        + "\(.conditional_accuracy_per_digit | per_digit) | "
        + "\(.frechet_conditional | frechet($floor)) | \(.seconds | round) s (\(.device // "Flex (CPU)")) |"' "$json"
  done
  echo
  echo "DDIM $STEPS steps (η = $ETA), seed 0, batches of $BATCH; the floor at each count is the Fréchet distance of as many training images to the test set."
} >"$OUT/table.md"
cat "$OUT/table.md"
if [ "$failed" = 1 ]; then
  echo "some settings failed (see $OUT/logs): their rows say 'not measured'" >&2
  exit 1
fi
