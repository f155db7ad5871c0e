"""Work on the next groups done in background threads while the caller uses the current one.

``odin-ood score`` decodes batch k+1 (file reads, PNG/JPEG decoding, resizing: mostly C code
that releases the GIL) in a thread pool while batch k is scored, so decoding overlaps the
model's arithmetic instead of adding to it. The look-ahead is bounded: at most ``depth`` groups
are submitted beyond the one handed to the caller, so at most ``depth + 1`` groups' results
exist at once (the caller counts them against its memory budget). Results come in order, each
group exactly as ``[fn(x) for x in group]`` would give it, and an exception raised by ``fn``
reaches the caller when it asks for that group (with its type and message), as it would
without the look-ahead; work not yet started is cancelled when the caller stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def map_ahead(
    fn: Callable[[T], U], groups: Iterable[Sequence[T]], pool: Executor | None, depth: int
) -> Generator[list[U], None, None]:
    """``[fn(x) for x in group]`` for each of ``groups`` in order, computed in ``pool`` (each
    ``x`` a task: one group runs on all its threads), with the ``depth`` groups after the one
    yielded submitted before it is yielded. ``depth = 0`` or no ``pool``: each group is computed
    when it is asked for, in the caller's thread without a pool."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if pool is None:
        yield from ([fn(x) for x in group] for group in groups)
        return
    todo = iter(groups)
    pending: deque[list[Future[U]]] = deque()

    def submit() -> bool:
        group = next(todo, None)
        if group is None:
            return False
        pending.append([pool.submit(fn, x) for x in group])
        return True

    current: list[Future[U]] = []
    try:
        while True:
            while len(pending) <= depth and submit():  # the group to yield, and depth after it
                pass
            if not pending:
                return
            current = pending.popleft()
            yield [f.result() for f in current]
    finally:  # the caller stopped (done, an error, an interrupt): drop what has not started
        for f in (*current, *(f for group in pending for f in group)):
            f.cancel()
