"""The ``openvino`` runtime: the exported gate on OpenVINO's CPU plugin, in fp32 unless the
detector's precision says otherwise (the precision hint is always set: OpenVINO's default on
CPUs with bf16 units is bf16, which would change scores silently). ``bf16`` and ``fp16`` run at
OpenVINO's inference precision hint where the plugin lists BF16 / FP16 among its optimisation
capabilities (the CPU's AVX512-BF16 or AMX units), and are refused elsewhere.

A graph with a dynamic batch is compiled twice: for exactly ``batch_size`` rows (a static
shape, which OpenVINO runs about 10% faster; every batch of ``odin-ood score``), and, at its first
smaller batch, for any batch (the gate's micro-batches at their natural size).

Threads: ``threads`` sets INFERENCE_NUM_THREADS. At 1 thread OpenVINO runs the inference in the
calling thread (no pool of its own), with the LATENCY hint and one stream; ENABLE_CPU_PINNING
stays at its default (it pins no thread on a 2-vCPU virtual machine: measured in
benchmarks/RESULTS.md with the other settings, none of which changed the CPU time per batch).
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import openvino as ov

from odin_ood.runtimes import GraphRuntime

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # odin-ood precision -> INFERENCE_PRECISION_HINT
CAPABILITIES = {"bf16": "BF16", "fp16": "FP16"}


class OpenVinoRuntime(GraphRuntime):
    name = "openvino"
    settings: ClassVar[dict[str, object]] = {}  # more compile properties (benchmarks/bench_runtimes.py compares some)

    def _precision_problem(self, precision: str) -> str | None:
        if precision == "fp32":
            return None
        listed = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if CAPABILITIES[precision] not in listed:
            return (
                f"OpenVINO's CPU plugin lists no {CAPABILITIES[precision]} capability on this CPU ({', '.join(listed)})"
            )
        return None

    def _open(self, path: os.PathLike, threads: int | None, precision: str) -> None:
        self.config = {**self.settings, "INFERENCE_PRECISION_HINT": HINTS[precision]}
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

    def _run(self, pixels: np.ndarray) -> list[np.ndarray]:
        n = len(pixels) if len(pixels) == self.batch_size else 0  # 0: the compiled model for any batch
        if n not in self.requests:
            self.requests[n] = self._request(self.model)
        request = self.requests[n]
        result = request.infer({0: pixels})
        return [result[out] for out in request.model_outputs]
