"""scripts/train_mnist.py reproduces the shipped MNIST models (slow: 2-6 CPU minutes each)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from odin_ood import assets, data, models
from odin_ood.training import accuracy

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_mnist.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist-lenet", "mnist-mlp"])
def test_training_script_reproduces_the_shipped_weights(name, shared_data):
    info = assets.model_info(name)
    threads = torch.get_num_threads()
    try:
        model, result = _script().train_model(name, shared_data, seed=info["seed"], threads=info["threads"])
    finally:
        torch.set_num_threads(threads)
    test = data.load("mnist", root=shared_data, split="test")
    assert result.epochs == info["epochs"] and result.steps == info["steps"]
    assert accuracy(model, test, device="cpu") == pytest.approx(info["test_accuracy_float32"], abs=0.001)
    shipped = models.load(name)
    assert accuracy(shipped, test, device="cpu") == pytest.approx(info["test_accuracy"], abs=1e-12)
    if torch.__version__ == info["torch_version"]:  # same build, same threads and seed: the same bits
        for key, value in shipped.state_dict().items():
            assert torch.equal(model.state_dict()[key].half().float(), value), key


@pytest.mark.parametrize("name", ["mnist-lenet", "mnist-mlp"])
def test_shipped_float16_weights_keep_the_float32_accuracy(name):
    info = assets.model_info(name)
    assert info["weights_dtype"] == "float16" and abs(info["test_accuracy"] - info["test_accuracy_float32"]) <= 0.001
    assert info["recipe"]["crop_padding"] == 0 and info["recipe"]["flip"] is False  # no augmentation
