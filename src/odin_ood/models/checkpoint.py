"""Reading and writing weights without arbitrary unpickling.

Accepted files: safetensors, and PyTorch pickles (``.pth``, ``.pt``, ``.th``, ``.tar``) read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers. A PyTorch
file may hold the state dict itself or wrap it (``{"state_dict": ...}``, ``{"model": ...}``,
``{"model_state_dict": ...}``, with extra entries such as ``epoch`` ignored); the ``module.``
prefix left by ``nn.DataParallel`` and ``_orig_mod.`` left by ``torch.compile`` are removed.
Other layouts (weights stored under ``encoder.``, a head called ``output_layer``) load through an
explicit key mapping (:func:`map_keys`) applied before the strict check, which stays.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save
from torch import nn

from odin_ood._utils.files import write_file

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict stored in ``path``, unwrapped and with wrapper prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            state = load_file(path, device=str(map_location))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    else:
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{str(path)!r} is not a PyTorch checkpoint readable with weights_only=True "
                f"(expected a state dict saved with torch.save, or a .safetensors file): {exc}"
            ) from exc
    return unwrap_state_dict(state, source=str(path))


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the ``name -> tensor`` mapping inside ``obj`` and strip ``module.``-style prefixes."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{source} holds no state dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj):
        others = sorted(str(k) for k in obj if k not in tensors)[:5]
        raise ValueError(
            f"{source} is not a state dict: entries {others} are not tensors "
            f"(expected a mapping of parameter names to tensors, optionally under {_WRAPPER_KEYS})"
        )
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def map_keys(
    state: dict[str, torch.Tensor], strip_prefixes: Sequence[str] = (), rename_keys: Mapping[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """``state`` with its keys mapped explicitly: first each of ``strip_prefixes`` is removed from
    the keys that start with it (``"encoder."``: ``encoder.conv1.weight -> conv1.weight``), then
    each ``old -> new`` of ``rename_keys`` renames a key or a module (``{"output_layer": "fc"}``:
    ``output_layer.weight -> fc.weight``). A prefix or name that matches no key, or two keys
    mapped to one name, raise ``ValueError``: a mapping that does nothing is a mistake."""
    for prefix in strip_prefixes:
        if not prefix or not any(k.startswith(prefix) for k in state):
            raise ValueError(f"strip prefix {prefix!r} matches no checkpoint key (keys look like {_sample(state)})")
        state = _renamed(state, functools.partial(_without_prefix, prefix))
    for old, new in (rename_keys or {}).items():
        if not old or not new or not any(k == old or k.startswith(old + ".") for k in state):
            raise ValueError(
                f"rename {old!r} -> {new!r}: no checkpoint key is {old!r} or starts with "
                f"{old + '.'!r} (keys look like {_sample(state)})"
            )
        state = _renamed(state, functools.partial(_with_module_renamed, old, new))
    return state


def _without_prefix(prefix: str, key: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _with_module_renamed(old: str, new: str, key: str) -> str:
    """``key`` with the key or module ``old`` renamed ``new``."""
    return new + key[len(old) :] if key == old or key.startswith(old + ".") else key


def _renamed(state: dict[str, torch.Tensor], rename: Callable[[str], str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        new = rename(k)
        if new in out:
            raise ValueError(f"key mapping sends two checkpoint keys to {new!r}")
        out[new] = v
    return out


def _sample(state: dict[str, torch.Tensor]) -> str:
    keys = list(state)
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def _prefix_hint(expected: dict[str, torch.Tensor], unexpected: list[str]) -> str:
    """A suggested ``strip_prefixes`` when removing one leading module name from unexpected keys
    gives expected ones (e.g. weights saved under ``encoder.``)."""
    prefixes = sorted({k.split(".", 1)[0] + "." for k in unexpected if "." in k and k.split(".", 1)[1] in expected})
    if not prefixes:
        return ""
    flags = " ".join(f"--strip-prefix {p}" for p in prefixes)
    return (
        f"; the checkpoint stores weights under {prefixes}: pass strip_prefixes={tuple(prefixes)} "
        f"({flags} on the command line), and rename_keys={{old: new}} (--rename-key OLD=NEW) for "
        f"layers named differently"
    )


def mismatch_report(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """Empty when ``state`` fits ``model`` exactly; otherwise a readable list of missing keys,
    unexpected keys and shape mismatches (at most a few of each, with counts). BatchNorm's
    ``num_batches_tracked`` counters may be absent (checkpoints from PyTorch < 0.4.1 lack them;
    they do not affect inference)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    lines = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:6]) + (", ..." if len(items) > 6 else "")
            lines.append(f"{len(items)} {title}: {shown}")
    return "; ".join(lines) + (_prefix_hint(expected, unexpected) if lines else "")


def head_classes(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """The number of classes of the checkpoint's classifier when its output size is the only
    difference from ``model``: the same keys, and every shape mismatch is one first dimension
    (``fc.weight`` (10, 512) vs (1000, 512), ``fc.bias`` (10,) vs (1000,)) with one size on each
    side. None when ``state`` fits ``model`` or differs otherwise."""
    expected = model.state_dict()
    if any(k not in expected for k in state) or any(
        k not in state and not k.endswith("num_batches_tracked") for k in expected
    ):
        return None
    pairs = [
        (tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    if not pairs or any(not a or not b or a[1:] != b[1:] for a, b in pairs):
        return None
    found, own = {a[0] for a, _ in pairs}, {b[0] for _, b in pairs}
    return found.pop() if len(found) == 1 and len(own) == 1 else None


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Copy ``state`` into ``model`` (dtype converted) after checking that keys and shapes match
    exactly; a mismatch raises ``ValueError`` naming what was expected."""
    report = mismatch_report(model, state)
    if report:
        raise ValueError(
            f"{source} does not match {type(model).__name__} "
            f"({len(model.state_dict())} tensors expected, {len(state)} found): {report}"
        )
    model.load_state_dict(state, strict=True)
    return model


def save_safetensors(
    model: nn.Module, path: str | Path, metadata: dict[str, object] | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``model``'s state dict as safetensors; ``metadata`` values are JSON-encoded.
    ``dtype`` (e.g. ``torch.float16``) converts floating-point tensors to save space."""
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    return write_file(path, save(state, metadata={k: json.dumps(v) for k, v in (metadata or {}).items()}))


def read_metadata(path: str | Path) -> dict[str, object]:
    """The JSON-decoded metadata of a safetensors file written by :func:`save_safetensors`
    (empty for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    try:
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    out: dict[str, object] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except (ValueError, RecursionError):  # not JSON: keep the string
            out[k] = v
    return out
