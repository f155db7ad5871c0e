"""Scoring inputs chunk by chunk into rows of a :class:`~odin_ood.commands.writers.RowWriter`.

A row holds ``index`` (position in the inputs), ``source``, ``predicted_class``, ``class_name``
(its name when the model has ``class_names``, see :mod:`odin_ood.models.classes`; else None), ``confidence``
(the classifier's softmax on the unperturbed image), ``score`` (ODIN), ``is_out_of_distribution``
and ``error``. An image that cannot be decoded or does not fit the model gets a row with
``predicted_class = -1``, no class name, no confidence or score, ``is_out_of_distribution = true`` (the gate
fails closed) and the reason in ``error``; so does an image that cannot be read (a damaged zip
member, a file over the byte cap, a skipped symlink, an I/O error), and the run goes on. An
image whose score is not finite keeps its class but no score, is out-of-distribution and says
so in ``error``. Memory is bounded by one chunk of images whatever the number of inputs, and the
chunk by a budget in bytes (:mod:`odin_ood.memory`).
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from odin_ood import memory
from odin_ood.detector import Detector
from odin_ood.models.classes import class_name, class_names
from odin_ood.serving.engine import fixed_batch_outputs
from odin_ood.commands.inputs import Inputs
from odin_ood.preprocess import InputError, InputSpec, image_tensor
from odin_ood.commands.writers import Row, RowWriter

NOT_FINITE = "the ODIN score is not finite (NaN or infinite): out-of-distribution (the gate fails closed)"


def score_rows(detector: Detector, spec: InputSpec, inputs: Inputs, indices: Sequence[int],
               pool: ThreadPoolExecutor | None = None) -> list[Row]:
    """Rows for ``inputs[indices]``: decoded in ``pool`` (threads), scored in fixed-size batches."""
    def prepare(i: int) -> Tensor | str:
        try:
            return image_tensor(inputs.load(i, spec), spec, inputs.source(i))
        except InputError as exc:
            return str(exc)

    prepared = list(pool.map(prepare, indices) if pool is not None else map(prepare, indices))
    good = [k for k, p in enumerate(prepared) if isinstance(p, Tensor)]
    values: dict[str, list] = {}
    if good:
        out = fixed_batch_outputs(detector, torch.stack([prepared[k] for k in good]))
        values = {key: t.tolist() for key, t in out.items()}
    rows = []
    names = class_names(detector.model)
    position = {k: j for j, k in enumerate(good)}
    for k, i in enumerate(indices):
        row: Row = {"index": i, "source": inputs.source(i)}
        if k in position:
            j = position[k]
            row.update({key: values[key][j] for key in values}, error="")
            row["class_name"] = class_name(names, row["predicted_class"])
            if not math.isfinite(row["score"]):
                row.update(is_out_of_distribution=True, error=NOT_FINITE)
        else:
            row.update(predicted_class=-1, class_name=None, confidence=None, score=None, is_out_of_distribution=True, error=prepared[k])
        rows.append(row)
    return rows


def score_inputs(detector: Detector, spec: InputSpec, inputs: Inputs, writer: RowWriter,
                 indices: Sequence[int] | None = None, chunk: int | None = None, workers: int = 4,
                 progress: bool = True, label: str = "scoring", max_memory: int = memory.DEFAULT_MAX_MEMORY) -> int:
    """Score ``inputs[indices]`` (default: all) into ``writer``, after the ``writer.done`` rows
    it already holds, ``chunk`` images at a time (None: as many as half of ``max_memory`` bytes
    holds decoded, :func:`odin_ood.memory.chunk_for`); returns the number of images scored now.
    Prints a throughput line."""
    chunk = chunk or memory.chunk_for(spec.shape, max_memory, detector.batch_size)
    indices = range(len(inputs)) if indices is None else indices
    check_resume(writer, inputs, indices)
    todo = indices[writer.done:]
    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(
        total=len(indices), initial=writer.done, unit="img", desc=label, disable=not progress, file=sys.stderr,
    ) as bar:
        for s in range(0, len(todo), chunk):
            ids = todo[s:s + chunk]
            writer.write(score_rows(detector, spec, inputs, ids, pool))
            bar.update(len(ids))
    seconds = time.perf_counter() - start
    if progress:
        rate = len(todo) / seconds if seconds > 0 else float("inf")
        print(f"{label}: {len(todo)} images in {seconds:.1f} s ({rate:.1f} images/s); "
              f"{writer.done} of {len(indices)} rows written", file=sys.stderr)
    return len(todo)


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
