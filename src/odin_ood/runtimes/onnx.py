"""The ``onnxruntime`` runtime: the exported gate on ONNX Runtime.

Providers follow the model's device: ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` on
CUDA, ``["CPUExecutionProvider"]`` otherwise; pass ``providers`` to choose (e.g. TensorRT).
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from odin_ood.runtimes import GraphRuntime


class OnnxRuntime(GraphRuntime):
    name = "onnxruntime"
    providers: list[str] | None = None

    def _open(self, path: os.PathLike, threads: int | None, precision: str) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = self.providers or (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if self.device.type == "cuda"
            else ["CPUExecutionProvider"]
        )
        self.session = ort.InferenceSession(os.fspath(path), options, providers=providers)
        self.fixed_batch = isinstance(self.session.get_inputs()[0].shape[0], int)

    def _run(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"pixels": pixels})
