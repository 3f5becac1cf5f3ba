"""Small, safe HTML for ``lossatlas report`` and the probes' ``report_html``.

:func:`html_table` writes an escaped table (what a probe's own report section is
usually made of); :func:`check_fragment` is how the report decides that a probe's
fragment can go into the page: balanced tags, no script, nothing fetched from
elsewhere, so the report stays one self-contained file.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from typing import Any

__all__ = ["check_fragment", "esc", "html_table"]

#: Elements a fragment may not hold (they run code, fetch or restructure the page).
FORBIDDEN = {"script", "iframe", "object", "embed", "link", "meta", "base", "form", "style"}
#: Elements without an end tag.
VOID = {"area", "br", "col", "hr", "img", "input", "source", "track", "wbr"}
_LOCAL = re.compile(r"^\s*(#|data:)", re.IGNORECASE)


def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    return esc(value)


def html_table(
    rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, caption: str = ""
) -> str:
    """An escaped ``<table>`` of ``rows`` (floats to 4 significant digits) under
    ``header``, with an optional caption."""
    out = ['<table class="probe-table">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    if header:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN:
            self.problems.append(f"<{tag}> is not allowed")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler attribute '{name}' on <{tag}>")
            if name in ("src", "href", "srcset", "action", "formaction", "xlink:href") and (
                value is None or not _LOCAL.match(value)
            ):
                self.problems.append(
                    f"<{tag} {name}={value!r}> points outside the page (only '#' anchors and "
                    "data: URIs keep the report self-contained)"
                )
            if name == "style" and value and "url(" in value.lower():
                self.problems.append(f"a style with url() on <{tag}>")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes nothing open")
            return
        self.stack.pop()


def check_fragment(fragment: str) -> list[str]:
    """What keeps ``fragment`` out of a self-contained page (empty: it may go in):
    forbidden elements, event handlers, links and images from elsewhere, tags left
    open or closed out of order."""
    checker = _Checker()
    checker.feed(fragment)
    checker.close()
    problems = list(checker.problems)
    if checker.stack:
        problems.append("unclosed " + ", ".join(f"<{t}>" for t in checker.stack))
    return problems
