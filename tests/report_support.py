"""Reading the numbers back out of a rendered report: every ``<td data-key="...">`` cell's own
text (text inside nested ``<span>`` elements, such as bootstrap intervals, is left out)."""

from __future__ import annotations

from html.parser import HTMLParser


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self._key: str | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        key = dict(attrs).get("data-key")
        if tag == "td" and key:
            self._key, self.cells[key] = key, ""
        elif tag == "span" and self._key:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None
        elif tag == "span" and self._key:
            self._depth -= 1

    def handle_data(self, data):
        if self._key and self._depth == 0:
            self.cells[self._key] += data
