"""Files shipped inside the package: the trained MNIST MLP and a small demo sample.

``mnist_mlp.safetensors`` / ``mnist_mlp.json``: the paper's MNIST MLP (Appendix A.1) and how it
was trained (``scripts/train_mnist_mlp.py`` reproduces it). ``demo_sample.npz``: 1,000 MNIST test
digits and 1,000 notMNIST letters (licences in ``DEMO_SAMPLE_LICENSES.md``), enough to run the
whole ODIN pipeline with no data and no network.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from odin_ood.data import MNIST_MEAN, MNIST_STD, ImageDataset

DEMO_SAMPLE = "demo_sample.npz"
MNIST_MLP_INFO = "mnist_mlp.json"


def asset_path(name: str) -> Path:
    """Path of the shipped file ``name``; a missing one raises ``FileNotFoundError``."""
    path = Path(str(resources.files(__name__) / name))
    if not path.is_file():
        raise FileNotFoundError(f"packaged asset {name!r} is missing from {path.parent} (broken installation?)")
    return path


def mnist_mlp_info() -> dict[str, Any]:
    """Provenance of the shipped MNIST MLP: architecture, training recipe, test accuracy."""
    return json.loads(asset_path(MNIST_MLP_INFO).read_text())


def demo_sample() -> dict[str, ImageDataset]:
    """The embedded sample as ``{"mnist": 1,000 test digits, "notmnist": 1,000 letters}``
    (in-distribution and out-of-distribution sets for the shipped MNIST MLP)."""
    with np.load(asset_path(DEMO_SAMPLE), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    manifest = {"source": f"odin_ood/assets/{DEMO_SAMPLE}"}
    return {
        name: ImageDataset(
            arrays[f"{name}_images"][:, None], arrays[f"{name}_labels"].astype(np.int64), name=f"{name}-demo",
            mean=MNIST_MEAN, std=MNIST_STD,
            manifest=dict(manifest, test_set_indices=arrays[f"{name}_indices"].tolist()),
        )
        for name in ("mnist", "notmnist")
    }
