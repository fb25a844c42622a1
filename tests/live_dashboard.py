"""The real dashboard in a real browser, for the tests that need both: `streamlit run` on a free
port, Debian's chromium driven by Playwright (never a downloaded browser), and the Study page's
steps a reviewer takes to mark a slice."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lung_model.platform.services import free_port
from lung_model.settings import PROJECT_ROOT

APP = PROJECT_ROOT / "dashboards" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 60_000  # generous: test machines are shared
SLICE_FRAME = "iframe[title*=streamlit_image_coordinates]"
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts"  # screenshots kept for a person to look at


@contextmanager
def serve_dashboard(home: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The dashboard as `make demo` starts it, on LUNG_HOME `home`: from the project root, so
    Streamlit reads the project's `.streamlit/config.toml` (no toolbar flag here: the config
    must do it). Yields its URL; stops it afterwards."""
    port = free_port()
    # a file, not a pipe: nothing reads the output while the server runs, and a full pipe
    # would block it
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
             f"--server.port={port}", "--server.address=127.0.0.1",
             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
            env={**os.environ, **(env or {}), "LUNG_HOME": str(home)}, cwd=PROJECT_ROOT,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)  # noqa: S310
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read().decode(errors="replace")
                        raise RuntimeError(f"streamlit did not start:\n{output}") from None
                    time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=20)


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page of a headless Debian chromium, with generous waits."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian chromium is missing: run `make browser`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            yield page
        finally:
            browser.close()


def sign_in(page: Any, url: str, user: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()


def settled(page: Any) -> None:
    """Wait until Streamlit's run is over (its status widget gone)."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)


def choose_slice(page: Any, name: str, image_id: int) -> Any:
    """Pick the slice `name` in the Study page's "Slice" box; returns the box once the page
    shows that slice's marking controls."""
    from playwright.sync_api import expect

    choose = page.get_by_role("combobox", name="Slice", exact=True)
    choose.click()
    choose.fill(name)
    choose.press("Enter")
    expect(page.locator(f".st-key-no_lesion_{image_id}")).to_be_visible()
    settled(page)
    expect(choose).to_have_value(name)
    return choose


def show_slice(page: Any) -> tuple[Any, dict[str, float]]:
    """Scroll to the chosen slice shown for a click (the one image-coordinates frame on the
    page); returns the image and its box once the image is loaded and its frame sized."""
    from playwright.sync_api import expect

    expect(page.locator(SLICE_FRAME)).to_have_count(1)
    image = page.frame_locator(SLICE_FRAME).locator("#image")
    expect(image).to_be_visible()
    expect(image).to_have_js_property("complete", True)
    image.scroll_into_view_if_needed()
    box = None
    for _ in range(100):  # the frame is resized after its image loads: wait for a steady box
        now = image.bounding_box()
        if box is not None and now == box and now["width"] > 100:
            return image, box
        box = now
        page.wait_for_timeout(100)
    raise AssertionError(f"the slice never settled: {box}")


def scroll_position(page: Any) -> float:
    """How far the page is scrolled: Streamlit scrolls its main area, not the window."""
    return float(page.evaluate("document.querySelector('[data-testid=stMain]').scrollTop"))


def click_lesion(page: Any, fx: float, fy: float) -> dict[str, float]:
    """One click on the shown slice at fractions (fx, fy) of its width and height; returns
    the image's box at the click."""
    image, box = show_slice(page)
    image.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    return box
