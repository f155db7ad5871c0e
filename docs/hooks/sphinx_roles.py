"""A griffe extension for the API reference: the docstrings are written with Sphinx roles
(:func:`odin_ood.tune`, :mod:`~odin_ood.scores.odin`), which Markdown would print as they are.
Each role becomes a code span of the name it shows (``~`` keeps the last component, as Sphinx
does); the docstrings themselves stay unchanged."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|mod|class|data|meth|attr|exc|obj):`(~?)([^`]+)`")


def markdown_roles(text: str) -> str:
    """``:func:`~a.b.c``` -> ```c```, ``:mod:`a.b``` -> ```a.b```, ``:mod:`.b``` -> ```b```."""
    def name(m: re.Match) -> str:
        target = m.group(2).lstrip(".")
        return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"

    return ROLE.sub(name, text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_roles(obj.docstring.value)
