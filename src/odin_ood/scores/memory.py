"""Memory bounded in bytes: how many images ``score`` holds decoded at once and how many run in
one forward/backward batch, from the model's input size and a budget (``--max-memory``).

Two costs grow with the images in flight:

* a decoded input, ``4 C H W`` bytes (float32), held twice while a chunk is scored (the list of
  decoded images and the stacked batch): ``2 * 4 C H W`` per image of a chunk;
* one image's share of a batch's working set: the tensors autograd saves to take ODIN's input
  gradient (every activation the backward pass needs), measured once on the model itself
  (:func:`working_bytes`), plus its input, gradient and perturbed copy (``3 * 4 C H W``).

Half the budget goes to each: ``batch = clamp(floor(budget / 2 / work), 1, 128)`` and
``chunk = clamp(floor(budget / 2 / (2 * 4 C H W)), batch, 4096)`` rounded down to whole batches.
At 28 or 32 pixels both caps bind (the old defaults: batches of 128, chunks of 4096); at 224
pixels the budget does. Peak memory is the process's own (torch, the model's weights) plus at
most about the budget (figures in benchmarks/RESULTS.md, ``benchmarks/bench_memory.py``).

Sizes that a file states are bounded before anything of that size is allocated: an input size
of which one image cannot fit (:func:`check_input`: ``2 * 19 * 4 C H W`` bytes, one image held
twice in one half and its least working set in the other) is refused, and a detector file's
batch size is clamped to :func:`batch_limit`. A budget is at most :data:`MAX_BYTES` (1 PiB).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import nn

from odin_ood._utils.checks import named, readable
from odin_ood.scores.odin import odin_outputs
from odin_ood.scores.passes import model_device

DEFAULT_MAX_MEMORY = 1 << 30
MAX_BATCH = 128
MAX_CHUNK = 4096
PROBE_IMAGES = 2
MAX_BYTES = 1 << 50
LEAST_ACTIVATIONS = 16  # the working set counts at least this many inputs' worth of activations
COPIES = 3  # and an image's input, gradient and perturbed copy
_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 1 << 10,
    "mi": 1 << 20,
    "gi": 1 << 30,
    "ti": 1 << 40,
}


def parse_bytes(text: str) -> int:
    """``"1GiB"``, ``"512MiB"``, ``"2G"``, ``"1500000"`` as a number of bytes in [1, MAX_BYTES],
    worked exactly (no float rounding)."""
    shown = repr(text) if len(str(text)) <= 40 else repr(str(text)[:37] + "...")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", str(text), re.IGNORECASE)
    if m is None:
        raise ValueError(f"expected a size in bytes such as 1GiB, 512MiB or 2000000000, got {shown}")
    too_large = f"a memory size must be at most 1 PiB ({MAX_BYTES} bytes), got {shown}"
    if len(m.group(1).split(".")[0].lstrip("0")) > 16:  # more bytes than MAX_BYTES whatever the unit
        raise ValueError(too_large)
    value = math.floor(Fraction(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    if value < 1:
        raise ValueError(f"a memory size must be at least 1 byte, got {shown}")
    if value > MAX_BYTES:
        raise ValueError(too_large)
    return value


def input_bytes(shape: Sequence[int]) -> int:
    """Bytes of one float32 model input of ``shape`` (C, H, W)."""
    return 4 * math.prod(int(s) for s in shape)


def working_bytes(model: nn.Module, shape: Sequence[int]) -> int:
    """Bytes one image adds to a batch's ODIN forward/backward: what autograd saves for the input
    gradient (each storage counted once, the model's own weights and buffers not), measured on ``PROBE_IMAGES`` zero
    images on the model's device, per image, plus its input, gradient and perturbed copy. A model whose autograd saves
    nothing visible to hooks (TorchScript) counts 16 inputs' worth of activations."""
    seen: dict[tuple[int, int], int] = {}
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:  # the weights are held anyway, whatever the batch
            seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    x = torch.zeros(PROBE_IMAGES, *shape, device=model_device(model, torch.device("cpu")))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        odin_outputs(model, x, 1000.0, 0.0014)
    saved = sum(seen.values()) // PROBE_IMAGES
    return max(saved, LEAST_ACTIVATIONS * input_bytes(shape)) + COPIES * input_bytes(shape)


def batch_for(model: nn.Module, shape: Sequence[int], budget: int = DEFAULT_MAX_MEMORY) -> int:
    """Images per forward/backward batch that keep half of ``budget`` bytes for the batch's
    working set: ``clamp(floor(budget / 2 / working_bytes), 1, MAX_BATCH)``."""
    return min(MAX_BATCH, batch_limit(model, shape, budget))


def batch_limit(model: nn.Module, shape: Sequence[int], budget: int = DEFAULT_MAX_MEMORY) -> int:
    """The largest batch whose working set fits in half of ``budget`` bytes (at least 1):
    ``max(1, floor(budget / 2 / working_bytes))``; a detector file's batch size is clamped to it."""
    _check(budget)
    return max(1, budget // 2 // working_bytes(model, shape))


def least_bytes(shape: Sequence[int]) -> int:
    """The least a budget must hold to score one image of ``shape``: half of it for the image's
    least working set (:func:`working_bytes`: ``LEAST_ACTIVATIONS + COPIES`` inputs), the other
    half for as much (more than its two decoded copies), so ``2 * 19 * input_bytes(shape)``."""
    return 2 * (LEAST_ACTIVATIONS + COPIES) * input_bytes(shape)


def check_input(shape: Sequence[int], budget: int) -> None:
    """Refuse (``ValueError``) an input size of which one image cannot be scored within
    ``budget`` bytes (:func:`least_bytes`), before anything of that size is allocated."""
    need = least_bytes(shape)
    if need > budget:
        raise ValueError(
            f"one input of {'x'.join(map(str, shape))} needs at least {readable(need)} to score "
            f"({need // input_bytes(shape)} float32 copies of it: decoded, and autograd's working set), over "
            f"{named('max_memory', '--max-memory')} ({readable(budget)})"
        )


def chunk_for(shape: Sequence[int], budget: int = DEFAULT_MAX_MEMORY, batch: int = 1) -> int:
    """Images held decoded at once in half of ``budget`` bytes (two float32 copies each), at most
    ``MAX_CHUNK``, at least one ``batch``, in whole batches."""
    _check(budget)
    chunk = min(MAX_CHUNK, max(batch, budget // 2 // (2 * input_bytes(shape))))
    return max(batch, chunk // batch * batch)


def held_bytes(shape: Sequence[int], images: int) -> int:
    """Bytes of ``images`` decoded inputs held twice (``fit`` holds its images while stacking them)."""
    return 2 * input_bytes(shape) * images


def _check(budget: int) -> None:
    if budget < 1:
        raise ValueError(f"--max-memory must be >= 1 byte, got {budget}")
