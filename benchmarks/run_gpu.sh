#!/usr/bin/env bash
# Every GPU benchmark in one go (a few minutes on one H100/H200), from the repository root:
#   benchmarks/run_gpu.sh [OUT] [WEIGHTS] [DATA_ROOT]
# WEIGHTS: the DenseNet-BC-100 CIFAR-10 checkpoint; DATA_ROOT: a folder laid out like
# shared/data (cifar10/cifar10-jpeg-test.zip, tiny-imagenet/tiny-imagenet-200-test.zip).
# On a lent machine, copy both into the git-ignored .carry/ and carry it, e.g.
#   mkdir -p .carry/data/cifar10 .carry/data/tiny-imagenet
#   cp ../shared/data/models/densenet-bc-100-cifar10.pth.tar .carry/
#   cp ../shared/data/cifar10/cifar10-jpeg-test.zip .carry/data/cifar10/
#   cp ../shared/data/tiny-imagenet/tiny-imagenet-200-test.zip .carry/data/tiny-imagenet/
set -euo pipefail
OUT=${1:-${OUT:-results/gpu}}
WEIGHTS=${2:-.carry/densenet-bc-100-cifar10.pth.tar}
DATA_ROOT=${3:-.carry/data}
export PYTHONUNBUFFERED=1 ODIN_OOD_CACHE=${ODIN_OOD_CACHE:-/tmp/odin-ood-cache}
mkdir -p "$OUT"
python benchmarks/run_all.py --device cuda --weights "$WEIGHTS" --data-root "$DATA_ROOT" --out "$OUT" \
  --results "$OUT/RESULTS.md" 2>&1 | tee "$OUT/log.txt"
echo "Append $OUT/RESULTS.md to benchmarks/RESULTS.md once checked."
