"""The ``openvino`` runtime: the exported gate on OpenVINO's CPU plugin, in fp32 (the
precision hint is pinned: OpenVINO's default on CPUs with bf16 units would change scores).

A graph with a dynamic batch is compiled twice: for exactly ``batch_size`` rows (a static
shape, which OpenVINO runs about 10% faster; every batch of ``odin-ood score``), and, at its first
smaller batch, for any batch (the gate's micro-batches at their natural size).
"""

from __future__ import annotations

import os

import openvino as ov

from odin_ood.runtimes import GraphRuntime


class OpenVinoRuntime(GraphRuntime):
    name = "openvino"

    def _open(self, path: os.PathLike, threads: int | None) -> None:
        self.config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.core = ov.Core()
        self.model = self.core.read_model(os.fspath(path))
        self.fixed_batch = not self.model.inputs[0].get_partial_shape()[0].is_dynamic
        full = self.model.clone()
        if not self.fixed_batch:
            full.reshape({0: [self.batch_size, *self.spec.input_shape]})
        self.requests = {self.batch_size: self._request(full)}

    def _request(self, model: ov.Model) -> ov.InferRequest:
        return self.core.compile_model(model, "CPU", self.config).create_infer_request()

    def _run(self, pixels):
        n = len(pixels) if len(pixels) == self.batch_size else 0  # 0: the compiled model for any batch
        if n not in self.requests:
            self.requests[n] = self._request(self.model)
        request = self.requests[n]
        result = request.infer({0: pixels})
        return [result[out] for out in request.model_outputs]
