"""Shared pytest fixtures: where the real data lives, and a private dataset cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's torch work on one thread (restored afterwards): on the shared 2-core
    machine small CPU models run 2-3x faster on one thread than on two contended ones."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
