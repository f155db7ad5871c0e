"""Shared fixtures: real data under ../shared/data, a private dataset cache and a small classifier
trained on scikit-learn's digits."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _pytest.mark.expression import Expression
from torch import nn

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ODIN_OOD_NO_SKIPS=1 (.ci/run's Ray and libraries runs), any skip this run selected fails
    it: a skip there means the path it proves went unproven. A module skipped while it was being
    collected (a module-level ``importorskip``) counts when its module-level marks match the run's
    ``-m``: the Ray run must not fail because the libraries modules cannot import torchvision."""
    if os.environ.get("ODIN_OOD_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reports = reporter.stats.get("skipped", []) if reporter is not None else []
    skipped = [report for report in reports if _selected(report, session.config.option.markexpr)]
    if skipped:
        print(f"\nODIN_OOD_NO_SKIPS=1: {len(skipped)} test(s) skipped, which this run forbids:")
        for report in skipped:
            print(f"  {report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _selected(report: pytest.TestReport | pytest.CollectReport, markexpr: str) -> bool:
    """Whether a skip report belongs to this run: a test's always; a module's skipped at collection
    when the marks it names in ``pytestmark`` satisfy the ``-m`` expression."""
    if isinstance(report, pytest.TestReport) or not markexpr:
        return True
    source = Path(report.fspath)
    text = source.read_text(encoding="utf-8") if source.is_file() else ""
    marks = _module_marks(text)
    return Expression.compile(markexpr).evaluate(lambda name, **_: name in marks)


def _module_marks(text: str) -> set[str]:
    """The ``pytest.mark.NAME`` names in a module's ``pytestmark = ...`` statement, however many
    lines the formatter spreads it over."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return set(re.findall(r"pytest\.mark\.(\w+)", ast.get_source_segment(text, node) or ""))
    return set()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder ``<repo>/../shared/data`` (skips if absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _private_dataset_cache(tmp_path_factory: pytest.TempPathFactory):
    """Dataset caches go to a per-session temporary folder, never to ~/.cache."""
    old = os.environ.get("ODIN_OOD_CACHE")
    os.environ["ODIN_OOD_CACHE"] = str(tmp_path_factory.mktemp("odin-ood-cache"))
    yield
    if old is None:
        os.environ.pop("ODIN_OOD_CACHE", None)
    else:
        os.environ["ODIN_OOD_CACHE"] = old


class DigitsNet(nn.Module):
    """A small conv net for 8x8 digit images (BatchNorm included, to check eval mode is used)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="session")
def digits() -> dict[str, torch.Tensor]:
    """scikit-learn's bundled digits (1,797 real 8x8 images, no download) as (N, 1, 8, 8) in [0, 1],
    shuffled with a fixed seed and split 900 train / 897 held out."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    x, y = x[perm], y[perm]
    return {"x_train": x[:900], "y_train": y[:900], "x_held": x[900:], "y_held": y[900:]}


@pytest.fixture(scope="session")
def digits_model(digits) -> nn.Module:
    """DigitsNet trained for 150 Adam steps (a few seconds on a CPU); about 95%+ held-out accuracy."""
    torch.manual_seed(0)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = digits["x_train"], digits["y_train"]
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's torch work on one thread (restored afterwards): on the shared 2-core
    machine small CPU models run 2-3x faster on one thread than on two contended ones."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
