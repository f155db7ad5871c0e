"""``bench_precision.py --gate``: the reduced-precision gate on every runtime, against torch:fp32, in
one interleaved run (see bench_precision.py's docstring)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from bench_runtimes import make_runtime
from odin_ood import Detector, data, models
from odin_ood.detector import threshold_below
from odin_ood.metrics import evaluate
from odin_ood.preprocess import Preprocessing
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.scores.precision import eager_support

# network -> (ID set, OOD set, checkpoint under the data root or None for the shipped weights)
NETWORKS = {
    "mnist-lenet": ("mnist", "notmnist", None),
    "resnet20": ("cifar10-lossless-1000", "tinyimagenet-crop", "models/resnet20-cifar10.th"),
}
TEMPERATURE, EPSILON, TPR = 1000.0, 0.0014, 0.95


def default_paths(device: torch.device) -> list[str]:
    """torch:fp32 first (the reference), then every other runtime and precision this device has."""
    paths = ["torch:fp32"] + [f"torch:{p}" for p in ("bf16", "fp16") if eager_support(p, device) is None]
    if device.type == "cuda":
        return [*paths, "onnxruntime-cuda:fp32", "onnxruntime-tensorrt:fp32", "torch-compile:fp32"]
    paths += ["onnxruntime:fp32", "openvino:fp32"]
    try:
        import openvino as ov

        listed = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        paths += [f"openvino:{p}" for p, cap in (("bf16", "BF16"), ("fp16", "FP16")) if cap in listed]
    except ImportError:
        pass
    return paths


def run(args, device: torch.device) -> dict:
    if args.tiny:
        args.networks, args.images, args.tune_images, args.repeats = ["mnist-lenet"], 64, 64, 1
    paths = args.paths or default_paths(device)
    load_before = common.load_average()
    rows = [row for name in args.networks for row in network_rows(name, paths, args, device)]
    ctx = common.context(
        device,
        batch_size=args.batch_size,
        temperature=TEMPERATURE,
        epsilon=EPSILON,
        load_average=f"{load_before} before, {common.load_average()} after",
    )
    common.write_json(args.out, "bench_precision_gate", {"context": ctx, "rows": rows})
    common.append_results(
        args.results,
        "bench_precision --gate: the reduced-precision gate on every runtime, against torch fp32",
        ctx,
        rows,
        note=(
            f"`python benchmarks/bench_precision.py --gate --threads {torch.get_num_threads()}`: ODIN at "
            f"T = {TEMPERATURE:g}, eps = {EPSILON:g}; each path's threshold keeps {TPR:.0%} of its own scores "
            f"of the first {args.tune_images} ID images (as `odin-ood fit --precision P --runtime R` sets it); "
            f"then the next {args.images} ID and the first {args.images} OOD images (fewer where the set is "
            f"smaller) scored by every path, the paths taking turns in {args.repeats} rounds, median round. "
            "x_fp32 / cpu_x_fp32: images/s (wall / per CPU second) over torch:fp32's; decisions_equal, "
            "max_score_diff, d_fpr95 and d_auroc (points) against torch:fp32; id_kept: held-out ID images "
            f"over the path's threshold. Load average {ctx['load_average']}: wall-clock figures are "
            "provisional on this shared machine, the CPU-second ones hold at one thread."
        ),
    )
    return {"context": ctx, "rows": rows}


def network_rows(name: str, paths: list[str], args, device: torch.device) -> list[dict]:
    """One row per path for ``name`` (an error row for a path this machine cannot run)."""
    root = Path(args.data_root)
    id_set, ood_set, weights = NETWORKS[name]
    model = models.load(name, weights=root / weights if weights else None, map_location=device)
    spec = Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))
    x_id = data.load(id_set, root=root).images.float() / 255
    x_ood = data.load(ood_set, root=root).images.float() / 255
    tune = x_id[: args.tune_images]
    n = min(args.images, len(x_id) - len(tune), len(x_ood))
    held = torch.cat([x_id[len(tune) : len(tune) + n], x_ood[:n]])
    runtimes, rows = {}, []
    for path in paths:
        runtime_name, precision = path.split(":")
        det = Detector(model, batch_size=args.batch_size, normalise=False, optimize=True, precision=precision)
        det._set_fitted(TEMPERATURE, EPSILON, 0.5, TPR, precision, None if precision == "fp32" else runtime_name)
        try:  # the threshold inside a graph does not matter: the decisions below come from the scores
            runtimes[path] = make_runtime(runtime_name, det, spec, args.threads)
            fixed_batch_outputs(runtimes[path], held[: args.batch_size])  # warm-up
        except (ImportError, ValueError, RuntimeError) as exc:
            if path == paths[0]:
                raise
            runtimes.pop(path, None)
            rows.append({"network": name, "path": path, "error": str(exc).splitlines()[0][:120]})
            print(rows[-1], file=sys.stderr, flush=True)
    thresholds = {p: threshold_below(fixed_batch_outputs(r, tune)["score"], TPR) for p, r in runtimes.items()}
    wall, cpu, scores = {p: [] for p in runtimes}, {p: [] for p in runtimes}, {}
    for _ in range(args.repeats):
        for p, r in runtimes.items():
            out, w, c = common.timed_cpu(lambda r=r: fixed_batch_outputs(r, held)["score"], device)
            wall[p].append(w)
            cpu[p].append(c)
            scores[p] = out.double().cpu().numpy()
    ref = paths[0]
    base = {p: evaluate(s[:n], s[n:]) for p, s in scores.items()}
    for p in runtimes:
        decisions = scores[p] <= thresholds[p]
        rows.append(
            {
                "network": name,
                "path": p,
                "images_per_s": round(len(held) / statistics.median(wall[p]), 1),
                "x_fp32": round(statistics.median(wall[ref]) / statistics.median(wall[p]), 3),
                "cpu_images_per_s": round(len(held) / statistics.median(cpu[p]), 1),
                "cpu_x_fp32": round(statistics.median(cpu[ref]) / statistics.median(cpu[p]), 3),
                "decisions_equal": round(float(np.mean(decisions == (scores[ref] <= thresholds[ref]))), 5),
                "max_score_diff": float(np.abs(scores[p] - scores[ref]).max()),
                "fpr95": round(100 * base[p]["fpr_at_95_tpr"], 2),
                "d_fpr95": round(100 * (base[p]["fpr_at_95_tpr"] - base[ref]["fpr_at_95_tpr"]), 2),
                "auroc": round(100 * base[p]["auroc"], 3),
                "d_auroc": round(100 * (base[p]["auroc"] - base[ref]["auroc"]), 3),
                "id_kept": round(float(np.mean(scores[p][:n] > thresholds[p])), 4),
                "images": len(held),
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows
