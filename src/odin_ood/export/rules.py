"""Decomposition rules that turn ODIN's input-only backward into forward operators an ONNX
runtime has.

Tracing the joint graph (forward, input gradient, sign step, second forward) with ``make_fx``
records the backward operators autograd calls. Core ATen decompositions rewrite most of them
(``threshold_backward``, ``native_batch_norm_backward``, ...) into elementwise and matrix
operators; four have no decomposition and no ONNX operator, and get one here (and one forward
operator gets a faster one):

* ``convolution_backward`` -> the input gradient only, as a transposed convolution with the same
  weight: dL/dx = conv_transpose(dL/dy, W) with the stride, padding, dilation and groups of the
  forward, and ``output_padding`` restoring the input size (the weight and bias gradients are
  never requested: the parameters do not require gradients while scoring);
* ``avg_pool2d_backward`` -> each output gradient spread evenly over its window, a transposed
  convolution with a constant kernel 1/(kh*kw) per channel (``groups = C``);
* ``max_pool2d_with_indices_backward`` -> each output gradient added at the position its
  maximum came from (a scatter-add over the recorded indices);
* ``max_pool2d_with_indices`` itself (a forward operator) -> the maximum of the window's
  kh * kw strided slices, each maximum's position in its H * W plane the first slice (row-major,
  as torch's CPU kernel scans a window, keeping the first of tied maxima) equal to it. ONNX has
  MaxPool with indices, but OpenVINO 2026.4's CPU plugin runs it in its reference
  implementation: 62 of the 69 ms of a 64-image LeNet gate (7 ms with this rule; ONNX Runtime
  unchanged);
* ``_scaled_dot_product_flash_attention_for_cpu_backward`` (a ViT's attention) -> the softmax
  attention backward in matrix products.

:func:`check_exportable` refuses a traced graph holding an operator that ONNX cannot express,
with one error naming it (before the exporter's own, longer failure); :func:`check_static_shapes`
one whose output's shape depends on the pixel values; :func:`trace_failure` and
:func:`export_failure` turn a failure of ``make_fx`` or of ``torch.onnx.export`` into one line
naming the construct (data-dependent control flow, an output that is not one tensor of logits)
or the operator, and where the model uses it. Every one is an :class:`ExportError`.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import Tensor, nn

aten = torch.ops.aten
RUN_EAGER = ": score it with --runtime torch"


class ExportError(ValueError):
    """The detector's gate cannot become one ONNX graph; the message is one line (what, and where
    in the model), ending in :data:`RUN_EAGER` when eager scoring works."""


class UnsupportedOperator(ExportError):
    """The traced ODIN graph holds an operator that the exporter has no rule for."""


def _input_grad_only(output_mask: Sequence[bool], op: str) -> None:
    if len(output_mask) > 1 and any(output_mask[1:]):
        raise UnsupportedOperator(
            f"{op} was asked for a weight or bias gradient, which the export rule does not "
            f"cover (scoring needs the input gradient only){RUN_EAGER}"
        )


def convolution_backward(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[Tensor | None, None, None]:
    """(dL/dx, None, None) of a (non-transposed) N-d convolution, as a transposed convolution."""
    _input_grad_only(output_mask, "aten.convolution_backward")
    if transposed:
        raise UnsupportedOperator(
            "the model's gradient uses aten.convolution_backward of a transposed convolution, "
            "which no export rule covers: score it with --runtime torch"
        )
    if not output_mask[0]:
        return None, None, None
    k = weight.shape[2:]
    # the forward covers (out - 1) * stride - 2 * padding + dilation * (k - 1) + 1 input positions
    restore = [
        input.shape[2 + d]
        - ((grad_output.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (k[d] - 1) + 1)
        for d in range(len(k))
    ]
    grad_input = aten.convolution(grad_output, weight, None, stride, padding, dilation, True, restore, groups)
    return grad_input, None, None


def avg_pool2d_backward(
    grad_output: Tensor,
    input: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> Tensor:
    """dL/dx of 2-d average pooling: a transposed convolution with the constant kernel 1/(kh*kw)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride or (kh, kw))
    ph, pw = _pair(padding)
    if ceil_mode or divisor_override or (not count_include_pad and (ph or pw)):
        raise UnsupportedOperator(
            "the model's gradient uses aten.avg_pool2d_backward with ceil_mode, divisor_override "
            "or count_include_pad=False and padding, which no export rule covers: score it "
            "with --runtime torch"
        )
    c = input.shape[1]
    kernel = grad_output.new_full((c, 1, kh, kw), 1.0 / (kh * kw))
    restore = [
        input.shape[2] - ((grad_output.shape[2] - 1) * sh - 2 * ph + kh),
        input.shape[3] - ((grad_output.shape[3] - 1) * sw - 2 * pw + kw),
    ]
    return aten.convolution(grad_output, kernel, None, [sh, sw], [ph, pw], [1, 1], True, restore, c)


def max_pool2d_with_indices_backward(
    grad_output: Tensor,
    input: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    indices: Tensor,
) -> Tensor:
    """dL/dx of 2-d max pooling: each output gradient added where its maximum was (indices are
    positions in the flattened H*W plane of each channel)."""
    n, c = input.shape[:2]
    flat = grad_output.new_zeros((n, c, input.shape[2] * input.shape[3]))
    flat = flat.scatter_add(2, indices.reshape(n, c, -1), grad_output.reshape(n, c, -1))
    return flat.reshape(input.shape)


def max_pool2d_with_indices(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = (),
    padding: int | Sequence[int] = (0,),
    dilation: int | Sequence[int] = (1,),
    ceil_mode: bool = False,
) -> tuple[Tensor, Tensor]:
    """(values, indices) of 2-d max pooling from the kh * kw strided slices of the input padded
    with -inf: values their elementwise maximum (NaN propagates), indices the position in the
    flattened H * W plane of the first slice, in row-major window order, that equals it (torch's
    CPU kernel scans the window so, and keeps the first of tied maxima)."""
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride or kernel_size)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    h, w = x.shape[-2], x.shape[-1]
    oh, ow = _pooled(h, kh, sh, ph, dh, ceil_mode), _pooled(w, kw, sw, pw, dw, ceil_mode)
    span_h, span_w = (oh - 1) * sh + dh * (kh - 1) + 1, (ow - 1) * sw + dw * (kw - 1) + 1
    padded = aten.constant_pad_nd(x, [pw, max(0, span_w - w - pw), ph, max(0, span_h - h - ph)], float("-inf"))
    windows = [
        padded[..., i * dh : i * dh + span_h - dh * (kh - 1) : sh, j * dw : j * dw + span_w - dw * (kw - 1) : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    values = windows[0]
    for window in windows[1:]:
        values = torch.maximum(values, window)
    rows = torch.arange(oh, device=x.device)[:, None] * sh - ph
    cols = torch.arange(ow, device=x.device)[None, :] * sw - pw
    indices = rows * w + cols  # the first slice's positions; a later tie never replaces them
    for t in reversed(range(1, kh * kw)):
        i, j = divmod(t, kw)
        first = (windows[t] == values) & (windows[0] != values)
        indices = torch.where(first, (rows + i * dh) * w + cols + j * dw, indices)
    return values, indices.expand(values.shape)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    """(v, v) for a number or a 1-sequence, the first two of a longer one (torch's 2-d size arguments)."""
    values: list[int] = list(v) if isinstance(v, (list, tuple)) else [cast(int, v)]  # a number (or a SymInt)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _pooled(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Output length of max pooling (torch's formula: with ``ceil_mode`` a last window must start
    inside the input or its left padding)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def attention_backward(
    grad_out: Tensor,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    out: Tensor,
    logsumexp: Tensor,
    dropout_p: float,
    is_causal: bool,
    *,
    attn_mask: Tensor | None = None,
    scale: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(dL/dq, dL/dk, dL/dv) of softmax attention O = P V, P = softmax(q k^T * scale + mask),
    recomputing P: dV = P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dq = dS k * scale,
    dk = dS^T q * scale (CPU flash attention's backward, written in matrix products)."""
    if dropout_p:
        raise UnsupportedOperator(
            "the model's gradient uses attention with dropout, which no export rule covers: "
            "put the model in eval mode, or score it with --runtime torch"
        )
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    logits = query @ key.transpose(-2, -1) * scale
    if is_causal:
        keep = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
    p = torch.softmax(logits, dim=-1)
    grad_p = grad_out @ value.transpose(-2, -1)
    grad_s = p * (grad_p - (grad_out * out).sum(dim=-1, keepdim=True))
    return grad_s @ key * scale, grad_s.transpose(-2, -1) @ query * scale, p.transpose(-2, -1) @ grad_out


RULES: dict[torch._ops.OpOverload, Callable] = {
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default: attention_backward,
    aten.convolution_backward.default: convolution_backward,
    aten.avg_pool2d_backward.default: avg_pool2d_backward,
    aten.max_pool2d_with_indices_backward.default: max_pool2d_with_indices_backward,
    aten.max_pool2d_with_indices.default: max_pool2d_with_indices,
}


def decompositions() -> dict:
    """Core ATen decompositions plus :data:`RULES` (the table ``make_fx`` traces with)."""
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    table.update(RULES)
    return table


def check_exportable(graph: torch.fx.GraphModule) -> None:
    """Raise :class:`UnsupportedOperator` naming the first ATen operator of ``graph`` that
    ``torch.onnx`` has no translation for (typically the backward of a layer no rule covers)."""
    from torch._decomp import decomposition_table
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    with quiet_registry():
        registry = ONNXRegistry.from_torchlib()
    for node in graph.graph.nodes:
        # the exporter translates registered operators and decomposes those torch has a rule for
        if (
            node.op == "call_function"
            and isinstance(node.target, torch._ops.OpOverload)
            and not registry.is_registered(node.target)
            and node.target not in decomposition_table
        ):
            raise UnsupportedOperator(
                f"the model's gradient or forward uses {node.target}, which has no ONNX translation and no "
                f"odin-ood export rule{RUN_EAGER}"
            )


@contextmanager
def quiet_registry() -> Iterator[None]:
    """Within this block, drop torch.onnx's registry warnings that torchvision (an optional package
    the core does not need) is absent: four lines each time the registry is built."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def check_static_shapes(graph: torch.fx.GraphModule) -> None:
    """Raise :class:`UnsupportedOperator` naming an operator of ``graph`` (dead ones included: their
    shape may have been read as a number) whose output's shape depends on the values, such as
    ``nonzero``, ``masked_select``, ``unique`` or indexing with a boolean mask. Tracing with real
    tensors records that shape as a constant, so the graph would score every image with the
    example's; eager scoring computes it per batch."""
    for node in graph.graph.nodes:
        target = node.target
        if (
            node.op == "call_function"
            and isinstance(target, torch._ops.OpOverload)
            and torch.Tag.dynamic_output_shape in target.tags
            and not _integer_indexing(node)
        ):
            raise UnsupportedOperator(
                f"the model uses {target}, whose output's shape depends on the pixel values "
                f"(a traced graph would keep the example's shape for every image){RUN_EAGER}"
            )


def _integer_indexing(node: torch.fx.Node) -> bool:
    """``aten.index.Tensor`` with integer indices only: its shape is the indices', not data-dependent."""
    if node.target is not aten.index.Tensor:
        return False
    indices = node.args[1]
    if not isinstance(indices, (list, tuple)):
        return False
    values = [i.meta.get("val") for i in indices if isinstance(i, torch.fx.Node)]
    return all(v is not None and not (v.dtype == torch.bool or v.dtype == torch.uint8) for v in values)


def trace_failure(exc: Exception, gate: nn.Module, model: nn.Module, example: Tensor) -> ExportError:
    """The one-line error for ``make_fx`` failing on ``gate`` (ODIN for ``model``) at ``example``:
    data-dependent control flow (a Python value read from a traced tensor), else what eager
    scoring of the same batch says (an output that is not one (batch, classes) tensor, an error),
    else the tracer's own first line; each with the line of the model it comes from."""
    from odin_ood.scores.passes import scoring_mode

    if "_local_scalar_dense" in str(exc):
        return ExportError(
            "the model's forward has data-dependent control flow (a Python value read from a tensor: "
            f"`if` on a tensor, .item(), int(), bool()){_where(exc)}, which a traced graph cannot "
            f"hold{RUN_EAGER}"
        )
    try:
        with scoring_mode(model), torch.no_grad():
            logits = model(example[:1].clone())
        if not (isinstance(logits, Tensor) and logits.ndim == 2):
            return ExportError(
                f"the model returns {_kind(logits)}, not one (batch, classes) tensor of logits: "
                "make its forward return the logits"
            )
        gate(example.clone())
    except Exception as eager:
        return ExportError(
            f"the model fails in eager scoring too: {type(eager).__name__}: {_first_line(eager)}{_where(eager)}"
        )
    return ExportError(
        f"the gate cannot be traced for export: {type(exc).__name__}: {_first_line(exc)}{_where(exc)}{RUN_EAGER}"
    )


def export_failure(exc: Exception) -> ExportError:
    """The one-line error for ``torch.onnx.export`` failing: its innermost cause (which names the
    operator, e.g. ``No ONNX function found for <OpOverload(op='prims.erf_inv', ...)>``)."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return ExportError(f"torch.onnx cannot export the gate: {type(cause).__name__}: {_first_line(cause)}{RUN_EAGER}")


_TORCH = os.path.dirname(torch.__file__) + os.sep


def _where(exc: BaseException) -> str:
    """`` (at FILE:LINE: `source`)`` for the innermost frame of ``exc`` outside torch (the model's
    own line, typically), or nothing."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_TORCH) and not f.filename.startswith("<")
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {frame.filename}:{frame.lineno}: `{(frame.line or '').strip()}`)"


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # the exporter colours its messages
    return text.splitlines()[0].rstrip(".") if text else "(no message)"


def _kind(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
