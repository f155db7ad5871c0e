"""Class names of a classifier's outputs, where its source knows them.

A model may carry ``class_names`` (a sequence of strings, one per logit): ``torchvision:`` and
``timm:`` models get their library's ImageNet names (:func:`odin_ood.models.library.library_class_names`),
any other model may set the attribute itself. ``score`` rows and ``serve`` answers then carry
``class_name`` beside ``predicted_class``; without names it is None (the index alone).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def class_names(model: nn.Module) -> tuple[str, ...] | None:
    """``model.class_names`` as a tuple of strings, or None when it is absent, not a sequence of
    strings, or of another length than the model's ``num_classes`` (when that is known)."""
    names = getattr(model, "class_names", None)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return None
    classes = getattr(model, "num_classes", None)
    return tuple(names) if classes is None or len(names) == classes else None


def class_name(names: Sequence[str] | None, index: int) -> str | None:
    """The name of class ``index``; None without names or for an index outside them (-1: no class)."""
    return names[index] if names is not None and 0 <= index < len(names) else None
