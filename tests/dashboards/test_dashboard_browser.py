"""End to end in a real headless browser: sign in, open a study, review it, see the row.

Runs `streamlit run dashboards/app.py` on a free port against the test database and drives
Debian's chromium through Playwright (never a downloaded browser). The screenshot is kept
in `var/test-artifacts/` for a person to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_helpers import APP, PASSWORD, USER, stored_reviews

from lung_model.settings import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dashboard(seeded) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "LUNG_HOME": str(seeded.settings.home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
         f"--server.port={port}", "--server.address=127.0.0.1",
         "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
         "--client.toolbarMode=viewer"],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)  # noqa: S310
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"streamlit did not start:\n{output}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_sign_in_open_a_study_and_review_it(dashboard: str, seeded) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian chromium is missing: run `make browser`"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)  # generous: CI machines are shared
        expect.set_options(timeout=60_000)
        page.goto(dashboard)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)
        assert "study-" not in page.content()  # a stranger sees no result
        assert page.get_by_test_id("stSidebarNav").count() == 0  # and no page to go to
        page.get_by_role("textbox", name="Username").fill(USER)
        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
        expect(page.get_by_test_id("stSidebarNav")).to_be_visible()
        expect(page.get_by_role("button", name="Open study")).to_be_visible()
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)  # the run finished
        expect(page.get_by_test_id("stDataFrame")).to_be_visible()
        expect(page.get_by_test_id("stSelectbox")).to_be_visible()
        page.wait_for_timeout(1000)  # the grid paints on a canvas
        artifacts = PROJECT_ROOT / "var" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / "dashboard-worklist.png"))
        page.reload()  # a new Streamlit session: the session cookie keeps the reviewer in
        expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

        page.get_by_label("Study or batch").fill(str(seeded.high))
        page.get_by_label("Study or batch").press("Enter")
        expect(page.get_by_text("1 studies · page 1 of 1")).to_be_visible()
        page.get_by_role("button", name="Open study").click()
        expect(page.get_by_role("heading", name="Study study-high-")).to_be_visible()

        form = page.get_by_test_id("stForm").first
        form.get_by_text("benign", exact=True).click()
        form.get_by_label("Comment").fill("calcified granuloma, benign")
        form.get_by_role("button", name="Submit review").click()
        expect(page.get_by_text("recorded.")).to_be_visible()

        shot = artifacts / "dashboard-review.png"
        page.screenshot(path=str(shot), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("textbox", name="Password")).to_be_visible()
        page.reload()  # signed out means the cookie no longer signs anyone in
        expect(page.get_by_role("textbox", name="Password")).to_be_visible()
        assert page.get_by_test_id("stSidebarNav").count() == 0
        browser.close()
    assert shot.stat().st_size > 10_000

    newest = stored_reviews(seeded.settings, seeded.high)[-1]
    assert newest[1:] == (USER, "correct", "benign", "calcified granuloma, benign", "1")
