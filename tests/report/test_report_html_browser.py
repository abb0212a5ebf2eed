"""Open the HTML report in headless Chromium: the table and every figure must render.

Chromium comes from the project's setup step (scripts/install-chromium.sh, `make browser`). Without
it the test skips with that reason, except under CI=true, where a missing browser is a failure.
The screenshot is kept at .cache/report-screenshot.png for a human to look at.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.image import imread

from harness.report import build_report, table_rows

REPO = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Appended to a copy of the report (the report itself has no scripts): after load, write what the
# browser actually decoded and laid out into the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const t = document.getElementById("results");
  const box = (e) => e.getBoundingClientRect();
  const out = {
    images: [...document.images].map((i) => ({plot: i.dataset.plot, complete: i.complete,
      w: i.naturalWidth, h: i.naturalHeight, shown: box(i).width})),
    header: t ? [...t.tHead.rows[0].cells].map((c) => c.textContent) : null,
    rows: t ? [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)) : null,
    bold: t ? t.querySelectorAll("b").length : 0,
    tableWidth: t ? box(t).width : 0,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture
def chromium() -> str:
    exe = os.environ.get("HARNESS_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if exe is None:
        if IN_CI:
            pytest.fail("Chromium is not installed and CI is set: run scripts/install-chromium.sh (make browser)")
        pytest.skip("Chromium is not installed: run scripts/install-chromium.sh (make browser) to enable this test")
    return exe


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_chromium(chromium, golden_runs, tmp_path):
    written = build_report(golden_runs, tmp_path / "out")
    report = written["html"]
    expected_rows = table_rows(golden_runs, include_published=True)
    expected_plots = {k.removeprefix("plot_") for k in written if k.startswith("plot_")}
    assert len(expected_plots) == 4

    probe = report.with_name("probe.html")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _run(chromium, tmp_path / "profile", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page did not finish loading in Chromium (rc={dom.returncode}):\n{dom.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))

    assert result["header"] == ["Method", "DataComp Scale", "Sample Size", "Uniform", "ImageNet",
                                "ImageNet Dist. Shift", "VTAB", "Retrieval", "Average"]
    assert len(result["rows"]) == len(expected_rows) and result["tableWidth"] > 0
    assert result["rows"][0][:3] == ["No filtering (n=3)", "Tiny", "2000"]
    assert result["bold"] > 0
    assert {i["plot"] for i in result["images"]} == expected_plots
    for img in result["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["shown"] > 0, img

    shot = tmp_path / "report-screenshot.png"
    res = _run(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4200", report.as_uri())
    assert shot.is_file(), f"no screenshot (rc={res.returncode}):\n{res.stderr[-2000:]}"
    pixels = imread(shot)
    assert pixels.shape[:2] == (4200, 1280) and pixels.std() > 0.02  # something was drawn
    keep = REPO / ".cache" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep)
