"""Iterating over a tensor, a Dataset or a DataLoader in batches on the model's device.

``data`` may be a tensor (N, ...), a ``torch.utils.data.Dataset`` or a ``DataLoader`` yielding
``x`` or ``(x, y, ...)``; only ``x`` is used. On CUDA out-of-memory a batch is split in halves
and scoring continues.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from odin_ood._utils.checks import check_batch

Data = Tensor | Dataset | DataLoader

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def iter_batches(data: Data, batch_size: int = 128, name: str = "data") -> Iterator[Tensor]:
    """Yield the inputs of ``data`` in order, batch by batch, each checked (finite, rank >= 2)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, Tensor):
        check_batch(data, name)
        yield from data.split(batch_size)
        return
    if isinstance(data, Dataset):
        if hasattr(data, "__len__") and len(data) == 0:
            raise ValueError(f"{name} is an empty dataset")
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if not isinstance(data, DataLoader):
        raise TypeError(f"{name} must be a Tensor, a Dataset or a DataLoader, got {type(data).__name__}")
    seen = 0
    for item in data:
        x = item[0] if isinstance(item, (tuple, list)) else item
        seen += len(check_batch(x, name))
        yield x
    if seen == 0:
        raise ValueError(f"{name} yielded no samples")


def map_batches(fn: Callable[[Tensor], Tensor], data: Data, batch_size: int = 128, name: str = "data") -> Tensor:
    """Concatenate ``fn(batch)`` over ``data`` along the last dimension (results on the CPU).

    ``fn`` returns a tensor whose last dimension is the batch (e.g. (N,) or (T, E, N)). A batch
    that runs out of CUDA memory is split in halves, recursively, down to single samples.
    """
    return torch.cat([part for x in iter_batches(data, batch_size, name) for part in _apply_splitting(fn, x)], dim=-1)


def _apply_splitting(fn: Callable[[Tensor], Tensor], x: Tensor) -> list[Tensor]:
    try:
        return [fn(x).cpu()]
    except _OOM:
        if len(x) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(x) // 2
        return _apply_splitting(fn, x[:half]) + _apply_splitting(fn, x[half:])
