"""Batch norm folded into the convolution before it, and the scoring copy of a model.

An eval-mode batch norm is an affine map per channel, ``BN(u) = gamma (u - mu) / sqrt(var + e) + beta``,
so when it directly follows a convolution ``u = W * x + b`` the pair is one convolution with

    W' = W * s,  b' = (b - mu) s + beta,  s = gamma / sqrt(var + e)   (s per output channel)

which computes the same function (up to float rounding) with one pass over the activations
instead of two. The input gradient that ODIN's step needs is the gradient of the same function,
so it is unchanged too. Folding is exact only where the convolution's output goes to the batch
norm and nowhere else: in a pre-activation network (DenseNet-BC, Wide ResNet) a batch norm that
reads a concatenation or a residual sum, or that is followed by ReLU before the next convolution,
stays. What is folded in the zoo (``tests/test_models_folding.py`` checks these counts):

* ResNet-20/32/...: every batch norm (19 of 19 in ResNet-20: post-activation, conv -> BN);
* DenseNet-BC-100: 48 of 99, the ``bn2`` of each bottleneck (after its 1x1 convolution);
* WRN-d-k: the ``bn2`` of each block and the first block's ``bn1`` (it reads the stem's
  convolution alone), (d - 4) / 2 + 1 of d - 3 (19 of 37 in WRN-40-4);
* LeNet and the MLP have no batch norm: nothing changes.

The graph is read with ``torch.fx``; a module that does not trace (data-dependent control flow)
is searched submodule by submodule, and a TorchScript archive is left as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` where each batch norm that directly follows a convolution (whose output
    feeds nothing else) is folded into it (module docstring) and replaced by ``nn.Identity``.

    Pure: ``model`` is not modified. Returns ``model`` itself when nothing can be folded, when
    any submodule is in training mode (a training-mode batch norm normalises with the batch's
    own statistics, which no fixed convolution reproduces) or for a TorchScript module. The
    copy is in eval mode and keeps the model's attributes (``input_std``, ``arch``...)."""
    if isinstance(model, torch.jit.ScriptModule) or any(m.training for m in model.modules()):
        return model
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        if not isinstance(conv, _ConvNd) or not isinstance(bn, _BatchNorm):  # foldable_pairs chose them as such
            raise TypeError(f"{conv_name} and {bn_name} are not a convolution and a batch norm")
        _set_submodule(folded, conv_name, folded_convolution(conv, bn))
        _set_submodule(folded, bn_name, nn.Identity())
    return folded


def foldable_pairs(model: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """(convolution name, batch norm name) for every eval-mode batch norm whose only input is a
    convolution whose only consumer is that batch norm, both called once in the forward (a module
    called twice, or read as an attribute, is left alone). Names are those of ``named_modules``."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # fx raises many kinds for untraceable code: search the children
        return [pair for name, child in model.named_children() for pair in foldable_pairs(child, f"{prefix}{name}.")]
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if (called := _called_module(node)) is not None:
            calls[called] = calls.get(called, 0) + 1
    read = {
        str(node.target).rsplit(".", 1)[0] for node in graph.nodes if node.op == "get_attr" and "." in str(node.target)
    }
    pairs = []
    for node in graph.nodes:
        bn_name = _called_module(node)
        bn = modules.get(bn_name) if bn_name is not None else None
        if (
            bn_name is None
            or not isinstance(bn, _BatchNorm)
            or type(bn) not in BATCH_NORMS
            or bn.training
            or bn.running_mean is None
            or len(node.args) != 1
            or node.kwargs
        ):
            continue
        source = _through_identities(node.args[0], modules)
        conv_name = _called_module(source) if isinstance(source, fx.Node) and len(source.users) == 1 else None
        conv = modules.get(conv_name) if conv_name is not None else None
        if (
            conv_name is None
            or type(conv) not in CONVOLUTIONS
            or CONVOLUTIONS.index(type(conv)) != BATCH_NORMS.index(type(bn))
        ):
            continue
        if calls[conv_name] == 1 and calls[bn_name] == 1 and not {conv_name, bn_name} & read:
            pairs.append((prefix + conv_name, prefix + bn_name))
    return pairs


def _called_module(node: fx.Node) -> str | None:
    """The name of the submodule a ``call_module`` node calls; None for other nodes."""
    return node.target if node.op == "call_module" and isinstance(node.target, str) else None


def _through_identities(node: object, modules: dict[str, nn.Module]) -> object:
    """The first producer before ``node`` that is not an eval-mode identity (``F.dropout`` with
    ``training=False`` or ``p=0``, an eval ``nn.Dropout``, ``nn.Identity``) read only once."""
    while isinstance(node, fx.Node) and len(node.users) == 1 and _is_identity(node, modules):
        node = node.args[0]
    return node


def _is_identity(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if (called := _called_module(node)) is not None:
        m = modules.get(called)
        return type(m) is nn.Identity or (isinstance(m, nn.Module) and type(m) in DROPOUTS and not m.training)
    if node.op == "call_function" and node.target is F.dropout:
        p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
        training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        return training is False or bool(p == 0)
    return False


@torch.no_grad()
def folded_convolution(conv: _ConvNd, bn: _BatchNorm) -> nn.Module:
    """The convolution ``BN(conv(x))`` as one: W' = W s, b' = (b - mu) s + beta with
    s = gamma / sqrt(var + e), computed in float64 and stored in the convolution's dtype."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics normalises with each batch's: it cannot be folded")
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = -bn.running_mean.double() if conv.bias is None else conv.bias.double() - bn.running_mean.double()
    bias = bias * scale + (0.0 if bn.bias is None else bn.bias.double())
    fused = copy.deepcopy(conv)
    weight = conv.weight.double() * scale.view(-1, *[1] * (conv.weight.dim() - 1))
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    fused.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    return fused


def scoring_copy(model: nn.Module) -> tuple[nn.Module, bool]:
    """(the module to score with, whether inputs should be channels-last): :func:`fold_batch_norm`
    and, for a network with 2-D convolutions, channels-last memory (same values, faster CPU
    kernels). The copy never shares storage with ``model``; a model with neither gain is returned
    itself with False."""
    folded = fold_batch_norm(model)
    channels_last = any(isinstance(m, nn.Conv2d) for m in folded.modules()) and not isinstance(
        folded, torch.jit.ScriptModule
    )
    if channels_last:
        folded = (folded if folded is not model else copy.deepcopy(model)).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's overloads omit memory_format
    return folded, channels_last


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
