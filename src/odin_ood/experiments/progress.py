"""Line-based progress with an ETA, readable in a log file (``nohup ... > log``).

A long suite prints one line per step at most every ``every`` seconds::

    [paper T=1000 eps=0.0014] tinyimagenet-crop 3072/10000 img (1024 cached) 18.4 img/s, ETA 0:06:16

The rate counts only images computed in this process (cached chunks do not inflate it), so a
resumed run's ETA is honest from its first computed chunk.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO


class OutOfTime(Exception):
    """Raised before computing a chunk once the scorer's ``deadline`` has passed (the run then
    writes what is finished, marked incomplete)."""


def eta_text(seconds: float) -> str:
    return str(timedelta(seconds=int(max(seconds, 0.0))))


class Progress:
    """Progress over ``total`` images of a stage, updated per finished chunk."""

    def __init__(
        self, label: str, total: int, enabled: bool = True, every: float = 15.0, stream: TextIO | None = None
    ) -> None:
        self.label, self.total, self.enabled, self.every = label, int(total), enabled, every
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.cached = self.computed = 0.0  # images: computed ones arrive in fractions
        self.started = time.perf_counter()
        self.last = -float("inf")

    def rate(self) -> float:
        dt = time.perf_counter() - self.started
        return self.computed / dt if dt > 0 and self.computed else 0.0

    def advance(self, name: str, images: float, cached: bool) -> None:
        """``images`` more done (``cached``: read from the cache, not computed; computed work may
        arrive in fractions of an image, one model pass at a time)."""
        self.done += images
        if cached:
            self.cached += images
        else:
            self.computed += images
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.every or self.done >= self.total - 1e-6):
            self.last = now
            rate = self.rate()
            eta = eta_text((self.total - self.done) / rate) if rate else "?"
            print(
                f"[{self.label}] {name} {self.done:.0f}/{self.total} img ({self.cached:.0f} cached) "
                f"{rate:.1f} img/s, ETA {eta}",
                file=self.stream,
                flush=True,
            )
