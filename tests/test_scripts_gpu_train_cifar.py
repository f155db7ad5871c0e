"""scripts/gpu_train_cifar.py on the CPU with a tiny budget, on a small root of real JPEGs."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

from odin_ood import data, models
from odin_ood.training import accuracy

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_train_cifar.py"


def _small_jpeg_root(shared_data: Path, root: Path, per_class: int) -> Path:
    """root/cifar10/cifar10-jpeg-{train,test}.zip holding the first ``per_class`` real JPEGs of
    each class (bytes copied, not re-encoded)."""
    (root / "cifar10").mkdir(parents=True)
    for split in ("train", "test"):
        with (
            zipfile.ZipFile(shared_data / "cifar10" / f"cifar10-jpeg-{split}.zip") as src,
            zipfile.ZipFile(root / "cifar10" / f"cifar10-jpeg-{split}.zip", "w") as dst,
        ):
            taken: dict[str, int] = {}
            for name in sorted(n for n in src.namelist() if n.endswith(".jpg")):
                cls = name.split("/")[1]
                if taken.get(cls, 0) < per_class:
                    taken[cls] = taken.get(cls, 0) + 1
                    dst.writestr(name, src.read(name))
    return root


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_train_cifar", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_budget_run_records_its_accuracy(script, shared_data, tmp_path):
    root = _small_jpeg_root(shared_data, tmp_path / "data", per_class=8)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\n## Other section\n\nkept\n")
    out = tmp_path / "run"
    argv = [
        "--model",
        "resnet20",
        "--root",
        str(root),
        "--minutes",
        "0.001",
        "--device",
        "cpu",
        "--probe-steps",
        "1",
        "--out",
        str(out),
        "--results",
        str(results),
        "--batch-size",
        "16",
    ]
    row = script.main(argv)
    assert (row["epochs"], row["steps"], row["train images"], row["JPEG test images"]) == (1, 5, 80, 80)
    # the recorded accuracy is the saved model's, recomputed independently
    model = models.load(out / "model.safetensors")
    test = data.load("cifar10-jpeg", root=root, split="test")
    assert float(row["JPEG test accuracy"]) == pytest.approx(accuracy(model, test, device="cpu"), abs=1e-4)
    text = results.read_text()
    assert "kept" in text and script.SECTION in text
    script.main([*argv, "--max-steps", "2"])  # a second run adds a second row to the same table
    rows = [line for line in results.read_text().splitlines() if line.startswith("| 20")]
    assert len(rows) == 2 and "| resnet20 | cpu |" in rows[0]
