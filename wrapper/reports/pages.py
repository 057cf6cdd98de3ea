"""Documents as a few blocks, rendered twice: self-contained HTML and Markdown with image files.

Reports build a list of blocks once; `to_html` embeds every image (readable offline) and
`to_markdown` links to the image files that `write_images` saves next to it.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wrapper.errors import RunError
from wrapper.files import write_atomic


@dataclass(frozen=True)
class Cell:
    """Table or list text; `level` colours it (ok, warn, bad, info, n/a), `sub` is a smaller second line,
    `href` makes it a link to a file next to the document, `check` puts a checkbox carrying that value
    before it (HTML only, for a page's script)."""

    text: str
    level: str | None = None
    sub: str | None = None
    href: str | None = None
    check: str | None = None


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str
    level: str | None = None  # a coloured banner when set


@dataclass(frozen=True)
class Items:
    items: Sequence[Cell | str]


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell | str]]


@dataclass(frozen=True)
class Link:
    """A paragraph that is a link to a file next to the document."""

    href: str
    text: str


@dataclass(frozen=True)
class Image:
    """An image saved as `name` (relative to the document) and embedded in the HTML."""

    name: str
    data: bytes
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Fold:
    """A collapsible group in HTML (open when `open`); a sub-section in Markdown."""

    summary: str
    blocks: Sequence = field(default_factory=list)
    open: bool = False


@dataclass(frozen=True)
class Code:
    """Preformatted text; `id` names it for a page's script."""

    text: str
    id: str = ""


Block = Heading | Para | Items | Table | Image | Link | Fold | Code

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0;
background:#f6f6f8}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:32px 0 10px;border-bottom:1px solid #e3e3e8;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #dcdce2;padding:5px 9px;text-align:left;vertical-align:top}
th{background:#f0f0f4}.sub{color:#6b6b76;font-size:12px;margin-left:8px}
td .sub{display:block;margin:2px 0 0}
.ok{color:#137333;font-weight:600}.warn{color:#a35c00;font-weight:600}.bad{color:#c5221f;font-weight:600}
.na{color:#80808a}.info{color:#1d1d1f}
.banner{padding:8px 12px;border-radius:6px;background:#eef3fd;border:1px solid #c6d5f5}
.banner.warn{background:#fff5e0;border-color:#f0cf8a;color:#6b4200;font-weight:normal}
.banner.bad{background:#fdecea;border-color:#f3b8b3;color:#7a1410;font-weight:normal}
figure{margin:8px 0 20px}figure img{max-width:100%;border:1px solid #e3e3e8}
figcaption{color:#6b6b76;font-size:13px;margin-top:4px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
ul{margin:6px 0 12px;padding-left:22px}.meta{color:#6b6b76;margin:0 0 12px}
pre{background:#f0f0f4;padding:8px 12px;border-radius:6px;white-space:pre-wrap;word-break:break-all}
"""


def _cell_html(cell: Cell | str) -> str:
    if isinstance(cell, str):
        return html.escape(cell)
    cls = f' class="{cell.level.replace("/", "")}"' if cell.level else ""
    sub = f'<span class="sub">{html.escape(cell.sub)}</span>' if cell.sub else ""
    text = f"<span{cls}>{html.escape(cell.text)}</span>"
    box = f'<input type="checkbox" value="{html.escape(cell.check)}"> ' if cell.check is not None else ""
    return box + (f'<a href="{html.escape(cell.href)}">{text}</a>' if cell.href else text) + sub


def _block_html(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        cls = f' class="banner {block.level}"' if block.level else ""
        return f"<p{cls}>{html.escape(block.text)}</p>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{_cell_html(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Link):
        return f'<p><a href="{html.escape(block.href)}">{html.escape(block.text)}</a></p>'
    if isinstance(block, Code):
        name = f' id="{html.escape(block.id)}"' if block.id else ""
        return f"<pre{name}>{html.escape(block.text)}</pre>"
    if isinstance(block, Image):
        mime = "image/jpeg" if block.name.endswith((".jpg", ".jpeg")) else "image/png"
        data = base64.b64encode(block.data).decode()
        caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img alt="{html.escape(block.alt)}" src="data:{mime};base64,{data}">{caption}</figure>'
    inner = "\n".join(_block_html(b) for b in block.blocks)
    summary = f"<summary>{html.escape(block.summary)}</summary>"
    return f"<details{' open' if block.open else ''}>{summary}{inner}</details>"


def to_html(title: str, blocks: Sequence[Block], subtitle: str = "", script: str = "") -> str:
    """A self-contained page: inline CSS, images as data URIs, no network; no script but `script`,
    inline at the end of the body."""
    meta = f'<p class="meta">{html.escape(subtitle)}</p>' if subtitle else ""
    body = "\n".join(_block_html(b) for b in blocks)
    if "</" in script:
        raise ValueError("an inline script must not contain '</'")
    body += f"\n<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main><h1>{html.escape(title)}</h1>{meta}\n{body}\n</main></body></html>\n"
    )


def _md_escape(text: str) -> str:
    return " ".join(text.replace("\\", "\\\\").replace("|", "\\|").splitlines())


def _cell_md(cell: Cell | str) -> str:
    if isinstance(cell, str):
        return _md_escape(cell)
    text = _md_escape(cell.text)
    if cell.level in ("warn", "bad"):
        text = f"**{text}**"
    if cell.href:
        text = f"[{text}]({cell.href})"
    return f"{text}<br>_{_md_escape(cell.sub)}_" if cell.sub else text


def _block_md(block: Block, depth: int = 0) -> str:
    if isinstance(block, Heading):
        return "#" * min(6, block.level + depth) + " " + block.text
    if isinstance(block, Para):
        return (
            f"> **{block.text}**"
            if block.level in ("warn", "bad")
            else (f"> {block.text}" if block.level else block.text)
        )
    if isinstance(block, Items):
        return "\n".join(f"- {_cell_md(i)}" for i in block.items)
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_escape(h) for h in block.headers) + " |"]
        lines.append("|" + "---|" * len(block.headers))
        lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Link):
        return f"[{_md_escape(block.text)}]({block.href})"
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    if isinstance(block, Image):
        text = f"![{block.alt}]({block.name})"
        return f"{text}\n\n_{block.caption}_" if block.caption else text
    inner = "\n\n".join(_block_md(b, depth + 1) for b in block.blocks)
    return f"{'#' * min(6, 3 + depth)} {block.summary}\n\n{inner}"


def to_markdown(title: str, blocks: Sequence[Block], subtitle: str = "") -> str:
    """The same document as Markdown; images are links to the files `write_images` saves."""
    parts = [f"# {title}"] + ([subtitle] if subtitle else []) + [_block_md(b) for b in blocks]
    return "\n\n".join(parts) + "\n"


def images(blocks: Sequence[Block]) -> list[Image]:
    """Every Image in `blocks`, folds included."""
    found: list[Image] = []
    for block in blocks:
        if isinstance(block, Image):
            found.append(block)
        elif isinstance(block, Fold):
            found += images(block.blocks)
    return found


def _unwritable(path: Path) -> str | None:
    """Why `path` cannot be written as a file of the document, or None."""
    if path.is_symlink():
        return f"{path} is a symbolic link; reports never write through links (remove it)"
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if path.exists():
        try:
            with open(path, "r+b"):  # opens for writing without changing it
                pass
        except OSError as exc:
            return f"cannot write {path}: {exc.strerror or exc}"
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        return f"cannot create files in {path.parent}: permission denied"
    return None


def check_writable(folder: Path, paths: Sequence[Path]) -> None:
    """Raise a RunError naming the first of `paths` (in `folder`) that cannot be written, or its folder."""
    for directory in sorted({p.parent for p in paths} - {folder}):
        if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
            kind = "a symbolic link" if directory.is_symlink() else "a file"
            raise RunError(f"{directory} is {kind}, not a folder: the document's images go there "
                           "(move it away; nothing was written)")
    for path in paths:
        if path.parent.is_dir() and (why := _unwritable(path)):
            raise RunError(f"{why} (nothing was written)")
    if not os.access(folder, os.W_OK | os.X_OK) and any(not p.parent.exists() for p in paths):
        raise RunError(f"cannot create folders in {folder}: permission denied (nothing was written)")


def document_paths(folder: Path, stem: str, blocks: Sequence[Block]) -> list[Path]:
    """The files `write_document` writes: `<stem>.html`, `<stem>.md`, then every image."""
    return [folder / f"{stem}.html", folder / f"{stem}.md", *(folder / image.name for image in images(blocks))]


def write_document(folder: Path, stem: str, title: str, blocks: Sequence[Block], subtitle: str = "") -> list[Path]:
    """Write `<stem>.html`, `<stem>.md` and every image into `folder`; return the paths.

    Every file is checked first (not a link, not a folder, writable), so a refusal writes nothing; each is
    replaced atomically, so a report killed while writing leaves the previous one whole.
    """
    paths = document_paths(folder, stem, blocks)
    check_writable(folder, paths)
    for image in images(blocks):
        path = folder / image.name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, image.data)
    for suffix, text in (
        (".html", to_html(title, blocks, subtitle)),
        (".md", to_markdown(title, blocks, subtitle)),
    ):
        write_atomic(folder / f"{stem}{suffix}", text)
    return paths
