# The recipe comparison's arms (issue 13), sourced by tools/recipe-compare.sh (CPU) and
# tools/gpu-train.sh (GPU): the baseline, the recipe of the model shipped before the screen
# (batch 64, peak lr 1e-3, label dropout 0.2, Min-SNR-5, EMA 0.999, linear β, channels 16/32/64,
# one res block per level), and one change each, as `name|train arguments`; KEPT is the
# combination the screen kept, the recipe of the model shipped now. (No EMA-decay arm: the decay
# warms up as (1 + step)/(10 + step) and reaches its cap of 0.999 only at step 8991, so a short
# run never meets the cap; what a short run can show, EMA against none, is its raw weights
# evaluated beside its EMA weights.)
# shellcheck shell=bash disable=SC2034
# Every arm names each setting the screen varies, so that `emerge train`'s defaults (since the
# screen, the recipe it kept) do not change what an arm means.
arm() { # label dropout, Min-SNR γ (0: off), peak lr, schedule, channels, [more arguments]
  echo "--label-dropout $1 --min-snr-gamma $2 --lr $3 --schedule $4 --channels $5${6:+ $6}"
}
BASELINE=$(arm 0.2 5 1e-3 linear 16,32,64)
SHORT=(
  "baseline|$BASELINE"
  "dropout-0.1|$(arm 0.1 5 1e-3 linear 16,32,64)"
  "no-min-snr|$(arm 0.2 0 1e-3 linear 16,32,64)"
  "lr-2e-3|$(arm 0.2 5 2e-3 linear 16,32,64)"
  "batch-128|$(arm 0.2 5 1e-3 linear 16,32,64 '--batch-size 128')"
  "wide-32-64-128|$(arm 0.2 5 1e-3 linear 32,64,128)"
  "deep-2-blocks|$(arm 0.2 5 1e-3 linear 16,32,64 '--layers-per-block 2')"
  "cosine|$(arm 0.2 5 1e-3 cosine 16,32,64)"
)
KEPT=$(arm 0.2 5 2e-3 cosine 32,64,128)
