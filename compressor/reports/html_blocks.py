"""Building blocks of the HTML report: tables, embedded images, number formats, the page around the sections."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import Any

Section = tuple[str, str]  # (title, HTML body)

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 7px}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.front td{background:#fff3f0}
tr.chosen td{background:#e7f6e7;font-weight:600}img{max-width:100%;margin:6px 8px 6px 0}.err{color:#b00}
.note{color:#555}.grid{display:flex;flex-wrap:wrap}"""


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(header: list[str], rows: list[list[Any]], row_attrs: list[str] | None = None) -> str:
    """Numbers right-aligned; ``row_attrs`` adds e.g. ' class="front" data-artifact="int8"' per row."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="n">{html.escape(str(c))}</td>' if _numeric(c) else f"<td>{html.escape(str(c))}</td>"
            for c in row
        )
        body.append(f"<tr{row_attrs[i] if row_attrs else ''}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _numeric(c: Any) -> bool:
    s = str(c).strip().replace("%", "").replace("+", "").replace("−", "-").split(" ")[0]
    try:
        float(s)
        return True
    except ValueError:
        return False


def pct(v: float | None) -> str:
    return "" if v is None else f"{v:.2%}"


def kb(n: float | None) -> str:
    return "" if n is None else f"{n / 1024:.1f} KB"


def ms(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def guarded(what: str, build: Callable[[], list[Section]]) -> list[Section]:
    try:
        return build()
    except Exception as e:  # a plot bug must not cost the run its report: show it, keep the rest
        return [
            (
                f"{what}: section failed",
                f'<p class="err">{html.escape(type(e).__name__)}: {html.escape(str(e)[:300])}</p>',
            )
        ]


def page(title: str, sources: list[str], sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#s{i}">{html.escape(t)}</a></li>' for i, (t, _) in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{html.escape(t)}</h2>\n{b}\n' for i, (t, b) in enumerate(sections))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="note">from {", ".join(html.escape(s) for s in sources)}</p><ul>{toc}</ul>\n{body}</body></html>\n'
    )
