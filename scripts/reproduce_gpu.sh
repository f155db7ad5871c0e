#!/usr/bin/env bash
# Run the full CIFAR suites (paper's 10 x 21 grid, every image) on a GPU machine in one go and
# write each suite's report under docs/results/<suite>/.
#
#   scripts/reproduce_gpu.sh [DATA_ROOT] [DEVICE]
#
# DATA_ROOT defaults to $ODIN_OOD_DATA, else ../shared/data (a folder laid out like the
# project's shared data: cifar10/, tiny-imagenet/, models/, ... ; add CIFAR-100 pickles, LSUN,
# iSUN or the paper's own OOD folders there and the suites pick them up). DEVICE defaults to cuda.
# The score cache ($ODIN_OOD_CACHE/scores) makes a rerun after an interruption resume per dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-${ODIN_OOD_DATA:-../shared/data}}"
DEVICE="${2:-cuda}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

python -m odin_ood reproduce --list --data-root "$ROOT"
for suite in cifar10-densenet cifar10-resnet20 cifar100-densenet; do
  echo "=== $suite ($(date -u +%H:%M:%S) UTC)"
  python -m odin_ood reproduce "$suite" --data-root "$ROOT" --device "$DEVICE" --batch-size 500 \
    --out "docs/results/$suite" || echo "suite $suite did not run (see the message above)"
done
# A model trained on JPEG CIFAR-10 (`odin-ood train densenet-bc-100 --data cifar10-jpeg --out runs/jpeg`):
if [ -n "${JPEG_WEIGHTS:-}" ]; then
  python -m odin_ood reproduce cifar10-jpeg --weights "$JPEG_WEIGHTS" --data-root "$ROOT" --device "$DEVICE" \
    --batch-size 500 --out docs/results/cifar10-jpeg
fi
