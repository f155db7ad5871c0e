"""The model and input options that ``odin-ood fit``, ``score`` and ``serve`` share.

Each command turns its parsed arguments into one :class:`ModelOptions` (``ModelOptions.from_args``)
and the library takes that plain value from there on; nothing below the command line sees an
``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from odin_ood._utils.checks import short
from odin_ood._utils.devices import resolve_device
from odin_ood.detector import check_batch_size
from odin_ood.preprocess import RESIZES
from odin_ood.preprocess.resampling import INTERPOLATIONS
from odin_ood.scores.memory import DEFAULT_MAX_MEMORY, check_input, parse_bytes
from odin_ood.scores.precision import PRECISIONS, check_precision

MAX_THREADS = 4096


@dataclass(frozen=True)
class ModelOptions:
    """Which classifier (``model`` spec, ``weights`` and the checkpoint key mapping
    ``strip_prefixes``/``rename_keys``, see :func:`odin_ood.models.load`), what
    it takes where its source does not say (``input_shape`` (C, H, W), per-channel
    ``input_mean``/``input_std`` of [0, 1] pixels), where it runs (``device``, ``threads``), images
    per forward (``batch_size``, None = the detector's or 128) and how images are read: ``resize``
    (:data:`odin_ood.preprocess.RESIZES`), ``interpolation``
    (:data:`odin_ood.preprocess.resampling.INTERPOLATIONS`) and ``resize_size``, each None = the model's own
    at ``fit``, the detector's at ``score``/``serve``; ``max_side``; ``min_side`` (None = half the
    model's side); ``num_classes`` (None: the checkpoint's); ``max_memory``: the bytes that images in
    flight may take (:mod:`odin_ood.scores.memory`); ``precision``: the model's arithmetic
    (:mod:`odin_ood.scores.precision`; fit tunes at it, score and serve must name the detector's)."""

    model: str
    weights: str | None = None
    input_shape: tuple[int, ...] | None = None
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    device: str = "auto"
    batch_size: int | None = None
    resize: str | None = None
    interpolation: str | None = None
    resize_size: tuple[int, ...] | None = None
    max_side: int = 4096
    threads: int | None = None
    strip_prefixes: tuple[str, ...] = ()
    rename_keys: tuple[tuple[str, str], ...] = ()
    min_side: int | None = None
    num_classes: int | None = None
    max_memory: int = DEFAULT_MAX_MEMORY
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.batch_size is not None:
            check_batch_size(self.batch_size, "--batch-size")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"--num-classes must be >= 2, got {self.num_classes}")
        if self.max_memory < 1:
            raise ValueError(f"--max-memory must be >= 1 byte, got {self.max_memory}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f"--threads must lie in [1, {MAX_THREADS}], got {short(self.threads)}")
        if self.max_side < 1:
            raise ValueError(f"--max-side must be >= 1, got {self.max_side}")
        if self.input_shape is not None:  # models.load runs the model on it
            shown = short(",".join(map(str, self.input_shape)), 40)
            if len(self.input_shape) != 3 or max(self.input_shape[1:]) > self.max_side:
                raise ValueError(
                    f"--input-size {shown}: expected C,H,W with H and W at most --max-side ({self.max_side})"
                )
            try:
                check_input(self.input_shape, self.max_memory)
            except ValueError as exc:
                raise ValueError(f"--input-size {shown}: {exc}") from None
        if self.min_side is not None and self.min_side < 1:
            raise ValueError(f"--min-side must be >= 1, got {self.min_side}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelOptions:
        return cls(
            model=str(args.model),
            weights=args.weights,
            input_shape=args.input_size,
            input_mean=args.input_mean,
            input_std=args.input_std,
            device=args.device,
            batch_size=args.batch_size,
            resize=args.resize,
            interpolation=args.interpolation,
            resize_size=args.resize_size,
            max_side=args.max_side,
            min_side=args.min_side,
            threads=args.threads,
            strip_prefixes=tuple(args.strip_prefix),
            rename_keys=tuple(args.rename_key),
            num_classes=args.num_classes,
            max_memory=args.max_memory,
            precision=getattr(args, "precision", "fp32"),
        )

    def load_model(self, device: torch.device | None = None) -> nn.Module:
        """The classifier in eval mode on ``device`` (default: :attr:`device`), with its input
        attributes set (:func:`odin_ood.models.load`)."""
        from odin_ood import models

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return models.load(
            self.model,
            weights=self.weights,
            num_classes=self.num_classes,
            map_location=device if device is not None else resolve_device(self.device),
            input_shape=self.input_shape,
            input_mean=self.input_mean,
            input_std=self.input_std,
            strip_prefixes=self.strip_prefixes,
            rename_keys=dict(self.rename_keys),
        )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options behind :class:`ModelOptions`."""
    parser.add_argument(
        "--model",
        required=True,
        help="zoo name (odin_ood.models.names()), checkpoint file, torchvision:NAME[:WEIGHTS], "
        "timm:NAME, hf:FOLDER (transformers), onnx:PATH or *.onnx, "
        "torchscript:PATH or *.ts, export:PATH or *.pt2, or package.module:factory "
        "(TorchScript, .pt2 and factories run code when loaded: trusted files only)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="checkpoint for a zoo name, torchvision:/timm: or a factory (read with weights_only=True)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="N",
        help="classes of the model's head (default: the checkpoint's, e.g. a fine-tuned 10-class torchvision:resnet18)",
    )
    parser.add_argument(
        "--strip-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="remove PREFIX from the checkpoint's keys that start with it, e.g. encoder. (repeatable)",
    )
    parser.add_argument(
        "--rename-key",
        action="append",
        default=[],
        type=key_rename,
        metavar="OLD=NEW",
        help="then rename checkpoint key or module OLD to NEW, e.g. output_layer=fc (repeatable)",
    )
    parser.add_argument(
        "--input-size",
        type=ints_arg,
        default=None,
        metavar="C,H,W",
        help="input size the model takes, where its source does not say (e.g. 3,224,224)",
    )
    parser.add_argument(
        "--input-mean",
        type=floats_arg,
        default=None,
        metavar="M[,M,M]",
        help="per-channel mean the model's inputs are normalised with (pixels in [0, 1])",
    )
    parser.add_argument(
        "--input-std",
        type=floats_arg,
        default=None,
        metavar="S[,S,S]",
        help="per-channel std the model's inputs are normalised with (pixels in [0, 1])",
    )
    parser.add_argument("--device", default="auto", help="torch device; auto = cuda, else mps, else cpu")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward (default: the detector's; fit: what --max-memory allows, at most 128)",
    )
    parser.add_argument(
        "--resize",
        type=resize_arg,
        default=None,
        metavar="METHOD",
        help=f"how images of another size reach the input size: {', '.join(RESIZES)} (default: "
        "the model's own at fit, e.g. torchvision's/timm's evaluation transform, none for the "
        "zoo; the detector's at score and serve)",
    )
    parser.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        default=None,
        help="resampling filter of --resize (default: the model's own, else bilinear-antialias = "
        "PIL bilinear; bilinear = torch's, without antialiasing; see README)",
    )
    parser.add_argument(
        "--resize-size",
        type=ints_arg,
        default=None,
        metavar="N|H,W",
        help="the size --resize resizes to before the centre crop: the shorter side for "
        "resize-shorter-then-center-crop, H,W for squash (default: the model's own)",
    )
    parser.add_argument("--max-side", type=int, default=4096, help="largest image width or height accepted")
    parser.add_argument(
        "--min-side",
        type=int,
        default=None,
        metavar="PIXELS",
        help="when resizing, smallest image width and height accepted (default: half the model's, at most 16)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--max-memory",
        type=bytes_arg,
        default=DEFAULT_MAX_MEMORY,
        metavar="BYTES",
        help="memory the images in flight may take, e.g. 512MiB or 4GiB (default 1GiB): sets the "
        "batch size (unless --batch-size) and the images held decoded at once",
    )


def add_precision_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--precision``: the model's arithmetic (:mod:`odin_ood.scores.precision`)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help=f"the model's arithmetic: fp32 (default), bf16 or fp16 where the device has it; {what}",
    )


def resize_arg(text: str) -> str:
    """A resize method; an interpolation name (what ``--resize`` took before) says where it went."""
    if text in RESIZES:
        return text
    if text in INTERPOLATIONS:
        raise argparse.ArgumentTypeError(
            f"--resize now takes the method ({', '.join(RESIZES)}) and --interpolation the filter: "
            f"write --resize squash --interpolation {'bilinear-antialias' if text == 'bilinear' else text} "
            "for what --resize "
            f"{text} did before"
        )
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(RESIZES)}, got {text!r}")


def bytes_arg(text: str) -> int:
    """``1GiB``, ``512MiB``, ``2G`` or a plain number of bytes."""
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def key_rename(text: str) -> tuple[str, str]:
    """``OLD=NEW`` -> (OLD, NEW)."""
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, got {text!r}")
    return old, new


def ints_arg(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 3,32,32, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return values


def floats_arg(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.5,0.5,0.5, got {text!r}"
        ) from None
    if not all(abs(v) < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"values must be finite, got {text!r}")
    return values
