"""MSP vs ODIN throughput (images/s) on the same batches, per model and precision.

ODIN at fixed (T, eps > 0) costs one forward, one input-only backward and one forward: the floor
of the ratio ODIN/MSP images/s is about 1/3 on a GPU. At eps = 0 (``--epsilon 0``, the paper's
MNIST setting) ODIN is one forward like MSP: the ratio should be ~1.0. Each batch is scored by MSP and ODIN in
the same run (in alternating order), after a warm-up batch; peak device memory is recorded
per method (CUDA only).
``--baseline`` adds ODIN computed as common libraries do (parameter gradients kept,
``loss.backward()``), to show what skipping weight gradients saves.

    python benchmarks/bench_scoring.py --models densenet-bc-100 mnist-mlp --batch-size 256
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import msp_scores, odin_scores


def odin_with_weight_gradients(
    model: nn.Module, x: Tensor, input_std: Tensor, temperature: float, epsilon: float
) -> Tensor:
    """ODIN as common libraries compute it: parameters require grad, ``loss.backward()`` fills
    every weight's ``.grad`` as well as the input's. Same scores, more work."""
    for p in model.parameters():
        p.requires_grad_(True)
    x = x.detach().requires_grad_(True)
    logits = model(x)
    F.cross_entropy(logits / temperature, logits.argmax(1), reduction="sum").backward()
    direction = torch.where(x.grad >= 0, 1.0, -1.0) / input_std
    with torch.no_grad():
        scores = F.softmax(model(x.detach() - epsilon * direction).float() / temperature, 1).amax(1)
    model.zero_grad(set_to_none=True)
    return scores


def bench_model(name: str, args, device: torch.device, dtype: str) -> dict:
    model = common.load_model(name, device, args.weights if name == "densenet-bc-100" else None, args.channels_last)
    std = torch.tensor(model.input_std, device=device).view(1, -1, 1, 1)
    runner = torch.compile(model) if args.compile else model
    batches = [
        common.to_device(common.random_inputs(model, args.batch_size, seed=i), model, device, args.channels_last)
        for i in range(args.batches + 1)
    ]
    methods = {
        "msp": lambda x: msp_scores(runner, x, normalise=False),
        "odin": lambda x: odin_scores(
            runner, x, args.temperature, args.epsilon, input_std=model.input_std, normalise=False
        ),
    }
    if args.baseline:
        methods["odin_weight_grads"] = lambda x: odin_with_weight_gradients(
            runner, x, std, args.temperature, args.epsilon
        )
    seconds = dict.fromkeys(methods, 0.0)
    peak = dict.fromkeys(methods, 0.0)
    with common.precision(device, dtype):
        for k, x in enumerate(batches):
            for m, fn in list(methods.items())[:: -1 if k % 2 else 1]:  # alternate order against drift
                with common.peak_memory(device) as mem:
                    _, s = common.timed(lambda fn=fn, x=x: fn(x), device)
                if k > 0:  # batch 0 warms up (cuDNN autotuning, compilation)
                    seconds[m] += s
                    peak[m] = None if mem["peak_mib"] is None else max(peak[m] or 0.0, mem["peak_mib"])
    n = args.batch_size * args.batches
    row = {
        "model": name,
        "dtype": dtype,
        "epsilon": args.epsilon,
        "batch_size": args.batch_size,
        "images": n,
        "channels_last": bool(args.channels_last and common.has_conv(model)),
        "compile": bool(args.compile),
    }
    for m in methods:
        row[f"{m}_images_per_s"] = n / seconds[m]
        row[f"{m}_peak_mib"] = peak[m]
    row["odin_over_msp"] = row["odin_images_per_s"] / row["msp_images_per_s"]
    row["floor_fraction"] = row["odin_over_msp"] / floor(args.epsilon)
    if args.baseline:
        row["speedup_vs_weight_grads"] = row["odin_images_per_s"] / row["odin_weight_grads_images_per_s"]
    return row


def floor(epsilon: float) -> float:
    """ODIN/MSP images/s when every pass costs the same: 1/3 for eps > 0, 1 at eps = 0."""
    return 1.0 if epsilon == 0.0 else 1 / 3


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["densenet-bc-100", "wrn-28-10", "mnist-mlp"])
    p.add_argument("--weights", type=Path, default=None, help="DenseNet-BC-100 checkpoint (optional for timing)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=10, help="timed batches (after one warm-up batch)")
    p.add_argument("--temperature", type=float, default=1000.0)
    p.add_argument("--epsilon", type=float, default=0.0014, help="0 = the paper's MNIST setting (no backward)")
    p.add_argument("--dtypes", nargs="+", default=["fp32"], choices=list(common.DTYPES))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--baseline", action="store_true", help="also time ODIN with weight gradients")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.tiny:
        args.batch_size, args.batches = 4, 1
    device = common.setup(args)
    rows = [bench_model(m, args, device, d) for m in args.models for d in args.dtypes]
    ctx = common.context(device, batch_size=args.batch_size, dtype=",".join(args.dtypes), tiny=args.tiny)
    payload = {
        "benchmark": "bench_scoring",
        "context": ctx,
        "temperature": args.temperature,
        "epsilon": args.epsilon,
        "rows": rows,
    }
    common.write_json(args.out, "bench_scoring", payload)
    shown = [{k: v for k, v in r.items() if k != "images"} for r in rows]
    common.append_results(
        args.results,
        "bench_scoring: MSP vs ODIN throughput" + (" (tiny)" if args.tiny else ""),
        ctx,
        shown,
        f"T = {args.temperature:g}, epsilon = {args.epsilon:g}; odin_over_msp floor: "
        f"{floor(args.epsilon):.2f} ({'one forward, as MSP' if args.epsilon == 0 else '3 passes'}).",
    )
    return payload


if __name__ == "__main__":
    main()
