"""The HTML report in headless Chromium: the per-task table (with chance levels) sits beside the heatmap,
the provenance block is there, and a run evaluated elsewhere appears in the comparison table."""

from __future__ import annotations

import html
import json
import re

from test_report_html_browser import _run, chromium  # noqa: F401  (the fixture is used by name)
from test_report_interop import datacomp_eval_dir

from harness.report import build_report

PROBE = """<script>
window.addEventListener("load", () => {
  const box = (e) => { const r = e.getBoundingClientRect(); return {l: r.left, r: r.right, t: r.top, b: r.bottom}; };
  const tasks = document.getElementById("tasks");
  const heat = document.getElementById("fig-task_heatmap");
  const prov = document.getElementById("provenance");
  const out = {
    tasksHeader: tasks ? [...tasks.tHead.rows[0].cells].map((c) => c.textContent) : null,
    tasksRows: tasks ? [...tasks.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)) : null,
    tasksBox: tasks ? box(tasks) : null,
    heatBox: heat ? box(heat) : null,
    heatImage: heat ? heat.querySelector("img").naturalWidth : 0,
    provenance: prov ? [...prov.querySelectorAll("dt")].map((d) => [d.textContent, d.nextElementSibling.textContent]) : null,
    methods: [...document.getElementById("results").tBodies[0].rows].map((r) => r.cells[0].textContent),
    captions: [...document.querySelectorAll("figcaption")].map((c) => c.textContent),
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def test_per_task_table_and_provenance_render_in_chromium(chromium, golden_runs, tmp_path):  # noqa: F811
    ext = datacomp_eval_dir(tmp_path / "elsewhere")
    written = build_report(golden_runs, tmp_path / "out", external=[f"{ext}=Evaluated elsewhere"])
    probe = written["html"].with_name("probe.html")
    probe.write_text(written["html"].read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _run(chromium, tmp_path / "profile", "--window-size=1400,3000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page did not finish loading in Chromium (rc={dom.returncode}):\n{dom.stderr[-2000:]}"
    page = json.loads(html.unescape(found.group(1)))

    assert page["tasksHeader"][:2] == ["Task", "Chance"] and "Evaluated elsewhere [small]" in page["tasksHeader"]
    chance = {row[0]: row[1] for row in page["tasksRows"]}
    assert chance["ImageNet 1k"] == "0.001" and chance["CIFAR-10"] == "0.1"
    assert len(page["tasksRows"]) == 38  # every scored DataComp task (the fairness tasks have no main metric)
    heat, tasks = page["heatBox"], page["tasksBox"]
    assert page["heatImage"] > 0
    assert tasks["l"] >= heat["r"] - 1 and tasks["t"] < heat["b"], (heat, tasks)  # beside, not below
    prov = dict(page["provenance"])
    assert {"Generated", "Harness", "Libraries", "World fingerprint", "Recipe", "Evaluated elsewhere"} <= set(prov)
    assert prov["Generated"].endswith(" UTC") and "commit" in prov["Harness"] and "torch" in prov["Libraries"]
    assert "Evaluated elsewhere" in page["methods"]
    size_caption = next(c for c in page["captions"] if c.startswith("Average over the suite"))
    # the small-scale runs bring DataComp's published small rows into the table and plot; the caption says so
    assert any("(published" in m for m in page["methods"]) and "Hollow squares are published results." in size_caption
