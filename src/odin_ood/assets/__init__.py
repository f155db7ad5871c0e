"""Files shipped inside the package: the two trained MNIST models and a small demo sample.

``mnist_mlp.safetensors`` / ``.json``: the paper's MNIST classifier (Hendrycks & Gimpel's MLP,
Appendix A.1); ``mnist_lenet.safetensors`` / ``.json``: a small CNN. Each JSON records the recipe,
seed, threads and test accuracy; ``scripts/train_mnist.py MODEL`` reproduces the weights.
``demo_sample.npz`` (``scripts/make_demo_sample.py``): 1,000 MNIST test digits, 1,000 notMNIST
letters and 1,000 Omniglot characters (licences in ``DEMO_SAMPLE_LICENSES.md``), enough to run
the whole ODIN pipeline with no data and no network.

Imports only :mod:`odin_ood.data` (the sample as an ImageDataset); the model zoo and the demo import this.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from odin_ood.data import MNIST_MEAN, MNIST_STD, ImageDataset

DEMO_SAMPLE = "demo_sample.npz"
# How each part of the demo sample was loaded: odin_ood.data.load(name, split="test", **kwargs).
DEMO_SAMPLE_SOURCES: dict[str, dict[str, Any]] = {
    "mnist": {},
    "notmnist": {"deduplicate": True},
    "omniglot": {"alphabets": "hendrycks-gimpel", "invert": False, "method": "box"},
}


def asset_path(name: str) -> Path:
    """Path of the shipped file ``name``; a missing one raises ``FileNotFoundError``."""
    path = Path(str(resources.files(__name__) / name))
    if not path.is_file():
        raise FileNotFoundError(f"packaged asset {name!r} is missing from {path.parent} (broken installation?)")
    return path


def model_info(name: str) -> dict[str, Any]:
    """Provenance of a shipped model (``"mnist-mlp"``, ``"mnist-lenet"``): architecture, recipe,
    seed, threads, test accuracy of the shipped float16 weights and of the float32 ones."""
    return json.loads(asset_path(f"{name.replace('-', '_')}.json").read_text())


def demo_sample() -> dict[str, ImageDataset]:
    """The embedded sample: ``{"mnist": 1,000 test digits (in-distribution), "notmnist": 1,000
    letters A-J, "omniglot": 1,000 handwritten characters (unlabelled, black on white)}``.
    Manifests give each image's index in its source set, loaded as :data:`DEMO_SAMPLE_SOURCES`."""
    with np.load(asset_path(DEMO_SAMPLE), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    manifest = {"source": f"odin_ood/assets/{DEMO_SAMPLE}"}
    return {
        name: ImageDataset(
            arrays[f"{name}_images"][:, None],
            arrays[f"{name}_labels"].astype(np.int64),
            name=f"{name}-demo",
            mean=MNIST_MEAN,
            std=MNIST_STD,
            manifest=dict(
                manifest,
                test_set_indices=arrays[f"{name}_indices"].tolist(),
                loader={"name": name, **DEMO_SAMPLE_SOURCES[name]},
            ),
        )
        for name in DEMO_SAMPLE_SOURCES
    }
