"""odin-ood vs pytorch-ood and oodeel: ODIN and MSP images/s on the same module and images.

Every method scores the same real CIFAR-10 batches (the 1,000 lossless test images, normalised
for the model) with the same eval-mode module, in one run, in alternating order per batch (the
first batch of ``WARM_UP`` images warms up), on the threads ``--threads`` sets (default 1). Scores are compared with
odin-ood's eager result in the "higher = more in-distribution" convention: both peers return
the negated softmax score, which is negated back. Conventions that differ (checked in their
source, pytorch-ood 0.4.0, oodeel 0.4.0):

* pytorch-ood's ODIN divides the sign step by ``norm_std`` per channel, as odin-ood's
  ``input_std`` does (epsilon in pixel units), and takes the cross-entropy's batch mean (same
  sign); a zero gradient steps 0 there and +1 here (the paper's ``torch.ge(grad, 0)``);
* oodeel's ODIN has a scalar ``eps`` applied to the normalised input (no per-channel std) and
  runs three forwards (one for the labels, one for the loss, one for the score); it is compared
  with odin-ood at ``input_std=None``, the same step in the model's input units.

odin-ood's eager variant is required: it is the reference of the score differences. Variants are named scoring
callables: ``eager`` (``odin_scores`` on the model as loaded), ``folded`` (batch norm folded into the convolutions,
channels-last inputs: :func:`odin_ood.models.folding.scoring_copy`) and any ``--runtime NAME`` registered in
:data:`RUNTIMES` (a factory ``(model, temperature, epsilon) -> (x -> scores)``).
Run it in a venv where the peers import, with odin-ood from the checkout:

    PYTHONPATH=src /work/venvs/peers/bin/python benchmarks/bench_peers.py --batch-sizes 64 256
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import msp_scores, odin_scores
from odin_ood.models.folding import scoring_copy

Scorer = Callable[[Tensor], Tensor]
CHECKPOINTS = {"resnet20": "resnet20-cifar10.th", "densenet-bc-100": "densenet-bc-100-cifar10.pth.tar"}
WARM_UP = 8  # images in the untimed first batch of every method


def graph_runtime(name: str) -> Callable[[nn.Module, float, float, int], Scorer]:
    """A factory for odin-ood's scoring runtime ``name`` (:mod:`odin_ood.runtimes`): the gate at
    (T, epsilon) exported once for batches of ``batch_size`` (cached), scoring the same normalised
    batches as every other method (turned back into the [0, 1] pixels the gate takes; the
    normalisation runs inside the graph, as it does when score and serve use it)."""

    def factory(model: nn.Module, temperature: float, epsilon: float, batch_size: int) -> Scorer:
        from odin_ood import Detector
        from odin_ood.preprocess import Preprocessing
        from odin_ood.runtimes import load_runtime
        from odin_ood.runtimes.batches import fixed_batch_outputs

        spec = Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
        probe = torch.rand(2 * batch_size, *model.input_shape, generator=torch.Generator().manual_seed(0))
        det = Detector(
            model, temperatures=(temperature,), epsilons=(epsilon,), batch_size=batch_size, normalise=False
        ).fit((probe[:batch_size] - mean) / std, (probe[batch_size:] - mean) / std)
        runtime = load_runtime(name, det, spec, threads=torch.get_num_threads())
        return lambda x: fixed_batch_outputs(runtime, x * std + mean)["score"]

    return factory


# --runtime NAME -> factory(model, temperature, epsilon, batch_size) returning an ODIN scorer (x -> scores)
RUNTIMES: dict[str, Callable[[nn.Module, float, float, int], Scorer]] = {
    name: graph_runtime(name) for name in ("onnxruntime", "openvino")
}


def odin_ood_methods(
    model: nn.Module, temperature: float, epsilon: float, variants: list[str], batch_size: int = 64
) -> dict[str, Scorer]:
    """odin-ood's scorers, ``odin:<variant>`` and ``msp:<variant>``."""
    std = model.input_std
    methods: dict[str, Scorer] = {}
    if "eager" in variants:
        methods["odin:eager"] = lambda x: odin_scores(model, x, temperature, epsilon, std, normalise=False)
        methods["msp:eager"] = lambda x: msp_scores(model, x, normalise=False)
    if "folded" in variants:
        fast, channels_last = scoring_copy(model)
        layout = (lambda x: x.contiguous(memory_format=torch.channels_last)) if channels_last else (lambda x: x)
        methods["odin:folded"] = lambda x: odin_scores(fast, layout(x), temperature, epsilon, std, normalise=False)
        methods["msp:folded"] = lambda x: msp_scores(fast, layout(x), normalise=False)
    for name in variants:
        if name not in ("eager", "folded"):
            methods[f"odin:{name}"] = RUNTIMES[name](model, temperature, epsilon, batch_size)
    return methods


def peer_methods(
    model: nn.Module, temperature: float, epsilon: float, peers: list[str]
) -> tuple[dict[str, Scorer], list[str]]:
    """The peers' ODIN and MSP scorers that import here (negated: higher = more in-distribution),
    and a note per peer that does not."""
    methods: dict[str, Scorer] = {}
    notes = []
    for peer, module, build in (
        ("pytorch-ood", "pytorch_ood", pytorch_ood_methods),
        ("oodeel", "oodeel", oodeel_methods),
    ):
        if peer not in peers:
            continue
        if importlib.util.find_spec(module) is None:
            notes.append(f"{peer} not importable here: skipped")
        else:
            methods.update(build(model, temperature, epsilon))
    return methods, notes


def pytorch_ood_methods(model: nn.Module, temperature: float, epsilon: float) -> dict[str, Scorer]:
    from pytorch_ood.detector import ODIN, MaxSoftmax

    odin = ODIN(model, eps=epsilon, temperature=temperature, norm_std=list(model.input_std))
    msp = MaxSoftmax(model)
    return {
        "odin:pytorch-ood": lambda x: -odin.predict(x),
        "msp:pytorch-ood": lambda x: _no_grad(lambda: -msp.predict(x)),
    }


def oodeel_methods(model: nn.Module, temperature: float, epsilon: float) -> dict[str, Scorer]:
    from oodeel.methods import MLS, ODIN

    odin = ODIN(temperature=temperature, eps=epsilon)
    odin.fit(copy.deepcopy(model))  # oodeel hooks the module it is given: copies keep those hooks
    msp = MLS(output_activation="softmax")  # off the other methods' forwards
    msp.fit(copy.deepcopy(model))
    return {
        "odin:oodeel": lambda x: -torch.as_tensor(odin.score(x)[0], dtype=torch.float32),
        "msp:oodeel": lambda x: -torch.as_tensor(msp.score(x)[0], dtype=torch.float32),
    }


def _no_grad(fn: Callable[[], Tensor]) -> Tensor:
    with torch.no_grad():
        return fn()


def max_diffs(
    outputs: dict[str, Tensor], model: nn.Module, x: Tensor, temperature: float, epsilon: float
) -> dict[str, float]:
    """max |score - odin-ood eager's| per method (oodeel's ODIN: against odin-ood with the step in
    the model's input units, ``input_std=None``, its convention)."""
    refs = {m: outputs[f"{m.split(':')[0]}:eager"] for m in outputs}
    if "odin:oodeel" in outputs:
        refs["odin:oodeel"] = odin_scores(model, x, temperature, epsilon, None, normalise=False)
    return {m: float((s.double().cpu() - refs[m].double()).abs().max()) for m, s in outputs.items()}


def bench_model(name: str, args, root: Path) -> list[dict]:
    model = models_load(name, root)
    images = common.load_images("cifar10-lossless-1000", model, 1000, root)
    if images is None:
        raise SystemExit(f"the CIFAR-10 lossless images are not under {root}: pass --data-root")
    rows = []
    for batch_size in args.batch_sizes:
        batches = [images[:WARM_UP]] + [
            images[torch.arange(k * batch_size, (k + 1) * batch_size) % len(images)] for k in range(args.batches)
        ]
        methods = odin_ood_methods(model, args.temperature, args.epsilon, args.variants, batch_size)
        peers, notes = peer_methods(model, args.temperature, args.epsilon, args.peers)
        methods.update(peers)
        seconds = dict.fromkeys(methods, 0.0)
        diffs = dict.fromkeys(methods, 0.0)
        for k, x in enumerate(batches):
            outputs = {}
            for m, fn in list(methods.items())[:: -1 if k % 2 else 1]:  # alternate order against drift
                outputs[m], s = common.timed(lambda fn=fn, x=x: fn(x.clone()), torch.device("cpu"))
                seconds[m] += s if k > 0 else 0.0  # batch 0 (WARM_UP images) warms up
            print(f"{name} batch {batch_size}: {k} of {args.batches} timed batches done", file=sys.stderr, flush=True)
            for m, d in max_diffs(outputs, model, x, args.temperature, args.epsilon).items():
                diffs[m] = max(diffs[m], d)
        n = batch_size * args.batches
        baseline = {
            kind: n / seconds[f"{kind}:pytorch-ood"] if f"{kind}:pytorch-ood" in seconds else None
            for kind in ("odin", "msp")
        }
        for m in methods:
            kind, who = m.split(":")
            rate = n / seconds[m]
            rows.append(
                {
                    "model": name,
                    "batch_size": batch_size,
                    "score": kind,
                    "method": who,
                    "images_per_s": rate,
                    "over_pytorch_ood": rate / baseline[kind] if baseline[kind] else None,
                    "max_abs_diff": diffs[m],
                }
            )
        for note in notes:
            print(note, file=sys.stderr)
    return rows


def models_load(name: str, root: Path) -> nn.Module:
    from odin_ood import models

    return models.load(name, weights=root / "models" / CHECKPOINTS[name]).eval()


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument("--models", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    p.add_argument("--batches", type=int, default=3, help=f"timed batches per method (after {WARM_UP} warm-up images)")
    p.add_argument("--temperature", type=float, default=1000.0)
    p.add_argument("--epsilon", type=float, default=0.0014)
    p.add_argument("--variants", nargs="+", default=["eager", "folded"], help="odin-ood variants: eager, folded")
    p.add_argument(
        "--runtime",
        action="append",
        default=[],
        metavar="NAME",
        help=f"also time the ODIN runtime NAME (registered: {sorted(RUNTIMES) or 'none yet'})",
    )
    p.add_argument("--peers", nargs="*", default=["pytorch-ood", "oodeel"])
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    unknown = [r for r in args.runtime if r not in RUNTIMES]
    if unknown or not set(args.variants) <= {"eager", "folded"} or "eager" not in args.variants:
        raise SystemExit(
            f"unknown runtime/variant {unknown or args.variants}: variants are eager, folded; "
            f"runtimes {sorted(RUNTIMES) or 'none registered in this checkout'}"
        )
    args.variants += args.runtime
    if args.tiny:
        args.batch_sizes, args.batches, args.models = [4], 1, ["resnet20"]
    device = common.setup(args)
    rows = [r for m in args.models for r in bench_model(m, args, args.data_root)]
    ctx = common.context(
        device, load_average=" ".join(f"{a:.2f}" for a in os.getloadavg()), tiny=args.tiny, peers=_versions()
    )
    payload = {
        "benchmark": "bench_peers",
        "context": ctx,
        "temperature": args.temperature,
        "epsilon": args.epsilon,
        "rows": rows,
    }
    common.write_json(args.out, "bench_peers", payload)
    common.append_results(
        args.results,
        "bench_peers: odin-ood vs pytorch-ood and oodeel" + (" (tiny)" if args.tiny else ""),
        ctx,
        rows,
        f"T = {args.temperature:g}, epsilon = {args.epsilon:g}, real CIFAR-10 images; load "
        f"average {ctx['load_average']}; peers {ctx['peers']}. max_abs_diff: against odin-ood eager "
        "(oodeel's ODIN: against odin-ood with the step in normalised units, its convention).",
    )
    return payload


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("pytorch-ood", "oodeel"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    return ", ".join(found)


if __name__ == "__main__":
    main()
