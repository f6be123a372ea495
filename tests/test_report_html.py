"""report.html in a real headless Chromium: it renders, the table has one row per trial shown, sorting works,
the screenshot is not blank, text from the store cannot inject markup. In CI (CI=true) a missing Chromium is a
failure, not a skip."""

from __future__ import annotations

import os
import html
import re
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest

from mnas.report.build import make_report
from mnas.report.synthetic import fill_synthetic
from mnas.testing import communicate, cpu_seconds


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed (make setup installs it: apt-get install -y chromium)")
        pytest.skip("chromium not installed (only allowed outside CI)")
    return exe


def run_chromium(exe, tmp_path, *args) -> subprocess.CompletedProcess:
    """Chromium's run, for however long it takes while it keeps working (no fixed limit: a busy machine
    makes it slow, not wrong)."""
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = communicate(proc, progress=[lambda: cpu_seconds(proc.pid)], what="chromium")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run = fill_synthetic(tmp_path_factory.mktemp("html") / "run", n=80, seed=5, fail_every=8)
    s = make_report(run, html_rows=50)
    return run / "report.html", s


def test_html_is_self_contained(page):
    html, s = page
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # nothing fetched from anywhere


@pytest.mark.browser
def test_html_renders_with_one_row_per_trial_shown(page, tmp_path):
    exe = chromium()
    html, s = page
    p = run_chromium(exe, tmp_path, "--dump-dom", f"{html.as_uri()}#sort=latency_ms:desc")
    dom = p.stdout
    assert 'data-ready="1"' in dom, p.stderr[-2000:]  # the inline script ran to the end
    body = dom[dom.index('<table id="trials"'):]
    body = body[:body.index("</table>")]
    rows = re.findall(r"<tr class=\"[^\"]*\" data-id=\"(\d+)\"", body)
    assert len(rows) == 50 and len(set(rows)) == 50
    assert re.search(r'id="rowcount">50<', dom) and 'data-sorted="latency_ms:desc"' in dom
    # rows arrive sorted by latency, slowest first, blanks (failed trials) last
    lat = [float(v) if v else None for v in re.findall(r'class="c-latency_ms" data-v="([^"]*)"', body)]
    assert len(lat) == 50
    nums = [v for v in lat if v is not None]
    assert nums == sorted(nums, reverse=True) and lat[:len(nums)] == nums


@pytest.mark.browser
def test_html_screenshot_is_not_blank(page, tmp_path):
    exe = chromium()
    html, _ = page
    shot = tmp_path / "shot.png"
    p = run_chromium(exe, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", html.as_uri())
    assert shot.exists(), p.stderr[-2000:]
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (1600, 1280)
    colours = np.unique(img.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 100  # text, plots and table, not a blank or single-colour page
    assert (img < 200).any(axis=2).mean() > 0.02


# A store only ever holds canonical architecture strings, but report.html is mailed around and opened in a
# browser, so a hand-edited or foreign store must not be able to put markup or script into the page.
HOSTILE_ARCH = '</td><script>document.body.setAttribute("data-pwned", "arch")</script>'
HOSTILE_ERROR = "\"'><script>document.body.setAttribute('data-pwned', 'error')</script>"


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory):
    run = fill_synthetic(tmp_path_factory.mktemp("hostile") / "run", n=16, seed=1, fail_every=4)
    with sqlite3.connect(run / "experiment.db") as db:  # raw writes: what a tampered store file looks like
        db.execute("UPDATE trials SET arch = ? || id WHERE status = 'completed'", (HOSTILE_ARCH,))
        db.execute("UPDATE trials SET error = ? WHERE status = 'failed'", (HOSTILE_ERROR,))
    make_report(run)
    return run / "report.html"


def test_store_text_is_escaped_in_the_page(hostile_page):
    text = hostile_page.read_text()
    assert text.count("<script") == 1  # the page's own sorting script, nothing planted
    # each hostile text stays inside its cell or attribute and reads back unchanged
    titles = re.findall(r'<td class="c-status" data-v="failed" title="([^"]*)">failed</td>', text)
    assert [html.unescape(t) for t in titles] == [HOSTILE_ERROR] * 4
    cells = re.findall(r'<td class="c-arch" data-v="([^"<]*)">([^<]*)</td>', text)
    hostile = [(html.unescape(v), html.unescape(shown)) for v, shown in cells if "script" in shown]
    assert len(hostile) == 12 and all(v == shown and v.startswith(HOSTILE_ARCH) for v, shown in hostile)


@pytest.mark.browser
def test_store_text_shows_as_text_in_a_browser(hostile_page, tmp_path):
    exe = chromium()
    p = run_chromium(exe, tmp_path, "--dump-dom", hostile_page.as_uri())
    dom = p.stdout
    assert 'data-ready="1"' in dom, p.stderr[-2000:]  # the page's own script ran to the end
    assert "data-pwned=" not in dom  # and none of the planted ones ran
    assert len(re.findall(r'<td class="c-arch" data-v="[^"]*">&lt;/td&gt;&lt;script&gt;', dom)) == 12
