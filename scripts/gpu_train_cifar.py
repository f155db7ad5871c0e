"""Train WRN-40-4 (or DenseNet-BC-100) on JPEG CIFAR-10 for a time budget on one GPU, evaluate on
the JPEG test set, and record the result in benchmarks/RESULTS.md.

    PYTHONPATH=src python scripts/gpu_train_cifar.py --model wrn-40-4 --minutes 5 --bf16

The paper's recipe (SGD Nesterov 0.9, lr 0.1 divided by 10 at 50% and 75%, the architecture's
batch size and weight decay, pad-4 crop + flip) is compressed into as many whole epochs as fit the
budget: a short probe times training steps, the number of epochs is chosen from it, and the step
schedule spans exactly those epochs. Accuracy is measured on the JPEG test set (the in-distribution
of a model trained on JPEG images; see shared/data/README.md).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import time
from pathlib import Path

import torch

from odin_ood import data, models, training
from odin_ood._utils.devices import resolve_device

REPO = Path(__file__).resolve().parents[1]
SECTION = "## CIFAR-10 (JPEG) training on one device: scripts/gpu_train_cifar.py"
HEADER = ("| date | model | device | bf16 | train images | batch | epochs | steps | train s | "
          "JPEG test images | JPEG test accuracy |\n|---|---|---|---|---|---|---|---|---|---|---|")


def seconds_per_step(model: torch.nn.Module, train_set: data.ImageDataset, recipe: str, batch_size: int,
                     device: torch.device, bf16: bool, steps: int) -> float:
    """Time ``steps`` training steps on a throwaway copy of ``model`` (after 3 warm-up steps)."""
    probe = copy.deepcopy(model)
    n = min(len(train_set), batch_size * (steps + 3))
    subset = train_set.subset(torch.arange(n))
    kw = dict(recipe=recipe, batch_size=batch_size, device=device, bf16=bf16, progress=False)
    training.train(probe, subset, epochs=1, max_steps=3, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    done = training.train(probe, subset, epochs=1, max_steps=steps, **kw).steps
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / max(done, 1)


def record(results: Path, row: dict) -> None:
    """Add ``row`` to the table under SECTION in ``results`` (creating either if absent)."""
    text = results.read_text() if results.is_file() else "# Benchmarks\n"
    line = "| " + " | ".join(str(v) for v in row.values()) + " |"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{HEADER}\n"
    lines = text.splitlines()
    start = lines.index(SECTION)
    end = start + 1
    while end < len(lines) and not lines[end].startswith("## "):
        end += 1
    last_row = max(i for i in range(start, end) if lines[i].startswith("|"))
    lines.insert(last_row + 1, line)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="wrn-40-4", choices=["wrn-40-4", "densenet-bc-100", "wrn-28-10", "resnet20"])
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (evaluation not included)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument("--max-steps", type=int, default=None, help="hard cap on steps (smoke tests)")
    p.add_argument("--probe-steps", type=int, default=20)
    p.add_argument("--out", type=Path, default=REPO / "results" / "gpu_train_cifar")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    train_set = data.load("cifar10-jpeg", root=args.root, split="train")
    test_set = data.load("cifar10-jpeg", root=args.root, split="test")
    if args.train_limit:
        train_set = train_set.subset(torch.randperm(len(train_set), generator=torch.Generator().manual_seed(
            args.seed))[: args.train_limit])
    if args.test_limit:
        test_set = test_set.subset(torch.arange(min(args.test_limit, len(test_set))))
    if device.type == "cuda":  # keep the whole uint8 set on the GPU: no per-batch host copies
        torch.backends.cudnn.benchmark = True
        train_set.images, train_set.labels = train_set.images.to(device), train_set.labels.to(device)

    model = models.build(args.model).to(device)
    recipe = models.spec(args.model).recipe
    batch = args.batch_size or training.recipe(recipe).batch_size
    per_step = seconds_per_step(model, train_set, recipe, batch, device, args.bf16, args.probe_steps)
    steps_per_epoch = -(-len(train_set) // batch)
    epochs = max(1, int(args.minutes * 60 / (per_step * steps_per_epoch)))

    result = training.train(model, train_set, epochs=epochs, recipe=recipe, batch_size=batch, seed=args.seed,
                            device=device, bf16=args.bf16, checkpoint_dir=args.out, max_steps=args.max_steps)
    acc = training.accuracy(model, test_set, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    row = {
        "date": datetime.date.today().isoformat(), "model": args.model, "device": name, "bf16": args.bf16,
        "train images": len(train_set), "batch": batch, "epochs": result.epochs, "steps": result.steps,
        "train s": round(result.seconds, 1), "JPEG test images": len(test_set), "JPEG test accuracy": f"{acc:.4f}",
    }
    record(args.results, row)
    (args.out / "result.json").write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return row


if __name__ == "__main__":
    main()
