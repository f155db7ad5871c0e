"""Train the MNIST MLP shipped with odin-ood and rebuild the embedded demo sample.

    PYTHONPATH=src python scripts/train_mnist_mlp.py --root ../shared/data

Trains ``odin_ood.models.build("mnist-mlp")`` on the 60,000 MNIST training digits with the
"mnist-mlp" recipe (Adam, 30 epochs, seed 0), stores the weights in float16 (a few hundred KB) in
``src/odin_ood/assets/mnist_mlp.safetensors``, measures the accuracy of exactly those stored
weights on the 10,000 MNIST test digits, and writes provenance to ``mnist_mlp.json``. Then draws
the demo sample (1,000 MNIST test digits, 100 notMNIST letters per class, fixed seed) into
``demo_sample.npz``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from odin_ood import data, models, training
from odin_ood.models.checkpoint import save_safetensors
from odin_ood.training.state import model_metadata

ASSETS = Path(__file__).resolve().parents[1] / "src" / "odin_ood" / "assets"


def demo_indices(labels: torch.Tensor, per_class: int | None, count: int, seed: int) -> np.ndarray:
    """Sorted sample indices: ``per_class`` of each label, or ``count`` uniformly at random."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    if per_class is None:
        return np.sort(rng.choice(len(y), size=count, replace=False))
    picks = [rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def write_demo_sample(root: Path, out: Path, seed: int) -> Path:
    mnist = data.load("mnist", root=root, split="test")
    notmnist = data.load("notmnist", root=root, split="test")
    arrays = {}
    for name, ds, idx in (
        ("mnist", mnist, demo_indices(mnist.labels, None, 1000, seed)),
        ("notmnist", notmnist, demo_indices(notmnist.labels, 100, 1000, seed)),
    ):
        arrays[f"{name}_images"] = ds.images[idx, 0].numpy()
        arrays[f"{name}_labels"] = ds.labels[idx].numpy().astype(np.uint8)
        arrays[f"{name}_indices"] = idx.astype(np.uint16)
    path = out / "demo_sample.npz"
    np.savez_compressed(path, **arrays)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--out", type=Path, default=ASSETS)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train_set = data.load("mnist", root=args.root, split="train")
    test_set = data.load("mnist", root=args.root, split="test")

    torch.manual_seed(args.seed)
    model = models.build("mnist-mlp")
    result = training.train(model, train_set, epochs=args.epochs, seed=args.seed, device="cpu")
    acc32 = training.accuracy(model, test_set, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    weights = save_safetensors(model, args.out / "mnist_mlp.safetensors", metadata=model_metadata(model),
                               dtype=torch.float16)
    shipped = models.load("mnist-mlp", weights=weights)
    acc16 = training.accuracy(shipped, test_set, device="cpu")
    recipe = training.recipe("mnist-mlp")
    info = {
        "arch": "mnist-mlp",
        "architecture": "784 -> Linear 256 -> ReLU -> Linear 256 -> ReLU -> Linear 10 (ODIN Appendix A.1)",
        "input": "(N, 1, 28, 28) raw pixels in [0, 1]; input_mean (0.0,), input_std (1.0,)",
        "weights_dtype": "float16",
        "test_accuracy": acc16,
        "test_accuracy_float32": acc32,
        "test_set": "MNIST t10k, 10,000 digits",
        "epochs": result.epochs,
        "steps": result.steps,
        "seed": args.seed,
        "recipe": asdict(recipe) | ({"epochs": args.epochs} if args.epochs else {}),
        "final_train_loss": result.history[-1]["loss"],
        "train_seconds": round(result.seconds, 1),
        "torch_version": torch.__version__,
        "train_data": train_set.manifest["sources"],
        "test_data": test_set.manifest["sources"],
        "script": "scripts/train_mnist_mlp.py",
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / "mnist_mlp.json").write_text(json.dumps(info, indent=2) + "\n")
    sample = write_demo_sample(args.root, args.out, args.seed)
    print(f"test accuracy {acc16:.4f} (float16 weights; float32 {acc32:.4f}) after {result.epochs} epochs, "
          f"{result.seconds:.0f} s; wrote {weights} ({weights.stat().st_size // 1024} KB) and {sample}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
