"""Classifiers exported to ONNX by any framework (``onnx:PATH``, ``*.onnx``), made differentiable.

ODIN needs the gradient of the loss with respect to the input, which an ONNX runtime does not
give; so the graph is converted to a PyTorch module (``torch.fx``) with onnx2torch (an optional
extra: ``pip install odin-ood[onnx2torch]``), whose operators autograd differentiates like any
module's. Reading the file runs no code from it (a protobuf message; the operators are onnx2torch's
own modules). An operator onnx2torch cannot convert is one ``ValueError`` naming every such
operator and the opset.

The input size is the graph input's (C, H, W) when the file fixes it, the file's metadata
(``metadata_props``) ``input_shape``, ``input_mean``, ``input_std`` and ``class_names`` (JSON lists,
e.g. ``[3, 224, 224]``; mean and std of [0, 1] pixels) where present; ``--input-size``,
``--input-mean`` and ``--input-std`` say it otherwise, or override it. The graph must take a batch
of any size (a dynamic first dimension; ``torch.onnx.export(..., dynamo=True,
dynamic_shapes=...)``, tf2onnx's default ``None`` batch): the batch of 3 zeros that
:func:`odin_ood.models.sources.describe` runs through it says so at load time otherwise.
"""

from __future__ import annotations

import json
import os
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from odin_ood._utils import extras
from odin_ood.models.packaged import _first_line

PREFIX = "onnx:"
SUFFIXES = (".onnx",)
METADATA_KEYS = ("input_shape", "input_mean", "input_std", "class_names")


def split_onnx_spec(spec: str) -> Path | None:
    """The file of ``onnx:PATH`` or ``PATH.onnx``; None for other specs."""
    if spec.startswith(PREFIX):
        if spec == PREFIX:
            raise ValueError("model spec 'onnx:' names no file: write onnx:PATH")
        return Path(spec[len(PREFIX) :])
    return Path(spec) if Path(spec).suffix.lower() in SUFFIXES else None


def load_onnx(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(the ONNX classifier in ``path`` as a differentiable module, its metadata: ``input_shape``,
    ``input_mean``, ``input_std``, ``class_names`` where the file says them)."""
    onnx, onnx2torch = (extras.import_optional(m, "onnx2torch", "onnx:PATH") for m in ("onnx", "onnx2torch"))
    source = f"{PREFIX}{path}"
    if not Path(path).is_file():
        raise ValueError(f"{source}: {str(path)!r} does not exist")
    try:
        proto = onnx.load(os.fspath(path))
    except Exception as exc:  # protobuf's DecodeError, a missing external data file, ...
        raise ValueError(
            f"{source}: not an ONNX model onnx can read ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if len(_inputs(proto)) != 1:
        raise ValueError(f"{source}: the graph takes {len(_inputs(proto))} inputs; a classifier takes one image batch")
    shared_weights_as_initializers(proto)
    missing = unsupported_operators(proto)
    if missing:
        raise ValueError(
            f"{source}: onnx2torch {version('onnx2torch')} cannot convert operator(s) {', '.join(missing)}: "
            "export with opset 17 or lower (torch.onnx.export(..., dynamo=False, opset_version=17), "
            "tf2onnx --opset 17)"
        )
    # onnx2torch's Slice indexes with a list, which torch says it will stop accepting (it still does)
    warnings.filterwarnings("ignore", "Using a non-tuple sequence for multidimensional indexing")
    try:
        module = fixed_sizes(onnx2torch.convert(proto))
    except Exception as exc:  # a converter refusing an attribute value, a shape it cannot infer, ...
        raise ValueError(f"{source}: onnx2torch cannot convert it ({type(exc).__name__}: {_first_line(exc)})") from None
    return module, {**_graph_shape(proto), **_metadata(proto, source)}


class _Sliced(nn.Module):
    """onnx2torch's Slice with its starts, ends, axes and steps known: Python slices."""

    def __init__(self, flip_dims: list[int], pos: list[slice], neg: list[Any]) -> None:
        super().__init__()
        self.flip_dims, self.pos, self.neg = flip_dims, pos, neg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from onnx2torch.node_converters.slice import _do_slice

        return _do_slice(x, self.flip_dims, self.pos, self.neg)


class _Reshaped(nn.Module):
    """onnx2torch's Reshape to a known shape (ONNX's 0 keeps the input's size there)."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])


class _Padded(nn.Module):
    """onnx2torch's Pad with known pads and value."""

    def __init__(self, pads: list[int], mode: str, value: float) -> None:
        super().__init__()
        self.pads, self.mode, self.value = pads, mode, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads, mode=self.mode, value=self.value)


def fixed_sizes(graph: fx.GraphModule) -> fx.GraphModule:
    """``graph`` (onnx2torch's) with each Slice, Reshape and Pad whose sizes depend on no input
    (ONNX Constant nodes, or ConstantOfShape, Concat, Cast, ... of them) given those sizes as
    Python numbers, computed once here. onnx2torch takes them as tensors and reads them while it
    runs, which eager torch does but a traced graph cannot (``odin-ood export``): with them fixed,
    the same operations export. Sizes computed from the input's shape stay as they are."""
    known: dict[fx.Node, Any] = {}
    for node in graph.graph.nodes:
        if node.op in ("placeholder", "output") or not all(n in known for n in node.all_input_nodes):
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), known.__getitem__)
        if node.op == "get_attr":
            known[node] = _attribute(graph, node.target)
        elif node.op == "call_module":
            known[node] = graph.get_submodule(node.target)(*args, **kwargs)
        elif node.op == "call_function":
            known[node] = node.target(*args, **kwargs)
        else:  # call_method
            known[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
    for node in list(graph.graph.nodes):
        sizes = node.args[1:]
        if (
            node.op != "call_module"
            or node in known
            or node.kwargs
            or not all(n in known for n in sizes if isinstance(n, fx.Node))
        ):
            continue
        values = [known[n] if isinstance(n, fx.Node) else n for n in sizes]
        fixed = _fixed(graph.get_submodule(node.target), values)
        if fixed is not None:
            graph.add_submodule(node.target, fixed)
            node.args = node.args[:1]
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _fixed(module: nn.Module, values: list[Any]) -> nn.Module | None:
    """The static twin of onnx2torch's Slice, Reshape or Pad ``module`` given its size inputs; None for others."""
    from onnx2torch.node_converters import pad, reshape
    from onnx2torch.node_converters import slice as onnx_slice

    if isinstance(module, onnx_slice.OnnxSlice):
        starts, ends, axes, steps = (values + [None] * 4)[:4]
        flip, pos, neg = onnx_slice._get_slices(starts, ends, axes, steps)
        ints = [
            s
            if not isinstance(s, slice)
            else slice(*(None if v is None else int(v) for v in (s.start, s.stop, s.step)))
            for s in (*pos, *neg)
        ]
        return _Sliced([int(d) for d in flip], ints[: len(pos)], ints[len(pos) :])
    if isinstance(module, reshape.OnnxReshape):
        return _Reshaped([int(v) for v in values[0].tolist()])
    if isinstance(module, pad.OnnxPadDynamic):
        pads = pad._torch_padding_to_mode_format(pad._onnx_padding_to_torch(values[0].tolist()), module.mode)
        value = values[1] if len(values) > 1 and values[1] is not None else 0.0
        return _Padded([int(p) for p in pads], module.mode, float(value))
    return None


def _attribute(module: nn.Module, target: str) -> Any:
    for part in target.split("."):
        module = getattr(module, part)
    return module


def shared_weights_as_initializers(proto: Any) -> None:
    """Replace each ``Identity`` node that copies a weight (an initializer) by a copy of that
    weight under its output's name, in place: torch.onnx's TorchScript exporter shares a weight so,
    and onnx2torch's converters (Conv's, for one) read their weights from the initializers only."""
    weights = {i.name: i for i in proto.graph.initializer}
    for node in [n for n in proto.graph.node if n.op_type == "Identity" and n.input[0] in weights]:
        copy = proto.graph.initializer.add()
        copy.CopyFrom(weights[node.input[0]])
        copy.name = node.output[0]
        proto.graph.node.remove(node)


def unsupported_operators(proto: Any) -> list[str]:
    """Each operator of ``proto``'s graph that onnx2torch has no converter for, as ``Type (opset N)``
    (``domain.Type`` outside the standard domain), in the order they first appear."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain: o.version for o in proto.opset_import}
    found: list[str] = []
    for node in proto.graph.node:
        version = opsets.get(node.domain, opsets.get("", 0))
        name = f"{node.domain + '.' if node.domain else ''}{node.op_type} (opset {version})"
        if name in found:
            continue
        try:
            get_converter(domain=node.domain, operation_type=node.op_type, version=version)
        except NotImplementedError:
            found.append(name)
    return found


def _graph_shape(proto: Any) -> dict[str, Any]:
    """``input_shape`` (C, H, W) when the graph's image input fixes all three sizes."""
    (image,) = _inputs(proto)
    dims = image.type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(sizes) == 4 and all(s is not None and s > 0 for s in sizes[1:]):
        return {"input_shape": tuple(sizes[1:])}
    return {}


def _inputs(proto: Any) -> list[Any]:
    """The graph's inputs that are not weights (older exporters list the initializers as inputs too)."""
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def _metadata(proto: Any, source: str) -> dict[str, Any]:
    """``input_shape``, ``input_mean``, ``input_std`` and ``class_names`` from ``metadata_props``."""
    out: dict[str, Any] = {}
    for prop in proto.metadata_props:
        if prop.key not in METADATA_KEYS:
            continue
        try:
            value = json.loads(prop.value)
        except ValueError:
            value = None
        numbers = prop.key != "class_names"
        if (
            not isinstance(value, list)
            or not value
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) if numbers else isinstance(v, str)
                for v in value
            )
        ):
            what = "numbers" if numbers else "strings"
            raise ValueError(f"{source}: metadata {prop.key} must be a JSON list of {what}, got {prop.value[:60]!r}")
        out[prop.key] = tuple(value)
    return out
