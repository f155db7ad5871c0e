"""The images to score, in one deterministic order, addressable by index.

An input argument is an image folder (every image file below it, sorted by relative POSIX
path), a ``.zip`` (its image members, sorted) or a dataset name known to ``odin_ood.data``
(``mnist`` or ``mnist:train``; images in the dataset's order). Arguments are concatenated in
the order given. Only the file listing is held in memory; images are read one at a time.

``source(i)`` names image i (``folder/a/b.png``, ``archive.zip!a/b.png``, ``mnist:test/17``);
``load(i)`` returns its decoded pixels. Members of a zip are read from the archive, never
extracted, so no name inside it can reach a path outside it.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from odin_ood.serving.preprocess import InputSpec, decode


class _Files:
    def __init__(self, path: Path) -> None:
        from odin_ood.data.images import ImageSource

        self.source = ImageSource(path)
        self.members = self.source.images()
        sep = "!" if path.is_file() else "/"
        self.prefix = f"{path}{sep}"
        if not self.members:
            raise ValueError(f"input {path}: no image files found")

    def __len__(self) -> int:
        return len(self.members)

    def name(self, i: int) -> str:
        return self.prefix + self.members[i]

    def load(self, i: int, spec: InputSpec) -> Image.Image | np.ndarray:
        blob = self.source.read(self.members[i])  # an unreadable file stops the run (ValueError)
        return decode(blob, spec, self.name(i))


class _Dataset:
    def __init__(self, name: str, split: str, root: str | None) -> None:
        from odin_ood import data

        self.dataset = data.load(name, root=root, split=split)
        self.prefix = f"{name}:{split}/"

    def __len__(self) -> int:
        return len(self.dataset)

    def name(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def load(self, i: int, spec: InputSpec) -> np.ndarray:
        return self.dataset.images[i].permute(1, 2, 0).numpy()


class Inputs:
    """The concatenation of input folders, zips and datasets (see the module docstring)."""

    def __init__(self, arguments: Sequence[str | os.PathLike], data_root: str | None = None) -> None:
        if not arguments:
            raise ValueError("no INPUT given: pass image folders, zips or dataset names")
        self.parts = [_part(str(a), data_root) for a in arguments]
        self.starts = [0]
        for p in self.parts:
            self.starts.append(self.starts[-1] + len(p))

    def __len__(self) -> int:
        return self.starts[-1]

    def _locate(self, i: int) -> tuple[_Files | _Dataset, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"input index {i} out of range 0..{len(self) - 1}")
        k = bisect.bisect_right(self.starts, i) - 1
        return self.parts[k], i - self.starts[k]

    def source(self, i: int) -> str:
        part, j = self._locate(i)
        return part.name(j)

    def load(self, i: int, spec: InputSpec) -> Image.Image | np.ndarray:
        """The pixels of image i; an undecodable image raises ``InputError`` naming it."""
        part, j = self._locate(i)
        return part.load(j, spec)


def _part(argument: str, data_root: str | None) -> _Files | _Dataset:
    path = Path(argument)
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
        return _Files(path)
    from odin_ood import data

    name, _, split = argument.partition(":")
    if name in data.names():
        return _Dataset(name, split or "test", data_root)
    if path.exists():
        raise ValueError(f"input {argument}: not a folder or a .zip archive")
    raise ValueError(f"input {argument}: no such folder or zip, and not a dataset name ({', '.join(data.names())})")
