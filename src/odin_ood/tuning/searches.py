"""The T x epsilon grid as the searches see it: one :data:`Cell` type, the searches by name, the
grid's cost in passes per tuning image.

Cost is counted in passes per image, forwards and backwards alike. The paper's grid (section 4.4)
costs 1 + |T| (1 + |E+|): one forward with an input graph, one input-only backward per
temperature and one forward per cell with epsilon > 0 (E+): 211 on the 10 x 21 grid.
"""

from __future__ import annotations

from collections.abc import Sequence

Cell = tuple[int, int]
"""A cell of the grid by its indices: (row of the temperature, column of the epsilon)."""

SEARCHES: dict[str, str] = {
    "grid": "the paper's (section 4.4): every cell on every tuning image (odin_ood.tuning.grid)",
    "shared": "one backward shared across temperatures, the best cells verified exactly: <= 20 passes per image "
    "instead of 211 (odin_ood.tuning.shared)",
    "halving": "successive halving: the cells that can win, on growing subsets of the tuning images "
    "(odin_ood.tuning.halving; needs the images by index)",
}
"""Every way the grid is searched, one meaning per name."""
TUNE_SEARCHES: tuple[str, ...] = ("shared", "grid")  # tune, Detector.fit and odin-ood fit, on any data
REPRODUCE_SEARCHES: tuple[str, ...] = ("grid", "halving")  # odin-ood reproduce, on a suite's cached grid
DEFAULT_SEARCH = "shared"  # Detector.fit and odin-ood fit; odin_ood.tune keeps the grid
REPRODUCE_DEFAULT_SEARCH = "grid"  # halving did not always pick the grid's cell on ResNet-20 (benchmarks/RESULTS.md)


def check_search(search: str, among: Sequence[str] = TUNE_SEARCHES) -> str:
    """``search`` if it is one of ``among`` (names of :data:`SEARCHES`), else a ``ValueError``."""
    if not isinstance(search, str) or search not in among:
        raise ValueError(f"search must be one of {tuple(among)}, got {search!r}")
    return search


def grid_passes(n_temperatures: int, epsilons: Sequence[float]) -> int:
    """Passes per image of the full grid: 1 + |T| (1 + |E+|), or 1 when no epsilon is positive."""
    positive = sum(e > 0 for e in epsilons)
    return 1 + n_temperatures * (1 + positive) if positive else 1
