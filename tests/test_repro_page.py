"""The two-click reproduction page: generated from the committed result files, rendered by a real headless Chromium
(Debian's ``chromium``, installed by ``.ci/run``): the matrix, the verdicts and the copy-to-clipboard commands are in
the rendered DOM, the page's own script ran, and a screenshot is saved."""

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from diffretriever_pyserini.evaluate import twocr

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.fail("no chromium: install Debian's chromium and chromium-driver (.ci/run does: apt-get install -y "
                    "chromium chromium-driver)")
    return found


def headless(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-extensions", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.buttons, self.headers, self.summary, self._in = [], [], [], "", None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "cell" in (a.get("class") or ""):
            self.cells.append(a["data-verdict"])
        if tag == "button" and "copy" in (a.get("class") or ""):
            self.buttons.append(a["data-command"])
        if tag == "th":
            self._in = "th"
        if a.get("id") == "summary":
            self._in = "summary"

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "th":
            self.headers.append(data)
        elif self._in == "summary":
            self.summary += data


def test_committed_page_and_yaml_are_what_the_results_give(tmp_path):
    page, source = twocr.write(RESULTS, tmp_path)
    assert page.read_text() == (REPO / "docs" / "repro" / "index.html").read_text()
    assert source.read_text() == (REPO / "docs" / "repro" / "diffretriever.yaml").read_text()


def test_verdicts_of_cells():
    assert twocr.Cell(0.67891, 0.6789, "Pyserini", "cmd").verdict == "OK"
    assert twocr.Cell(0.6793, 0.6789, "Pyserini", "cmd").verdict == "OKish"
    assert twocr.Cell(0.70, 0.6789, "Pyserini", "cmd").verdict == "FAIL"
    assert twocr.Cell(0.7334, 0.733, "paper (x)", "cmd").verdict == "OK"  # three decimals, within 0.005: paper rule
    assert twocr.Cell(None, 0.733, "paper (x)", "cmd").verdict == twocr.NEEDS_GPU
    assert twocr.Cell(0.5, None, "results/expected.json", "cmd").verdict == "no reference"


def test_the_page_renders_in_a_real_browser(tmp_path):
    page, _ = twocr.write(RESULTS, tmp_path)
    text = page.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text), "the page must not load anything remote"
    dom = headless("--virtual-time-budget=3000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = Cells()
    parsed.feed(dom.stdout)
    assert {"scifact", "msmarco-dl19-sample", "arguana"} <= set(parsed.headers)
    assert len(parsed.cells) >= 20 and len(parsed.buttons) == len(parsed.cells)
    assert {"OK", twocr.NEEDS_GPU} <= set(parsed.cells)
    assert any(c.startswith("make paper-check CHECKPOINT=") for c in parsed.buttons)
    assert any("baselines --bm25-only --bm25 flat --dataset scifact" in c for c in parsed.buttons)
    # the page's script ran in the browser: it counted the verdicts into the summary line
    counts = dict(re.findall(r"([\w +]+?) (\d+)(?:,|$)", parsed.summary.removeprefix("cells: ")))
    assert sum(int(v) for v in counts.values()) == len(parsed.cells), parsed.summary
    shot = tmp_path / "repro-page.png"
    res = headless("--window-size=1400,1000", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
