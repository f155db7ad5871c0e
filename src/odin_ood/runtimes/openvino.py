"""The ``openvino`` runtime: the exported gate on OpenVINO's CPU plugin, in fp32 (the
precision hint is pinned: OpenVINO's default on CPUs with bf16 units would change scores)."""

from __future__ import annotations

import os

import openvino as ov

from odin_ood.runtimes import GraphRuntime


class OpenVinoRuntime(GraphRuntime):
    name = "openvino"

    def _open(self, path: os.PathLike, threads: int | None) -> None:
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(os.fspath(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def _run(self, pixels):
        result = self.request.infer({0: pixels})
        return [result[out] for out in self.compiled.outputs]
