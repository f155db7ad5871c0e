"""A fitted detector ready to score images: loading it from command-line arguments, and scoring
in batches of one fixed size.

Fixed-size batches make each image's result independent of which other images share its
batch: float32 matrix kernels pick their blocking by batch size, so the same image can score a
few ulps differently in a batch of 7 than in a batch of 64. Padding every batch (with zeros) to
``detector.batch_size`` rows gives bit-identical results for the server's micro-batches, for a
resumed ``odin-ood score`` run and for every rank of a distributed run, and equal to
``Detector.outputs`` on the same images in batches of ``batch_size``.
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import Tensor

from odin_ood.detector import Detector, check_batch_size
from odin_ood.serving.preprocess import RESIZE_METHODS, InputSpec

OUTPUT_KEYS = ("predicted_class", "confidence", "score", "is_out_of_distribution")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``score`` and ``serve``: which detector, model and preprocessing."""
    parser.add_argument("--detector", required=True, help="fitted detector: a folder holding detector.json, or a .json file")
    parser.add_argument("--model", required=True, help="model name (odin_ood.models.names()) or a checkpoint file")
    parser.add_argument("--weights", default=None, help="checkpoint for --model NAME (loaded with weights_only=True)")
    parser.add_argument("--device", default="auto", help="torch device; auto = cuda if available, else cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward (default: the detector's)")
    parser.add_argument("--resize", choices=sorted(RESIZE_METHODS), default=None,
                        help="resize images of another size with this PIL filter (default: refuse them)")
    parser.add_argument("--max-side", type=int, default=4096, help="largest image width or height accepted")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_detector(args: argparse.Namespace, device: torch.device | None = None) -> tuple[Detector, InputSpec]:
    """The model (``odin_ood.models.load``), its detector (``Detector.load``, fingerprint checked)
    and the input spec; the detector's normalisation wins over the model's attributes."""
    from odin_ood import models

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = device if device is not None else resolve_device(args.device)
    model = models.load(args.model, weights=args.weights, map_location=device)
    detector = Detector.load(os.fspath(args.detector), model)
    if args.batch_size is not None:
        detector.batch_size = check_batch_size(args.batch_size, "--batch-size")
    return detector, input_spec(detector, resize=args.resize, max_side=args.max_side)


def input_spec(detector: Detector, resize: str | None = None, max_side: int = 4096) -> InputSpec:
    """The :class:`InputSpec` of a detector's model: ``model.input_shape`` and the normalisation
    stored in the detector (``input_mean``/``input_std``), else the model's own attributes."""
    model = detector.model
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("the model has no input_shape attribute (C, H, W): load it with odin_ood.models.load")
    mean = detector.input_mean if detector.input_mean is not None else getattr(model, "input_mean", None)
    std = detector.input_std if detector.input_std is not None else getattr(model, "input_std", None)
    return InputSpec(tuple(int(s) for s in shape), _floats(mean), _floats(std), resize, max_side)


def fixed_batch_outputs(detector: Detector, x: Tensor, pad: bool = True) -> dict[str, Tensor]:
    """``detector.outputs(x)`` computed in batches of exactly ``detector.batch_size`` rows (the last
    one zero-padded, padding dropped from the result) when ``pad``; as given otherwise."""
    b = detector.batch_size
    n = len(x)
    if pad and n % b:
        x = torch.cat([x, x.new_zeros((b - n % b, *x.shape[1:]))])
    out = detector.outputs(x)
    return {k: out[k][:n] for k in OUTPUT_KEYS}


def _floats(v: object) -> tuple[float, ...] | None:
    if v is None:
        return None
    return tuple(float(a) for a in torch.as_tensor(v).flatten().tolist())
