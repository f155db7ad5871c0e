"""Stable fingerprints of a model: of its weights (:func:`fingerprint`, so a saved detector
refuses the wrong model) and of its computation (:func:`computation`, so an exported graph or a
resumed output is used only for the code that made it)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils.weak import WeakIdKeyDictionary

from odin_ood.scores.passes import model_device, scoring_mode

PROBE_SEED = 20180430  # the fixed probe batch of :func:`computation` (ICLR 2018's first day)
PROBE_ROWS = 3


def fingerprint(model: nn.Module) -> str:
    """``"sha256:<hex>"`` over the state dict (names, dtypes, shapes and bytes, sorted by name).

    Buffers such as BatchNorm running statistics are included: they change the outputs.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def computation(model: nn.Module, input_shape: Sequence[int]) -> str:
    """``"sha256:<hex>"`` over the ATen operations that ``model`` runs, as ODIN runs it (eval
    mode, :func:`odin_ood.scores.passes.scoring_mode`), on a fixed probe batch: ``PROBE_ROWS`` images of
    ``input_shape``, uniform in [0, 1) from seed ``PROBE_SEED``, through the forward pass and the
    input gradient of CE(f(x), argmax f(x)) (ODIN's backward).

    Each operation is recorded in order with its name, its non-tensor arguments (devices by
    type), which earlier operation's output, parameter or buffer (by name) each tensor argument
    is, and its outputs' dtypes and shapes; a tensor from elsewhere (a constant made in
    ``forward``, an attribute that is not a buffer) by its bytes. So any change of code that
    changes what runs on this batch (max- for average-pooling, an extra scaling, another
    activation, a custom backward) changes it; weights' values do not (see :func:`fingerprint`).
    A branch that this batch does not take is not seen. Costs one forward and backward of
    ``PROBE_ROWS`` images.
    """
    state = {id(t): name for name, t in (*model.named_parameters(), *model.named_buffers())}
    made: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensor -> number of the operation output it is
    numbers = itertools.count()
    h = hashlib.sha256()

    def ref(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            if v in made:
                return f"%{made[v]}"
            if id(v) in state:
                return f"@{state[id(v)]}"
            data = v.detach().cpu().contiguous()
            raw = data.reshape(-1).view(torch.uint8).numpy()
            digest = hashlib.sha256(raw).hexdigest()  # type: ignore[arg-type]  # numpy types its buffer protocol from Python 3.12
            return f"{data.dtype}{tuple(data.shape)}:{digest}"
        return v.type if isinstance(v, torch.device) else v

    class Recorder(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            # nothing is compiled while recording: leave __torch_dispatch__ unwrapped, or its first
            # call imports the compiler (torch._dynamo, about a second) on every scoring run
            return False

        def __torch_dispatch__(
            self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
        ) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            h.update(f"{func}{tree_map(ref, (args, kwargs))!r}->{[(t.dtype, tuple(t.shape)) for t in outs]}\n".encode())
            for t in outs:
                made[t] = next(numbers)
            return out

    generator = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.rand(PROBE_ROWS, *input_shape, generator=generator).to(model_device(model, torch.device("cpu")))
    x.requires_grad_(True)
    made[x] = -1
    with scoring_mode(model), torch.enable_grad(), Recorder():
        logits = model(x)
        if logits.requires_grad:
            loss = torch.nn.functional.cross_entropy(logits.float(), logits.argmax(1))
            torch.autograd.grad(loss, x, allow_unused=True)
    return "sha256:" + h.hexdigest()
