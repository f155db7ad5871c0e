"""Peak resident memory of ``odin-ood fit`` and ``score`` on ImageNet-sized inputs, with memory
bounded in bytes (``--max-memory``, default 1 GiB; :mod:`odin_ood.scores.memory`).

Each command runs in its own process (1 torch thread, 1 decoding worker) on real images (Tiny
ImageNet test JPEGs, CIFAR-10 test JPEGs as the OOD side of fit) resized to the model's input;
its peak RSS is the kernel's ``ru_maxrss`` for that child (``os.wait4``). A ``load`` row is the
floor: the same process after importing torch and loading the model, before any image. Weights
are random (timm's initialisation, saved to a temporary safetensors file): memory does not depend
on their values. Needs a torch build that imports timm (see .ci/run); run with that python:

    /work/tvenv/bin/python benchmarks/bench_memory.py --sizes 224 384
    /work/tvenv/bin/python benchmarks/bench_memory.py --sizes 384 --runtimes torch onnxruntime openvino

With ``--runtimes``, ``score`` runs on each (a graph runtime once beforehand, to export its graph
into a private cache: the figure is a run with the graph cached, at the batch its memory factor
leaves, :data:`odin_ood.runtimes.MEMORY_FACTORS`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TINY = "tiny-imagenet/tiny-imagenet-200-test.zip"
CIFAR = "cifar10/cifar10-jpeg-test.zip"
GRID = ["--temperatures", "1,1000", "--epsilons", "0,0.0014"]


def extract(zip_path: Path, n: int, folder: Path) -> Path:
    """The first ``n`` images of a zip (by name) as files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as z:
        for name in sorted(m for m in z.namelist() if m.lower().endswith((".jpeg", ".jpg")))[:n]:
            (folder / Path(name).name).write_bytes(z.read(name))
    return folder


def peak_rss(argv: list[str]) -> tuple[int, float]:
    """(exit status, peak RSS in MiB) of a child process running ``argv``."""
    env = dict(os.environ, PYTHONPATH=str(common.ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{err[-2000:]}")
    return proc.returncode, usage.ru_maxrss / 1024.0


def main() -> None:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="timm:resnet18")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 384])
    p.add_argument("--fit-images", type=int, default=200, help="images per side for fit")
    p.add_argument("--score-images", type=int, default=600)
    p.add_argument("--max-memory", default="1GiB")
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT)
    p.add_argument("--runtimes", nargs="+", default=["torch"], help="score on each (default torch)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        args.sizes, args.fit_images, args.score_images = [64], 20, 40
    import timm

    from odin_ood.models import save_safetensors
    from odin_ood.scores import memory

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ODIN_OOD_CACHE"] = str(tmp / "cache")  # graphs exported here, not in the user's cache
        weights = save_safetensors(
            timm.create_model(args.model.split(":", 1)[1], pretrained=False), tmp / "w.safetensors"
        )
        images = extract(args.data_root / TINY, args.score_images, tmp / "score")
        odin = [sys.executable, "-m", "odin_ood"]
        for size in args.sizes:
            model = [
                "--model",
                args.model,
                "--weights",
                str(weights),
                "--input-size",
                f"3,{size},{size}",
                "--resize",
                "squash",
                "--threads",
                "1",
                "--max-memory",
                args.max_memory,
            ]
            det = tmp / f"det{size}"
            load = (
                f"from odin_ood import models; models.load({args.model!r}, weights={str(weights)!r}, "
                f"input_shape=(3, {size}, {size}))"
            )
            _, floor = peak_rss([sys.executable, "-c", f"import torch; torch.set_num_threads(1); {load}"])
            _, fit = peak_rss(
                [
                    *odin,
                    "fit",
                    *model,
                    "--id",
                    str(args.data_root / TINY),
                    "--ood",
                    str(args.data_root / CIFAR),
                    "--limit",
                    str(args.fit_images),
                    "--out",
                    str(det),
                    "--workers",
                    "1",
                    "--quiet",
                    *GRID,
                ]
            )
            batch = int(__import__("json").loads((det / "detector.json").read_text())["batch_size"])
            shape = (3, size, size)
            for runtime in args.runtimes:

                def score_argv(inputs: Path, out: str, model=model, det=det, runtime=runtime) -> list[str]:
                    return [
                        *odin,
                        "score",
                        *model,
                        "--detector",
                        str(det),
                        str(inputs),
                        "--output",
                        str(tmp / out),
                        "--workers",
                        "1",
                        "--quiet",
                        "--runtime",
                        runtime,
                    ]

                if runtime != "torch":  # export once, outside the measured run
                    peak_rss(score_argv(images / sorted(os.listdir(images))[0], f"warm{size}-{runtime}.csv"))
                _, score = peak_rss(score_argv(images, f"s{size}-{runtime}.csv"))
                rows.append(
                    {
                        "model": args.model,
                        "input": f"{size}x{size}",
                        "max_memory": args.max_memory,
                        "runtime": runtime,
                        "batch": batch,
                        "chunk": memory.chunk_for(shape, memory.parse_bytes(args.max_memory), batch),
                        "load_mib": round(floor),
                        f"fit_{args.fit_images}x2_mib": round(fit),
                        f"score_{args.score_images}_mib": round(score),
                    }
                )
                print(rows[-1], flush=True)
    ctx = common.context(torch.device("cpu"), load_average=os.getloadavg()[0])
    common.write_json(args.out, "bench_memory", {"context": ctx, "rows": rows})
    common.append_results(
        args.results,
        f"bench_memory: peak RSS of fit and score, {args.model}, --max-memory {args.max_memory}",
        ctx,
        rows,
        note=f"Peak RSS (ru_maxrss of each child process), 1 thread, 1 decoding worker, load average "
        f"{ctx['load_average']:.1f} at the end. fit: {args.fit_images} Tiny ImageNet test JPEGs (ID) and "
        f"{args.fit_images} CIFAR-10 test JPEGs (OOD), squashed to the input size (--resize squash), 2x2 grid; score: "
        f"{args.score_images} Tiny ImageNet JPEGs. batch = what half the budget allows from the model's "
        "measured autograd working set, chunk = images held decoded. load = torch + the model, no image.",
    )


if __name__ == "__main__":
    main()
