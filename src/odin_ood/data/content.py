"""Image identity by content: the sha256 of an image's decoded pixels (and shape), so that two
files holding the same picture count as one image wherever sets are split or de-duplicated."""

from __future__ import annotations

import hashlib

import numpy as np


def content_hashes(images: np.ndarray) -> list[str]:
    """The sha256 hex digest of each image's pixel bytes and shape (first axis = images)."""
    return [hashlib.sha256(repr(im.shape).encode() + np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]


def unique_by_content(images: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of every distinct image."""
    seen: dict[str, int] = {}
    for i, h in enumerate(content_hashes(images)):
        seen.setdefault(h, i)
    return np.array(sorted(seen.values()), dtype=np.int64)
