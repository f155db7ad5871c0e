"""ODIN images/s on each scoring runtime, on the same real images, interleaved in one run.

For each network (ResNet-20, DenseNet-BC-100 by default) a detector at the paper's CIFAR
setting (T = 1000, epsilon = 0.0014, threshold fitted on 128 + 128 other images) scores the same
``--images`` real images (half CIFAR-10 lossless, half TinyImageNet (crop)) through
:func:`odin_ood.runtimes.batches.fixed_batch_outputs` on every runtime at every batch size; the
runtimes take turns within each of ``--repeats`` rounds (after one warm-up pass each), and the
median round gives images/s. Recorded beside the speed: max |score - eager score|, agreement of
decisions and classes with eager torch, and the export seconds (0 when the graph was cached).

    python benchmarks/bench_runtimes.py --threads 1                       # CPU: torch, onnxruntime, openvino
    python benchmarks/bench_runtimes.py --device cuda --runtimes torch torch-compile onnxruntime-cuda \
        onnxruntime-tensorrt
    python benchmarks/bench_runtimes.py --threads 1 --runtimes openvino openvino+ENABLE_CPU_PINNING=NO \
        openvino+PERFORMANCE_HINT=THROUGHPUT openvino+CPU_DENORMALS_OPTIMIZATION=YES   # OpenVINO's settings

Beside the wall clock, each row has images per CPU second of this process (``cpu_images_per_s``):
at one thread, what the pass takes alone, so its ratios hold on a busy shared machine where the
wall-clock ones move with the other processes (issue 29: OpenVINO's gain over the peers read 1.23x
in one run and 1.8x in another). OpenVINO rows record the compiled model's settings in effect.
``torch-folded`` is eager scoring of the batch-norm-folded, channels-last copy (what ``score`` and
``serve`` run); ``openvino+KEY=VALUE[+...]`` adds OpenVINO compile properties.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import Detector, data, models
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import load_runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.runtimes.eager import EagerRuntime

WEIGHTS = {"resnet20": "resnet20-cifar10.th", "densenet-bc-100": "densenet-bc-100-cifar10.pth.tar"}
PROVIDERS = {
    "onnxruntime-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "onnxruntime-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def make_runtime(name: str, det: Detector, spec: Preprocessing, threads: int | None):
    """The runtime called ``name``: a name of :data:`odin_ood.runtimes.RUNTIMES`, ``torch-compile``
    (eager scoring of ``torch.compile(model)``) or ONNX Runtime with the providers of :data:`PROVIDERS`."""
    if name == "torch-compile":  # the module the detector scores with (batch norm folded with optimize), compiled
        compiled = copy.copy(det)
        compiled.model, compiled.optimize = torch.compile(det.scoring_model()[0]), False
        return EagerRuntime(compiled, spec)
    if name == "torch-folded":
        folded = copy.copy(det)
        folded.optimize = True
        return EagerRuntime(folded, spec)
    if name.startswith("openvino+"):
        from odin_ood.runtimes.openvino import OpenVinoRuntime

        settings = dict(kv.split("=", 1) for kv in name.split("+")[1:])
        return type(name, (OpenVinoRuntime,), {"settings": settings, "name": name})(det, spec, threads=threads)
    if name in PROVIDERS:
        from odin_ood.runtimes.onnx import OnnxRuntime

        chosen = type(name, (OnnxRuntime,), {"providers": PROVIDERS[name], "name": name})(det, spec, threads=threads)
        if chosen.session.get_providers()[0] != PROVIDERS[name][0]:  # ONNX Runtime falls back to the CPU silently
            raise ValueError(
                f"{PROVIDERS[name][0]} is not available (onnxruntime-gpu, TensorRT): ONNX Runtime runs "
                f"{chosen.session.get_providers()}"
            )
        return chosen
    return load_runtime(name, det, spec, threads=threads)


def openvino_settings(runtime) -> str | None:
    """The compiled model's threading settings in effect, for an OpenVINO runtime (None otherwise)."""
    requests = getattr(runtime, "requests", None)
    if not requests:
        return None
    compiled = next(iter(requests.values())).get_compiled_model()
    keys = (
        "PERFORMANCE_HINT",
        "NUM_STREAMS",
        "INFERENCE_NUM_THREADS",
        "ENABLE_CPU_PINNING",
        "CPU_DENORMALS_OPTIMIZATION",
        "INFERENCE_PRECISION_HINT",
    )
    return " ".join(f"{k}={compiled.get_property(k)}" for k in keys).replace("PerformanceMode.", "")


def bench_network(name: str, args, device: torch.device) -> list[dict]:
    root = Path(args.data_root)
    model = models.load(name, weights=Path(args.weights_dir or root / "models") / WEIGHTS[name], map_location=device)
    spec = Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))
    cifar = data.load("cifar10-lossless-1000", root=root).images.float() / 255.0
    crop = data.load("tinyimagenet-crop", root=root).images.float() / 255.0
    half = args.images // 2
    x = torch.cat([cifar[-half:], crop[-half:]])
    rows = []
    for batch_size in args.batch_sizes:
        det = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=batch_size, normalise=False)
        det.fit(normalise(cifar[:128], spec), normalise(crop[:128], spec))
        runtimes, export_s = {}, {}
        for r in args.runtimes:
            start = time.perf_counter()
            try:
                runtimes[r] = make_runtime(r, det, spec, args.threads)
                fixed_batch_outputs(runtimes[r], x[:batch_size])  # warm-up (compilation, plugin start)
            except (ImportError, ValueError, RuntimeError) as exc:  # not installed here, or no such provider
                if r == args.runtimes[0]:
                    raise
                runtimes.pop(r, None)
                rows.append(
                    {"network": name, "batch": batch_size, "runtime": r, "error": str(exc).splitlines()[0][:120]}
                )
                print(rows[-1], file=sys.stderr, flush=True)
                continue
            export_s[r] = time.perf_counter() - start
        seconds, cpu = {r: [] for r in runtimes}, {r: [] for r in runtimes}
        outputs = {}
        for _ in range(args.repeats):
            for r, runtime in runtimes.items():
                out, s, c = common.timed_cpu(lambda runtime=runtime: fixed_batch_outputs(runtime, x), device)
                seconds[r].append(s)
                cpu[r].append(c)
                outputs[r] = out
        ref = outputs[args.runtimes[0]]
        for r in runtimes:
            out = outputs[r]
            rows.append(
                {
                    "network": name,
                    "batch": batch_size,
                    "runtime": r,
                    "images_per_s": len(x) / statistics.median(seconds[r]),
                    "speedup_vs_first": statistics.median(seconds[args.runtimes[0]]) / statistics.median(seconds[r]),
                    "cpu_images_per_s": len(x) / statistics.median(cpu[r]),
                    "cpu_speedup_vs_first": statistics.median(cpu[args.runtimes[0]]) / statistics.median(cpu[r]),
                    "max_abs_score_diff": (out["score"].double() - ref["score"].double()).abs().max().item(),
                    "decisions_agree": (out["is_out_of_distribution"] == ref["is_out_of_distribution"])
                    .double()
                    .mean()
                    .item(),
                    "classes_agree": (out["predicted_class"] == ref["predicted_class"]).double().mean().item(),
                    "setup_s": export_s[r],
                    "settings": openvino_settings(runtimes[r]),
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="+", default=list(WEIGHTS), choices=list(WEIGHTS))
    p.add_argument(
        "--runtimes",
        nargs="+",
        default=["torch", "onnxruntime", "openvino"],
        help="first one is the reference for score differences and speed-ups",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--images", type=int, default=512, help="images scored per pass (half ID, half OOD)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default=str(common.DEFAULT_DATA_ROOT))
    p.add_argument("--weights-dir", default=None, help="folder holding the checkpoints (default: DATA_ROOT/models)")
    args = p.parse_args()
    if args.tiny:
        args.networks, args.batch_sizes, args.images, args.repeats = ["resnet20"], [32], 64, 1
    device = common.setup(args)
    load_before = common.load_average()
    rows = [row for name in args.networks for row in bench_network(name, args, device)]
    ctx = common.context(
        device,
        load_average=f"{load_before} before, {common.load_average()} after",
        images=args.images,
        repeats=args.repeats,
    )
    common.write_json(args.out, "bench_runtimes", {"context": ctx, "rows": rows})
    common.append_results(
        args.results,
        "Scoring runtimes: ODIN images/s, eager torch vs the exported graph",
        ctx,
        rows,
        note=(
            f"Same {args.images} real images (half CIFAR-10 lossless, half TinyImageNet crop) per "
            f"pass, runtimes interleaved, median of {args.repeats} passes; T = 1000, eps = 0.0014; "
            f"load average {ctx['load_average']}. setup_s: building the runtime and its "
            "warm-up pass (export when not cached, session start, compilation). Differences and "
            "agreement are against the first runtime. cpu_images_per_s: per CPU second of the "
            "process (at one thread: the pass alone, whatever the load)."
        ),
    )


if __name__ == "__main__":
    main()
