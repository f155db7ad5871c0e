"""Start-up of the command line: a one-image `odin-ood score` against `python -c "import torch"`.

Every command runs in a fresh process (``--threads 1``, ``OMP_NUM_THREADS=1``), the commands
interleaved in a rotated order each round (``--repeats`` rounds, medians), after one untimed
warm-up round that also exports the graphs into a private cache (so the graph runtimes are
measured with a warm export cache, as a user's second run is):

- ``import torch``: the floor, ``python -c "import torch"``;
- ``--help``: ``odin-ood --help``;
- ``score``: one real CIFAR-10 test image (the first of the lossless PNGs) with the ResNet-20
  zoo checkpoint (``--model FILE``: the architecture recognised from its keys), an ODIN detector
  at the paper's T = 1000, epsilon = 0.0014 with batch size ``--batch-size`` (128: what `fit`
  gives ResNet-20 by default), on the torch runtime, on onnxruntime and on openvino (when
  installed); the one image is scored in one batch of the detector's size (zero-padded: results
  do not depend on a batch's other rows, :mod:`odin_ood.runtimes.batches`), so the torch row
  includes one ODIN pass over a whole batch; ``score --batch-size 1`` is the same command without
  that padding (start-up alone);
- ``score mnist-lenet``: one real MNIST test digit with the shipped LeNet (``--model mnist-lenet``).

Ratios are each median over the median of ``import torch`` in the same run. Appends a section
to RESULTS.md with the load average before and after.

    python benchmarks/bench_startup.py              # about 3 minutes on a 2-core CPU
    python benchmarks/bench_startup.py --repeats 3  # a quick look
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(common.DEFAULT_DATA_ROOT))
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds over the commands (median)")
    p.add_argument("--batch-size", type=int, default=128, help="the detectors' batch size")
    return p


def fixtures(data_root: Path, root: Path, batch_size: int) -> dict[str, Path]:
    """One CIFAR-10 and one MNIST test image (real files), and an ODIN detector at the paper's T
    and epsilon for ResNet-20 and for the shipped LeNet (threshold 0.1: speed does not depend on it)."""
    import numpy as np
    from PIL import Image

    from odin_ood import Detector, data, models

    paths = {"cifar": root / "cifar", "mnist": root / "mnist"}
    with zipfile.ZipFile(data_root / "cifar10" / "cifar10-test-lossless-first1000.zip") as z:
        name = sorted(n for n in z.namelist() if n.endswith(".png"))[0]
        paths["cifar"].mkdir()
        (paths["cifar"] / "one.png").write_bytes(z.read(name))
    paths["mnist"].mkdir()
    Image.fromarray(np.asarray(data.load("mnist", root=data_root).images[0, 0])).save(paths["mnist"] / "one.png")
    for key, model in (
        ("resnet20", models.load(data_root / "models" / "resnet20-cifar10.th")),
        ("lenet", models.load("mnist-lenet")),
    ):
        det = Detector(model, batch_size=batch_size)
        det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
        det.save(root / f"det-{key}")
        paths[f"det-{key}"] = root / f"det-{key}"
    return paths


def commands(data_root: Path, paths: dict[str, Path], root: Path) -> dict[str, list[str]]:
    python = [sys.executable]
    odin = [*python, "-m", "odin_ood"]
    resnet = [
        "score",
        str(paths["cifar"]),
        "--detector",
        str(paths["det-resnet20"]),
        "--model",
        str(data_root / "models" / "resnet20-cifar10.th"),
        "--threads",
        "1",
        "--quiet",
    ]
    out = {
        "import torch": [*python, "-c", "import torch"],
        "--help": [*odin, "--help"],
        "score (torch)": [*odin, *resnet, "--output", str(root / "torch.csv")],
        "score --batch-size 1 (torch)": [*odin, *resnet, "--batch-size", "1", "--output", str(root / "b1.csv")],
        "score mnist-lenet (torch)": [
            *odin,
            "score",
            str(paths["mnist"]),
            "--detector",
            str(paths["det-lenet"]),
            "--model",
            "mnist-lenet",
            "--threads",
            "1",
            "--quiet",
            "--output",
            str(root / "lenet.csv"),
        ],
    }
    for runtime in ("onnxruntime", "openvino"):
        if _installed(runtime):
            out[f"score ({runtime}, warm cache)"] = [
                *odin,
                *resnet,
                "--runtime",
                runtime,
                "--output",
                str(root / f"{runtime}.csv"),
            ]
    return out


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of ``cmd``; its output file is removed first (each run writes a fresh one)."""
    if "--output" in cmd:
        Path(cmd[cmd.index("--output") + 1]).unlink(missing_ok=True)
    return common.timed_command(cmd, env, cwd)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    device = common.setup(args)
    data_root = Path(args.data_root)
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        cmds = commands(data_root, fixtures(data_root, root, args.batch_size), root)
        env = dict(
            os.environ, PYTHONPATH=str(common.ROOT / "src"), OMP_NUM_THREADS="1", ODIN_OOD_CACHE=str(root / "cache")
        )
        for cmd in cmds.values():  # warm-up: bytecode caches, the page cache, the exported graphs
            timed(cmd, env, root)
        names = list(cmds)
        runs: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                runs[name].append(timed(cmds[name], env, root))
            loads.append(os.getloadavg())
    floor = statistics.median(runs["import torch"])
    rows = [
        {
            "command": name,
            "median_s": round(statistics.median(t), 3),
            "min_s": round(min(t), 3),
            "max_s": round(max(t), 3),
            "x_import_torch": round(statistics.median(t) / floor, 2),
        }
        for name, t in runs.items()
    ]
    load = common.load_summary(loads, "rounds")
    ctx = common.context(device, load=load, batch_size=args.batch_size)
    note = (
        f"`python benchmarks/bench_startup.py --repeats {args.repeats}`: each command a fresh process, 1 thread, "
        f"medians of {args.repeats} interleaved rounds after a warm-up round (graphs exported then: warm cache); "
        f"{load}. score: one real CIFAR-10 test image, the ResNet-20 checkpoint file (architecture recognised from "
        f"its keys), ODIN T = 1000, eps = 0.0014, the detector's batch of {args.batch_size} (the one image "
        "zero-padded to it: one ODIN pass over a whole batch); --batch-size 1: the same without padding. "
        'x_import_torch: median over the median of `python -c "import torch"` in the same run (target of '
        "issue 29: <= 1.5 for a one-image score)."
    )
    common.append_results(
        args.results, "bench_startup: one-image `odin-ood score` against `import torch`", ctx, rows, note=note
    )
    payload = {"context": ctx, "rows": rows, "runs": runs, "note": note}
    common.write_json(args.out, "bench_startup", payload)
    for r in rows:
        print(r)
    return payload


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


if __name__ == "__main__":
    main()
