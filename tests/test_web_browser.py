"""The web UI in headless Chromium (Debian's `chromium`, driven by
playwright): start a run from the page, watch the counts rise and the charts
draw, edit the user count, stop, and download the report; then the same on a
master with two workers. Screenshots land in artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import ARTIFACTS, FLAGS, require_chromium
from conftest import DemoTarget, free_port
from webui import HELLO, WebProcess

HELLO_AND_MISSING = (
    HELLO
    + """

class Missing(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def missing(self):
        await self.session.get("/status/404", name="/missing")
"""
)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A fresh page in headless Chromium."""
    executable = require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            args=[f for f in FLAGS if f != "--headless"],
            headless=True,
        )
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        pg = context.new_page()
        pg.set_default_timeout(20_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def _int(page: Any, selector: str) -> int:
    return int(page.locator(selector).inner_text())


def _aggregated_requests(page: Any) -> int:
    row = page.locator("#stats-table tbody tr.total td").nth(2)
    return int(row.inner_text())


def test_start_watch_edit_stop_and_download(
    page: Any, write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = write_file("aiotestfile.py", HELLO_AND_MISSING)
    with WebProcess(path, "-H", demo_target.url, cwd=tmp_path) as web:
        page.goto(web.url)
        page.wait_for_selector("#connection:text('live')")
        assert page.locator("#state").inner_text() == "ready"

        page.click("#new-test-button")
        page.fill("#start-users", "4")
        page.fill("#start-rate", "100")
        assert page.locator("#start-host").input_value() == demo_target.url
        page.click("#start-submit")
        page.wait_for_function("document.querySelector('#user-count').textContent === '4'")
        page.wait_for_function(
            "Number(document.querySelector('#stats-table tr.total td:nth-child(3)')?.textContent) > 0"
        )
        first = _aggregated_requests(page)
        page.wait_for_function(
            f"Number(document.querySelector('#stats-table tr.total td:nth-child(3)').textContent) > {first}"
        )

        # The charts draw, and grow with each update.
        page.click("button[data-tab='charts']")
        page.wait_for_selector("#chart-rps canvas")
        page.wait_for_function("Number(document.querySelector('#chart-rps').dataset.points) >= 2")
        assert page.locator("#chart-response-times canvas").count() == 1
        assert page.locator("#chart-users canvas").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-ui-charts.png"), full_page=True)

        # The 404s show on the failures tab.
        page.click("button[data-tab='failures']")
        page.wait_for_selector("#failures-table tbody tr")
        assert "/missing" in page.locator("#failures-table tbody").inner_text()

        # Edit the running test.
        page.click("#edit-button")
        page.fill("#edit-users", "2")
        page.click("#edit-submit")
        page.wait_for_function("document.querySelector('#user-count').textContent === '2'")
        assert web.stats()["user_count"] == 2

        page.click("button[data-tab='stats']")
        page.screenshot(path=str(ARTIFACTS / "web-ui-running.png"), full_page=True)
        page.click("#stop-button")
        page.wait_for_function("document.querySelector('#state').textContent === 'stopped'")
        assert web.stats()["user_count"] == 0

        page.click("button[data-tab='downloads']")
        with page.expect_download() as info:
            page.click("#download-report")
        download = info.value
        assert download.suggested_filename == "aiotest_report.html"
        report = Path(download.path()).read_text()
        assert "aiotest report" in report and "hello" in report  # "/" is escaped
        with page.expect_download() as info:
            page.click("#download-stats-csv")
        assert Path(info.value.path()).read_text().startswith("Type,Name,Request Count")
        assert web.quit() == 0 or web.proc.returncode == 1, web.stderr


def test_workers_tab_on_a_master_with_two_workers(
    page: Any, write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = write_file("aiotestfile.py", HELLO_AND_MISSING)
    with WebProcess(
        path, "-H", demo_target.url, "--processes", "2",
        "--master-bind-port", str(free_port()), "--heartbeat-interval", "0.5", cwd=tmp_path,
    ) as web:  # fmt: skip
        page.goto(web.url)
        page.wait_for_function("document.querySelector('#worker-count').textContent === '2'")
        page.click("#workers-tab")
        assert page.locator("#workers-table tbody tr").count() == 2

        page.click("#new-test-button")
        page.fill("#start-users", "4")
        page.fill("#start-rate", "100")
        page.click("#start-submit")
        page.wait_for_function("document.querySelector('#user-count').textContent === '4'")
        page.wait_for_function(
            "[...document.querySelectorAll('#workers-table tbody tr td:nth-child(4)')]"
            ".map((td) => td.textContent).join(',') === '2,2'"
        )
        page.click("button[data-tab='stats']")
        page.wait_for_function(
            "Number(document.querySelector('#stats-table tr.total td:nth-child(3)')?.textContent) > 0"
        )
        page.click("#workers-tab")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-ui-workers.png"), full_page=True)
        page.click("#stop-button")
        page.wait_for_function("document.querySelector('#state').textContent === 'stopped'")
        web.quit()
    assert "Worker" in web.stderr


def test_the_start_form_shows_and_sends_the_aiotestfiles_options(
    page: Any, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """Locust's add_command_line_argument.py: its options in the start
    form as Locust shows them (a select for choices, a multiple select, a
    masked secret, a checkbox for a boolean; the hidden one left out), and
    the values picked there reach the run."""
    example = Path(__file__).resolve().parent / "locust_examples" / "add_command_line_argument.py"
    args = ("-H", demo_target.url, "--my-argument", "cli")
    out = tmp_path / "stdout.txt"  # its task prints in a loop
    with WebProcess(example, *args, cwd=tmp_path, stdout_path=out) as web:
        page.goto(web.url)
        page.wait_for_selector("#connection:text('live')")
        page.click("#new-test-button")
        form = page.locator("#extra-options")
        assert form.is_visible()
        assert form.locator("input[name=my_argument]").input_value() == "cli"
        assert form.locator("select[name=env] option:checked").inner_text() == "dev"
        assert form.locator("select[name=endpoints]").get_attribute("multiple") is not None
        assert (
            form.locator("input[name=my_ui_password_argument]").get_attribute("type") == "password"
        )
        assert form.locator("input[name=my_ui_boolean_argument][type=checkbox]").is_checked()
        assert form.locator("[name=my_ui_invisible_argument]").count() == 0
        form.locator("input[name=my_argument]").fill("from the form")
        form.locator("select[name=env]").select_option("staging")
        page.fill("#start-users", "1")
        page.fill("#start-run-time", "1s")
        page.click("#start-submit")
        page.wait_for_function("document.querySelector('#state').textContent === 'stopped'")
        assert web.quit() == 0, web.stderr
        assert "Custom argument supplied: from the form" in web.stdout
        assert "my_argument=from the form" in web.stdout
