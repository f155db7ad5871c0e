"""Progress that moves at every pass of a sub-batch: forward and backward hooks on the model.

Tuning on the paper's grid costs ~211 passes per image, so a bar that waits for a batch to
finish the whole grid can sit still for minutes. :class:`PassProgress` counts work instead:
while :meth:`PassProgress.watching` a model, every forward of ``r`` rows, and every backward
through that forward's output (one per temperature's input gradient), advances a ``tqdm`` bar by
``r / passes_per_image`` images. The bar keeps images as its unit, so its rate and ETA are in
images; :meth:`PassProgress.settle` then sets it to the exact count (a model whose hooks cannot
be set, a TorchScript module, advances only there).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from tqdm import tqdm


class PassProgress:
    """A bar over ``total`` images costing ``passes_per_image`` passes each (``bar``: any object
    with tqdm's ``update``/``refresh``/``n``; by default a new tqdm on stderr, off when not
    ``enabled``)."""

    def __init__(
        self, total: float | None, passes_per_image: float, desc: str, enabled: bool = True, bar: Any = None
    ) -> None:
        self.passes_per_image = max(float(passes_per_image), 1.0)
        self.bar = (
            bar
            if bar is not None
            else tqdm(
                total=total,
                desc=desc,
                unit="img",
                file=sys.stderr,
                disable=not enabled,
                leave=False,
                bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]",
            )
        )

    def _add(self, rows: int) -> None:
        left = max(self.bar.total - self.bar.n, 0.0) if self.bar.total is not None else float("inf")
        self.bar.update(min(rows / self.passes_per_image, left))  # a plan's worst case may overcount

    @contextmanager
    def watching(self, model: nn.Module) -> Iterator[PassProgress]:
        """Advance at each forward of ``model`` and each backward through its outputs."""

        def forward_hook(module: nn.Module, args: tuple, output: Any) -> None:
            rows = len(args[0]) if args and isinstance(args[0], Tensor) else 0
            self._add(rows)
            if isinstance(output, Tensor) and output.requires_grad:
                output.register_hook(lambda grad: self._add(rows))

        try:
            handle = model.register_forward_hook(forward_hook)
        except (RuntimeError, AttributeError):  # TorchScript modules take no hooks
            handle = None
        try:
            yield self
        finally:
            if handle is not None:
                handle.remove()

    def settle(self, images: float) -> None:
        """Set the bar to exactly ``images`` done."""
        self.bar.update(images - self.bar.n)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
