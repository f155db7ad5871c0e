"""Shared plumbing of the benchmarks: context, timing, models, data, JSON and RESULTS.md.

Every benchmark records its context (device, torch version, dtype, batch size, threads) with its
figures, writes one JSON file under ``--out`` and appends a section to ``--results``
(``benchmarks/RESULTS.md`` by default). Benchmarks never run inside the test suite except with
``--tiny`` sizes (tests/test_benchmarks.py), and nothing asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

from odin_ood import models  # noqa: E402 -- after sys.path points at src/

DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "data"
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def optional_path(text: str) -> Path | None:
    """An argparse type: '' means none."""
    return Path(text) if text else None


def base_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="folder for the JSON file")
    p.add_argument(
        "--results", type=optional_path, default=DEFAULT_RESULTS, help="markdown file to append to ('' = none)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds on a CPU)")
    return p


def suite_parser(description: str, suite: str, batch_size: int) -> argparse.ArgumentParser:
    """:func:`base_parser` plus ``--suite``, ``--data-root`` and ``--batch-size``, for the benchmarks
    that run an experiment suite's model on its data."""
    p = base_parser(description)
    p.add_argument("--suite", default=suite)
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--batch-size", type=int, default=batch_size)
    return p


def suite_model(args: argparse.Namespace, device: torch.device) -> tuple[Any, Path, nn.Module]:
    """(the suite named by ``--suite``, the data root, its model on ``device``: the suite's own
    checkpoint under the data root, loaded as ``odin-ood reproduce`` loads it)."""
    from odin_ood.data.dataset import resolve_root
    from odin_ood.experiments import loading, suites

    suite = suites.get(args.suite)
    root = resolve_root(args.data_root)
    return suite, root, loading.load_model(suite, loading.weights_path(suite, root, None), str(device))


def suite_data_loads(spec: Any, root: Path, model: nn.Module) -> bool:
    """Whether a suite's data set ``spec`` loads from ``root`` for ``model`` (its files are there)."""
    from odin_ood.experiments import loading

    try:
        loading.load_spec(spec, root, model)
        return True
    except (FileNotFoundError, ValueError, KeyError):
        return False


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def context(device: torch.device, **extra: Any) -> dict[str, Any]:
    """Where and how a figure was measured."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "commit": commit,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """(fn(), wall seconds), with the device synchronised on both sides."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def timed_command(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 3600) -> float:
    """Wall seconds of the process ``cmd`` (from start to exit); a failure exits naming it."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def load_summary(loads: list[tuple[float, float, float]], between: str) -> str:
    """The 1-minute load averages of ``os.getloadavg()`` taken before, between ``between`` and after."""
    return (
        f"load average (1 min) {loads[0][0]:.2f} before, {loads[-1][0]:.2f} after, "
        f"{min(v[0] for v in loads):.2f}-{max(v[0] for v in loads):.2f} between {between}"
    )


def timed_cpu(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """(fn(), wall seconds, this process's CPU seconds): on a busy shared machine the CPU seconds
    of a one-thread run are what it would take alone (the wall clock adds the time it waited
    for a core), so ratios of them are stable where wall-clock ratios are not."""
    cpu = time.process_time()
    result, wall = timed(fn, device)
    return result, wall, time.process_time() - cpu


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, for the record of a figure."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float | None]]:
    """Yields a dict whose ``"peak_mib"`` is set on exit (None on the CPU: not measured)."""
    box: dict[str, float | None] = {"peak_mib": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield box
    if device.type == "cuda":
        box["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20


def precision(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16: ``torch.autocast`` on the device (the score maths stay float32)."""
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def load_model(name: str, device: torch.device, weights: Path | None = None, channels_last: bool = False) -> nn.Module:
    """A named model of the zoo on ``device`` in eval mode. Without weights (and not shipped) the
    network is freshly built and its BatchNorm statistics are set from one random batch, so the
    activations stay finite; its throughput is that of the trained network."""
    if weights is not None or models.spec(name).shipped_weights:
        model = models.load(name, weights=weights).to(device)
    else:
        model = models.build(name).to(device)
        calibrate_batchnorm(model, random_inputs(model, 32, seed=123).to(device))
    model = model.eval()
    if channels_last and has_conv(model):
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, x: Tensor) -> None:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    model(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def random_inputs(model: nn.Module, n: int, seed: int = 0) -> Tensor:
    """n normalised images drawn uniformly in pixel space, in the model's input shape."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand((n, *model.input_shape), generator=g)
    return normalise(pixels, model)


def normalise(pixels: Tensor, model: nn.Module) -> Tensor:
    mean = torch.tensor(model.input_mean).view(1, -1, 1, 1)
    std = torch.tensor(model.input_std).view(1, -1, 1, 1)
    return (pixels - mean) / std


def to_device(x: Tensor, model: nn.Module, device: torch.device, channels_last: bool) -> Tensor:
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and has_conv(model) else x


# ID / OOD pairs from odin_ood.data when the real files are there; (id, ood) dataset names.
REAL_PAIRS = {
    "densenet-bc-100": ("cifar10-lossless-1000", "tinyimagenet-crop"),
    "wrn-28-10": ("cifar10-lossless-1000", "tinyimagenet-crop"),
    "resnet20": ("cifar10-lossless-1000", "tinyimagenet-crop"),
    "mnist-mlp": ("mnist", "notmnist"),
}


def load_images(name: str, model: nn.Module, n: int, data_root: Path | None, **kw: Any) -> Tensor | None:
    """The first n images of dataset ``name``, normalised for ``model``; None when the files are absent."""
    if data_root is None or not Path(data_root).is_dir():
        return None
    from odin_ood import data

    try:
        ds = data.load(name, root=data_root, **kw)
    except (FileNotFoundError, OSError):
        return None
    return normalise(ds.images[:n].float() / 255.0, model)


def id_ood_pair(model_name: str, model: nn.Module, n: int, data_root: Path | None) -> tuple[Tensor, Tensor, str]:
    """(ID images, OOD images, where they come from): real data when available, else synthetic
    (ID = uniform pixels, OOD = pixels of a different law: clipped Gaussian), labelled so."""
    names = REAL_PAIRS.get(model_name)
    if names is not None:
        x_in, x_out = (load_images(d, model, n, data_root) for d in names)
        if x_in is not None and x_out is not None and len(x_in) >= n and len(x_out) >= n:
            return x_in, x_out, f"real: {names[0]} vs {names[1]}"
    g = torch.Generator().manual_seed(7)
    gauss = (torch.randn((n, *model.input_shape), generator=g) * 0.25 + 0.5).clamp(0, 1)
    return random_inputs(model, n, seed=1), normalise(gauss, model), "synthetic: uniform vs clipped Gaussian pixels"


def write_json(out: Path, name: str, payload: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def append_results(
    results: Path | None, title: str, ctx: dict[str, Any], rows: list[dict[str, Any]], note: str = ""
) -> None:
    """Append a section ``title`` with its context line and a markdown table of ``rows``."""
    if results is None:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [
        f"\n### {title}",
        "",
        f"{ctx['date']} · {ctx['device']} · torch {ctx['torch']} · {ctx['threads']} threads · commit {ctx['commit']}"
        + "".join(f" · {k} {ctx[k]}" for k in ("dtype", "batch_size") if k in ctx),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows),
    ]
    if note:
        lines += ["", note]
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write("\n".join(lines) + "\n")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
