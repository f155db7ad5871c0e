"""A stable fingerprint of a model's weights, so a saved detector refuses the wrong model."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def fingerprint(model: "nn.Module") -> str:
    """``"sha256:<hex>"`` over the state dict (names, dtypes, shapes and bytes, sorted by name).

    Buffers such as BatchNorm running statistics are included: they change the outputs.
    """
    import torch  # here, so that ``odin_ood`` imports without torch (odin_ood/__init__.py)

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()
