"""A report as a list of blocks, rendered to Markdown and to static HTML from the same blocks.

Building the content once keeps ``report.md`` and ``report.html`` identical in substance. Inline
markup is Markdown's ``**bold**`` and ```code``` spans; HTML escapes everything else. Level-2
headings get ids (GitHub's slugs, so a link works in both renderings) and, with ``toc=True``, a
table of contents after the title. :class:`Details` folds its blocks under a one-line summary
(``<details>``, which GitHub's Markdown renders too). Tables sit in a box that scrolls sideways on
a narrow screen instead of widening the page.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


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
    width: int | None = None
    """The PNG's width in pixels: the HTML shows it at most this wide (never enlarged), and
    narrower on a narrow screen, linked to the full-size file."""
    height: int | None = None


@dataclass(frozen=True)
class Details:
    """Blocks folded under a one-line summary (HTML ``<details>``)."""

    summary: str
    blocks: tuple = ()
    open: bool = False


Block = Heading | Para | Bullets | Table | Image | Details
"""What a :class:`Document` and a :class:`Details` hold; the report's sections return lists of them."""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)
    toc: bool = False
    """A table of contents of the level-2 headings after the title."""

    def add(self, *blocks) -> Document:
        self.blocks.extend(blocks)
        return self

    def sections(self) -> list[tuple[str, str]]:
        """(anchor, text) of every level-2 heading, in order, anchors unique."""
        out, seen = [], {}
        for b in self.blocks:
            if isinstance(b, Heading) and b.level == 2:
                out.append((_unique(slug(b.text), seen), b.text))
        return out


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, markup and punctuation dropped, spaces as hyphens."""
    plain = _CODE.sub(r"\1", _BOLD.sub(r"\1", str(text))).lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def _unique(anchor: str, seen: dict[str, int]) -> str:
    n = seen.get(anchor, 0)
    seen[anchor] = n + 1
    return anchor if n == 0 else f"{anchor}-{n}"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_blocks(blocks) -> list[str]:
    out: list[str] = []
    for b in blocks:
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
            out += [f"[![{b.alt}]({b.path})]({b.path})", ""]
        elif isinstance(b, Details):
            # GitHub renders Markdown inside <details> when blank lines surround it
            out += [f"<details{' open' if b.open else ''}><summary>{_inline(b.summary)}</summary>", ""]
            out += _md_blocks(b.blocks)
            out += ["</details>", ""]
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown block {b!r}")
    return out


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    if doc.toc:
        out += [f"- [{text}](#{anchor})" for anchor, text in doc.sections()] + [""]
    out += _md_blocks(doc.blocks)
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escaped text with ``**bold**``, ```code``` spans and ``[links](#anchor)``; nothing inside a code
    span is markup."""
    parts = _CODE.split(str(text))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            out.append(html.escape(part))
    text = _BOLD.sub(r"<strong>\1</strong>", "".join(out))
    return _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', text)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.45; max-width: 1280px;
       margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; overflow-wrap: anywhere; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; background: #f4f4f4;
       padding: 0 0.2em; border-radius: 3px; }
nav.toc { background: #f8f8f8; border: 1px solid #e4e4e4; padding: 0.4em 1em; }
nav.toc ol { margin: 0.3em 0; padding-left: 1.8em; columns: 3 15em; font-size: 0.92em; }
.scroll { overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.82em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.45em; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.nowrap { white-space: nowrap; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
details { border: 1px solid #e4e4e4; border-radius: 4px; margin: 0.3em 0; padding: 0.2em 0.6em; }
details[open] { padding-bottom: 0.6em; }
summary { cursor: pointer; }
"""


def _td(text: str, numeric: bool) -> str:
    """A cell; a short figure never breaks across lines (a long one with words may)."""
    cls = (["num"] if numeric else []) + (["nowrap"] if len(str(text)) <= 18 else [])
    return (f'<td class="{" ".join(cls)}">' if cls else "<td>") + f"{_inline(text)}</td>"


def _html_blocks(blocks, seen: dict[str, int]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 2), 6)
            anchor = f' id="{html.escape(_unique(slug(b.text), seen), quote=True)}"' if level == 2 else ""
            out.append(f"<h{level}{anchor}>{_inline(b.text)}</h{level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append('<div class="scroll"><table><thead><tr>'
                       + "".join(f"<th>{_inline(h)}</th>" for h in b.header) + "</tr></thead><tbody>")
            for row in b.rows:
                out.append("<tr>" + "".join(_td(c, i in b.numeric) for i, c in enumerate(row)) + "</tr>")
            out.append("</tbody></table></div>")
        elif isinstance(b, Image):
            src = html.escape(b.path, quote=True)
            size = (f' width="{b.width}"' if b.width else "") + (f' height="{b.height}"' if b.height else "")
            out.append(f'<figure><a href="{src}"><img src="{src}"{size} loading="lazy" '
                       f'alt="{html.escape(b.alt, quote=True)}"></a>'
                       f"<figcaption>{_inline(b.alt)} (click for full size)</figcaption></figure>")
        elif isinstance(b, Details):
            out.append(f"<details{' open' if b.open else ''}><summary>{_inline(b.summary)}</summary>")
            out += _html_blocks(b.blocks, seen)
            out.append("</details>")
        else:  # pragma: no cover
            raise TypeError(f"unknown block {b!r}")
    return out


def to_html(doc: Document) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(doc.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{_inline(doc.title)}</h1>"]
    if doc.toc:
        out.append('<nav class="toc"><strong>Contents</strong><ol>'
                   + "".join(f'<li><a href="#{html.escape(a, quote=True)}">{_inline(t)}</a></li>'
                             for a, t in doc.sections()) + "</ol></nav>")
    out += _html_blocks(doc.blocks, {})
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
