"""``odin-ood export``: a fitted detector as one ONNX file, for any ONNX runtime.

    odin-ood export --detector det/ --model resnet20 --weights resnet20.th --out odin.onnx

The file computes the whole gate (:mod:`odin_ood.export.graph`): float32 [0, 1] pixels
(B, C, H, W) at the model's size in; ``predicted_class``, ``confidence``, ``score`` and
``is_out_of_distribution`` out, with the detector's normalisation, T, epsilon and threshold
inside. B is dynamic (the input's first dimension is named ``batch``), except for a model whose
code fixes the batch size: then B is ``--batch-size`` (default the detector's; pad the last
batch), with a warning. The detector's JSON is recorded in the file's metadata. ``score`` and ``serve`` export the same
graph themselves (cached) when given ``--runtime onnxruntime`` or ``openvino``.

``--out`` is written as score's outputs are (:func:`odin_ood._utils.files.replace_file`): a
new file beside it, created exclusively and fsync'ed, renamed over it; a symbolic link or a
non-regular file there is refused, and an existing file is replaced only with ``--overwrite``.
A model that cannot be exported is one error line (:class:`odin_ood.export.ExportError`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from odin_ood._utils.files import check_output_file, replace_file
from odin_ood.commands.loading import load_detector
from odin_ood.commands.options import ModelOptions, add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector", required=True, help="fitted detector: a folder holding detector.json, or a .json file"
    )
    parser.add_argument("--out", required=True, help="the ONNX file to write (never through a symbolic link)")
    parser.add_argument("--overwrite", action="store_true", help="replace an ONNX file already at --out")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from odin_ood.export import cached_onnx

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must name a .onnx file, got {out}")
    check_output_file(out, args.overwrite, "export", "--out")
    options = ModelOptions.from_args(args)
    detector, spec = load_detector(options, args.detector)
    start = time.perf_counter()
    cached = cached_onnx(detector, spec, detector.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_file(cached, out, "export", "--out")
    batch = "any batch" if cached.name.startswith("odin-gate-dynamic-") else f"batch {detector.batch_size}"
    print(
        f"odin-ood export: {out} ({batch}, input {list(spec.input_shape)} pixels in [0, 1]; "
        f"{time.perf_counter() - start:.1f} s, cached in {cached.parent})",
        file=sys.stderr,
    )
    return 0
