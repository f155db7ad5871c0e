"""A fitted detector as one ONNX graph: [0, 1] pixels in, the gate's four outputs out.

    pixels (B, C, H, W) float32 in [0, 1]
      -> x = (pixels - input_mean) / input_std                    the model's input
      -> logits = f(x); the detector's score at its (T, epsilon)   e.g. ODIN, paper eq. 1-2:
         x~ = x - epsilon * sign(grad_x CE(f(x)/T, yhat)) / std,   score = max softmax(f(x~)/T)
      -> predicted_class (int64), confidence = max softmax(f(x)), score,
         is_out_of_distribution = not (score > threshold)          (bool; NaN fails closed)

The graph is the library's own scoring code traced once (``make_fx`` with core ATen
decompositions and the rules of :mod:`odin_ood.export.rules`), so it holds exactly the operators
eager scoring runs, autograd's input-only backward included, then written by
``torch.onnx.export``. The batch dimension is dynamic (named ``batch``): the trace is symbolic
in it (``tracing_mode="symbolic"``, an example batch of a size no other input dimension has),
so one graph takes any batch of 1 to MAX_BATCH_SIZE images, and each image's outputs depend on
it alone (up to float rounding, which may depend on the batch size: odin-ood's ``score`` runs the
graph in full batches of the detector's size, zero-padded, as eager scoring does, so its rows do
not depend on the chunking). A model whose code fixes the batch size (reads it as a number and
builds shapes from it) cannot be traced so: its graph is traced with real tensors of B images
(``tracing_mode="real"``) and takes batches of exactly B, with a warning naming why. Resizing
and decoding stay outside: a caller feeds images already at the model's size, as floats in [0, 1].

:func:`cached_onnx` exports once per :func:`export_key` (the detector's JSON, which holds the
weights' fingerprint; the model's computation, :func:`odin_ood.detector.fingerprint.computation`;
normalisation, input shape, the batch size or ``dynamic``, versions) under
``$ODIN_OOD_CACHE/export``. Each file records its key in its metadata and is used only when it
parses and holds that key; else it is exported again (written to a new temporary file, created
exclusively, then renamed over the old one). The runtimes then check it on a probe batch
(:mod:`odin_ood.runtimes.probe`).
"""

from __future__ import annotations

import copy
import json
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from odin_ood._utils import extras
from odin_ood._utils.checks import tracing
from odin_ood._utils.files import write_file
from odin_ood._version import __version__
from odin_ood.detector import MAX_BATCH_SIZE, Detector, gate_outputs
from odin_ood.detector.fingerprint import computation
from odin_ood.export.metadata import model_metadata
from odin_ood.export.rules import (
    RUN_EAGER,
    ExportError,
    check_exportable,
    check_static_shapes,
    decompositions,
    export_failure,
    quiet_registry,
    trace_failure,
)
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.scores.family import score_outputs
from odin_ood.scores.passes import model_device

if TYPE_CHECKING:
    from onnx import ModelProto

INPUT_NAME = "pixels"
OUTPUT_NAMES = ("predicted_class", "confidence", "score", "is_out_of_distribution")
OPSET = 18
GRAPH_VERSION = 3  # part of the cache key: bump when the exported graph changes for the same inputs
KEY_FIELD = "odin_ood.cache_key"  # the metadata entry holding the file's export_key
BATCH_DIM = "batch"  # the name of the dynamic batch dimension in the file


class Gate(nn.Module):
    """The detector's decision from [0, 1] pixels (module docstring), as eager scoring computes it."""

    def __init__(self, detector: Detector, spec: Preprocessing) -> None:
        super().__init__()
        self.detector, self.spec = detector, spec

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        d = self.detector
        logits, score = score_outputs(
            d.model, normalise(pixels, self.spec), d.score_family, d.temperature_, d.epsilon_, d.std_, d.clamp
        )
        out = gate_outputs(logits, score, d.threshold_)
        predicted_class, confidence, score, is_ood = (out[k] for k in OUTPUT_NAMES)
        return predicted_class, confidence, score, is_ood


def trace(detector: Detector, spec: Preprocessing, batch_size: int | None = None) -> torch.fx.GraphModule:
    """The gate's joint graph (both forwards and the input-only backward) in core ATen operators,
    for batches of ``batch_size`` (None: any batch, the batch dimension symbolic, see the module
    docstring); an :class:`~odin_ood.export.rules.ExportError` (one line) names an operator no
    rule covers or a construct a trace cannot hold."""
    from torch.fx.experimental.proxy_tensor import make_fx

    gate = Gate(detector, spec)
    symbolic = batch_size is None
    example = _example(detector, spec, batch_size)
    try:
        with tracing():
            graph = make_fx(
                gate,
                decomposition_table=decompositions(),
                tracing_mode="symbolic" if symbolic else "real",
                _allow_non_fake_inputs=symbolic,
            )(example)
    except ExportError:
        raise
    except Exception as exc:
        raise trace_failure(exc, gate, detector.model, example) from exc
    check_static_shapes(graph)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    check_exportable(graph)
    return graph


def _example(detector: Detector, spec: Preprocessing, batch_size: int | None) -> Tensor:
    """Mid-grey pixels of ``batch_size`` images; for a symbolic trace (None) of a size >= 2 that no
    other input dimension has (a symbolic trace gives equal sizes one symbol, and 0 and 1 none)."""
    n = batch_size
    if n is None:
        n = 2
        while n in spec.input_shape:
            n += 1
    return torch.full((n, *spec.input_shape), 0.5, device=model_device(detector.model, torch.device("cpu")))


def export_onnx(
    detector: Detector, spec: Preprocessing, batch_size: int | None, path: str | os.PathLike, key: str | None = None
) -> Path:
    """Write the gate for batches of ``batch_size`` (None: any batch) to ``path`` as one ONNX file
    (weights inside), recording ``key`` (default :func:`export_key`) in its metadata; written to a
    new temporary file beside ``path`` (created exclusively, so never through a link), then renamed
    over it."""
    extras.require("onnx", "exporting to ONNX")  # torch.onnx's exporter needs onnx and onnxscript
    key = key or export_key(detector, spec, batch_size)
    on_cpu = _on_cpu(detector)
    graph = trace(on_cpu, spec, batch_size)
    dynamic = None if batch_size is not None else ({0: torch.export.Dim(BATCH_DIM, min=1, max=MAX_BATCH_SIZE)},)
    with warnings.catch_warnings(), quiet_registry():
        warnings.simplefilter("ignore")  # the exporter's notes on a module it sees as in training mode
        try:
            program = torch.onnx.export(
                graph,
                (_example(on_cpu, spec, batch_size),),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=OPSET,
                optimize=True,
                verbose=False,
                external_data=False,
                dynamic_shapes=dynamic,
            )
        except Exception as exc:
            raise export_failure(exc) from exc
    if program is None:  # only an export with dynamo=False returns None
        raise ExportError(f"torch.onnx.export returned no program{RUN_EAGER}")
    model = program.model_proto
    if batch_size is None:
        _check_dynamic(model)
    _finish(model, detector, spec, batch_size, key)
    return write_file(path, model.SerializeToString())


def _check_dynamic(model: ModelProto) -> None:
    """Raise :class:`~odin_ood.export.rules.ExportError` unless the batch dimension of the graph's
    input and of every output is symbolic: the exporter specialises it silently to the example's
    size when the model's code fixes it (reads it as a number and builds a shape from it)."""
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0] if value.type.tensor_type.shape.dim else None
        if dim is None or not dim.dim_param:
            raise ExportError(
                f"the model's code fixes the batch size (the graph's {value.name!r} has "
                f"{'no batch dimension' if dim is None else f'batch size {dim.dim_value}'}){RUN_EAGER}"
            )


def export_key(detector: Detector, spec: Preprocessing, batch_size: int | None) -> str:
    """The cache file stem: what the graph depends on, hashed (the detector's JSON with T, epsilon,
    threshold, score, normalisation and the weights' fingerprint, not its batch size, :func:`described`; the model's
    computation, :func:`odin_ood.detector.fingerprint.computation`, so that other code with the same weights gets
    another graph; the input shape and normalisation; the batch size, None for a dynamic one;
    odin-ood's and torch's versions)."""
    return _keys(detector, spec, [batch_size])[0]


def described(detector: Detector) -> dict:
    """The detector's JSON without its ``batch_size``: what the graph computes does not depend on
    it (a graph's own batch size, fixed or dynamic, is part of its key and metadata), so a detector
    served with another ``--max-batch`` finds the same graph."""
    return {k: v for k, v in detector.to_dict().items() if k != "batch_size"}


def _keys(detector: Detector, spec: Preprocessing, batch_sizes: list[int | None]) -> list[str]:
    """:func:`export_key` for each of ``batch_sizes`` (the model's computation traced once)."""
    from odin_ood.data.cache import cache_key

    fields = {
        "detector": described(detector),
        "model": _computation(detector, spec),
        "shape": list(spec.input_shape),
        "mean": spec.mean,
        "std": spec.std,
        "odin_ood": __version__,
        "torch": torch.__version__,
        "opset": OPSET,
        "graph": GRAPH_VERSION,
    }
    return [cache_key(f"odin-gate-{'dynamic' if b is None else f'b{b}'}", {**fields, "batch": b}) for b in batch_sizes]


def _computation(detector: Detector, spec: Preprocessing) -> str:
    """:func:`odin_ood.detector.fingerprint.computation` of the detector's model; a model that fails to run
    is the same one-line :class:`~odin_ood.export.rules.ExportError` that tracing it gives."""
    try:
        return computation(detector.model, spec.input_shape)
    except Exception as exc:
        example = torch.full((1, *spec.input_shape), 0.5, device=model_device(detector.model, torch.device("cpu")))
        raise trace_failure(exc, Gate(detector, spec), detector.model, example) from exc


def cached_onnx(
    detector: Detector,
    spec: Preprocessing,
    batch_size: int,
    cache_dir: str | os.PathLike | None = None,
    fresh: bool = False,
) -> Path:
    """The gate's ONNX file from ``cache_dir`` (default ``$ODIN_OOD_CACHE/export``): the graph of
    a dynamic batch, or for a model whose code fixes the batch size the graph of batches of
    ``batch_size`` (see the module docstring), exported there first if it has neither for its
    :func:`export_key`, or none that parses and records that key (a truncated file, a graph of
    another detector or model: re-exported, with a warning); ``fresh``: export it again whatever
    is there."""
    from odin_ood.data.cache import cache_folder

    extras.require("onnx", "exporting to ONNX")  # before a cached file is read with onnx
    folder = Path(cache_dir) if cache_dir is not None else cache_folder() / "export"
    dynamic, fixed = _keys(detector, spec, [None, batch_size])
    if not fresh:
        problems = []
        for key in (dynamic, fixed):  # a fixed graph is there only when the dynamic one could not be traced
            problem = _cache_problem(folder / f"{key}.onnx", key)
            if problem is None:
                return folder / f"{key}.onnx"
            problems.append((folder / f"{key}.onnx", problem))
        for path, problem in problems:
            if os.path.lexists(path):
                warnings.warn(f"{path}: {problem}; re-exporting it", stacklevel=2)
    try:
        return export_onnx(detector, spec, None, folder / f"{dynamic}.onnx", key=dynamic)
    except ExportError as exc:
        path = export_onnx(detector, spec, batch_size, folder / f"{fixed}.onnx", key=fixed)  # its error if any
        warnings.warn(
            f"the gate's graph takes batches of exactly {batch_size} images: the model cannot be traced for "
            f"any batch size ({str(exc).removesuffix(RUN_EAGER)})",
            stacklevel=2,
        )
        return path


def _cache_problem(path: Path, key: str) -> str | None:
    """Why the file at ``path`` is not the graph of ``key`` (None: it is): absent, not a regular
    file, not a well-formed ONNX message, or recording another key (:func:`model_metadata`: no
    ``onnx`` import; the runtime that loads the file parses its graph)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "is not a regular file"
        try:
            recorded = model_metadata(f.read()).get(KEY_FIELD)
        except ValueError as exc:
            return f"does not parse as ONNX (truncated or damaged: {exc})"
    if recorded != key:
        return f"records the key {recorded!r}, not {key!r} (a graph of another detector, model or version)"
    return None


def _on_cpu(detector: Detector) -> Detector:
    """``detector`` with its model on the CPU (a copy when it is elsewhere): the file is device-free."""
    if model_device(detector.model, torch.device("cpu")).type == "cpu":
        return detector
    moved = copy.copy(detector)
    moved.model = copy.deepcopy(detector.model).cpu()
    return moved


def fold_weight_transposes(model: ModelProto) -> None:
    """Replace each Transpose of a weight (an initializer, or a Transpose of one) by the
    transposed weight, dropping weights no node reads any more. The backward of a linear layer
    reads W through two Transposes; OpenVINO 2026.4's CPU plugin computed some rows of that
    MatMul wrongly (scores off by 0.1 on the MNIST MLP), and gets them right on the folded graph."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {w.name: w for w in graph.initializer}
    folded = True
    while folded:
        folded = False
        for node in list(graph.node):
            if node.op_type == "Transpose" and node.input[0] in weights:
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                array = numpy_helper.to_array(weights[node.input[0]])
                w = numpy_helper.from_array(array.transpose(perm).copy(), node.output[0])
                graph.initializer.append(w)
                weights[w.name] = w
                graph.node.remove(node)
                folded = True
    used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    for w in [w for w in graph.initializer if w.name not in used]:
        graph.initializer.remove(w)


def unexpand_weights(model: ModelProto) -> None:
    """Let a MatMul broadcast a 2-d weight that the trace expanded to a batch of copies. torch's
    matmul of a 3-d activation that is not contiguous (a transformer's (tokens, batch, features)
    view) by a weight runs as bmm with the weight expanded over the tokens: a free view in torch,
    but ONNX's Expand writes every copy (ViT-B/16 at 384 px: 577 x 768 x 2304 floats, 4 GB per
    attention layer, and ONNX Runtime was killed for memory). MatMul broadcasts a 2-d operand
    itself, so a MatMul reading Expand(W) reads W, and a Transpose of Expand(W) swapping the last
    two axes becomes a Transpose of W (folded by :func:`fold_weight_transposes`)."""
    graph = model.graph
    ranks = {w.name: len(w.dims) for w in graph.initializer}
    expanded = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Expand" and ranks.get(n.input[0]) == 2}
    for node in graph.node:
        if node.op_type == "MatMul":
            for k, name in enumerate(node.input):
                if name in expanded:
                    node.input[k] = expanded[name]
        elif node.op_type == "Transpose" and node.input[0] in expanded:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
            if (
                len(perm) >= 2
                and perm[:-2] == list(range(len(perm) - 2))
                and perm[-2:] == [len(perm) - 1, len(perm) - 2]
            ):
                consumers = [c for c in graph.node if node.output[0] in c.input]
                if all(c.op_type == "MatMul" for c in consumers):  # a 2-d transposed weight broadcasts there too
                    node.input[0] = expanded[node.input[0]]
                    for a in node.attribute:
                        if a.name == "perm":
                            a.ints[:] = [1, 0]
    used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    for node in [
        n for n in graph.node if n.op_type == "Expand" and n.output[0] in expanded and n.output[0] not in used
    ]:
        graph.node.remove(node)


def _finish(model: ModelProto, detector: Detector, spec: Preprocessing, batch_size: int | None, key: str) -> None:
    """Undo weight expansions, fold the weight transposes and record in the model's metadata what
    it computes and its cache key."""
    fold_weight_transposes(model)  # the weights an Expand reads become initializers
    unexpand_weights(model)
    fold_weight_transposes(model)  # and the Transposes of them it leaves
    entries = {
        "odin_ood.detector": json.dumps(described(detector)),
        "odin_ood.input_shape": json.dumps(list(spec.input_shape)),
        "odin_ood.input": "float32 pixels in [0, 1], (batch, C, H, W); normalised inside the graph",
        "odin_ood.batch_size": BATCH_DIM if batch_size is None else str(batch_size),
        "odin_ood.version": __version__,
        KEY_FIELD: key,
    }
    for name, value in entries.items():
        model.metadata_props.add(key=name, value=value)
