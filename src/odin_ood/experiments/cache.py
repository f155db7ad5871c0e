"""On-disk cache of computed scores, so re-rendering a report or adding a figure never recomputes.

An entry is one ``.npz`` of named float arrays plus a ``key`` array holding the JSON of the key
it was computed for. The file name hashes that key: (model fingerprint, dataset manifest and
image checksum, T grid, epsilon grid, method, library version). Entries are read with
``allow_pickle=False`` and written atomically (temporary file in the same folder, then
``os.replace``); a damaged entry, or one whose stored key differs from the requested key, is
recomputed. Default folder: ``<dataset cache folder>/scores`` (``$ODIN_OOD_CACHE`` or
``~/.cache/odin-ood``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from odin_ood._utils.files import replacing
from odin_ood._version import __version__
from odin_ood.data.cache import cache_folder


def default_folder() -> Path:
    return cache_folder() / "scores"


def key_json(key: dict[str, Any]) -> str:
    """Canonical JSON of a key (sorted, library version included)."""
    return json.dumps({"odin_ood": __version__, **key}, sort_keys=True, default=str)


def entry_path(folder: str | os.PathLike, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(key_json(key).encode()).hexdigest()[:24]
    return Path(folder) / f"{key.get('method', 'scores')}-{digest}.npz"


def write_entry(path: str | os.PathLike, key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and the key's JSON to ``path`` atomically."""
    with replacing(path) as f:
        entries: dict[str, Any] = {"key": np.array(key_json(key)), **{k: np.asarray(v) for k, v in arrays.items()}}
        np.savez(f, **entries)


def read_entry(path: str | os.PathLike, key: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` for ``key``; None when absent, damaged or for another key."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key_json(key):
                warnings.warn(f"{path}: cache entry holds another key; recomputing", stacklevel=2)
                return None
            return {name: z[name] for name in z.files if name != "key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{path}: damaged cache entry ({exc}); recomputing", stacklevel=2)
        return None


class ScoreCache:
    """``get(key, compute)``: the cached arrays for ``key``, computing and storing them on a miss.

    ``enabled=False`` (``--no-cache``) always computes and overwrites the entry. ``hits`` and
    ``misses`` count lookups, for the report's provenance.
    """

    def __init__(self, folder: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def get(self, key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        path = entry_path(self.folder, key)
        found = read_entry(path, key) if self.enabled else None
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        arrays = compute()
        write_entry(path, key, arrays)
        return arrays

    def peek(self, key: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """The cached arrays for ``key``, or None; computes nothing."""
        return read_entry(entry_path(self.folder, key), key) if self.enabled else None

    def chunk(
        self, key: dict[str, Any], start: int, stop: int, compute: Callable[[int, int], dict[str, np.ndarray]] | None
    ) -> tuple[dict[str, np.ndarray] | None, bool]:
        """(arrays, cached) of rows ``start:stop`` of a chunked entry (key plus ``"rows"``): read
        from the cache, else computed and stored (``compute=None``: look only, (None, False) on a
        miss). Finished chunks survive a killed run, which resumes at the first missing one."""
        whole = self.peek(key)
        if whole is not None:  # already joined: the chunk entries are gone
            return {name: v[start:stop] for name, v in whole.items()}, True
        ckey = {**key, "rows": [int(start), int(stop)]}
        path = entry_path(self.folder, ckey)
        found = read_entry(path, ckey) if self.enabled else None
        if found is not None or compute is None:
            return found, found is not None
        arrays = compute(start, stop)
        write_entry(path, ckey, arrays)
        return arrays, False

    def get_chunked(
        self,
        key: dict[str, Any],
        n: int,
        chunk: int,
        compute: Callable[[int, int], dict[str, np.ndarray]] | None,
        progress: Callable[[int, bool], None] | None = None,
    ) -> dict[str, np.ndarray] | None:
        """Like :meth:`get` for arrays whose first axis has ``n`` rows computed ``chunk`` rows at a
        time by ``compute(start, stop)``, each chunk stored as it finishes (:meth:`chunk`). When
        every chunk exists they are joined into the whole entry and the chunk entries removed.
        ``compute=None`` only looks: None unless the whole entry or every chunk exists.
        ``progress(rows, cached)`` is called after each chunk."""
        path = entry_path(self.folder, key)
        found = read_entry(path, key) if self.enabled else None
        if found is not None:
            self.hits += 1
            if progress is not None:
                progress(n, True)
            return found
        parts = []
        for start in range(0, n, chunk):
            part, cached = self.chunk(key, start, min(start + chunk, n), compute)
            if part is None:
                return None
            parts.append(part)
            if progress is not None:
                progress(min(start + chunk, n) - start, cached)
        self.misses += 1
        arrays = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        write_entry(path, key, arrays)
        for start in range(0, n, chunk):
            entry_path(self.folder, {**key, "rows": [start, min(start + chunk, n)]}).unlink(missing_ok=True)
        return arrays

    def finished(self, key: dict[str, Any], n: int, chunk: int) -> dict[str, np.ndarray] | None:
        """The rows finished so far of a chunked entry: the whole entry, else every stored chunk
        joined in row order, with their row indices under ``"rows"`` (None when no chunk exists).
        Chunks may come from several workers, so the finished rows need not be a prefix."""
        whole = read_entry(entry_path(self.folder, key), key) if self.enabled else None
        if whole is not None:
            return {**whole, "rows": np.arange(n)}
        parts = []
        for start in range(0, n, chunk):
            part, _ = self.chunk(key, start, min(start + chunk, n), None)
            if part is not None:
                parts.append({**part, "rows": np.arange(start, min(start + chunk, n))})
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else None
