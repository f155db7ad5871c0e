"""MSP and ODIN at the paper's own parameters on EVERY image of every set.

Nothing is tuned for this row (the paper publishes T and epsilon per model, Appendix A.2), so
nothing needs holding out: every ID and OOD image is evaluated. One ODIN pass per image gives
the unperturbed logits too, so MSP (the max softmax of the logits at T = 1) comes free. The
passes are cached per chunk (:meth:`Scorer.cell_outputs`), so the full suite reuses them and a
killed run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from odin_ood.data import ImageDataset
from odin_ood.experiments import paper
from odin_ood.experiments.progress import Progress
from odin_ood.experiments.scorer import CELL_CHUNK, Scorer
from odin_ood.metrics import evaluate


def msp_from_logits(logits: np.ndarray) -> np.ndarray:
    """max_i softmax(f(x))_i in float32, the baseline score (T = 1, epsilon = 0)."""
    return torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1).amax(dim=1).numpy()


def logits_cell(paper_row: str | None, specs: Sequence[Any]) -> tuple[float, float]:
    """The one cell every image is scored at without tuning: the paper's (T, epsilon) for this
    model (the first of its sets that has them), else (1, 0) (then the pass is the baseline)."""
    return next((p for s in specs if (p := paper.parameters(paper_row, s.paper_key)) is not None), (1.0, 0.0))


def every_image_pass(
    scorer: Scorer,
    id_data: ImageDataset,
    oods: Sequence[tuple[Any, ImageDataset]],
    paper_row: str | None,
    progress: bool = True,
) -> None:
    """Score every image of the ID set, then of every OOD set, at the paper's parameters,
    round-robin over the OOD sets one chunk at a time: a run stopped early leaves every set
    with about the same number of finished images (rows report how many)."""
    default = logits_cell(paper_row, [spec for spec, _ in oods])
    jobs = [(ds, paper.parameters(paper_row, spec.paper_key) or default) for spec, ds in oods]
    cells = sorted({cell for _, cell in jobs})
    total = len(cells) * len(id_data) + sum(len(ds) for ds, _ in jobs)
    bar = Progress("every image, paper parameters", total, enabled=progress)
    for cell in cells:
        for start in range(0, len(id_data), CELL_CHUNK):
            scorer.cell_chunk(id_data, *cell, start, bar)
    for start in range(0, max((len(ds) for ds, _ in jobs), default=0), CELL_CHUNK):
        for ds, cell in jobs:
            if start < len(ds):
                scorer.cell_chunk(ds, *cell, start, bar)


def every_image_rows(
    scorer: Scorer, id_data: ImageDataset, oods: Sequence[tuple[Any, ImageDataset]], paper_row: str | None
) -> list[dict[str, Any]]:
    """One row per OOD set: MSP and ODIN at the paper's parameters (``paper_parameters`` False:
    another set's, for a set the paper gives none) on every image scored so far (``complete``
    False and ``n_out`` < ``n_out_total`` while the pass is unfinished: the finished chunks, a
    seeded-order subset; a set whose ID pass or every OOD chunk is missing is left out).
    Computes nothing."""
    default = logits_cell(paper_row, [spec for spec, _ in oods])
    rows = []
    for spec, ds in oods:
        own = paper.parameters(paper_row, spec.paper_key)
        cell = own or default
        s_in = scorer.cell_outputs(id_data, *cell, compute=False)
        out = scorer.cell_finished(ds, *cell)
        if s_in is None or out is None:
            continue
        rows.append(
            {
                "ood": spec.key,
                "label": spec.label,
                "temperature": cell[0],
                "epsilon": cell[1],
                "paper_parameters": own is not None,
                "n_in": len(id_data),
                "n_out": int(out["scores"].size),
                "n_out_total": len(ds),
                "complete": int(out["scores"].size) == len(ds),
                "precision": scorer.precision,
                "msp": evaluate(msp_from_logits(s_in["logits"]), msp_from_logits(out["logits"])),
                "odin": evaluate(s_in["scores"], out["scores"]),
                "paper": paper.table_row(paper_row, spec.paper_key),
            }
        )
    return rows
