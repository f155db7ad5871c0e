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
# The scoring-runtime comparison (bench_runtimes.py) also needs the ResNet-20 checkpoint and the
# lossless CIFAR-10 images:
#   mkdir -p .carry/models && cp ../shared/data/models/{resnet20-cifar10.th,densenet-bc-100-cifar10.pth.tar} .carry/models/
#   cp ../shared/data/cifar10/cifar10-test-lossless-first1000.zip .carry/data/cifar10/
# ONNX Runtime's CUDA and TensorRT providers need onnxruntime-gpu (and tensorrt) installed; a
# runtime whose package or provider is missing gets an error row and the others still run.
set -euo pipefail
OUT=${1:-${OUT:-results/gpu}}
WEIGHTS=${2:-.carry/densenet-bc-100-cifar10.pth.tar}
DATA_ROOT=${3:-.carry/data}
export PYTHONUNBUFFERED=1 ODIN_OOD_CACHE=${ODIN_OOD_CACHE:-/tmp/odin-ood-cache}
mkdir -p "$OUT"
python benchmarks/run_all.py --device cuda --weights "$WEIGHTS" --data-root "$DATA_ROOT" --out "$OUT" \
  --results "$OUT/RESULTS.md" 2>&1 | tee "$OUT/log.txt"
# scoring runtimes on the GPU: CUDA eager, torch.compile, ONNX Runtime CUDA / TensorRT (same images, interleaved)
python benchmarks/bench_runtimes.py --device cuda --data-root "$DATA_ROOT" --weights-dir .carry/models \
  --runtimes torch torch-compile onnxruntime-cuda onnxruntime-tensorrt --out "$OUT" --results "$OUT/RESULTS.md" \
  2>&1 | tee "$OUT/log-runtimes.txt" || echo "bench_runtimes failed (see $OUT/log-runtimes.txt); the other figures stand"
echo "Append $OUT/RESULTS.md to benchmarks/RESULTS.md once checked."
