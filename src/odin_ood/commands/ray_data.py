"""Scoring on Ray Data: :class:`RayScorer` for any Ray Dataset of images, and the engine behind
``odin-ood score --engine ray`` (:func:`score_on_ray`). ``ray`` is imported only by
:func:`score_on_ray` (and by Ray itself, in its workers): ``pip install 'odin-ood[ray]'``.

**Same rows as one process.** A row's scores depend on its batch position (float32 kernels may
round a row differently at another position: :mod:`odin_ood.commands.rows`), and Ray Data cuts
batches where it likes (at block ends, a batch is short). So neither class scores the batches
Ray hands it as they come: with B the detector's batch size,

- :class:`RayScorer` places a row with ``index`` i (its 0-based position in the order one process
  would score; column ``index_column``) at position ``i mod B`` of batch ``i // B``, zeros in the
  other positions, exactly as ``odin-ood score`` places it (it zero-pads its last batch and puts
  a zero image in place of an unreadable one). Rows equal ``odin-ood score``'s bit for bit when
  the model's output for a row does not depend on the other rows of its batch (true of any model
  in eval mode without cross-sample operations; tested on one whose rounding depends on the
  position). Without an index column, the rows of each call are placed at positions 0, 1, ... in
  the order given, so a row may sit at another position than in ``odin-ood score`` and its
  scores may differ in the last bits (decisions can flip only within that rounding of the threshold).
- ``--engine ray`` hands each worker whole batches of the inputs (units of ``--chunk`` images,
  rounded up to whole batches), as torchrun ranks get them: rows are bit-identical by construction.

**Workers.** The detector, model and runtime are loaded once per actor (``__init__``), not per
batch. Ray Data restarts an actor that dies and retries its batch (its defaults: ``max_restarts``
and ``max_task_retries`` -1), and a retried batch gives the same rows, so a killed worker loses
no row and duplicates none.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odin_ood.commands.identity import score_identity
from odin_ood.commands.input_options import InputOptions
from odin_ood.commands.inputs import MAX_IMAGE_BYTES
from odin_ood.commands.loading import load_scorer
from odin_ood.commands.options import ModelOptions
from odin_ood.commands.row_files import COLUMNS, Row, output_format, row_table
from odin_ood.commands.rows import Shard, Tally, check_resume, score_rows
from odin_ood.commands.writers import RowWriter
from odin_ood.preprocess import InputError, Preprocessing, check_side, decode

RESULTS = COLUMNS[2:]  # what RayScorer adds to each row: predicted_class ... error
WRITERS = ("parquet", "csv")


class RayScorer:
    """Score a Ray Dataset of images with a fitted detector:
    ``ds.map_batches(RayScorer, fn_constructor_kwargs={"detector": "det/", "model": "mnist-mlp"},
    batch_size=64, compute=ray.data.ActorPoolStrategy(size=2))``.

    ``model``: a model spec (as ``--model``, with ``weights`` as ``--weights``) or
    :class:`~odin_ood.commands.options.ModelOptions`; ``detector``: the fitted detector's folder or
    file; ``runtime``: a scoring runtime name. Each
    row's ``image_column`` holds encoded bytes (PNG, JPEG...), a ``{"bytes": ...}`` dict (a
    Hugging Face Parquet image) or a uint8 (H, W[, C]) array; ``index_column`` (optional) its
    position in the single-process order (see the module docstring). Returns the batch without
    the image column, plus ``predicted_class``, ``class_name``, ``confidence``, ``score``,
    ``is_out_of_distribution`` and ``error`` (a row that cannot be scored says why there and is
    out-of-distribution; it never stops the run)."""

    def __init__(
        self,
        detector: str | os.PathLike,
        model: str | ModelOptions,
        weights: str | None = None,
        runtime: str = "torch",
        image_column: str = "image",
        index_column: str = "index",
        max_image_bytes: int = MAX_IMAGE_BYTES,
        decode_threads: int = 4,
    ) -> None:
        options = ModelOptions(model=model, weights=weights) if isinstance(model, str) else model
        self.runtime, self.spec = load_scorer(options, detector, runtime)
        self.image_column, self.index_column, self.max_image_bytes = image_column, index_column, max_image_bytes
        self.pool = ThreadPoolExecutor(max(1, decode_threads))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch[self.image_column]
        b = self.runtime.batch_size
        if self.index_column in batch:
            positions = [int(i) for i in batch[self.index_column]]
            where = f"{self.index_column} "
        else:
            positions, where = list(range(len(images))), "row "
        groups: dict[int, dict[int, int]] = {}
        for row, i in enumerate(positions):
            slots = groups.setdefault(i // b, {})
            if i % b in slots:
                raise ValueError(f"RayScorer: two rows of one batch have {where}{i}")
            slots[i % b] = row
        results: list[Row] = [{} for _ in positions]
        for k, slots in groups.items():
            placed = _Placed(images, slots, k * b, self.max_image_bytes, where)
            rows = score_rows(self.runtime, self.spec, placed, range(k * b, (k + 1) * b), self.pool)
            for slot, row in slots.items():
                results[row] = rows[slot]
        out = {c: v for c, v in batch.items() if c != self.image_column}
        for c in RESULTS:
            out[c] = np.array([r[c] for r in results], dtype=object)
        out["predicted_class"] = out["predicted_class"].astype(np.int64)
        out["is_out_of_distribution"] = out["is_out_of_distribution"].astype(bool)
        return out


class _Placed:
    """The inputs of one batch of :class:`RayScorer` (``score_rows`` reads them as it reads
    :class:`~odin_ood.commands.inputs.Inputs`): ``slots`` maps a batch position to a row of the
    call's images; the other positions are empty, so their images are zeros."""

    labelled = False

    def __init__(self, images: Sequence[Any], slots: dict[int, int], first: int, max_bytes: int, where: str) -> None:
        self.images, self.slots, self.first, self.max_bytes, self.where = images, slots, first, max_bytes, where

    def source(self, i: int) -> str:
        return f"{self.where}{i}"

    def label(self, i: int) -> int | None:
        return None

    def load(self, i: int, spec: Preprocessing) -> Any:
        slot = i - self.first
        if slot not in self.slots:
            raise InputError("an empty batch position")
        value = self.images[self.slots[slot]]
        label = self.source(i)
        if isinstance(value, dict):
            value = value.get("bytes")
        if isinstance(value, (bytes, bytearray, memoryview)):
            if len(value) > self.max_bytes:
                raise InputError(
                    f"{label}: over the limit of {self.max_bytes} bytes per image: it is {len(value)} bytes", 413
                )
            return decode(bytes(value), spec, label)
        if isinstance(value, np.ndarray):
            if value.ndim >= 2:
                check_side((value.shape[1], value.shape[0]), spec, label)  # as for the same picture in a PNG
            return value
        raise InputError(
            f"{label}: expected encoded image bytes, a {{bytes, path}} dict or a uint8 array, "
            f"got {type(value).__name__}"
        )


class _Units(RayScorer):
    """``--engine ray``'s actor: the inputs listed once (paths relative to the driver's ``cwd``,
    as the driver names them), then whole units of them scored per call."""

    def __init__(
        self,
        detector: str | os.PathLike,
        model: ModelOptions,
        runtime: str,
        reading: InputOptions,
        batch_size: int,
        decode_threads: int,
        cwd: str,
    ) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        super().__init__(detector, model, runtime=runtime, decode_threads=decode_threads)
        if self.runtime.batch_size != batch_size:
            raise RuntimeError(
                f"this worker's detector scores batches of {self.runtime.batch_size}, the driver's "
                f"{batch_size}: the same detector and options must load alike everywhere"
            )
        self.inputs, self.columns = reading.open(), reading.columns

    def __call__(self, units: dict[str, Any]) -> Any:
        rows: list[Row] = []
        for start, stop, skip in zip(units["start"], units["stop"], units["skip"], strict=True):
            rows += score_rows(self.runtime, self.spec, self.inputs, range(int(start), int(stop)), self.pool, int(skip))
        return row_table(rows, self.columns)


@dataclass(frozen=True)
class RayOptions:
    """Where ``--engine ray`` runs: ``address`` of a running cluster (None: a local one, started
    now and stopped after), ``workers`` actors (None: one per CPU of the cluster, one per GPU on
    CUDA), ``writer`` (None: odin-ood's resumable file; ``parquet``/``csv``: Ray's writer, a folder)."""

    address: str | None = None
    workers: int | None = None
    writer: str | None = None


def score_on_ray(
    model: ModelOptions,
    detector: str | os.PathLike,
    reading: InputOptions,
    output: str | os.PathLike,
    ray_options: RayOptions = RayOptions(),
    runtime: str = "torch",
    chunk: int | None = None,
    resume: bool = False,
    decode_threads: int = 4,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[Tally, int]:
    """Score ``reading``'s inputs on Ray Data into ``output`` (see the module docstring); returns
    (what this run scored, the rows the output holds)."""
    import ray
    from ray.data import DataContext

    from odin_ood.scores import memory

    output = Path(output)
    if ray_options.workers is not None and ray_options.workers < 1:
        raise ValueError(f"--ray-workers must be >= 1, got {ray_options.workers}")
    if ray_options.writer is not None and ray_options.writer not in WRITERS:
        raise ValueError(f"--ray-writer must be one of {', '.join(WRITERS)}, got {ray_options.writer!r}")
    if ray_options.writer is not None and (resume or overwrite):
        raise ValueError(
            f"{'--resume' if resume else '--overwrite'} needs odin-ood's writer: Ray's writers "
            "(--ray-writer) write a new folder at once"
        )
    if ray_options.writer is not None and os.path.lexists(output):
        raise ValueError(f"{output} exists: delete it, or choose another --output folder")
    writer = (
        None
        if ray_options.writer
        else RowWriter(output, output_format(output), resume, columns=reading.columns, overwrite=overwrite)
    )
    gpus = 1 if model.device.startswith("cuda") or (model.device == "auto" and torch.cuda.is_available()) else 0
    driver, spec = load_scorer(model, detector, runtime, torch.device("cpu"))  # for its batch size and identity
    b = driver.batch_size
    inputs = reading.open()
    if writer is not None:  # the workers' identity: as one process would record it, on their device
        identity = score_identity(
            driver, spec, reading.max_image_bytes, reading.follow_symlinks, reading.formats_identity()
        )
        writer.claim({**identity, "device": "cuda" if gpus else "cpu"})
    shard = Shard(len(inputs), b)
    if writer is not None:
        check_resume(writer, inputs, shard)
    done = writer.done if writer is not None else 0
    step = b * max(1, -(-(chunk or memory.chunk_for(spec.input_shape, model.max_memory, b)) // b))
    first = done - done % b
    units = [
        {"start": s, "stop": min(len(shard), s + step), "skip": max(0, done - s)}
        for s in range(first, len(shard), step)
    ]
    started = not ray.is_initialized()
    if started:  # a local cluster's workers import what this process imports (e.g. a --model package.module:factory)
        local = ray_options.address is None and "RAY_ADDRESS" not in os.environ
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}} if local else None
        ray.init(
            address=ray_options.address,
            include_dashboard=False,
            log_to_driver=progress,
            runtime_env=env,
            logging_level=logging.INFO if progress else logging.WARNING,
        )
    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order, context.enable_progress_bars = True, progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    tally = Tally()
    start = time.perf_counter()
    try:
        if units:
            scored = _pipeline(ray, model, detector, runtime, reading, b, decode_threads, units, ray_options, gpus)
            if ray_options.writer is not None:
                getattr(scored, f"write_{ray_options.writer}")(str(output))
                tally = _tally_of(output, ray_options.writer)
            elif writer is not None:
                for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                    rows = table.to_pylist()
                    writer.write(rows)
                    tally.add(rows)
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started:
            ray.shutdown()
    if writer is not None:
        writer.finish()
    if progress:
        seconds = time.perf_counter() - start
        print(
            f"ray: {tally.rows} images in {seconds:.1f} s ({tally.rows / max(seconds, 1e-9):.1f} images/s)",
            file=sys.stderr,
        )
    return tally, (writer.done if writer is not None else tally.rows)


def _pipeline(
    ray: Any,
    model: ModelOptions,
    detector: str | os.PathLike,
    runtime: str,
    reading: InputOptions,
    b: int,
    decode_threads: int,
    units: list[dict[str, int]],
    ray_options: RayOptions,
    gpus: int,
) -> Any:
    """The units as a Ray Dataset (one block each: workers take them as they become free), mapped
    by a pool of :class:`_Units` actors (one GPU each when ``gpus``, else one CPU)."""
    resources = ray.cluster_resources()
    workers = min(len(units), ray_options.workers or max(1, int(resources.get("GPU" if gpus else "CPU", 1))))
    dataset = ray.data.from_items(units, override_num_blocks=len(units))
    return dataset.map_batches(
        _Units,
        fn_constructor_kwargs={
            "detector": detector,
            "model": model,
            "runtime": runtime,
            "reading": reading,
            "batch_size": b,
            "decode_threads": decode_threads,
            "cwd": os.getcwd(),
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=0 if gpus else 1,
        num_gpus=gpus,
        batch_format="numpy",
    )


def _tally_of(folder: Path, writer: str) -> Tally:
    """What a folder written by Ray's writer holds (read back, two columns)."""
    import pyarrow.dataset as pads

    table = pads.dataset(str(folder), format=writer).to_table(columns=["predicted_class", "error"])
    tally = Tally()
    classes, errors = table.column(0).to_pylist(), table.column(1).to_pylist()
    tally.add([{"predicted_class": c, "error": e or ""} for c, e in zip(classes, errors, strict=True)])
    return tally
