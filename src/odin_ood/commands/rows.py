"""Scoring inputs chunk by chunk into rows of a :class:`~odin_ood.commands.writers.RowWriter`.

A row holds ``index`` (position in the inputs), ``source``, ``predicted_class``, ``confidence``
(the classifier's softmax on the unperturbed image), ``score`` (ODIN), ``is_out_of_distribution``
and ``error``. An image that cannot be decoded or does not fit the model gets a row with
``predicted_class = -1``, no confidence or score, ``is_out_of_distribution = true`` (the gate
fails closed) and the reason in ``error``; so does an image that cannot be read (a damaged zip
member, a file over the byte cap, a skipped symlink, an I/O error), and the run goes on. An
image whose score is not finite keeps its class but no score, is out-of-distribution and says
so in ``error``. Memory is bounded by one chunk of images whatever the number of inputs.
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

from odin_ood.runtimes import Runtime
from odin_ood.serving.engine import fixed_batch_outputs
from odin_ood.commands.inputs import Inputs
from odin_ood.preprocess import InputError, InputSpec, image_pixels
from odin_ood.commands.writers import Row, RowWriter

NOT_FINITE = "the ODIN score is not finite (NaN or infinite): out-of-distribution (the gate fails closed)"


def score_rows(runtime: Runtime, spec: InputSpec, inputs: Inputs, indices: Sequence[int],
               pool: ThreadPoolExecutor | None = None) -> list[Row]:
    """Rows for ``inputs[indices]``: decoded in ``pool`` (threads), scored on ``runtime`` in
    fixed-size batches."""
    def prepare(i: int) -> Tensor | str:
        try:
            return image_pixels(inputs.load(i, spec), spec, inputs.source(i))
        except InputError as exc:
            return str(exc)

    prepared = list(pool.map(prepare, indices) if pool is not None else map(prepare, indices))
    good = [k for k, p in enumerate(prepared) if isinstance(p, Tensor)]
    values: dict[str, list] = {}
    if good:
        out = fixed_batch_outputs(runtime, torch.stack([prepared[k] for k in good]))
        values = {key: t.tolist() for key, t in out.items()}
    rows = []
    position = {k: j for j, k in enumerate(good)}
    for k, i in enumerate(indices):
        row: Row = {"index": i, "source": inputs.source(i)}
        if k in position:
            j = position[k]
            row.update({key: values[key][j] for key in values}, error="")
            if not math.isfinite(row["score"]):
                row.update(is_out_of_distribution=True, error=NOT_FINITE)
        else:
            row.update(predicted_class=-1, confidence=None, score=None, is_out_of_distribution=True, error=prepared[k])
        rows.append(row)
    return rows


def score_inputs(runtime: Runtime, spec: InputSpec, inputs: Inputs, writer: RowWriter,
                 indices: Sequence[int] | None = None, chunk: int = 4096, workers: int = 4,
                 progress: bool = True, label: str = "scoring") -> int:
    """Score ``inputs[indices]`` (default: all) into ``writer``, after the ``writer.done`` rows
    it already holds; returns the number of images scored now. Prints a throughput line."""
    indices = range(len(inputs)) if indices is None else indices
    check_resume(writer, inputs, indices)
    todo = indices[writer.done:]
    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(
        total=len(indices), initial=writer.done, unit="img", desc=label, disable=not progress, file=sys.stderr,
    ) as bar:
        for s in range(0, len(todo), chunk):
            ids = todo[s:s + chunk]
            writer.write(score_rows(runtime, spec, inputs, ids, pool))
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
