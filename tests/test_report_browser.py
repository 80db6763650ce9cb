"""The HTML report in a real browser: Debian's chromium, headless, renders the three charts.

The report comes from a real `cdp-mcp demo` run (three sources, the shop's 200 customers). Chromium
dumps the DOM it built and takes a screenshot; the bars the DOM holds (from the run's
validation metrics) must be the bars on the screen, found by their colours in the PNG.
Without chromium (`apt-get install chromium`) the tests skip, except under CI (env `CI` set),
where they fail: CI must run them.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase
from cdp_mcp.pipeline.reports.html import (
    AXIS_COLOR,
    COLORS,
    INGESTED,
    SINGLE_COLOR,
    SOURCE,
    STAGED,
    UNION,
)
from cdp_mcp.pipeline.state import StateStore

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

CHART_TITLES = (
    "Rows per table: in source, ingested, hist-union, staged",
    "Profiles by number of ids (cluster size)",
    "Share of rows with a profile id, per table",
)
WIDTH, HEIGHT = 1280, 6000  # tall enough that all three charts are above the fold (three sources)
# a closed network: no first-run, sync, component updates or other calls home
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MIN_BAR_PX = 3  # shorter bars may have no pixel of the exact colour (anti-aliasing)


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{why} (required under CI)")
    pytest.skip(why)


# -- the run and the browser ---------------------------------------------------------------
@dataclass
class Rendered:
    report: Path
    dom: str
    png: Path
    cluster_sizes: int  # bars the run's metrics call for
    coverage_tables: int
    profiles: int
    ingested_tables: int  # every source's objects: a row-flow bar of each colour per table


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
    )
    if found is None:
        _unavailable("chromium is not installed: apt-get install -y chromium")
    return str(found)


@pytest.fixture(scope="module")
def rendered(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("browser")
    cli = Path(sys.executable).with_name("cdp-mcp")
    demo = subprocess.run(
        [str(cli) if cli.is_file() else "cdp-mcp", "demo", str(root / "demo"), "--rows", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    cfg = load_config(root / "demo" / "acme.yml")
    report = cfg.workspace / "reports" / "cdp_report.html"
    metrics = (StateStore(cfg.workspace).load().phase(Phase.UNIFICATION).validation or {})[
        "metrics"
    ]

    def browse(*args: str) -> subprocess.CompletedProcess[str]:
        profile = tmp_path_factory.mktemp("profile")
        # crash reports and dconf go under HOME and the XDG folders, whatever the profile
        env = {
            **os.environ,
            "HOME": str(profile),
            "XDG_CONFIG_HOME": str(profile / "config"),
            "XDG_CACHE_HOME": str(profile / "cache"),
        }
        proc = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, report.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    png = root / "report.png"
    browse(f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}")
    dom = browse("--dump-dom").stdout
    return Rendered(
        report,
        dom,
        png,
        sum(1 for n in metrics["ids_per_profile"].values() if n > 0),
        sum(1 for share in metrics["coverage"].values() if share > 0),
        int(metrics["profiles"]),
        len(cfg.ingested_tables()),
    )


# -- what the DOM holds ---------------------------------------------------------------------
@dataclass
class Chart:
    label: str
    title: str = ""
    bars: Counter[str] = field(default_factory=Counter)  # colour -> bars drawn (height > 0)
    visible: Counter[str] = field(default_factory=Counter)  # ... at least MIN_BAR_PX high


class Charts(HTMLParser):
    """The <svg> charts of a document, each with its bars (rects inside a <g>) by colour."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[Chart] = []
        self.in_svg = self.in_title = False
        self.group_depth = 0
        self.last_tag = ""  # the chart's own title is the svg's first child

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a, after = dict(attrs), self.last_tag
        self.last_tag = tag
        if tag == "svg":
            self.in_svg = True
            self.charts.append(Chart(a.get("aria-label") or ""))
        elif self.in_svg and tag == "g":
            self.group_depth += 1
        elif self.in_svg and tag == "title" and after == "svg":
            self.in_title = True
        elif self.in_svg and self.group_depth and tag == "rect":
            height, color = float(a.get("height") or 0), (a.get("fill") or "").lower()
            if height > 0:
                self.charts[-1].bars[color] += 1
            if height >= MIN_BAR_PX:
                self.charts[-1].visible[color] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.in_svg = False
        elif tag == "g" and self.in_svg:
            self.group_depth -= 1
        elif tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.charts[-1].title += data


def _charts(document: str) -> list[Chart]:
    parser = Charts()
    parser.feed(document)
    return parser.charts


# -- what the screen shows -----------------------------------------------------------------
def decode_png(path: Path) -> np.ndarray:
    """The image as a (height, width, 3) uint8 array; 8-bit RGB or RGBA, not interlaced."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * bpp + 1)
    out = np.zeros((h, w * bpp), np.uint8)
    prev = np.zeros(w * bpp, np.uint8)
    for y in range(h):
        kind_, line = raw[y, 0], raw[y, 1:]
        if kind_ == 0:
            cur = line.copy()
        elif kind_ == 1:  # Sub: a running sum per channel, mod 256
            cur = np.cumsum(line.reshape(w, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind_ == 2:  # Up
            cur = line + prev
        else:  # Average or Paeth: byte by byte
            cur = _unfilter_slow(kind_, bytearray(line.tobytes()), prev.tobytes(), bpp)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


def _unfilter_slow(kind: int, cur: bytearray, up: bytes, bpp: int) -> np.ndarray:
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        c = up[i - bpp] if i >= bpp else 0
        if kind == 3:
            pred = (a + b) >> 1
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (cur[i] + pred) & 255
    return np.frombuffer(bytes(cur), np.uint8)


def _mask(img: np.ndarray, color: str) -> np.ndarray:
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    mask: np.ndarray = np.all(img == np.array(rgb, np.uint8), axis=2)
    return mask


def _bands(rows: np.ndarray, gap: int = 60) -> list[tuple[int, int]]:
    """Runs of row indices with gaps under `gap` pixels, as (first, last)."""
    bands: list[tuple[int, int]] = []
    for y in rows.tolist():
        if bands and y - bands[-1][1] < gap:
            bands[-1] = (bands[-1][0], y)
        else:
            bands.append((y, y))
    return bands


def _runs(line: np.ndarray) -> int:
    """Separate horizontal runs of True in a row of the mask."""
    edges = np.diff(np.concatenate(([0], line.astype(np.int8), [0])))
    return int((edges == 1).sum())


# -- the tests -------------------------------------------------------------------------------
def test_chromium_builds_the_three_charts_from_the_run(rendered: Rendered) -> None:
    assert "<figure>" in rendered.dom and "no data yet" not in rendered.dom
    charts = _charts(rendered.dom)
    assert [c.label for c in charts] == list(CHART_TITLES)
    assert [c.title for c in charts] == list(CHART_TITLES)
    tables = rendered.ingested_tables
    assert tables == 5  # the shop's orders, customers and products, crm's and mailer's one each
    flow, clusters, coverage = (c.bars for c in charts)
    assert flow == {
        c: tables for c in (COLORS[SOURCE], COLORS[INGESTED], COLORS[UNION], COLORS[STAGED])
    }
    assert rendered.cluster_sizes >= 2  # the sample has customers sharing an email or phone
    assert clusters == {SINGLE_COLOR: rendered.cluster_sizes}
    assert coverage == {SINGLE_COLOR: rendered.coverage_tables}
    # the browser saw the report as written
    source = _charts(rendered.report.read_text(encoding="utf-8"))
    assert [(c.label, c.bars, c.visible) for c in source] == [
        (c.label, c.bars, c.visible) for c in charts
    ]


def test_the_page_opens_on_the_headline_figures_and_every_chart_has_axes(
    rendered: Rendered,
) -> None:
    dom = rendered.dom
    assert dom.index('id="headline"') < dom.index("<h2>Configuration</h2>") < dom.index("<svg")
    figures = dict(
        (name, value)
        for value, name in re.findall(
            r'<div class="value">([^<]*)</div><div class="name">([^<]*)</div>', dom
        )
    )
    assert figures["profiles"] == f"{rendered.profiles:,}"
    assert {"records per profile", "cross-table coverage", "rows left out"} <= set(figures)
    assert any(name.startswith("data-quality score") for name in figures)
    for svg in re.findall(r"<svg\b.*?</svg>", dom, re.S):
        assert 'class="y-axis"' in svg and 'class="x-axis"' in svg
        assert len(re.findall(r'class="tick-label"', svg)) >= 3
        assert len(re.findall(r'class="axis-title"', svg)) == 2
        assert 'class="legend"' in svg


def test_screenshot_shows_every_bar_in_its_colour(rendered: Rendered) -> None:
    img = decode_png(rendered.png)
    assert img.shape == (HEIGHT, WIDTH, 3)
    white = np.all(img == 255, axis=2)
    assert 0.02 < 1 - white.mean() < 0.6, f"{1 - white.mean():.1%} of the page is not white"

    expected = [c.visible for c in _charts(rendered.dom)]
    blue = _mask(img, SINGLE_COLOR)
    bands = _bands(np.flatnonzero(blue.any(axis=1)))
    assert len(bands) == len(CHART_TITLES), (
        f"blue bars in {len(bands)} vertical bands {bands}, one per chart expected"
    )
    other = {c: _mask(img, c) for c in (COLORS[SOURCE], COLORS[UNION], COLORS[STAGED])}
    for (first, last), bars in zip(bands, expected, strict=True):
        # every bar stands on the axis: the band's lowest blue row crosses all of them
        base = last
        seen = {SINGLE_COLOR: _runs(blue[base])}
        seen |= {c: _runs(m[base]) for c, m in other.items() if m[first : last + 1].any()}
        assert seen == dict(bars), f"rows {first}-{last}: {seen} on screen, {dict(bars)} in DOM"
        height = last - first
        assert 30 < height < 260, f"chart rows {first}-{last}"
        # the y axis on screen: a column of its colour as tall as the plot, beside the bars
        axis = _mask(img, AXIS_COLOR)[max(base - 185, 0) : base + 1]
        assert axis.sum(axis=0).max() >= 170, f"no y axis beside rows {first}-{last}"
