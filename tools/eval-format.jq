# Formatting shared by the scripts that tabulate `emerge eval --json` reports
# (tools/recipe-compare.sh, tools/guidance-sweep.sh): include "eval-format"; with jq -L tools.

# 0.979 → "97.9 %"
def pct: (. * 1000 | round) / 10 | tostring | (if test("[.]") then . else . + ".0" end) + " %";
# 2.8743 → "2.87×"
def times: (. * 100 | round) / 100 | tostring + "×";
# A Fréchet distance with its ratio to the report's floor: "3.09 (0.86×)"
def frechet($floor): "\(. * 100 | round / 100) (\(. / $floor | times))";
# Per-digit accuracies as "100 / 99 / … / 97"
def per_digit: map(. * 100 | round | tostring) | join(" / ");
