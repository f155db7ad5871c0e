"""The scorer of the experiments (section 4.4): ODIN scores of every image of a dataset at every
cell of the T x epsilon grid (one call of :func:`odin_ood.tuning.grid_scores` per chunk, plus the
classifier's logits from one forward), or at one cell, through the score cache, with progress by
model pass and a deadline after which no new chunk starts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import nn

from odin_ood._utils.progress import PassProgress
from odin_ood.data import ImageDataset
from odin_ood.detector.fingerprint import fingerprint
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.progress import OutOfTime, Progress
from odin_ood.preprocess.model_input import declared_input
from odin_ood.scores.energy import energy_odin_outputs
from odin_ood.scores.odin import odin_outputs
from odin_ood.tuning.grid import grid_scores
from odin_ood.tuning.searches import grid_passes

CHUNK = 1024  # images per progress step
CELL_CHUNK = 512  # images per cached chunk of a one-cell pass (a killed run loses at most this many)
PRECISIONS = ("fp32", "bf16")
# one-cell passes: (logits, scores) of a batch at (T, epsilon); "energy-odin" is beyond the paper
CELL_SCORES = {"odin": odin_outputs, "energy-odin": energy_odin_outputs}


def images_sha256(ds: ImageDataset) -> str:
    return hashlib.sha256(ds.images.numpy().tobytes()).hexdigest()


class _PassLines:
    """Adapts :class:`~odin_ood._utils.progress.PassProgress` updates to a line
    :class:`~odin_ood.experiments.progress.Progress` (computed images); nothing without one."""

    def __init__(self, progress: Progress | None, name: str) -> None:
        self.progress, self.name, self.n, self.total = progress, name, 0.0, None

    def update(self, images: float) -> None:
        self.n += images
        if self.progress is not None:
            self.progress.advance(self.name, images, False)

    def refresh(self) -> None:
        pass


class Scorer:
    """Scores datasets with one model over one grid, through the cache.

    Inputs are pixel images in [0, 1] mapped to the model's space, ``(x - input_mean) /
    input_std``; epsilon is in pixel units (``input_std`` divides the step, as the paper's code).
    """

    def __init__(
        self,
        model: nn.Module,
        temperatures: Sequence[float],
        epsilons: Sequence[float],
        cache: ScoreCache,
        batch_size: int = 128,
        progress: bool = True,
        precision: str = "fp32",
        channels_last: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.deadline: float | None = None  # time.monotonic() after which no new chunk starts
        self.channels_last = channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's overloads omit memory_format
        self.model = model
        self.temperatures = tuple(float(t) for t in temperatures)
        self.epsilons = tuple(float(e) for e in epsilons)
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self.fingerprint = fingerprint(model)
        said = declared_input(model)
        self.input_std = said.std  # divides epsilon
        self.mean = torch.tensor(said.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(said.std, dtype=torch.float32).view(1, -1, 1, 1)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the model's normalised float input (channels-last for conv nets:
        same values, faster CPU kernels, benchmarks/RESULTS.md)."""
        x = (images.float().div_(255.0) - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> torch.autocast:
        """bf16 autocast for ``precision="bf16"`` (scores are still computed in float32)."""
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _key(self, ds: ImageDataset, method: str, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.fingerprint,
            "data": ds.manifest,
            "images_sha256": images_sha256(ds),
            "method": method,
            **extra,
        }

    def _chunks(self, ds: ImageDataset, what: str, passes_per_image: int) -> Iterator[int]:
        """Chunk starts of ``ds``, under a bar in images that advances at every pass of the model
        (:class:`odin_ood._utils.progress.PassProgress`), not once per chunk of the whole grid."""
        meter = PassProgress(len(ds), passes_per_image, f"{what} {ds.name}", self.progress)
        try:
            with meter.watching(self.model):
                for s in range(0, len(ds), CHUNK):
                    yield s
                    meter.settle(min(s + CHUNK, len(ds)))
        finally:
            meter.close()

    @overload
    def grid(
        self, ds: ImageDataset, compute: Literal[True] = ..., temperatures: Sequence[float] | None = ...
    ) -> dict[str, np.ndarray]: ...
    @overload
    def grid(
        self, ds: ImageDataset, compute: bool, temperatures: Sequence[float] | None = ...
    ) -> dict[str, np.ndarray] | None: ...
    def grid(
        self, ds: ImageDataset, compute: bool = True, temperatures: Sequence[float] | None = None
    ) -> dict[str, np.ndarray] | None:
        """{"grid": (T, E, N) float32, "logits": (N, C) float32} for every image of ``ds``
        (``compute=False``: None unless cached); ``temperatures``: only these rows (default: all)."""
        temperatures = self.temperatures if temperatures is None else tuple(float(t) for t in temperatures)
        # fp32 grids keep the key they had before precisions existed, so earlier caches stay valid
        key = self._key(
            ds,
            "odin-grid",
            temperatures=temperatures,
            epsilons=self.epsilons,
            **({} if self.precision == "fp32" else {"precision": self.precision}),
        )
        if not compute:
            return self.cache.peek(key)

        def scored() -> dict[str, np.ndarray]:
            grids, logits = [], []
            # the grid's passes, and one forward more for the logits
            for s in self._chunks(ds, "grid", grid_passes(len(temperatures), self.epsilons) + 1):
                x = self.inputs(ds.images[s : s + CHUNK])
                with self.autocast():
                    grids.append(
                        grid_scores(
                            self.model,
                            x,
                            temperatures,
                            self.epsilons,
                            input_std=self.input_std,
                            batch_size=self.batch_size,
                        ).numpy()
                    )
                    logits.append(self.logits(x))
            return {
                "grid": np.concatenate(grids, axis=-1).astype(np.float32),
                "logits": np.concatenate(logits).astype(np.float32),
            }

        return self.cache.get(key, scored)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> np.ndarray:
        device = next(self.model.parameters()).device
        return torch.cat([self.model(b.to(device)).float().cpu() for b in x.split(self.batch_size)]).numpy()

    def cell(self, ds: ImageDataset, temperature: float, epsilon: float, score: str = "odin") -> np.ndarray:
        """``score`` (ODIN by default) of every image of ``ds`` at one (T, epsilon) (cached)."""
        return self.cell_outputs(ds, temperature, epsilon, score=score)["scores"]

    def cell_key(self, ds: ImageDataset, temperature: float, epsilon: float, score: str = "odin") -> dict[str, Any]:
        """Content-addressed key of a one-cell pass: model fingerprint, image bytes, score, T,
        epsilon and precision (so identical image sets, e.g. box and bilinear 2x downsampling, share it)."""
        if score not in CELL_SCORES:
            raise ValueError(f"score must be one of {tuple(CELL_SCORES)}, got {score!r}")
        return {
            "model": self.fingerprint,
            "images_sha256": images_sha256(ds),
            "n": len(ds),
            "method": f"{score}-outputs",
            "temperature": float(temperature),
            "epsilon": float(epsilon),
            "precision": self.precision,
        }

    def _cell_compute(
        self,
        ds: ImageDataset,
        temperature: float,
        epsilon: float,
        score: str = "odin",
        progress: Progress | None = None,
    ) -> Callable[[int, int], dict[str, np.ndarray]]:
        """``compute(start, stop)`` for one cell; with ``progress``, it advances at every pass of
        every batch (forward or backward), not once per chunk."""
        device = next(self.model.parameters()).device
        outputs = CELL_SCORES[score]
        passes = 3 if epsilon > 0 else 1  # forward with an input graph, backward, forward of x~

        def compute(start: int, stop: int) -> dict[str, np.ndarray]:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise OutOfTime(f"time limit reached before {ds.name} rows {start}:{stop}")
            lines = _PassLines(progress, ds.name)
            logits, scores = [], []
            with PassProgress(None, passes, "", bar=lines).watching(self.model):
                for b in range(start, stop, self.batch_size):
                    x = self.inputs(ds.images[b : min(b + self.batch_size, stop)]).to(device)
                    with self.autocast():
                        z, s = outputs(self.model, x, temperature, epsilon, input_std=self.input_std)
                    logits.append(z.float().cpu())
                    scores.append(s.float().cpu())
            lines.update((stop - start) - lines.n)  # exactly the chunk's rows in all
            return {"scores": torch.cat(scores).numpy(), "logits": torch.cat(logits).numpy()}

        return compute

    @overload
    def cell_outputs(
        self,
        ds: ImageDataset,
        temperature: float,
        epsilon: float,
        progress: Progress | None = ...,
        compute: Literal[True] = ...,
        score: str = ...,
    ) -> dict[str, np.ndarray]: ...
    @overload
    def cell_outputs(
        self,
        ds: ImageDataset,
        temperature: float,
        epsilon: float,
        progress: Progress | None = ...,
        *,
        compute: bool,
        score: str = ...,
    ) -> dict[str, np.ndarray] | None: ...
    def cell_outputs(
        self,
        ds: ImageDataset,
        temperature: float,
        epsilon: float,
        progress: Progress | None = None,
        compute: bool = True,
        score: str = "odin",
    ) -> dict[str, np.ndarray] | None:
        """{"scores": (N,), "logits": (N, C)}: ``score`` (ODIN, or energy with ODIN's perturbation)
        of every image of ``ds`` at one (T, epsilon) and the unperturbed logits from the same pass
        (MSP = max softmax of the logits comes free). Cached per chunk of ``CELL_CHUNK`` images
        (:meth:`cell_key`), so a killed run resumes at its last finished chunk. ``compute=False``:
        None unless cached."""
        fn = self._cell_compute(ds, temperature, epsilon, score, progress) if compute else None

        def cached_chunk(rows: int, cached: bool) -> None:  # a computed chunk advanced pass by pass
            if cached and progress is not None:
                progress.advance(ds.name, rows, True)

        return self.cache.get_chunked(
            self.cell_key(ds, temperature, epsilon, score),
            len(ds),
            CELL_CHUNK,
            fn,
            None if progress is None else cached_chunk,
        )

    def cell_chunk(
        self, ds: ImageDataset, temperature: float, epsilon: float, start: int, progress: Progress | None = None
    ) -> None:
        """Compute (or find cached) one chunk of :meth:`cell_outputs`, for round-robin passes."""
        stop = min(start + CELL_CHUNK, len(ds))
        _, cached = self.cache.chunk(
            self.cell_key(ds, temperature, epsilon),
            start,
            stop,
            self._cell_compute(ds, temperature, epsilon, progress=progress),
        )
        if progress is not None and cached:  # a computed chunk advanced pass by pass
            progress.advance(ds.name, stop - start, True)

    def cell_finished(self, ds: ImageDataset, temperature: float, epsilon: float) -> dict[str, np.ndarray] | None:
        """The rows of :meth:`cell_outputs` finished so far ("rows": their indices in ``ds``), or None."""
        return self.cache.finished(self.cell_key(ds, temperature, epsilon), len(ds), CELL_CHUNK)

    def grid_index(self, temperature: float, epsilon: float) -> tuple[int, int] | None:
        """(i, j) of a cell on the grid (epsilon compared to 1e-12), or None when off the grid."""
        i = [k for k, t in enumerate(self.temperatures) if abs(t - temperature) < 1e-9]
        j = [k for k, e in enumerate(self.epsilons) if abs(e - epsilon) < 1e-12]
        return (i[0], j[0]) if i and j else None

    def msp_index(self) -> tuple[int, int]:
        ij = self.grid_index(1.0, 0.0)
        if ij is None:
            raise ValueError("the grid must contain T=1 and epsilon=0 (the MSP baseline)")
        return ij
