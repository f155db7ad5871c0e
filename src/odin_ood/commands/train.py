"""``odin-ood train MODEL --data NAME --root DIR --epochs N --out DIR``: train a named network with
its recipe, save resumable checkpoints in ``--out``, then report test accuracy."""

from __future__ import annotations

import argparse
import json

import torch

from odin_ood import data, models
from odin_ood.training.loop import accuracy, train
from odin_ood.training.recipe import RECIPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"architecture: one of {', '.join(models.names())}")
    parser.add_argument("--data", required=True, help=f"training set: one of {', '.join(data.names())}")
    parser.add_argument("--data-root", "--root", dest="root", default=None, help="data root (default: $ODIN_OOD_DATA)")
    parser.add_argument("--out", required=True, help="checkpoint folder (resumed when it holds a checkpoint)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--recipe", choices=list(RECIPES), default=None, help="default: the architecture's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--num-classes", type=int, default=None, help="default: the architecture's (10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batch order")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split accuracy")


def run(args: argparse.Namespace) -> int:
    train_set = data.load(args.data, root=args.root, split="train")
    if args.train_limit is not None:
        if args.train_limit < 1:
            raise ValueError(f"--train-limit must be >= 1, got {args.train_limit}")
        train_set = train_set.subset(torch.arange(min(args.train_limit, len(train_set))))
    torch.manual_seed(args.seed)
    model = models.build(args.model, args.num_classes)
    result = train(
        model,
        train_set,
        epochs=args.epochs,
        recipe=args.recipe,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        bf16=args.bf16,
        checkpoint_dir=args.out,
        max_steps=args.max_steps,
    )
    summary = {
        "model": args.model,
        "data": args.data,
        "epochs": result.epochs,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "checkpoint": args.out,
        "final": result.history[-1] if result.history else None,
    }
    if not args.no_eval:
        summary["test_accuracy"] = accuracy(
            model, data.load(args.data, root=args.root, split="test"), device=args.device
        )
    print(json.dumps(summary, indent=2))
    return 0
