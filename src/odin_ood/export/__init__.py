"""A fitted detector as one ONNX graph (``odin-ood export``), for any ONNX runtime.

* :mod:`odin_ood.export.graph`: the gate (pixels -> predicted class, confidence, score,
  decision) traced with ``make_fx`` and written by ``torch.onnx.export``; cached per detector,
  model computation, input and batch size, each cached file checked against its key.
* :mod:`odin_ood.export.rules`: the decomposition rules for the backward operators of ODIN's
  input gradient, and the one-line :class:`ExportError` naming an operator without one or a
  construct a trace cannot hold (data-dependent control flow or shapes).

Needs the optional ``onnx`` and ``onnxscript`` packages (``pip install odin-ood[onnx]``).

Imports point down: to :mod:`odin_ood.detector`, :mod:`odin_ood.scores`, :mod:`odin_ood.preprocess`,
:mod:`odin_ood.data` (the cache folder) and :mod:`odin_ood._utils`;
the runtimes and the ``export`` command import this.
"""

from odin_ood.export.graph import cached_onnx, export_onnx, trace
from odin_ood.export.rules import ExportError, UnsupportedOperator

__all__ = ["ExportError", "UnsupportedOperator", "cached_onnx", "export_onnx", "trace"]
