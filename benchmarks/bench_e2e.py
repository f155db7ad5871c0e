"""`odin-ood score` end to end against its runtimes' kernels and pytorch-ood's ODIN kernel.

One interleaved run per network (ResNet-20, DenseNet-BC-100: the checkpoints under the data
root), ODIN at T = 1000, epsilon = 0.0014, batches of ``--batch-size``, ``--threads`` (default 1)
for the model's arithmetic everywhere:

- ``pytorch-ood kernel``: pytorch-ood 0.4.0's ``ODIN.predict`` on normalised tensors already in
  memory (bench_peers' scorer), batch by batch;
- ``<runtime> kernel``: the runtime exactly as ``odin-ood score`` loads it
  (:func:`odin_ood.commands.loading.load_scorer`: batch norm folded on torch, the exported graph
  from a warm cache on onnxruntime and openvino) on [0, 1] pixels already in memory
  (:func:`odin_ood.runtimes.batches.fixed_batch_outputs`);
- ``score <runtime>``: the command in a fresh process on the lossless CIFAR-10 PNG files
  (listing, reading, decoding, scoring, writing the CSV all included), as the marginal rate
  (N2 - N1) / (t(N2) - t(N1)) of two runs with ``--limit N1`` and ``--limit N2`` (``--sizes``;
  whole batches, so that no run pads; the folder is given as often as N2 needs, e.g. three
  times for 2,880 images), which leaves out start-up (measured by bench_startup); with
  ``--sequential`` also with ``--prefetch 0`` (decode, then score: no overlap).

Everything runs in batches of ``--batch-size`` (``score --batch-size``: without it, ``score``
clamps the detector's batch to what half of ``--max-memory`` holds, counting a graph runtime's
worst measured memory per image, 7x eager's for OpenVINO: at the 1 GiB default, ResNet-20 on
OpenVINO would score in batches of 49 and DenseNet-BC-100 in batches of 4).

Each kernel runs in a process of its own (:func:`run_kernel`: one untimed batch, then the N2
images), as each command does, so that no path inherits another's allocations. Every
measurement is taken once per round, the order rotated each round, ``--rounds`` rounds;
the figures are medians over rounds, and each ratio is the median of the per-round ratios (both
sides measured in the same round). Wall seconds and CPU seconds (the process's user + system,
all threads) are both recorded: on this shared machine the wall clock includes waiting for a
core, while CPU seconds of a one-thread kernel are the work alone. The command's decoding threads
(``--workers``) add CPU seconds that the overlap hides from the wall clock when a second core is
free. Agreement: the N2 run's rows against the runtime's kernel (max |score difference|) and
against pytorch-ood's scores (max difference; decisions at the detector's threshold equal,
except for scores within 1e-5 of it). Run in the venv where pytorch-ood imports:

    PYTHONPATH=src /work/venvs/peers/bin/python benchmarks/bench_e2e.py --models resnet20
    PYTHONPATH=src /work/venvs/peers/bin/python benchmarks/bench_e2e.py --models densenet-bc-100 --sizes 128 448
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers
import common

TOLERANCE = 1e-5  # odin_ood.runtimes.SCORE_TOLERANCE: decisions may differ within it of the threshold
ZIP = Path("cifar10") / "cifar10-test-lossless-first1000.zip"


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument("--models", nargs="+", default=list(bench_peers.CHECKPOINTS), choices=list(bench_peers.CHECKPOINTS))
    p.add_argument("--runtimes", nargs="+", default=None, help="default: torch and the graph runtimes installed")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--sizes",
        nargs=2,
        type=int,
        default=[192, 1920],
        metavar=("N1", "N2"),
        help="images of the two command runs whose difference gives the marginal rate",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sequential", action="store_true", help="also time score --prefetch 0 (no overlap)")
    p.add_argument("--temperature", type=float, default=1000.0)
    p.add_argument("--epsilon", type=float, default=0.0014)
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT)
    p.add_argument("--kernel", default=None, help=argparse.SUPPRESS)  # run_kernel's process
    p.add_argument(
        "--work",
        type=Path,
        default=common.ROOT / "results" / "bench" / "e2e",
        help="git-ignored folder for the PNG files, detectors, outputs and the export cache",
    )
    return p


def images_folder(data_root: Path, work: Path) -> Path:
    """The 1,000 lossless CIFAR-10 test images as PNG files (the zip's members, byte for byte)."""
    folder = work / "cifar10-lossless"
    if not folder.is_dir():
        tmp = work / "cifar10-lossless.tmp"
        with zipfile.ZipFile(data_root / ZIP) as z:
            for name in (n for n in z.namelist() if n.endswith(".png")):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(z.read(name))
        tmp.rename(folder)
    return folder


def detector_folder(name: str, model, images, args) -> Path:
    """An ODIN detector at (T, epsilon) for batches of ``--batch-size`` whose threshold keeps 95%
    of the first two batches' scores (the paper's TPR; speed does not depend on it)."""
    from odin_ood import Detector, odin_scores

    x = common.normalise(images[: 2 * args.batch_size], model)
    scores = odin_scores(model, x, args.temperature, args.epsilon, model.input_std, normalise=False)
    det = Detector(model, batch_size=args.batch_size)
    det._set_fitted(args.temperature, args.epsilon, float(torch.quantile(scores.double(), 0.05)), 0.95)
    folder = args.work / f"det-{name}-b{args.batch_size}"
    det.save(folder)
    return folder


def inputs_for(folder: Path, n: int) -> list[str]:
    """``folder`` as often as it takes to hold ``n`` images."""
    return [str(folder)] * -(-n // sum(1 for _ in folder.rglob("*.png")))


def pixels_of(folder: Path, n: int, runtime_spec) -> torch.Tensor:
    """The first ``n`` images of the inputs as ``odin-ood score`` lists and decodes them."""
    from odin_ood.commands.inputs import Inputs
    from odin_ood.commands.rows import prepare

    inputs = Inputs(inputs_for(folder, n))
    return torch.stack([prepare(inputs, runtime_spec, i) for i in range(n)])


def kernel(which: str, name: str, det: Path, model, pixels: torch.Tensor, args) -> tuple[Callable, torch.Tensor]:
    """(a scorer of in-memory images, its input): ``pytorch-ood``'s on normalised tensors, batch by
    batch, or the runtime ``which`` as ``score`` loads it, on [0, 1] pixels."""
    from odin_ood.commands.loading import load_scorer
    from odin_ood.commands.options import ModelOptions

    if which == "pytorch-ood":
        peer = bench_peers.pytorch_ood_methods(model, args.temperature, args.epsilon)["odin:pytorch-ood"]
        return partial(_peer_scores, peer, args.batch_size), common.normalise(pixels, model)
    weights = args.data_root / "models" / bench_peers.CHECKPOINTS[name]
    options = ModelOptions(str(weights), threads=args.threads, batch_size=args.batch_size)
    return partial(_scores, load_scorer(options, det, which)[0]), pixels


def _peer_scores(peer: Callable, batch_size: int, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([peer(x[s : s + batch_size].clone()) for s in range(0, len(x), batch_size)])


def _scores(runtime, pixels: torch.Tensor) -> torch.Tensor:
    from odin_ood.runtimes.batches import fixed_batch_outputs

    return fixed_batch_outputs(runtime, pixels)["score"]


def run_kernel(args) -> None:
    """``--kernel WHICH``, in a process of its own: time the kernel on the N2 images in memory
    (after one untimed batch), save its scores beside the work files, print wall and CPU seconds."""
    import json

    import numpy as np

    name, n2 = args.models[0], args.sizes[1]
    model = bench_peers.models_load(name, args.data_root)
    pixels = pixels_of(images_folder(args.data_root, args.work), n2, _spec(model))
    fn, x = kernel(args.kernel, name, args.work / f"det-{name}-b{args.batch_size}", model, pixels, args)
    fn(x[: args.batch_size])
    scores, wall, cpu = common.timed_cpu(partial(fn, x), torch.device("cpu"))
    np.save(_kernel_scores(args, name, args.kernel), scores.numpy())
    print(json.dumps({"wall": wall, "cpu": cpu}))


def _kernel_scores(args, name: str, which: str) -> Path:
    return args.work / f"{name}-{which}-kernel-scores.npy"


def _timed_kernel(cmd: list[str], scores: Path, env: dict[str, str], cwd: Path) -> tuple[torch.Tensor, float, float]:
    """(the kernel's scores, wall seconds, CPU seconds) measured by ``cmd`` (:func:`run_kernel`)."""
    import json
    import subprocess

    import numpy as np

    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    timing = json.loads(proc.stdout.strip().splitlines()[-1])
    return torch.from_numpy(np.load(scores, allow_pickle=False)), timing["wall"], timing["cpu"]


def _spec(model):
    from odin_ood.preprocess import Preprocessing

    return Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))


def _run_command(cmd: list[str], out: Path, env: dict[str, str], cwd: Path) -> tuple[Path, float, float]:
    """(the output file, wall seconds, CPU seconds) of ``cmd``, its output removed first."""
    out.unlink(missing_ok=True)
    return (out, *common.timed_command_cpu(cmd, env, cwd))


def command(
    folder: Path, det: Path, weights: Path, runtime: str, n: int, prefetch: int | None, out: Path, args
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "odin_ood",
        "score",
        *inputs_for(folder, n),
        "--limit",
        str(n),
        "--detector",
        str(det),
        "--model",
        str(weights),
        "--runtime",
        runtime,
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--quiet",
        "--output",
        str(out),
        *([] if prefetch is None else ["--prefetch", str(prefetch)]),
    ]


def bench_model(name: str, args, folder: Path, env: dict[str, str], loads: list) -> tuple[list[dict], dict]:
    from odin_ood import Detector
    from odin_ood.commands.writers import read_rows

    n1, n2 = args.sizes
    weights = args.data_root / "models" / bench_peers.CHECKPOINTS[name]
    model = bench_peers.models_load(name, args.data_root)
    det = detector_folder(name, model, pixels_of(folder, 2 * args.batch_size, _spec(model)), args)
    variants = {"score": None, **({"score --prefetch 0": 0} if args.sequential else {})}
    which = [*(["pytorch-ood"] if importlib.util.find_spec("pytorch_ood") is not None else []), *args.runtimes]
    shared = [
        "--models",
        name,
        "--sizes",
        str(n1),
        str(n2),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--temperature",
        repr(args.temperature),
        "--epsilon",
        repr(args.epsilon),
        "--data-root",
        str(args.data_root),
        "--work",
        str(args.work),
    ]
    jobs: dict[str, Callable[[], tuple[object, float, float]]] = {
        f"{k} kernel": partial(
            _timed_kernel,
            [sys.executable, __file__, "--kernel", k, *shared],
            _kernel_scores(args, name, k),
            env,
            args.work,
        )
        for k in which
    }
    scorers = [f"{k} kernel" for k in which]
    for runtime in args.runtimes:
        for label, prefetch in variants.items():
            for n in (n1, n2):
                out = args.work / f"{name}-{runtime}-{prefetch}-{n}.csv"
                cmd = command(folder, det, weights, runtime, n, prefetch, out, args)
                jobs[f"{label} {runtime} {n}"] = partial(_run_command, cmd, out, env, args.work)
    for job in jobs.values():  # warm-up: the exported graphs, bytecode and page caches, first-batch allocations
        job()
    names, seconds = list(jobs), {k: [] for k in jobs}
    results = {}
    for r in range(args.rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            result, wall, cpu = jobs[k]()
            seconds[k].append((wall, cpu))
            results[k] = result
            print(f"{name} round {r}: {k}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr, flush=True)
        loads.append(os.getloadavg())
    rows = []
    peer = "pytorch-ood kernel" if "pytorch-ood kernel" in scorers else None
    rates = {k: [(n2 / w, n2 / c) for w, c in seconds[k]] for k in scorers}
    for runtime in args.runtimes:
        for label in variants:
            a, b = seconds[f"{label} {runtime} {n1}"], seconds[f"{label} {runtime} {n2}"]
            rates[f"{label} {runtime}"] = [
                ((n2 - n1) / (w2 - w1), (n2 - n1) / (c2 - c1)) for (w1, c1), (w2, c2) in zip(a, b, strict=True)
            ]
    threshold = Detector.load(str(det), model).threshold_
    flops = odin_flops(model)
    for k, per_round in rates.items():
        runtime = k.split(" ")[0] if k.endswith("kernel") else k.split(" ")[-1]
        kernel = rates.get(f"{runtime} kernel")
        row = {
            "network": name,
            "path": k,
            "images_per_s": _median(per_round, 0),
            "cpu_images_per_s": _median(per_round, 1),
            "gflop_per_cpu_s": _median(per_round, 1) * flops / 1e9,
        }
        if not k.endswith("kernel"):
            row.update(x_kernel=_median_ratio(per_round, kernel, 0), cpu_x_kernel=_median_ratio(per_round, kernel, 1))
        if peer is not None:
            row.update(
                x_pytorch_ood=_median_ratio(per_round, rates[peer], 0),
                cpu_x_pytorch_ood=_median_ratio(per_round, rates[peer], 1),
                x_pytorch_ood_rounds=_spread(per_round, rates[peer], 0),
                cpu_x_pytorch_ood_rounds=_spread(per_round, rates[peer], 1),
            )
        scores = (
            results[k] if k.endswith("kernel") else torch.tensor([r["score"] for r in read_rows(results[f"{k} {n2}"])])
        )
        if not k.endswith("kernel"):
            row["max_diff_vs_kernel"] = float((scores - results[f"{runtime} kernel"]).abs().max())
        if peer is not None:
            row.update(_agreement(scores, results[peer], threshold))
        rows.append(row)
    return rows, {"seconds": seconds, "threshold": threshold, "odin_gflop_per_image": flops / 1e9}


def odin_flops(model) -> float:
    """FLOPs of ODIN on one image: 3 forwards' worth (a forward, the input-only backward, which
    runs each layer's transposed operation: as many multiply-adds, and the perturbed forward),
    the forward counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(2, *model.input_shape))
    return 3 * counter.get_total_flops() / 2


def sgemm_gflops(repeats: int = 5) -> float:
    """This core's practical float32 peak: the best GFLOP per CPU second of a 1024 x 1024 matrix
    product on the threads set, over ``repeats`` tries."""
    import time

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = 0.0
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(10):
            a @ b
        best = max(best, 10 * 2 * 1024**3 / (time.process_time() - start) / 1e9)
    return best


def _agreement(scores: torch.Tensor, peer: torch.Tensor, threshold: float) -> dict:
    """Max |score - pytorch-ood's| and the decisions ``score > threshold`` (ID) compared: the share
    equal, and how many differ with both scores farther than TOLERANCE from the threshold."""
    s, p = scores.double(), peer.double()
    differ = (s > threshold) != (p > threshold)
    near = ((s - threshold).abs() <= TOLERANCE) | ((p - threshold).abs() <= TOLERANCE)
    return {
        "max_diff_vs_pytorch_ood": float((s - p).abs().max()),
        "decisions_equal": float(1 - differ.double().mean()),
        "decisions_off_band": int((differ & ~near).sum()),
    }


def _median(per_round: list[tuple[float, float]], i: int) -> float:
    return statistics.median(v[i] for v in per_round)


def _median_ratio(per_round: list[tuple[float, float]], base: list[tuple[float, float]] | None, i: int) -> float | None:
    return None if base is None else statistics.median(v[i] / w[i] for v, w in zip(per_round, base, strict=True))


def _spread(per_round: list[tuple[float, float]], base: list[tuple[float, float]], i: int) -> str:
    """The least and the largest per-round ratio, "a-b"."""
    ratios = [v[i] / w[i] for v, w in zip(per_round, base, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.runtimes is None:
        args.runtimes = ["torch", *(r for r in ("onnxruntime", "openvino") if importlib.util.find_spec(r) is not None)]
    if args.tiny:
        args.models, args.sizes, args.rounds, args.batch_size = ["resnet20"], [8, 16], 1, 8
    if any(n % args.batch_size for n in args.sizes) or args.sizes[0] >= args.sizes[1]:
        raise SystemExit(f"--sizes must be N1 < N2, whole batches of {args.batch_size}")
    device = common.setup(args)
    if args.kernel is not None:
        run_kernel(args)
        return {}
    args.work.mkdir(parents=True, exist_ok=True)
    folder = images_folder(args.data_root, args.work)
    env = dict(
        os.environ,
        PYTHONPATH=str(common.ROOT / "src"),
        OMP_NUM_THREADS=str(args.threads),
        ODIN_OOD_CACHE=str(args.work / "cache"),
    )
    loads = [os.getloadavg()]
    rows, raw = [], {}
    for name in args.models:
        model_rows, raw[name] = bench_model(name, args, folder, env, loads)
        rows += model_rows
    peak = sgemm_gflops()
    for r in rows:
        r["of_sgemm_peak"] = r["gflop_per_cpu_s"] / peak
    load = common.load_summary(loads, "rounds")
    ctx = common.context(device, load=load, batch_size=args.batch_size, peers=bench_peers._versions())
    note = (
        f"`benchmarks/bench_e2e.py --sizes {args.sizes[0]} {args.sizes[1]} --rounds {args.rounds}`: ODIN T = "
        f"{args.temperature:g}, eps = {args.epsilon:g}, {args.threads} thread(s) for the model's arithmetic "
        f"(the command's decoding threads beside it), score --batch-size {args.batch_size}, "
        "the lossless CIFAR-10 PNG files; "
        f"{load}; "
        f"{ctx['peers']}. score: marginal rate (N2 - N1) / (t(N2) - t(N1)) of two fresh processes; kernel: the "
        "same runtime on the N2 images' pixels in memory, in a process of its own; medians over interleaved "
        "rounds, ratios the median of per-round "
        "ratios (*_rounds: their least and largest). cpu_*: per CPU second (user + system, all threads). "
        "gflop_per_cpu_s: cpu_images_per_s times ODIN's FLOPs per image (3 forwards: "
        + ", ".join(f"{m} {raw[m]['odin_gflop_per_image']:.3f} GFLOP" for m in raw)
        + f"); of_sgemm_peak: over this "
        f"core's float32 matrix product, {peak:.1f} GFLOP per CPU second at {args.threads} thread(s) in this run "
        "(the practical peak). Agreement: the N2 rows against the "
        f"kernel and against pytorch-ood; decisions_off_band: differing decisions farther than {TOLERANCE:g} "
        "from the threshold (must be 0)."
    )
    common.append_results(
        args.results,
        "bench_e2e: `odin-ood score` end to end against its kernels and pytorch-ood" + (" (tiny)" if args.tiny else ""),
        ctx,
        rows,
        note,
    )
    payload = {"benchmark": "bench_e2e", "context": ctx, "rows": rows, "raw": raw, "loads": loads, "note": note}
    common.write_json(args.out, "bench_e2e", payload)
    for r in rows:
        print(r)
    return payload


if __name__ == "__main__":
    main()
