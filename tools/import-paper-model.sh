#!/usr/bin/env bash
# Downloads a diffusers UNet2DModel checkpoint from the Hugging Face Hub and converts it into a
# model the page lists beside the others (the deploy step of .github/workflows/pages.yml).
#   tools/import-paper-model.sh <hub repo, e.g. google/ddpm-cifar10-32> <site models dir>
# Environment: EMERGE (the emerge binary; default: the release build), HF_BASE_URL (default
# https://huggingface.co; tests point it at a local server), HF_REVISION (default main).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 <hub repo, e.g. google/ddpm-cifar10-32> <site models dir>" >&2
  exit 2
fi
repo=$1
models=$2
base=${HF_BASE_URL:-https://huggingface.co}
revision=${HF_REVISION:-main}
emerge=${EMERGE:-${CARGO_TARGET_DIR:-target}/release/emerge}
[[ $repo =~ ^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$ ]] || { echo "'$repo' is not a Hub repository name (owner/name)" >&2; exit 2; }
[ -x "$emerge" ] || { echo "the emerge binary '$emerge' is missing: build it with cargo build --release -p emerge" >&2; exit 2; }
[ -f "$models/manifest.json" ] || { echo "'$models' holds no manifest.json: build the site first" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checkpoint="$work/${repo##*/}"
mkdir -p "$checkpoint"

# fetch <file> [optional]: one file of the repository; a missing optional file is skipped
fetch() {
  local url="$base/$repo/resolve/$revision/$1"
  if curl --fail --silent --show-error --location --retry 3 --output "$checkpoint/$1" "$url"; then
    echo "downloaded $1 ($(wc -c <"$checkpoint/$1") bytes)"
  elif [ "${2:-}" = optional ]; then
    rm -f "$checkpoint/$1"
    return 1
  else
    echo "could not download $url" >&2
    exit 1
  fi
}

fetch config.json
fetch scheduler_config.json optional || echo "no scheduler_config.json: the paper's schedule is used"
fetch diffusion_pytorch_model.safetensors optional || fetch diffusion_pytorch_model.bin optional || {
  echo "$repo has neither diffusion_pytorch_model.safetensors nor diffusion_pytorch_model.bin" >&2
  exit 1
}
"$emerge" import "$checkpoint" --out "$models" --name "${repo##*/}" --source "$repo on the Hugging Face Hub, converted by emerge import"
