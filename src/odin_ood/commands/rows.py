"""Scoring inputs chunk by chunk into rows of a :class:`~odin_ood.commands.writers.RowWriter`.

A row holds ``index`` (position in the inputs), ``source``, ``predicted_class``, ``class_name``
(its name when the model has ``class_names``, see :mod:`odin_ood.models.classes`; else None), ``confidence``
(the classifier's softmax on the unperturbed image), ``score`` (ODIN), ``is_out_of_distribution``
and ``error``, then ``label`` for inputs that carry labels (shards, Parquet) and ``precision``
when scoring below fp32 (:mod:`odin_ood.scores.precision`). An image that cannot be decoded or does not fit the model
gets a row with ``predicted_class = -1``, no class name, confidence or score, ``is_out_of_distribution = true`` (the
gate fails closed) and the reason in ``error``; so does an image that cannot be read (a damaged zip
member, a file over the byte cap, a skipped symlink, an I/O error), and the run goes on. An
image whose score is not finite keeps its class but no score, is out-of-distribution and says
so in ``error``. Memory is bounded by one chunk of images whatever the number of inputs, and the
chunk by a budget in bytes (:mod:`odin_ood.scores.memory`).

**Every image's batch and position are fixed by its index.** With B the detector's batch size,
batch k holds inputs ``[kB, (k+1)B)`` (the last one zero-padded to B), at position ``i mod B``;
an image that cannot be scored keeps its place as a zero image. Float32 kernels may round a row
differently at another position or batch size (the issue measured 1 ulp at odd positions), so
this is what makes a row independent of the run: chunks are whole batches (``--chunk`` is
rounded up to a multiple of B), a resumed run restarts at the batch holding the first missing
row and writes only the missing rows, and rank r of W takes the whole batches k = r (mod W).
Every row thus equals ``Detector.outputs`` on all the inputs in order, bit for bit.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, overload

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from odin_ood._utils.progress import PassProgress
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.row_files import Row
from odin_ood.commands.writers import RowWriter
from odin_ood.models.classes import class_name, class_names
from odin_ood.preprocess import InputError, Preprocessing, image_pixels
from odin_ood.runtimes import Runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.scores import memory
from odin_ood.scores.family import score_passes

NOT_FINITE = "the ODIN score is not finite (NaN or infinite): out-of-distribution (the gate fails closed)"


class Shard(Sequence[int]):
    """The input indices of the batches ``k = rank (mod world)`` of ``batch`` rows out of ``n``
    inputs, in order (``world = 1``: ``range(n)``). Position p is row ``p mod batch`` of the
    shard's batch ``p // batch``; every batch is whole except the inputs' last one."""

    def __init__(self, n: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.batch = batch
        count = -(-n // batch)
        self.batches = range(rank, count, world)
        holds_last = len(self.batches) > 0 and self.batches[-1] == count - 1
        self.length = len(self.batches) * batch - (count * batch - n if holds_last else 0)

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, p: int) -> int: ...
    @overload
    def __getitem__(self, p: slice) -> list[int]: ...
    def __getitem__(self, p: int | slice) -> int | list[int]:
        if isinstance(p, slice):
            return [self[q] for q in range(*p.indices(self.length))]
        if not 0 <= p < self.length:
            raise IndexError(f"shard position {p} out of range 0..{self.length - 1}")
        return self.batches[p // self.batch] * self.batch + p % self.batch


@dataclass
class Tally:
    """What a run wrote: ``rows``, of which ``failed`` could not be scored (the first reason in
    ``first_error``) and ``not_finite`` had a score that is not finite."""

    rows: int = 0
    failed: int = 0
    not_finite: int = 0
    first_error: str = ""

    def add(self, rows: list[Row]) -> None:
        self.rows += len(rows)
        for r in rows:
            if r["predicted_class"] == -1:
                self.failed += 1
                self.first_error = self.first_error or r["error"]
            elif r["error"]:
                self.not_finite += 1


class Images(Protocol):
    """What :func:`score_rows` reads: :class:`~odin_ood.commands.inputs.Inputs`, or the images of
    one batch of :class:`odin_ood.scaling.RayScorer`."""

    labelled: bool

    def source(self, i: int) -> str: ...

    def label(self, i: int) -> int | None: ...

    def load(self, i: int, spec: Preprocessing) -> Image.Image | np.ndarray: ...


def score_rows(
    runtime: Runtime,
    spec: Preprocessing,
    inputs: Images,
    indices: Sequence[int],
    pool: ThreadPoolExecutor | None = None,
    skip: int = 0,
) -> list[Row]:
    """Rows for ``inputs[indices[skip:]]``, ``indices`` being whole batches (see the module
    docstring): decoded in ``pool`` (threads), scored with every image at its batch position."""

    def prepare(i: int) -> Tensor | str:
        try:
            return image_pixels(inputs.load(i, spec), spec, inputs.source(i))
        except InputError as exc:
            return str(exc)

    prepared = list(pool.map(prepare, indices) if pool is not None else map(prepare, indices))
    values: dict[str, list] = {}
    if any(isinstance(p, Tensor) for p in prepared):
        zero = torch.zeros(spec.input_shape)
        x = torch.stack([p if isinstance(p, Tensor) else zero for p in prepared])
        with warnings.catch_warnings():  # non-finite scores are counted per real row, in ``error``
            warnings.filterwarnings("ignore", r".* scores are not finite", RuntimeWarning)
            values = {key: t.tolist() for key, t in fixed_batch_outputs(runtime, x).items()}
    rows = []
    names = class_names(runtime.detector.model)
    for k in range(skip, len(indices)):
        i, p = indices[k], prepared[k]
        row: Row = {"index": i, "source": inputs.source(i), "precision": runtime.detector.precision}
        if inputs.labelled:
            row["label"] = inputs.label(i)
        if isinstance(p, Tensor):
            row.update({key: values[key][k] for key in values}, error="")
            row["class_name"] = class_name(names, row["predicted_class"])
            if not math.isfinite(row["score"]):
                row.update(is_out_of_distribution=True, error=NOT_FINITE)
        else:
            row.update(
                predicted_class=-1, class_name=None, confidence=None, score=None, is_out_of_distribution=True, error=p
            )
        rows.append(row)
    return rows


def score_inputs(
    runtime: Runtime,
    spec: Preprocessing,
    inputs: Inputs,
    writer: RowWriter,
    rank: int = 0,
    world: int = 1,
    chunk: int | None = None,
    workers: int = 4,
    progress: bool = True,
    label: str = "scoring",
    max_memory: int = memory.DEFAULT_MAX_MEMORY,
) -> Tally:
    """Score the shard ``rank`` of ``world`` of ``inputs`` (default: all) into ``writer``, after
    the ``writer.done`` rows it already holds, ``chunk`` images at a time (None: as many as half of
    ``max_memory`` bytes holds decoded, :func:`odin_ood.scores.memory.chunk_for`); returns what this run
    wrote. Prints a throughput line."""
    detector, b = runtime.detector, runtime.batch_size
    chunk = chunk or memory.chunk_for(spec.input_shape, max_memory, b)
    shard = Shard(len(inputs), b, rank, world)
    check_resume(writer, inputs, shard)
    done, step = writer.done, b * max(1, -(-chunk // b))  # chunks of whole batches
    tally = Tally()
    start = time.perf_counter()
    meter = PassProgress(len(shard), score_passes(detector.score_family, detector.epsilon_), label, progress)
    meter.settle(done)
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for s in range(done - done % b if done < len(shard) else done, len(shard), step):  # a finished shard: none
                with meter.watching(detector.scoring_model()[0]):  # moves at every pass of every batch
                    rows = score_rows(runtime, spec, inputs, shard[s : s + step], pool, skip=max(0, done - s))
                writer.write(rows)
                tally.add(rows)
                meter.settle(done + tally.rows)
    finally:
        meter.close()
    seconds = time.perf_counter() - start
    if progress:
        rate = tally.rows / seconds if seconds > 0 else float("inf")
        print(
            f"{label}: {tally.rows} images in {seconds:.1f} s ({rate:.1f} images/s); "
            f"{writer.done} of {len(shard)} rows written",
            file=sys.stderr,
        )
    return tally


def check_resume(writer: RowWriter, inputs: Inputs, indices: Sequence[int]) -> None:
    """The rows already written must be the first ``writer.done`` of ``indices``, ending with
    the same image; otherwise they were written for other inputs."""
    if writer.done == 0:
        return
    if writer.done > len(indices):
        raise ValueError(f"{writer.path}: holds {writer.done} rows but there are only {len(indices)} inputs")
    i = indices[writer.done - 1]
    last = writer.last or {}
    if last.get("index") != i or last.get("source") != inputs.source(i):
        raise ValueError(
            f"{writer.path}: its last row is {last.get('index')!r} {last.get('source')!r} but row "
            f"{writer.done - 1} of these inputs is {i} {inputs.source(i)!r}: it was written for other inputs"
        )
