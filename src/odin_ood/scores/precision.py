"""Reduced-precision scoring, opt-in: the model's arithmetic in bfloat16 or float16.

=========  ===================================================  ==========================================
precision  eager torch (``torch.autocast``)                      exported graph
=========  ===================================================  ==========================================
``fp32``   float32 throughout (the default)                      float32 on every runtime
``bf16``   CUDA with bf16 units; CPUs with AVX512-BF16 or AMX    OpenVINO's bf16 inference precision, where
                                                                 its CPU plugin lists BF16
``fp16``   CUDA (and MPS)                                        OpenVINO's f16, where its plugin lists FP16
=========  ===================================================  ==========================================

Under autocast the model's convolutions and matrix products run in the reduced type; the score's
maths stay float32 (:func:`odin_ood.scores.at_least_fp32`: f(x)/T and the softmax), and so do the
input, its gradient's sign and the perturbed input. Scores move by about 1e-5 to 1e-3
(benchmarks/RESULTS.md, ``bench_precision.py``), far beyond :data:`odin_ood.runtimes.SCORE_TOLERANCE`,
and two reduced-precision implementations (torch's autocast, OpenVINO's bf16) round differently.
So a detector records the precision it was fitted at and the runtime whose scores set its
threshold (``odin-ood fit --precision bf16 --runtime openvino``): the 95%-TPR threshold holds for
those scores, and scoring at another precision or, below fp32, on another runtime is refused in
one line (:func:`check_scoring`), never done silently. ONNX Runtime has no bf16 or fp16 path on
the CPU (its CPU kernels are float32; a converted graph would cast around most operators), so it
refuses them.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(value: object, name: str = "--precision") -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a one-line ``ValueError``."""
    if value not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {str(value)[:40]!r}")
    return value


def eager_support(precision: str, device: torch.device) -> str | None:
    """Why eager torch cannot score at ``precision`` on ``device`` with hardware arithmetic (None: it can)."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        ok = precision == "fp16" or torch.cuda.is_bf16_supported()
        return None if ok else f"this CUDA device has no {precision} arithmetic"
    if device.type == "mps":
        return None if precision == "fp16" else "MPS autocast is checked here for fp16 only"
    if device.type == "cpu":
        ok = (
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
            if precision == "bf16"
            else torch.ops.mkldnn._is_mkldnn_fp16_supported()
        )
        return None if ok else f"this CPU has no {precision} arithmetic (torch would emulate it, slower than fp32)"
    return f"{precision} is not checked on {device.type}"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``precision`` on ``device``'s type; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def check_scoring(fitted_precision: str, fitted_runtime: str | None, precision: str, runtime: str) -> None:
    """Refuse (``ValueError``, one line) scoring at ``precision`` on ``runtime`` with a detector
    whose threshold was fitted at ``fitted_precision`` on ``fitted_runtime`` (None: fp32, where
    every runtime agrees within SCORE_TOLERANCE)."""
    from odin_ood._utils.checks import named

    if precision != fitted_precision:
        raise ValueError(
            f"the detector was fitted at {fitted_precision} (its threshold keeps its TPR for "
            f"{fitted_precision} scores), not {precision}: score with "
            f"{named(f'precision={fitted_precision!r}', f'--precision {fitted_precision}')}, or refit it "
            f"at {precision}"
        )
    if fitted_runtime is not None and runtime != fitted_runtime:
        raise ValueError(
            f"the detector's {precision} threshold was fitted on the {fitted_runtime} runtime, whose "
            f"{precision} scores differ from {runtime}'s: score with --runtime {fitted_runtime}, or refit "
            f"it with odin-ood fit --precision {precision} --runtime {runtime}"
        )
