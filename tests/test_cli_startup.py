"""What a command loads, not how long it takes: a one-image ``odin-ood score`` on the torch runtime
loads none of the compiler (``torch._dynamo``), the exporter, the plots, the server or the
optional runtimes; a warm exported graph is used without the compiler or ``onnx``; ``odin-ood --help`` does
not load torch, and ``odin-ood score --help`` no other command. Each command runs in a fresh
interpreter that writes ``sys.modules`` to a file at exit (speed: benchmarks/bench_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from odin_ood import Detector, models
from odin_ood.commands.row_files import read_rows
from serving_support import env, library_outputs

# what scoring on the torch runtime never needs
NOT_FOR_TORCH_SCORING = (
    "torch._dynamo",
    "torch._inductor",
    "torch.onnx",
    "onnx",
    "onnxruntime",
    "openvino",
    "matplotlib",
    "fastapi",
    "uvicorn",
    "sklearn",
    "pandas",
    "scipy",
    "sympy",
    "pyarrow",
    "odin_ood.export",
    "odin_ood.report",
    "odin_ood.experiments",
)

# runs ``python -m odin_ood ARGS`` and writes the names in sys.modules to the file given first
_RECORDING = """
import atexit, json, runpy, sys
record = sys.argv.pop(1)
atexit.register(lambda: open(record, "w").write(json.dumps(sorted(sys.modules))))
runpy.run_module("odin_ood", run_name="__main__")
"""


def run_recording(tmp_path: Path, *args: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    record = tmp_path / "modules.json"
    record.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _RECORDING, str(record), *args],
        env={**env(), **extra_env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, set(json.loads(record.read_text()))


def pixels(png: Path, mode: str) -> torch.Tensor:
    """The image as a float (1, C, H, W) tensor in [0, 1], decoded by PIL (independent of odin_ood)."""
    with Image.open(png) as im:
        array = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    return torch.from_numpy(array.reshape(*array.shape[:2], -1)).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def cases(shared_data, tmp_path_factory):
    """For the ResNet-20 zoo checkpoint (recognised from its keys) and the shipped MNIST LeNet: a
    detector (batch size 4, the paper's T and epsilon, the threshold set by hand), one real image
    and the row the library gives for it."""
    root = tmp_path_factory.mktemp("startup")
    with zipfile.ZipFile(shared_data / "cifar10" / "cifar10-test-lossless-first1000.zip") as z:
        name = sorted(n for n in z.namelist() if n.endswith(".png"))[0]
        (root / "cifar").mkdir()
        (root / "cifar" / "one.png").write_bytes(z.read(name))
    from odin_ood import data

    digit = data.load("mnist", root=shared_data).images[0, 0].numpy()
    (root / "mnist").mkdir()
    Image.fromarray(digit).save(root / "mnist" / "one.png")
    out = {}
    for key, model_arg, folder, mode in (
        ("resnet20", str(shared_data / "models" / "resnet20-cifar10.th"), "cifar", "RGB"),
        ("mnist-lenet", "mnist-lenet", "mnist", "L"),
    ):
        model = models.load(model_arg)
        det = Detector(model, batch_size=4)
        det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
        det.save(root / f"det-{key}")
        x = pixels(root / folder / "one.png", mode)
        z = (x - torch.tensor(model.input_mean)[:, None, None]) / torch.tensor(model.input_std)[:, None, None]
        out[key] = {
            "model": model_arg,
            "det": root / f"det-{key}",
            "input": root / folder,
            "expected": {k: v[0] for k, v in library_outputs(det, z).items()},
        }
    return out


@pytest.mark.parametrize("key", ["resnet20", "mnist-lenet"])
def test_one_image_score_on_torch_loads_no_compiler_exporter_plots_or_server(cases, key, tmp_path):
    case = cases[key]
    output = tmp_path / "scores.csv"
    proc, loaded = run_recording(
        tmp_path,
        "score",
        str(case["input"]),
        "--output",
        str(output),
        "--detector",
        str(case["det"]),
        "--model",
        case["model"],
        "--threads",
        "1",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch" in loaded and "odin_ood.commands.score" in loaded  # the recording saw the run
    assert sorted(m for m in NOT_FOR_TORCH_SCORING if m in loaded) == []
    (row,) = read_rows(output, "csv")
    assert row["error"] in ("", None)
    assert row["predicted_class"] == case["expected"]["predicted_class"]
    assert row["score"] == pytest.approx(case["expected"]["score"], rel=1e-6)


def test_a_warm_exported_graph_scores_without_the_compiler(cases, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    case = cases["mnist-lenet"]
    args = [
        str(case["input"]),
        "--detector",
        str(case["det"]),
        "--model",
        case["model"],
        "--threads",
        "1",
        "--quiet",
        "--runtime",
        "onnxruntime",
    ]
    cache = {"ODIN_OOD_CACHE": str(tmp_path / "cache")}
    cold, loaded_cold = run_recording(tmp_path, "score", *args, "--output", str(tmp_path / "cold.csv"), **cache)
    assert cold.returncode == 0, cold.stderr
    assert "torch._dynamo" in loaded_cold  # exporting traces the gate
    warm, loaded_warm = run_recording(tmp_path, "score", *args, "--output", str(tmp_path / "warm.csv"), **cache)
    assert warm.returncode == 0, warm.stderr
    assert "onnxruntime" in loaded_warm
    assert sorted(m for m in ("torch._dynamo", "torch._inductor", "torch.onnx", "onnx") if m in loaded_warm) == []
    assert list(read_rows(tmp_path / "warm.csv", "csv")) == list(read_rows(tmp_path / "cold.csv", "csv"))


def test_help_loads_only_what_it_shows(tmp_path):
    proc, loaded = run_recording(tmp_path, "--help")
    assert proc.returncode == 0 and "score" in proc.stdout and "reproduce" in proc.stdout
    assert "torch" not in loaded and not any(m.startswith("odin_ood.commands.") for m in loaded)
    proc, loaded = run_recording(tmp_path, "score", "--help")
    assert proc.returncode == 0 and "--detector" in proc.stdout
    others = {
        "odin_ood.commands.fit",
        "odin_ood.commands.serve",
        "odin_ood.commands.export",
        "odin_ood.commands.train",
        "odin_ood.commands.reproduce",
        "odin_ood.demo",
        "odin_ood.experiments",
        "odin_ood.report",
    }
    assert sorted(others & loaded) == []
