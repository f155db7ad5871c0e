"""The images ``odin-ood fit`` tunes and evaluates on: decoded, deduplicated by content, split.

Inputs are visited in a seeded random order (so ``limit`` takes a random sample, not the first
folder), decoded exactly as ``score`` and ``serve`` decode them, and identified by the SHA-256 of
the model input they become. Only the first image of each content is kept, so one picture can
never sit in both the tuning and the evaluation split, whatever its file names; images that
appear among both the ID and the OOD inputs are refused. The kept images are then split:
the last ``round(holdout * n)`` go to evaluation, the rest tune.
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from odin_ood.commands.inputs import Inputs
from odin_ood.preprocess import Preprocessing, image_tensor


@dataclass(frozen=True)
class Selection:
    """Images taken from an :class:`Inputs`: model inputs ``x`` (N, C, H, W), their ``sources``
    (as ``score`` names them), content ``digests`` and the number of ``duplicates`` skipped."""

    x: Tensor
    sources: tuple[str, ...]
    digests: tuple[str, ...]
    duplicates: int

    def __len__(self) -> int:
        return len(self.sources)

    def part(self, start: int, stop: int | None = None) -> Selection:
        return Selection(self.x[start:stop], self.sources[start:stop], self.digests[start:stop], 0)


def digest(x: Tensor) -> str:
    """SHA-256 of a model input's float32 values: equal for images that decode to the same input."""
    return hashlib.sha256(x.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


def select(
    inputs: Inputs,
    spec: Preprocessing,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 4,
    progress: bool = True,
    label: str = "images",
) -> Selection:
    """Up to ``limit`` distinct images of ``inputs`` (all when None) in a seeded random order.
    An image that cannot be decoded, or does not fit the model, stops with an error naming it."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    order = np.random.default_rng(seed).permutation(len(inputs)).tolist()
    want = len(order) if limit is None else min(limit, len(order))
    tensors: list[Tensor] = []
    sources: list[str] = []
    seen: dict[str, str] = {}
    duplicates = 0
    chunk = max(64, 4 * workers)
    with (
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(
            total=want,
            desc=f"reading {label}",
            unit="img",
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):
        for start in range(0, len(order), chunk):
            ids = order[start : start + chunk]
            for i, x in zip(
                ids, pool.map(lambda i: image_tensor(inputs.load(i, spec), spec, inputs.source(i)), ids), strict=True
            ):
                d = digest(x)
                if d in seen:
                    duplicates += 1
                    continue
                seen[d] = inputs.source(i)
                tensors.append(x)
                sources.append(inputs.source(i))
                bar.update()
                if len(tensors) == want:
                    break
            if len(tensors) == want:
                break
    return Selection(torch.stack(tensors), tuple(sources), tuple(seen), duplicates)


def check_disjoint(id_images: Selection, ood_images: Selection) -> None:
    """Refuse images that appear (by content) among both the ID and the OOD inputs."""
    ood = dict(zip(ood_images.digests, ood_images.sources, strict=True))
    both = [(s, ood[d]) for s, d in zip(id_images.sources, id_images.digests, strict=True) if d in ood]
    if both:
        a, b = both[0]
        raise ValueError(f"{len(both)} image(s) appear among both the ID and the OOD inputs, e.g. {a} and {b}")


def split(images: Selection, holdout: float) -> tuple[Selection, Selection | None]:
    """(tuning part, evaluation part): the last ``round(holdout * n)`` images evaluate; None
    when ``holdout`` is 0. Both parts must be non-empty."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"--holdout must lie in [0, 1), got {holdout}")
    n_eval = round(holdout * len(images))
    if holdout == 0.0:
        return images, None
    if n_eval < 1 or n_eval >= len(images):
        raise ValueError(f"--holdout {holdout} of {len(images)} images leaves an empty tuning or evaluation split")
    return images.part(0, len(images) - n_eval), images.part(len(images) - n_eval)
