#!/usr/bin/env bash
# Every GPU benchmark in one go (a few minutes on one H100/H200), from the repository root:
#   benchmarks/run_gpu.sh [OUT] [WEIGHTS] [DATA_ROOT]
# WEIGHTS: the DenseNet-BC-100 CIFAR-10 checkpoint; DATA_ROOT: a folder laid out like
# shared/data. On a lent machine, copy what the benchmarks read into the git-ignored .carry/ and
# carry it:
#   mkdir -p .carry/models .carry/data/cifar10 .carry/data/tiny-imagenet .carry/data/mnist .carry/data/notmnist
#   cp ../shared/data/models/densenet-bc-100-cifar10.pth.tar .carry/
#   cp ../shared/data/models/{resnet20-cifar10.th,densenet-bc-100-cifar10.pth.tar} .carry/models/
#   cp ../shared/data/cifar10/{cifar10-jpeg-test.zip,cifar10-test-lossless-first1000.zip} .carry/data/cifar10/
#   cp ../shared/data/tiny-imagenet/tiny-imagenet-200-test.zip .carry/data/tiny-imagenet/
#   cp ../shared/data/mnist/t10k-* .carry/data/mnist/ && cp ../shared/data/notmnist/t10k-* .carry/data/notmnist/
#   ln -s ../models .carry/data/models   # bench_precision --gate reads DATA_ROOT/models/resnet20-cifar10.th
# What runs, each step appending its own table to $OUT/RESULTS.md (a failing step is logged and the
# others still run; a runtime whose package or provider is missing gets an error row):
#   1. run_all.py: scoring, tuning, metrics, reproduce benchmarks on CUDA (fp32 and bf16 autocast)
#   2. bench_runtimes.py: CUDA eager, batch-norm-folded eager, torch.compile, ONNX Runtime CUDA and
#      TensorRT (onnxruntime-gpu, tensorrt), the exported gate's dynamic batch at batch 1, 16, 64, 256
#   3. bench_precision.py --gate: fp32 vs bf16 and fp16 autocast, with the thresholds refitted per
#      path, on MNIST LeNet / notMNIST and ResNet-20 / TinyImageNet (crop)
#   4. bench_serve.py: the HTTP gate on CUDA under load, eager (padded and natural-size micro-batches)
#      and ONNX Runtime (CUDA provider, dynamic batch), answers checked against odin-ood score
# Check it without a GPU: bash -n benchmarks/run_gpu.sh, and (CUDA runtimes then get error rows)
#   DEVICE=cpu TINY=--tiny WEIGHTS_DIR=../shared/data/models benchmarks/run_gpu.sh /tmp/gpu-check \
#     ../shared/data/models/densenet-bc-100-cifar10.pth.tar ../shared/data
set -uo pipefail
OUT=${1:-${OUT:-results/gpu}}
WEIGHTS=${2:-.carry/densenet-bc-100-cifar10.pth.tar}
DATA_ROOT=${3:-.carry/data}
DEVICE=${DEVICE:-cuda}
WEIGHTS_DIR=${WEIGHTS_DIR:-.carry/models}
TINY=${TINY:-}
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-src} ODIN_OOD_CACHE=${ODIN_OOD_CACHE:-/tmp/odin-ood-cache}
mkdir -p "$OUT"
step() {  # step NAME COMMAND...: run it, log it, carry on whatever it returns
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/log.txt"
  "$@" 2>&1 | tee "$OUT/log-$name.txt" | tail -n 40
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || echo "== $name failed (exit $rc, see $OUT/log-$name.txt); the other figures stand" | tee -a "$OUT/log.txt"
}
step run_all python benchmarks/run_all.py --device "$DEVICE" --weights "$WEIGHTS" --data-root "$DATA_ROOT" \
  --out "$OUT" --results "$OUT/RESULTS.md" $TINY
step runtimes python benchmarks/bench_runtimes.py --device "$DEVICE" --data-root "$DATA_ROOT" \
  --weights-dir "$WEIGHTS_DIR" --runtimes torch torch-folded torch-compile onnxruntime-cuda onnxruntime-tensorrt \
  --batch-sizes 1 16 64 256 --out "$OUT" --results "$OUT/RESULTS.md" $TINY
step precision python benchmarks/bench_precision.py --gate --device "$DEVICE" --data-root "$DATA_ROOT" \
  --out "$OUT" --results "$OUT/RESULTS.md" $TINY
step serve python benchmarks/bench_serve.py --device "$DEVICE" --data-root "$DATA_ROOT" \
  --runtimes torch torch-no-padding onnxruntime --clients 16 --duration 20 --out "$OUT" --results "$OUT/RESULTS.md" $TINY
echo "Append $OUT/RESULTS.md to benchmarks/RESULTS.md once checked."
