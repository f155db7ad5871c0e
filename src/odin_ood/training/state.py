"""Resumable training checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint folder holds ``model.safetensors`` (the weights, with the architecture and input
normalisation in its metadata so ``odin_ood.models.load(path)`` reads it back),
``optimizer.safetensors`` (the optimiser's per-parameter buffers, keyed ``"<param>.<buffer>"``)
and ``state.json`` (epoch, step, seed, recipe, optimiser hyper-parameters and history).
Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from odin_ood._utils.files import write_file
from odin_ood.models.checkpoint import load_strict, read_state_dict, save_safetensors
from odin_ood.preprocess.model_input import declared_input

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The attributes ``odin_ood.models.load`` needs to rebuild ``model``."""
    return {
        "arch": getattr(model, "arch", None),
        "num_classes": getattr(model, "num_classes", None),
        "input_mean": list(declared_input(model).mean or ()),
        "input_std": list(declared_input(model).std or ()),
    }


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write the three checkpoint files; ``state.json`` last, so a crash never leaves a state
    pointing at weights that were not written."""
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, folder / MODEL_FILE, metadata=model_metadata(model))
    opt = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value.detach().contiguous().cpu()
        for index, buffers in opt["state"].items()
        for key, value in buffers.items()
        if isinstance(value, torch.Tensor)
    }
    write_file(folder / OPTIMIZER_FILE, save(tensors))
    state = dict(state, param_groups=opt["param_groups"])
    write_file(folder / STATE_FILE, json.dumps(state, indent=2))


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` from ``folder`` and return the JSON state."""
    state = json.loads((folder / STATE_FILE).read_text())
    load_strict(model, read_state_dict(folder / MODEL_FILE), source=str(folder / MODEL_FILE))
    buffers: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in load_file(folder / OPTIMIZER_FILE).items():
        index, key = name.split(".", 1)
        buffers.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": buffers, "param_groups": state.pop("param_groups")})
    return state
