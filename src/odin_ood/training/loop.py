"""The training loop and test accuracy.

``train`` minimises the cross-entropy of ``model((x - mean) / std)`` on ``train_data`` with a
:class:`~odin_ood.training.recipe.Recipe`; ``x`` are [0, 1] pixels, augmented per the recipe and
normalised with the model's own ``input_mean``/``input_std``. The learning rate follows
``recipe.lr_at(step / total_steps)``. Each epoch draws its shuffle and augmentation from a
generator seeded with ``(seed, epoch)``, so a run resumed from an epoch checkpoint continues
exactly as the uninterrupted run would (on the same device and library versions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from odin_ood._utils.devices import resolve_device
from odin_ood.data import ImageDataset
from odin_ood.models.zoo import spec
from odin_ood.preprocess.model_input import declared_input
from odin_ood.training.augment import random_crop_flip
from odin_ood.training.recipe import Recipe
from odin_ood.training.recipe import recipe as get_recipe
from odin_ood.training.state import STATE_FILE, load_checkpoint, save_checkpoint


@dataclass
class TrainResult:
    """What a run did: epochs and steps completed, per-epoch history, wall time of this call."""

    epochs: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def normaliser(model: nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the model's input as (1, C, 1, 1) tensors on ``device``."""
    said = declared_input(model)
    mean = torch.tensor(said.mean or (0.0,), device=device).view(1, -1, 1, 1)
    std = torch.tensor(said.std or (1.0,), device=device).view(1, -1, 1, 1)
    return mean, std


def check_compatible(model: nn.Module, data: ImageDataset) -> None:
    """Raise ``ValueError`` when ``data``'s image shape or labels do not fit ``model``."""
    shape = declared_input(model).shape
    if shape is not None and tuple(data.shape) != tuple(shape):
        raise ValueError(
            f"dataset {data.name!r} has images of shape {tuple(data.shape)}; the model expects {tuple(shape)}"
        )
    classes = getattr(model, "num_classes", None)
    labels = data.labels
    if bool((labels < 0).any()):
        raise ValueError(
            f"dataset {data.name!r} has unlabelled images (label -1): it cannot train or test a classifier"
        )
    if classes is not None and int(labels.max()) >= classes:
        raise ValueError(f"dataset {data.name!r} has labels up to {int(labels.max())}; the model has {classes} classes")


def make_optimizer(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    """SGD (Nesterov) or Adam with the recipe's hyper-parameters."""
    if r.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=r.lr, momentum=r.momentum, nesterov=r.nesterov, weight_decay=r.weight_decay
        )
    if r.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    raise ValueError(f"recipe {r.name!r}: unknown optimizer {r.optimizer!r}; expected 'sgd' or 'adam'")


def train(
    model: nn.Module,
    train_data: ImageDataset,
    epochs: int | None = None,
    recipe: str | Recipe | None = None,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    bf16: bool = False,
    checkpoint_dir: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place for ``epochs`` (default: the recipe's) and return a summary.

    ``recipe`` defaults to the one of the model's architecture (``model.arch``, set by
    ``odin_ood.models.build``): "densenet", "wrn", "resnet", "mnist-mlp" or "mnist-lenet". The
    recipe's L2 penalty (if any) is added to the cross-entropy; the logged loss excludes it.

    With ``checkpoint_dir`` the state is saved after every epoch and a run finding a checkpoint
    there resumes from it. ``max_steps`` stops early (the schedule still spans ``epochs``), for
    smoke tests. ``bf16`` runs the forward pass under bfloat16 autocast.
    """
    if recipe is None:
        arch = getattr(model, "arch", None)
        if arch is None:
            raise ValueError("recipe is required for a model not built by odin_ood.models.build")
        recipe = spec(arch).recipe
    r = get_recipe(recipe)
    epochs = r.epochs if epochs is None else epochs
    batch_size = r.batch_size if batch_size is None else batch_size
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    check_compatible(model, train_data)
    dev = resolve_device(device)
    model.to(dev).train()
    optimizer = make_optimizer(model, r)
    mean, std = normaliser(model, dev)
    named = dict(model.named_parameters())
    steps_per_epoch = -(-len(train_data) // batch_size)
    total_steps = epochs * steps_per_epoch
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None

    start_epoch, step, history = 0, 0, []
    if folder is not None and (folder / STATE_FILE).is_file():
        state = load_checkpoint(folder, model, optimizer)
        _check_resumable(state, seed=seed, epochs=epochs, batch_size=batch_size, recipe=r.name)
        start_epoch, step, history = state["epoch"], state["step"], state["history"]

    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)  # dropout, if any
        order = torch.randperm(len(train_data), generator=g)
        batches = steps_per_epoch if max_steps is None else min(steps_per_epoch, max_steps - step)
        if batches <= 0:
            break
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # sum of loss, correct, count
        bar = tqdm(range(batches), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for i in bar:
            for group in optimizer.param_groups:
                group["lr"] = r.lr_at(step / total_steps)
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = train_data.images[idx].to(dev, non_blocking=True).float().div_(255.0)
            y = train_data.labels[idx].to(dev, non_blocking=True)
            if r.crop_padding or r.flip:
                x = random_crop_flip(x, r.crop_padding, r.flip, g)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model((x - mean) / std)
            loss = F.cross_entropy(logits.float(), y)
            objective = loss + r.penalty(named)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            step += 1
            sums += torch.stack(
                [loss.detach() * len(y), (logits.argmax(1) == y).sum(), torch.tensor(len(y), device=dev)]
            )
            if progress and (i % 20 == 0 or i == batches - 1):
                bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}", acc=f"{sums[1] / sums[2]:.4f}")
        loss_sum, correct, count = sums.tolist()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / count,
                "accuracy": correct / count,
                "lr": optimizer.param_groups[0]["lr"],
                "steps": step,
            }
        )
        if batches < steps_per_epoch:  # stopped by max_steps inside the epoch: no checkpoint
            break
        if folder is not None:
            save_checkpoint(
                folder,
                model,
                optimizer,
                {
                    "epoch": epoch + 1,
                    "step": step,
                    "seed": seed,
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "recipe": r.name,
                    "history": history,
                },
            )
    model.eval()
    return TrainResult(epochs=len(history), steps=step, seconds=time.perf_counter() - t0, history=history)


def _check_resumable(state: dict[str, Any], **expected: Any) -> None:
    wrong = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
    if wrong:
        details = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in wrong.items())
        raise ValueError(f"cannot resume: the checkpoint was written by a different run ({details})")


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageDataset, batch_size: int = 500, device: str | torch.device = "auto") -> float:
    """Top-1 accuracy of ``model`` on ``data`` (inputs normalised with the model's mean/std)."""
    check_compatible(model, data)
    dev = resolve_device(device)
    model.to(dev).eval()
    mean, std = normaliser(model, dev)
    correct = 0
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size].to(dev).float().div_(255.0)
        y = data.labels[start : start + batch_size].to(dev)
        correct += int((model((x - mean) / std).argmax(1) == y).sum())
    return correct / len(data)
