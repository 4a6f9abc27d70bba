"""A report as a list of blocks, rendered to Markdown and to static HTML from the same blocks.

Building the content once keeps ``report.md`` and ``report.html`` identical in substance. Inline
markup is Markdown's ``**bold**`` only; HTML escapes everything else.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_BOLD = re.compile(r"\*\*(.+?)\*\*")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[int, ...] = ()
    """Columns aligned right."""


@dataclass(frozen=True)
class Image:
    path: str
    """Relative to the report's directory."""
    alt: str


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Document:
        self.blocks.extend(blocks)
        return self


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join("---:" if i in b.numeric else "---" for i in range(len(b.header))) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Image):
            out += [f"![{b.alt}]({b.path})", ""]
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown block {b!r}")
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(str(text)))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def to_html(doc: Document) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 2), 6)
            out.append(f"<h{level}>{_inline(b.text)}</h{level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.header) + "</tr></thead><tbody>")
            for row in b.rows:
                out.append("<tr>" + "".join(f'<td class="num">{_inline(c)}</td>' if i in b.numeric else f"<td>{_inline(c)}</td>"
                                            for i, c in enumerate(row)) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(b, Image):
            out.append(f'<figure><img src="{html.escape(b.path, quote=True)}" alt="{html.escape(b.alt, quote=True)}">'
                       f"<figcaption>{html.escape(b.alt)}</figcaption></figure>")
        else:  # pragma: no cover
            raise TypeError(f"unknown block {b!r}")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
