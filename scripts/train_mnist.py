"""Train one of the MNIST models shipped with odin-ood, bit for bit reproducibly on a CPU.

    PYTHONPATH=src python scripts/train_mnist.py mnist-mlp   --root ../shared/data
    PYTHONPATH=src python scripts/train_mnist.py mnist-lenet --root ../shared/data

Builds ``odin_ood.models.build(MODEL)`` under ``torch.manual_seed(seed)``, trains it on the 60,000
MNIST training digits with the model's recipe (``odin_ood.training.recipe``; no augmentation),
in float32 on the CPU with a fixed number of threads (the same seed and thread count give the
same weights on the same torch build), stores the weights in float16 safetensors under
``src/odin_ood/assets/<model>.safetensors``, measures the test accuracy of the float32 weights
and of exactly the stored float16 weights on the 10,000 MNIST test digits, and writes the recipe,
accuracies, digests and timings to ``<model>.json`` beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from odin_ood import data, models, training
from odin_ood.models.checkpoint import save_safetensors
from odin_ood.training.state import model_metadata

ASSETS = Path(__file__).resolve().parents[1] / "src" / "odin_ood" / "assets"
ARCHITECTURES = {
    "mnist-mlp": "784 -> 256 -> 256 -> 256 -> 10, GELU (tanh approximation); Hendrycks & Gimpel (2017), "
                 "cited by ODIN's Appendix A.1",
    "mnist-lenet": "conv 1->10 5x5, max-pool, ReLU, conv 10->20 5x5, dropout2d 0.5, max-pool, ReLU, "
                   "fc 320->50, ReLU, dropout 0.5, fc 50->10 (PyTorch's MNIST example)",
}


def train_model(name: str, root: Path, seed: int, threads: int, epochs: int | None = None
                ) -> tuple[torch.nn.Module, training.TrainResult]:
    """The trained float32 model: same (name, seed, threads, epochs) -> same weights."""
    torch.set_num_threads(threads)
    train_set = data.load("mnist", root=root, split="train")
    torch.manual_seed(seed)
    model = models.build(name)
    result = training.train(model, train_set, epochs=epochs, seed=seed, device="cpu", progress=False)
    return model, result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=list(ARCHITECTURES))
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--out", type=Path, default=ASSETS)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (part of the reproducibility key)")
    args = p.parse_args()
    stem = args.model.replace("-", "_")
    model, result = train_model(args.model, args.root, args.seed, args.threads, args.epochs)
    test_set = data.load("mnist", root=args.root, split="test")
    acc32 = training.accuracy(model, test_set, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    weights = save_safetensors(model, args.out / f"{stem}.safetensors", metadata=model_metadata(model),
                               dtype=torch.float16)
    acc16 = training.accuracy(models.load(args.model, weights=weights), test_set, device="cpu")
    recipe = training.recipe(models.spec(args.model).recipe)
    info = {
        "arch": args.model,
        "architecture": ARCHITECTURES[args.model],
        "parameters": sum(t.numel() for t in model.parameters()),
        "input": f"(N, 1, 28, 28) pixels in [0, 1], normalised (x - {model.input_mean[0]}) / {model.input_std[0]}",
        "weights_dtype": "float16",
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "test_accuracy": acc16,
        "test_accuracy_float32": acc32,
        "test_set": "MNIST t10k, 10,000 digits",
        "epochs": result.epochs,
        "steps": result.steps,
        "seed": args.seed,
        "threads": args.threads,
        "recipe": asdict(recipe) | ({"epochs": args.epochs} if args.epochs else {}),
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
        "torch_version": torch.__version__,
        "train_data": data.load("mnist", root=args.root, split="train").manifest["sources"],
        "test_data": test_set.manifest["sources"],
        "script": f"scripts/train_mnist.py {args.model} --seed {args.seed} --threads {args.threads}",
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / f"{stem}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{args.model}: test accuracy {acc16:.4f} (float16 weights; float32 {acc32:.4f}) after "
          f"{result.epochs} epochs, {result.seconds:.0f} s; wrote {weights} ({weights.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
