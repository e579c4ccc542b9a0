"""The HTML report opens in headless Chromium with no network, and its
charts render."""

from __future__ import annotations

import json
import re
from pathlib import Path

from browser import rendered_dom, screenshot
from conftest import ROOT, DemoTarget, run_aiotest

# Appended to a copy of the report: counts the painted pixels of each chart
# canvas once the page has loaded.
INK_PROBE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const ink = [...document.querySelectorAll(".chart canvas")].map((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  document.body.setAttribute("data-ink", JSON.stringify(ink));
}, 100));
</script>
"""


def test_report_opens_offline_and_charts_render(demo_target: DemoTarget, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    run = run_aiotest(
        "-f",
        str(ROOT / "examples" / "aiotestfile.py"),
        "--headless",
        "-u",
        "10",
        "-r",
        "10",
        "-t",
        "4s",
        "-H",
        demo_target.url,
        "--html",
        str(report),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    html = report.read_text()
    # Self-contained: nothing to fetch.
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link[^>]+href=", html)
    host = demo_target.url.split("//")[1]  # the report escapes "/" as &#x2f;
    for needle in (
        "Request statistics",
        "Response time percentiles",
        "Time to first byte percentiles",
        "Shopper, Browser",
        host,
        "Aggregated",
    ):
        assert needle in html
    assert f">{run.total['num_requests']}<" in html

    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", INK_PROBE + "</body>"))
    dom = rendered_dom(probe.as_uri(), offline=True)
    match = re.search(r'data-ink="([^"]+)"', dom)
    assert match, "the charts' script did not run"
    ink = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(ink) == 3, ink  # requests/s, response times, users
    assert all(n > 500 for n in ink), ink  # axes, grid and lines drawn: not blank

    shot = screenshot(report.as_uri(), "report.png", offline=True)
    assert shot.stat().st_size > 20_000
