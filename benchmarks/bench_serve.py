"""The HTTP gate under load on each scoring runtime: requests/s, images/s, p50/p99 latency, and its
answers against ``odin-ood score``'s rows, in one interleaved run.

Fits ODIN (T = 1000, epsilon = 0.0014: the input-gradient path) for ``--model`` (default the shipped
MNIST LeNet) on 200 real MNIST digits against 200 notMNIST letters, writes a pool of 128 + 128
other real images as PNG files and scores them once with ``odin-ood score --runtime torch`` (the
reference rows). Then one ``odin-ood serve`` per runtime (``torch``; ``torch-no-padding``, eager
with ``--no-padding``; ``onnxruntime``; ``openvino``) on a free loopback port, all started before
any load, and ``--rounds`` rounds in which each server in turn takes ``--clients`` concurrent
clients sending ``--images`` PNGs per request for ``--duration / --rounds`` seconds. Every answer
is compared with the reference row of its image: the share of equal decisions, how many differ
where the reference score is not within SCORE_TOLERANCE of the threshold (must be 0), the largest
score difference. Appends one table to benchmarks/RESULTS.md with commit, torch version and the
load average; everything stays on 127.0.0.1.

    PYTHONPATH=src python benchmarks/bench_serve.py --clients 16 --duration 20 --max-batch 64
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import common
from odin_ood import Detector, data, models
from odin_ood.commands.row_files import read_rows
from odin_ood.runtimes import SCORE_TOLERANCE
from serving_support import encode, env, start_server, stop_server

VARIANTS = {
    "torch": ["--runtime", "torch"],
    "torch-no-padding": ["--runtime", "torch", "--no-padding"],
    "onnxruntime": ["--runtime", "onnxruntime"],
    "openvino": ["--runtime", "openvino"],
}


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(common.DEFAULT_DATA_ROOT))
    p.add_argument("--model", default="mnist-lenet", choices=["mnist-lenet", "mnist-mlp"])
    p.add_argument("--runtimes", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per runtime, over all rounds")
    p.add_argument("--rounds", type=int, default=4, help="the runtimes take turns this many times")
    p.add_argument("--images", type=int, default=1, help="images per request")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--server-threads", type=int, default=1, help="--threads of each server")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.tiny:
        args.runtimes, args.duration, args.rounds, args.clients = (
            [r for r in args.runtimes if r != "torch-no-padding"],
            2.0,
            2,
            4,
        )
    device = common.setup(args)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        blobs = prepare(args, tmp)
        reference = reference_rows(args, tmp)
        servers = {}
        try:
            for name in args.runtimes:
                servers[name] = start_server(
                    [
                        "--detector",
                        str(tmp / "det"),
                        "--model",
                        args.model,
                        "--max-batch",
                        str(args.max_batch),
                        "--max-wait-ms",
                        str(args.max_wait_ms),
                        "--max-images",
                        str(args.images),
                        "--no-auth",
                        "--device",
                        args.device,
                        *VARIANTS[name],
                    ],
                    extra_env={"ODIN_OOD_CACHE": str(tmp / "cache")},
                    threads=args.server_threads,
                )
            tallies = {name: Tally() for name in servers}
            for _ in range(args.rounds):
                for name, (_, url) in servers.items():
                    tallies[name].add(load(url, blobs, args, args.duration / args.rounds))
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    rows = [tallies[name].row(name, reference) for name in servers]
    for row in rows:
        print(row, flush=True)
    first = rows[0]["requests_per_s"]
    for row in rows:
        row["x_first"] = round(row["requests_per_s"] / first, 3)
    ctx = common.context(
        device,
        model=args.model,
        clients=args.clients,
        images_per_request=args.images,
        max_batch=args.max_batch,
        duration_s=args.duration,
        rounds=args.rounds,
        server_threads=args.server_threads,
        load_average=f"{' '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} after",
    )
    common.write_json(args.out, "bench_serve", {"context": ctx, "rows": rows})
    common.append_results(
        args.results,
        f"bench_serve: the gate under load on each runtime ({args.model})",
        ctx,
        rows,
        note=(
            f"`python benchmarks/bench_serve.py --model {args.model} "
            f"--clients {args.clients} --duration {args.duration:g} "
            f"--rounds {args.rounds} --max-batch {args.max_batch}`: "
            f"ODIN T = 1000, eps = 0.0014; {args.clients} clients, "
            f"{args.images} PNG per request, one server per runtime (--threads {args.server_threads}), the runtimes "
            f"taking turns over {args.rounds} rounds; load average {ctx['load_average']}. decisions_equal: share of "
            "answers whose decision equals `odin-ood score --runtime torch`'s row of the same image; "
            f"decisions_off_band: those differing where that row's score is more than {SCORE_TOLERANCE:g} from the "
            "threshold (must be 0); max_score_diff: against the row's score. x_first: requests/s over the first "
            "runtime's."
        ),
    )
    return {"context": ctx, "rows": rows}


def prepare(args, tmp: Path) -> list[bytes]:
    """Fit the detector into ``tmp/det``; write the image pool to ``tmp/pool``; return its PNGs."""
    root = Path(args.data_root)
    digits, letters = data.load("mnist", root=root), data.load("notmnist", root=root)
    torch.set_num_threads(args.server_threads)
    det = Detector(models.load(args.model), temperatures=(1000.0,), epsilons=(0.0014,), batch_size=args.max_batch)
    det.fit(digits.images[:200].float() / 255, letters.images[:200].float() / 255)
    det.save(tmp / "det")
    pool = np.concatenate([digits.images[5000:5128, 0].numpy(), letters.images[5000:5128, 0].numpy()])
    blobs = [encode(image) for image in pool]
    (tmp / "pool").mkdir()
    for i, blob in enumerate(blobs):
        (tmp / "pool" / f"{i:03d}.png").write_bytes(blob)
    return blobs


def reference_rows(args, tmp: Path) -> list[dict]:
    """``odin-ood score`` of the pool with the torch runtime, in image order."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "odin_ood",
            "score",
            str(tmp / "pool"),
            "--output",
            str(tmp / "ref.csv"),
            "--detector",
            str(tmp / "det"),
            "--model",
            args.model,
            "--runtime",
            "torch",
            "--quiet",
            "--device",
            args.device,
            "--threads",
            str(args.server_threads),
        ],
        env=env(),
        check=True,
        timeout=600,
    )
    return list(read_rows(tmp / "ref.csv"))


class Tally:
    """Requests, seconds, latencies and every answer (image index -> predictions) of one server."""

    def __init__(self) -> None:
        self.seconds, self.latencies, self.statuses, self.answers, self.batches, self.images = 0.0, [], [], [], 0, 0

    def add(self, part: dict) -> None:
        self.seconds += part["seconds"]
        self.latencies += part["latencies"]
        self.statuses += part["statuses"]
        self.answers += part["answers"]
        self.batches += part["batches"]
        self.images += part["images"]

    def row(self, name: str, reference: list[dict]) -> dict:
        n, lat, got = len(self.statuses), np.array(self.latencies) * 1000, self.answers
        equal = sum(p["is_out_of_distribution"] == reference[i]["is_out_of_distribution"] for i, p in got)
        off_band = sum(
            p["is_out_of_distribution"] != reference[i]["is_out_of_distribution"]
            and abs(reference[i]["score"] - p["threshold"]) > SCORE_TOLERANCE
            for i, p in got
        )
        return {
            "runtime": name,
            "requests": n,
            "errors": sum(s != 200 for s in self.statuses),
            "requests_per_s": round(n / self.seconds, 1),
            "images_per_s": round(len(got) / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "mean_images_per_batch": round(self.images / max(1, self.batches), 1),
            "decisions_equal": round(equal / max(1, len(got)), 6),
            "decisions_off_band": off_band,
            "max_score_diff": float(max((abs(p["score"] - reference[i]["score"]) for i, p in got), default=0.0)),
        }


def load(url: str, blobs: list[bytes], args, seconds: float) -> dict:
    """``args.clients`` clients posting ``args.images`` PNGs per request to ``url`` for ``seconds``."""

    def client(k: int) -> tuple[list[float], list[int], list]:
        latencies, statuses, answers = [], [], []
        j = k
        with httpx.Client(base_url=url, timeout=60.0) as c:
            while time.perf_counter() < deadline:
                picked = [(j * args.images + i) % len(blobs) for i in range(args.images)]
                t = time.perf_counter()
                r = c.post("/v1/predict", files=[("images", (f"{i}.png", blobs[i])) for i in picked])
                latencies.append(time.perf_counter() - t)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    answers += list(zip(picked, r.json()["predictions"], strict=True))
                j += args.clients
        return latencies, statuses, answers

    health = httpx.get(url + "/healthz").json()
    start = time.perf_counter()
    deadline = start + seconds
    with ThreadPoolExecutor(args.clients) as pool:
        parts = list(pool.map(client, range(args.clients)))
    elapsed = time.perf_counter() - start
    after = httpx.get(url + "/healthz").json()
    return {
        "seconds": elapsed,
        "latencies": [x for p in parts for x in p[0]],
        "statuses": [s for p in parts for s in p[1]],
        "answers": [a for p in parts for a in p[2]],
        "batches": after["batches"] - health["batches"],
        "images": after["images"] - health["images"],
    }


if __name__ == "__main__":
    main()
