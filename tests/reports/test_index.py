"""The runs folder's index.html: every run and sweep, links that resolve, and the `gaze compare` builder,
read as HTML and as a person sees it in headless Chromium (skipped where none is installed)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from contextlib import ExitStack
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from runs_folder import SPECS, SWEEP_REPORTED, expected, make_runs_folder

from wrapper.errors import RunError
from wrapper.reports import pages
from wrapper.reports.index import INDEX, PROMPT, write_index
from wrapper.runs import catalog as cat

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_browser = pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The twenty runs in a runs folder whose path has a space (the command must quote it)."""
    root = tmp_path_factory.mktemp("index") / "my runs"
    root.mkdir()
    with ExitStack() as stack:
        made = make_runs_folder(root, NOW, stack)
        write_index(root, now=NOW)
        yield root, made


class Page(HTMLParser):
    """The tables (rows of cell texts, sub-lines included), links, checkboxes and #compare of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.hrefs: list[str] = []
        self.sources: list[str] = []
        self.boxes: list[str] = []
        self.compare = ""
        self._cell: list[str] | None = None
        self._in_compare = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.hrefs.append(attrs["href"])
        elif tag in ("img", "script", "link", "iframe") and attrs.get("src", attrs.get("href")):
            self.sources.append(attrs.get("src") or attrs["href"])
        elif tag == "input" and attrs.get("type") == "checkbox":
            self.boxes.append(attrs["value"])
        elif tag == "pre" and attrs.get("id") == "compare":
            self._in_compare = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "pre":
            self._in_compare = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_compare:
            self.compare += data


def read_page(root: Path) -> Page:
    return Page((root / INDEX).read_text(encoding="utf-8"))


def test_the_index_lists_every_run_with_the_columns_of_gaze_runs(folder):
    root, _ = folder
    page = read_page(root)
    runs = page.tables[0]
    assert runs[0] == list(cat.COLUMNS)
    assert len(runs) == 1 + 20
    rows = {r.run: r for r in cat.catalog(root, now=NOW)}
    shown = {line[0]: line for line in runs[1:]}  # "<recipe folder>/", the stamp on the line below
    for i, spec in enumerate(SPECS):
        run = expected(spec, i, NOW)["run"]
        text = cat.cells(rows[run])
        assert shown[run][1:] == [text[c] for c in cat.COLUMNS[1:]], run
        assert shown[run][5] == (expected(spec, i, NOW)["state"] or "?")
    newest_first = sorted(range(20), key=lambda i: SPECS[i].hours_ago)
    assert [line[0] for line in runs[1:]] == [expected(SPECS[i], i, NOW)["run"] for i in newest_first]


def test_one_checkbox_per_run_carrying_its_quoted_folder(folder):
    root, made = folder
    page = read_page(root)
    assert len(page.boxes) == 20
    assert sorted(shlex.split(" ".join(page.boxes))) == sorted(str(p) for p in made)
    assert all(b.startswith("'") for b in page.boxes)  # the folder has a space: each path is quoted


def test_every_link_resolves_and_nothing_is_fetched(folder):
    root, made = folder
    page = read_page(root)
    reports = {f"{p.relative_to(root).as_posix()}/report.html" for p, s in zip(made, SPECS, strict=True) if s.report}
    assert reports and reports <= set(page.hrefs)
    assert f"sweeps/{SWEEP_REPORTED}/report.html" in page.hrefs
    assert len(page.hrefs) == len(reports) + 1
    for href in page.hrefs:
        assert not urlparse(href).scheme and not href.startswith("/"), href
        assert (root / unquote(href)).is_file(), href
    assert page.sources == []
    assert "http://" not in (root / INDEX).read_text() and "https://" not in (root / INDEX).read_text()


def test_sweeps_are_listed_with_their_members_states(folder):
    root, _ = folder
    sweeps = read_page(root).tables[1]
    assert sweeps[0] == ["sweep", "baseline", "variants", "seeds", "on", "runs", "created", "report"]
    assert len(sweeps) == 4
    reported = next(r for r in sweeps if SWEEP_REPORTED in r[0])
    assert reported[1:6] == ["sd15-standard", "high-lr=3e-4", "1, 2", "local", "4: 1 failed, 3 succeeded"]
    assert reported[-1] == "report"
    queue = next(r for r in sweeps if "queue" in r[0])
    assert queue[5] == "2: 2 queued" and queue[-1] == "-"


def test_warnings_of_damaged_folders_are_on_the_page(folder):
    root, _ = folder
    text = (root / INDEX).read_text()
    assert "Warnings (4)" in text and "recipe.json is not valid JSON" in text and "sweep.json is not valid JSON" in text


def test_the_index_is_written_atomically_and_refuses_a_link(tmp_path):
    (tmp_path / "elsewhere.html").write_text("keep me")
    (tmp_path / INDEX).symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(RunError, match="symbolic link"):
        write_index(tmp_path)
    assert (tmp_path / "elsewhere.html").read_text() == "keep me"
    (tmp_path / INDEX).unlink()
    path = write_index(tmp_path)
    assert "No runs yet." in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.html", INDEX]  # no temporary file left


def test_a_script_cannot_close_its_own_tag():
    with pytest.raises(ValueError, match="must not contain"):
        pages.to_html("t", [], script="x = '</script><b>';")


# ---- in a browser --------------------------------------------------------------------------------------


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    return subprocess.run([BROWSER, *flags, *args], check=True, capture_output=True, text=True, timeout=120)


@needs_browser
def test_the_page_renders(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "index.png"
    chromium(tmp_path, f"--screenshot={out}", "--window-size=1280,2000", (root / INDEX).as_uri())
    from PIL import Image

    with Image.open(out) as img:
        pixels = np.asarray(img.convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2000, 1280)
    assert (pixels.sum(axis=2) < 300).mean() > 0.01  # text, not a blank page
    green = (np.abs(pixels - np.array((19, 115, 51))).sum(axis=2) < 40).sum()
    red = (np.abs(pixels - np.array((197, 34, 31))).sum(axis=2) < 40).sum()
    assert green > 200 and red > 50  # "succeeded" and "failed" in their colours


def ticked(root: Path, tmp_path: Path, indices: list[int]) -> str:
    """#compare's text after ticking the checkboxes at `indices` (in page order), read from Chromium's DOM."""
    clicks = "".join(f"boxes[{i}].click();" for i in indices)
    harness = root / "harness.html"  # beside index.html, so that it is the same page at the same place
    page = (root / INDEX).read_text(encoding="utf-8")
    script = f"<script>var boxes = document.querySelectorAll('input[type=checkbox]');{clicks}</script>"
    harness.write_text(page.replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        dom = chromium(tmp_path, "--dump-dom", harness.as_uri()).stdout
    finally:
        harness.unlink()
    return Page(dom).compare


@needs_browser
def test_ticking_runs_builds_the_compare_command(folder, tmp_path):
    root, _ = folder
    boxes = read_page(root).boxes
    assert ticked(root, tmp_path, []) == PROMPT
    assert ticked(root, tmp_path, [3]) == PROMPT  # one run is not a comparison
    command = ticked(root, tmp_path, [0, 5, 19])
    assert command == f"gaze compare {boxes[0]} {boxes[5]} {boxes[19]}"
    words = shlex.split(command)
    assert words[:2] == ["gaze", "compare"] and all(Path(w).is_dir() for w in words[2:])
    assert ticked(root, tmp_path, [2, 7, 7]) == PROMPT  # ticked, then unticked again: one left
