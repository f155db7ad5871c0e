"""Scaling out `odin-ood score`: images/s with 1 and 2 workers under torchrun and on Ray Data.

Every configuration runs the real command in a fresh process, on the same WebDataset shards of
real CIFAR-10 test images (``--images`` of the JPEG test set, interleaving the classes, 4 shards)
with ResNet-20 and an ODIN detector at the paper's T = 1000, epsilon = 0.0014 (batch 64), one
torch thread per worker:

- ``single``: one process (``--threads 1``, and ``--threads 2`` as the one-process baseline that
  uses both cores);
- ``torchrun``: ``--nproc-per-node 1`` and ``2`` (gloo), ``score --distributed``;
- ``ray``: ``--engine ray --ray-workers 1`` and ``2`` (a local cluster started by each run).

Each configuration runs twice per round (``--repeats`` rounds, interleaved, medians): on
``--tiny-images`` (``--limit``) and on all images; the tiny
run's wall time is the per-run overhead (start-up: processes, rendezvous or cluster, model load,
listing) and the rate is (images - tiny images) / (difference of the wall times), so start-up
does not count in images/s. Ratios are against the same engine's 1-worker rate and against
``single`` on 1 thread, measured in the same run; every output file is checked to be the same,
byte for byte. Appends a section to RESULTS.md with the load average before and after.

    python benchmarks/bench_scale.py                             # about 12 minutes on a 2-core CPU
    python benchmarks/bench_scale.py --images 1000 --repeats 1   # a quick look
"""

from __future__ import annotations

import io
import os
import socket
import statistics
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood.commands.webdataset import Shards

CONFIGS = [("single", 1, 1), ("single", 1, 2), ("torchrun", 1, 1), ("torchrun", 2, 1), ("ray", 1, 1), ("ray", 2, 1)]


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(common.DEFAULT_DATA_ROOT))
    p.add_argument("--images", type=int, default=3000, help="CIFAR-10 JPEG test images (at most 10000)")
    p.add_argument("--tiny-images", type=int, default=64, help="images of the start-up run (a whole batch)")
    p.add_argument("--chunk", type=int, default=128, help="--chunk of every run (the unit of work a worker takes)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the configurations (median)")
    return p


def shards(data_root: Path, n: int, folder: Path) -> Path:
    """n images of the CIFAR-10 JPEG test set (image k of every class in turn), as 4 WebDataset
    shards with .cls labels."""
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with zipfile.ZipFile(data_root / "cifar10" / "cifar10-jpeg-test.zip") as z:
        names = sorted((m for m in z.namelist() if m.endswith(".jpg")), key=lambda m: (Path(m).stem, m))[:n]
        members = [
            (f"{Path(m).parent.name}-{Path(m).stem}", z.read(m), classes.index(Path(m).parent.name)) for m in names
        ]
    folder.mkdir(parents=True)
    per = -(-len(members) // 4)
    for s in range(4):
        with tarfile.open(folder / f"cifar-{s:03d}.tar", "w") as tar:
            for key, blob, label in members[s * per : (s + 1) * per]:
                for name, data in ((f"{key}.png", blob), (f"{key}.cls", str(label).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder


def detector(data_root: Path, folder: Path) -> Path:
    """ResNet-20 with ODIN at the paper's T and epsilon (threshold 0.1; speed does not depend on it)."""
    from odin_ood import Detector, models

    model = models.load("resnet20", weights=data_root / "models" / "resnet20-cifar10.th")
    det = Detector(model, batch_size=64)
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
    det.save(folder)
    return folder


def command(engine: str, workers: int, threads: int, args: list[str]) -> list[str]:
    score = ["-m", "odin_ood", "score", *args, "--threads", str(threads), "--quiet"]
    if engine == "single":
        return [sys.executable, *score]
    if engine == "ray":
        return [sys.executable, *score, "--engine", "ray", "--ray-workers", str(workers)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(workers),
        "--nnodes",
        "1",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        *score,
        "--distributed",
        "--backend",
        "gloo",
    ]


def timed_run(cmd: list[str], output: Path, cwd: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(common.ROOT / "src"), OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    return common.timed_command([*cmd, "--output", str(output)], env, cwd)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    device = common.setup(args)
    data_root = Path(args.data_root)
    loads = [os.getloadavg()]
    runs: dict[str, list[tuple[float, float]]] = {label(c): [] for c in CONFIGS}
    identical = True
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        data = shards(data_root, min(args.images, 10000), root / "shards")
        det = detector(data_root, root / "det")
        base = [
            str(data),
            "--detector",
            str(det),
            "--model",
            "resnet20",
            "--weights",
            str(data_root / "models" / "resnet20-cifar10.th"),
            "--chunk",
            str(args.chunk),
        ]
        n = len(Shards(str(data), 1 << 25))
        for r in range(args.repeats):  # configurations interleaved, in a rotated order each round
            for config in CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]:
                tiny = timed_run(command(*config, [*base, "--limit", str(args.tiny_images)]), root / "tiny.csv", root)
                whole = timed_run(command(*config, base), root / "out.csv", root)
                runs[label(config)].append((tiny, whole))
                if not (root / "reference.csv").exists():  # the first output: every other must equal it
                    (root / "out.csv").rename(root / "reference.csv")
                else:
                    identical &= (root / "out.csv").read_bytes() == (root / "reference.csv").read_bytes()
                    (root / "out.csv").unlink()
                (root / "tiny.csv").unlink()
                loads.append(os.getloadavg())
    rows = []
    for engine, workers, threads in CONFIGS:
        tiny = statistics.median(t for t, _ in runs[label((engine, workers, threads))])
        spans = [w - t for t, w in runs[label((engine, workers, threads))]]
        rate = statistics.median((n - args.tiny_images) / s for s in spans) if min(spans) > 0 else None  # None: too few
        rows.append(
            {
                "engine": engine,
                "workers": workers,
                "threads_per_worker": threads,
                "images": n,
                "startup_s": round(tiny, 2),
                "images_per_s": None if rate is None else round(rate, 2),
            }
        )
    single = rows[0]["images_per_s"]
    for r in rows:
        one = next(o for o in rows if o["engine"] == r["engine"] and o["workers"] == 1 and o["threads_per_worker"] == 1)
        r["x_1_worker"] = _ratio(r["images_per_s"], one["images_per_s"])
        r["x_single"] = _ratio(r["images_per_s"], single)
        r["extra_startup_s"] = round(r["startup_s"] - one["startup_s"], 2)
    load = common.load_summary(loads, "configurations")
    ctx = common.context(device, ray=_ray_version(), load=load)
    payload = {"context": ctx, "rows": rows, "runs": runs, "rows_identical": identical}
    common.write_json(args.out, "bench_scale", payload)
    common.append_results(
        args.results,
        "bench_scale: images/s with 1 and 2 workers, torchrun and Ray Data",
        ctx,
        rows,
        note=(
            f"`python benchmarks/bench_scale.py --images {args.images} --repeats {args.repeats}`: ResNet-20, ODIN "
            f"T = 1000, eps = 0.0014, batch 64, --chunk {args.chunk}, {n} real CIFAR-10 JPEG test images in 4 "
            f"WebDataset shards, one torch thread per worker; {load}. Medians of {args.repeats} interleaved rounds. "
            f"images_per_s excludes start-up: (images - {args.tiny_images}) / (wall time - startup_s), startup_s "
            f"being the wall time of the same command on {args.tiny_images} images (processes, rendezvous or "
            "cluster, model load, listing). x_1_worker: over the same engine with 1 worker; x_single: over one "
            "process on 1 thread; extra_startup_s: start-up over the same engine's 1-worker start-up (the cost "
            f"of a worker). Every output file is the same, byte for byte: {identical}."
        ),
    )
    for r in rows:
        print(r)
    return payload


def label(config: tuple[str, int, int]) -> str:
    return f"{config[0]}-{config[1]}x{config[2]}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _ray_version() -> str:
    try:
        import ray

        return ray.__version__
    except ImportError:
        return "absent"


if __name__ == "__main__":
    main()
