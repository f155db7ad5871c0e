"""mkdocs hook: the maths of the pages as MathML, which browsers draw natively, so the site needs
no script and no network (MathJax and KaTeX would load from a CDN or be vendored).

A display equation is a paragraph of its own between ``$$`` lines; inline maths is ``\\( ... \\)``.
Code blocks are left alone. A formula latex2mathml cannot convert fails the build with its text."""

from __future__ import annotations

import re

from latex2mathml.converter import convert

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
DISPLAY = re.compile(r"^\$\$\n(.+?)\n\$\$[ \t]*$", re.S | re.M)
INLINE = re.compile(r"\\\((.+?)\\\)")


def to_mathml(latex: str, display: str) -> str:
    try:
        return convert(latex.strip(), display=display)
    except Exception as exc:  # latex2mathml raises its own exception types, one per fault
        raise ValueError(f"maths the hook cannot convert: {latex.strip()!r} ({exc})") from exc


def convert_text(text: str) -> str:
    text = DISPLAY.sub(lambda m: '<div class="maths">' + to_mathml(m.group(1), "block") + "</div>", text)
    # in a span: a line that starts with <math> would otherwise end the paragraph (a block-level tag)
    return INLINE.sub(lambda m: "<span>" + to_mathml(m.group(1), "inline") + "</span>", text)


def on_page_markdown(markdown: str, **kwargs) -> str:
    out, last = [], 0
    for fence in FENCE.finditer(markdown):
        out += [convert_text(markdown[last:fence.start()]), fence.group(0)]
        last = fence.end()
    return "".join(out) + convert_text(markdown[last:])
