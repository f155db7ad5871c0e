"""What a scoring run is, so that ``odin-ood score --resume`` continues only its own rows.

:func:`score_identity` lists everything a row depends on: the detector, the model's weights and
computation, the runtime, batch size and device, the preprocessing, how inputs are read, the
versions. :class:`~odin_ood.commands.writers.RowWriter` records it beside the output
(``OUT.identity.json``, :func:`record_of`) before the first row and compares it when resuming
(:func:`differences` names what changed).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import torch

from odin_ood._utils.files import write_file
from odin_ood._version import __version__
from odin_ood.detector.fingerprint import computation, fingerprint
from odin_ood.preprocess import Preprocessing
from odin_ood.runtimes import Runtime
from odin_ood.scores.passes import model_device

FORMAT = "odin-ood score identity"
MAX_RECORD_BYTES = 1 << 16
_NOT_OURS = "not odin-ood's identity record: not touched; choose another --output, or move it away"


def score_identity(
    runtime: Runtime,
    spec: Preprocessing,
    max_image_bytes: int,
    follow_symlinks: bool,
    formats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What makes a row what it is: the detector (sha256 of its JSON: score, T, epsilon,
    threshold, ...), the model's weights (:func:`~odin_ood.detector.fingerprint.fingerprint`) and
    computation (:func:`~odin_ood.detector.fingerprint.computation`), the runtime, batch size and device
    type, the precision below fp32 (an fp32 record is as it always was), the preprocessing (``max_side``/``min_side``
    included), how inputs are read (``max_image_bytes``, ``follow_symlinks``: which images get an error row;
    ``formats``: how shards and Parquet files are read,
    :meth:`~odin_ood.commands.input_options.InputOptions.formats_identity`) and odin-ood's and torch's versions. Not the
    chunk or the number of workers: rows do not depend on them (:mod:`odin_ood.commands.rows`)."""
    detector = runtime.detector
    described = {k: v for k, v in detector.to_dict().items() if k != "batch_size"}
    model = detector.model
    return {
        "detector": "sha256:" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest(),
        "model weights": fingerprint(model),
        "model computation": computation(model, spec.input_shape),
        "runtime": runtime.name,
        "batch size": runtime.batch_size,
        "device": model_device(model, torch.device("cpu")).type,
        "preprocessing": {**spec.to_dict(), "max_side": spec.max_side, "min_side": spec.min_side},
        "reading": {"max_image_bytes": max_image_bytes, "follow_symlinks": follow_symlinks, **(formats or {})},
        "odin-ood": __version__,
        "torch": torch.__version__,
        **({} if detector.precision == "fp32" else {"precision": detector.precision}),
    }


def record_of(output: Path) -> Path:
    """Where the identity record of the output ``output`` lives: ``OUT.identity.json``."""
    return output.with_name(output.name + ".identity.json")


def read_record(path: Path) -> dict[str, Any] | None:
    """The identity recorded at ``path`` (None: no record; at most ``MAX_RECORD_BYTES`` read, never
    through a link); a file there that odin-ood did not write is refused, unchanged."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc}): {_NOT_OURS}") from None
    with os.fdopen(fd, "rb") as f:
        text = f.read(MAX_RECORD_BYTES + 1) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    try:
        record = json.loads(text) if len(text) <= MAX_RECORD_BYTES else None
    except ValueError:
        record = None
    if not (isinstance(record, dict) and record.get("format") == FORMAT and isinstance(record.get("identity"), dict)):
        raise ValueError(f"{path}: {_NOT_OURS}")
    return record["identity"]


def write_record(path: Path, identity: dict[str, Any]) -> None:
    """Write ``identity`` to ``path``: a new temporary file beside it (created exclusively, so
    never through a link), fsync'ed, renamed over it; a stale record of ours is replaced,
    anything else refused."""
    read_record(path)
    write_file(path, json.dumps({"format": FORMAT, "identity": identity}, indent=1), "score", "--output")


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> str:
    """The fields in which two identities differ, with both values where they are short."""
    parts = []
    for key in [k for k in {**recorded, **now} if recorded.get(k) != now.get(k)]:
        was, new = recorded.get(key), now.get(key)
        short = all(isinstance(v, (str, int, float, bool)) and len(str(v)) <= 24 for v in (was, new))
        parts.append(f"{key} (was {was}, now {new})" if short else key)
    return ", ".join(parts)
