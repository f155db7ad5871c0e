"""Scoring runtimes: where a fitted detector's gate runs, chosen by name.

=================  ================================================================  ==============
name               what runs                                                          needs
=================  ================================================================  ==============
``torch``          the library's own eager scoring (:meth:`odin_ood.Detector.outputs`)  (core)
``onnxruntime``    the gate exported as one ONNX graph (:mod:`odin_ood.export`),       onnxruntime
                   on ONNX Runtime (CUDA provider on a CUDA device)
``openvino``       the same graph on OpenVINO, fp32 (bf16/fp16 where the CPU has them)  openvino
=================  ================================================================  ==============

Every runtime maps a batch of [0, 1] pixels (N, C, H, W) to the gate's outputs
``predicted_class``, ``confidence``, ``score``, ``is_out_of_distribution``, in batches of at most
``batch_size`` (``fixed_batch``: N must be a multiple of it, for a graph whose batch size is
fixed; :func:`odin_ood.runtimes.batches.fixed_batch_outputs` pads to that). ``exact``: the rows are
``Detector.outputs``' bit for bit in batches of ``batch_size`` (``torch``), so padding a small
batch to ``batch_size`` buys that identity; the graph runtimes compute the same function (the
same normalisation, T, epsilon and threshold inside the graph) in another float32 rounding, at
any batch size: what that guarantees is :data:`SCORE_TOLERANCE`, and padding buys nothing (the
gate runs their micro-batches at their natural size). An optional runtime's package is imported
only when its name is asked for, and the graph is exported once per detector and model
computation, with a dynamic batch dimension (:func:`odin_ood.export.cached_onnx`). Before it
scores, a graph runtime runs one fixed probe batch through eager scoring and the graph, at
``batch_size`` and at a smaller batch (:mod:`odin_ood.runtimes.probe`): a cached graph that does
not load or disagrees beyond :data:`SCORE_TOLERANCE` is exported afresh, once; a fresh graph that
still disagrees is refused. A detector's ``precision`` (:mod:`odin_ood.scores.precision`) is the
runtime's: eager torch under autocast, OpenVINO at its inference precision hint (the probe checks
the graph in fp32 first); a runtime without that precision, or a detector whose reduced-precision
threshold was fitted on another runtime, is refused in one line.

``torch`` is the default everywhere and stays so whatever is installed: a default chosen by the
installed packages would change rows (last bits) and the decision of an image within
SCORE_TOLERANCE of the threshold silently from one machine to the next; and no graph runtime is
fastest on every model (per CPU second, ResNet-20: ONNX Runtime 0.85x, OpenVINO 1.16x folded eager;
LeNet 1.41x and 1.27x), while each costs an export on first use and more memory per image
(:data:`MEMORY_FACTORS`). Measured in benchmarks/RESULTS.md.

Imports point down: to :mod:`odin_ood.export`, :mod:`odin_ood.detector`, :mod:`odin_ood.scores`,
:mod:`odin_ood.preprocess` and :mod:`odin_ood._utils`;
the serving app and the commands import this.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from odin_ood._utils import extras
from odin_ood.detector import Detector
from odin_ood.preprocess import Preprocessing
from odin_ood.scores.passes import model_device
from odin_ood.scores.precision import check_scoring

SCORE_TOLERANCE = 1e-5
"""How far a graph runtime's score (and confidence) may lie from eager torch's on any image,
|score_runtime - score_torch| <= SCORE_TOLERANCE, absolute. The runtimes round float32 differently
(fused kernels, summation order); measured differences are 3e-8 (MNIST LeNet, ODIN at T = 1000)
to 2e-6 (ResNet-20, DenseNet-BC-100). What follows, and what the tests check on real images
(tests/test_runtimes.py): the decision ``not (score > threshold)`` is the same on every runtime
except for an image whose eager score lies within SCORE_TOLERANCE of the threshold, whose
decision may differ (a fitted threshold sits one float32 step below an ID image's score, so
that image is such a case); the predicted class is the same except where the two largest
softmax probabilities lie within SCORE_TOLERANCE of each other.
The probe (:mod:`odin_ood.runtimes.probe`) holds every graph to it before it scores."""

# name -> "module:class"; the module is imported when the name is asked for
RUNTIMES: dict[str, str] = {
    "torch": "odin_ood.runtimes.eager:EagerRuntime",
    "onnxruntime": "odin_ood.runtimes.onnx:OnnxRuntime",
    "openvino": "odin_ood.runtimes.openvino:OpenVinoRuntime",
}


# name -> the memory one image takes on the runtime over eager torch's working set
# (odin_ood.scores.memory.working_bytes), the largest measured on ODIN's graph (benchmarks/RESULTS.md):
# ONNX Runtime 2.0x on ViT-B/16 at 384 px, 1.3x on DenseNet-BC-100; OpenVINO 6.9x on ViT-B/16 for a
# batch below its static one (its dynamic-shape compile; 3x at the static batch), 0.65x on DenseNet
MEMORY_FACTORS: dict[str, int] = {"torch": 1, "onnxruntime": 2, "openvino": 7}


def runtime_budget(name: str, budget: int) -> int:
    """The bytes of ``budget`` that eager scoring may plan a batch's working set with, so that
    the runtime ``name`` stays within ``budget``: ``budget // MEMORY_FACTORS[name]``."""
    return max(1, budget // MEMORY_FACTORS.get(name, 1))


class Runtime(Protocol):
    """A detector's gate on one runtime: pixels (N, C, H, W) in [0, 1] -> the four outputs."""

    name: str
    detector: Detector
    batch_size: int
    fixed_batch: bool  # True: N must be a multiple of batch_size
    exact: bool  # True: rows equal Detector.outputs bit for bit in batches of batch_size

    def outputs(self, pixels: Tensor) -> dict[str, Tensor]: ...


def load_runtime(
    name: str,
    detector: Detector,
    spec: Preprocessing,
    threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Runtime:
    """The runtime called ``name`` (a key of :data:`RUNTIMES`) for ``detector`` on inputs of
    ``spec``, in batches of ``detector.batch_size``; ``threads`` CPU threads (None: the
    runtime's default); exported graphs are cached in ``cache_dir`` (default
    ``$ODIN_OOD_CACHE/export``)."""
    if name not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {sorted(RUNTIMES)}, got {name!r}")
    check_scoring(detector.precision_, detector.runtime_, detector.precision, name)
    module, cls = RUNTIMES[name].split(":")
    if name != "torch":  # the extra of the same name: the runtime and the exporter of its graph
        extras.require(name, f"--runtime {name}", otherwise="or use --runtime torch")
    runtime_class = getattr(importlib.import_module(module), cls)
    return runtime_class(detector, spec, threads=threads, cache_dir=cache_dir)


@contextlib.contextmanager
def fp32_probe(detector: Detector) -> Iterator[None]:
    """Within this block ``detector`` scores (and is checked) at fp32, whatever its precision:
    the probe holds the graph to eager fp32 scoring within SCORE_TOLERANCE."""
    saved = detector.precision, detector.precision_, detector.runtime_
    detector.precision, detector.precision_, detector.runtime_ = "fp32", "fp32", None
    try:
        yield
    finally:
        detector.precision, detector.precision_, detector.runtime_ = saved


class GraphRuntime:
    """The exported gate on an ONNX runtime: subclasses open the file (:meth:`_open`, which sets
    ``fixed_batch`` from the graph) and run one batch of at most ``batch_size`` rows as numpy
    (:meth:`_run`; exactly ``batch_size`` when ``fixed_batch``)."""

    name = "graph"
    exact = False
    fixed_batch = True

    def __init__(
        self,
        detector: Detector,
        spec: Preprocessing,
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        from odin_ood.export import cached_onnx

        self.detector, self.batch_size = detector, detector.batch_size
        self.spec = spec
        self.device = model_device(detector.model, torch.device("cpu"))
        self.precision = detector.precision
        problem = self._precision_problem(self.precision)
        if problem is not None:
            raise ValueError(
                f"--runtime {self.name} --precision {self.precision}: {problem} (use --runtime torch or "
                "openvino where the device has it, or fp32)"
            )
        self.path = cached_onnx(detector, spec, self.batch_size, cache_dir)
        problem = self._checked_open(threads, spec)
        if problem is not None:
            warnings.warn(f"{self.path}: the graph {problem}; re-exporting it", stacklevel=2)
            self.path = cached_onnx(detector, spec, self.batch_size, cache_dir, fresh=True)
            problem = self._checked_open(threads, spec)
            if problem is not None:
                raise ValueError(
                    f"--runtime {self.name}: the freshly exported graph {problem}: not scoring with it "
                    "(score with --runtime torch)"
                )

    def _checked_open(self, threads: int | None, spec: Preprocessing) -> str | None:
        """Open :attr:`path` and run the probe batch (:mod:`odin_ood.runtimes.probe`): why the
        graph cannot score for the detector, or None."""
        from odin_ood.runtimes.probe import probe_disagreement

        try:
            self._open(self.path, threads, "fp32")
        except Exception as exc:  # each runtime raises its own types for a file it cannot load
            return f"does not load on {self.name} ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]})"
        with fp32_probe(self.detector):
            problem = probe_disagreement(self, self.detector, spec)
        if problem is not None:
            return f"disagrees with eager scoring on the probe batch ({problem})"
        if self.precision != "fp32":  # the file is the detector's gate: now at the precision it scores
            self._open(self.path, threads, self.precision)
        return None

    def _precision_problem(self, precision: str) -> str | None:
        """Why this runtime cannot run the graph at ``precision`` (None: it can)."""
        return None if precision == "fp32" else f"{self.name} has no {precision} path on the CPU"

    def _open(self, path: os.PathLike, threads: int | None, precision: str) -> None:
        """Load the ONNX file at ``path`` for ``threads`` CPU threads (None: the runtime's default)
        at ``precision``, and set ``fixed_batch`` (whether its batch dimension is a number)."""
        raise NotImplementedError

    def _run(self, pixels: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs, in :data:`odin_ood.export.graph.OUTPUT_NAMES` order, for one batch."""
        raise NotImplementedError

    def outputs(self, pixels: Tensor) -> dict[str, Tensor]:
        from odin_ood.export.graph import OUTPUT_NAMES

        b = self.batch_size
        if self.fixed_batch and len(pixels) % b:
            raise ValueError(f"the {self.name} runtime takes batches of a multiple of {b} rows, got {len(pixels)}")
        x = pixels.detach().to("cpu", torch.float32).contiguous().numpy()
        parts = [self._run(x[s : s + b]) for s in range(0, len(x), b)]
        return {k: torch.from_numpy(np.concatenate([p[i] for p in parts])) for i, k in enumerate(OUTPUT_NAMES)}
