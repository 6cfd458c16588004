# The recipe comparison's arms (issue 13), sourced by tools/recipe-compare.sh (CPU) and
# tools/gpu-train.sh (GPU): the baseline, the recipe of the model shipped before the screen
# (batch 64, peak lr 1e-3, label dropout 0.2, Min-SNR-5, EMA 0.999, linear β, channels 16/32/64,
# one res block per level), and one change each, as `name|train arguments`; KEPT is the
# combination the screen kept, the recipe of the model shipped now. (No EMA-decay arm: the decay
# warms up as (1 + step)/(10 + step) and reaches its cap of 0.999 only at step 8991, so a short
# run never meets the cap; what a short run can show, EMA against none, is its raw weights
# evaluated beside its EMA weights.)
# shellcheck shell=bash disable=SC2034
# The baseline's objective (label dropout for guidance, Min-SNR-5 weighting) and width.
OBJECTIVE="--label-dropout 0.2 --min-snr-gamma 5"
NARROW="--channels 16,32,64"
WIDE="--channels 32,64,128"
BASELINE="$OBJECTIVE $NARROW"
SHORT=(
  "baseline|$BASELINE"
  "dropout-0.1|--label-dropout 0.1 --min-snr-gamma 5 $NARROW"
  "no-min-snr|--label-dropout 0.2 $NARROW"
  "lr-2e-3|$BASELINE --lr 2e-3"
  "batch-128|$BASELINE --batch-size 128"
  "wide-32-64-128|$OBJECTIVE $WIDE"
  "deep-2-blocks|$BASELINE --layers-per-block 2"
  "cosine|$BASELINE --schedule cosine"
)
KEPT="$OBJECTIVE $WIDE --lr 2e-3 --schedule cosine"
