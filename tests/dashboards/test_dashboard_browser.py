"""End to end in a real headless browser: sign in, open a study, review it, see the row.

Runs `streamlit run dashboards/app.py` on a free port against the test database and drives
Debian's chromium through Playwright (never a downloaded browser). The screenshot is kept
in `var/test-artifacts/` for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_helpers import PASSWORD, USER, stored_reviews
from live_dashboard import (
    ARTIFACTS,
    choose_slice,
    chromium_page,
    click_lesion,
    scroll_position,
    serve_dashboard,
    show_slice,
    sign_in,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboard(seeded) -> Iterator[str]:
    with serve_dashboard(seeded.settings.home) as url:
        yield url


def _sign_in(page, url: str) -> None:
    sign_in(page, url, USER, PASSWORD)


def test_sign_in_open_a_study_and_review_it(dashboard: str, seeded) -> None:
    from playwright.sync_api import expect

    with chromium_page() as page:
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
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-worklist.png"))
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
        expect(page.get_by_text("recorded: benign.")).to_be_visible()

        shot = ARTIFACTS / "dashboard-review.png"
        page.screenshot(path=str(shot), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("textbox", name="Password")).to_be_visible()
        page.reload()  # signed out means the cookie no longer signs anyone in
        expect(page.get_by_role("textbox", name="Password")).to_be_visible()
        assert page.get_by_test_id("stSidebarNav").count() == 0
    assert shot.stat().st_size > 10_000

    newest = stored_reviews(seeded.settings, seeded.high)[-1]
    assert newest[1:] == (USER, "correct", "benign", "calcified granuloma, benign", "1")


BANNER = "was promoted by operator override"


def _cell(grid, column: str, row: int):
    """One cell of a st.dataframe, found through the grid's accessible table."""
    header = grid.locator("th[role=columnheader]", has_text=column).first
    index = header.get_attribute("aria-colindex")
    return grid.get_by_test_id(f"glide-cell-{index}-{row}")


def test_override_banner_and_the_saved_review_in_a_browser(
    dashboard: str, overridden, tmp_path: Path
) -> None:
    """Issue 13: every clinical page warns while the champion is an override; after a review
    is saved the form shows the reviewer's choice and the worklist row shows the review; no
    developer chrome (Deploy, rerun, clear cache) for clinicians."""
    from playwright.sync_api import expect

    seeded = overridden
    with chromium_page() as page:
        _sign_in(page, dashboard)
        expect(page.get_by_text(BANNER)).to_be_visible()
        expect(page.get_by_text("Not for clinical use.")).to_be_visible()
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)
        assert page.get_by_test_id("stAppDeployButton").count() == 0
        assert page.get_by_test_id("stMainMenu").count() == 0
        page.wait_for_timeout(1000)  # the grid paints on a canvas
        page.screenshot(path=str(tmp_path / "worklist-override.png"))

        page.get_by_test_id("stSidebarNav").get_by_text("Try a scan").click()
        expect(page.get_by_role("heading", name="Try a scan")).to_be_visible()
        expect(page.get_by_text(BANNER)).to_be_visible()

        page.get_by_test_id("stSidebarNav").get_by_text("Worklist").click()
        page.get_by_label("Study or batch").fill(str(seeded.high))
        page.get_by_label("Study or batch").press("Enter")
        expect(page.get_by_text("1 studies · page 1 of 1")).to_be_visible()
        page.get_by_role("button", name="Open study").click()
        expect(page.get_by_role("heading", name="Study study-high-")).to_be_visible()
        expect(page.get_by_text("The model that scored this study (version 1)")).to_be_visible()

        form = page.get_by_test_id("stForm").first
        for label in ("normal", "benign", "malignant"):  # no answer chosen for the reviewer
            expect(form.get_by_role("radio", name=label)).not_to_be_checked()
        expect(form.get_by_text("The model says malignant")).to_be_visible()
        form.get_by_text("benign", exact=True).click()
        form.get_by_label("Comment").fill("calcified granuloma")
        form.get_by_role("button", name="Submit review").click()
        expect(page.get_by_text("recorded: benign.")).to_be_visible()
        expect(form.get_by_role("radio", name="benign")).to_be_checked()  # not reset
        expect(page.get_by_text("Reviewed as benign by alice")).to_be_visible()
        page.screenshot(path=str(tmp_path / "study-reviewed.png"), full_page=True)

        page.reload()  # a new session opening the study starts from the saved review
        expect(page.get_by_role("heading", name="Study study-high-")).to_be_visible()
        expect(
            page.get_by_test_id("stForm").first.get_by_role("radio", name="benign")
        ).to_be_checked()

        page.get_by_test_id("stSidebarNav").get_by_text("Worklist").click()
        page.get_by_text("Reviewed", exact=True).click()
        page.get_by_label("Study or batch").fill(str(seeded.high))
        page.get_by_label("Study or batch").press("Enter")
        expect(page.get_by_text("1 studies · page 1 of 1")).to_be_visible()
        grid = page.get_by_test_id("stDataFrame")  # a canvas, with an accessible table in it
        expect(_cell(grid, "reviewed as", 0)).to_have_text("benign")
        expect(_cell(grid, "reviewer", 0)).to_have_text(USER)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "worklist-reviewed.png"))
    for name in ("worklist-override.png", "study-reviewed.png", "worklist-reviewed.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # kept for a person to look at
    for shot in tmp_path.glob("*.png"):
        (ARTIFACTS / f"dashboard-issue13-{shot.name}").write_bytes(shot.read_bytes())


def test_a_feature_models_explanation_reads_in_the_browser(dashboard: str, seeded) -> None:
    """Issue 12 item 3: the outlined candidates and the feature pushes of a real tiny
    feature champion, drawn by the browser (screenshot kept for a person to look at)."""
    from playwright.sync_api import expect
    from tiny_models import train_feature_model

    from lung_model.platform.tracking import configure_mlflow

    _, version = train_feature_model(seeded.settings)
    configure_mlflow(seeded.settings).set_registered_model_alias(
        seeded.settings.model_name, "champion", version
    )
    with chromium_page() as page:
        _sign_in(page, dashboard)
        page.goto(f"{dashboard}/study?batch={seeded.high}")
        page.get_by_role("button", name="Explain this slice").click()
        expect(page.get_by_text("Dense candidates the model measured")).to_be_visible()
        chart = page.get_by_test_id("stVegaLiteChart")
        expect(chart).to_be_visible()
        expect(page.get_by_text("Raw malignant score")).to_be_visible()
        chart.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)  # the chart draws after it is laid out
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard-feature-explanation.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_one_click_marks_the_lesion_on_a_slice_without_reloading_the_page(
    dashboard: str, seeded
) -> None:
    """Issue 22 item 1: the reviewer picks a slice, clicks the lesion's centre once; the mark
    is stored in the slice's own pixels, the page is not reloaded (the reviewer keeps the
    slice and the scroll position), and a reopened study shows the mark."""
    from playwright.sync_api import expect

    from lung_model.platform import db
    from lung_model.review.marks import current_marks

    second = seeded.image_ids[seeded.high][1]  # not the slice the page opens on
    with chromium_page() as page:
        _sign_in(page, dashboard)
        page.goto(f"{dashboard}/study?batch={seeded.high}")
        choose = choose_slice(page, "slice-01.jpg", second)
        expect(page.get_by_text("not marked", exact=True)).to_be_visible()
        show_slice(page)  # scrolled down to it, as a reviewer does
        page.evaluate("window.lungMarker = 'same page'")  # a reload would lose it
        scrolled = scroll_position(page)
        assert scrolled > 300, scrolled  # the slice is far down the page: a place to lose
        click_lesion(page, 0.25, 0.5)  # the one click
        expect(page.get_by_text("Mark recorded: lesion at")).to_be_visible()
        assert page.evaluate("window.lungMarker") == "same page"  # a rerun, not a reload
        expect(choose).to_have_value("slice-01.jpg")  # the reviewer's slice, still chosen
        assert abs(scroll_position(page) - scrolled) < 200  # still at the slice
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-issue22-marked.png"), full_page=True)

        page.goto(f"{dashboard}/study?batch={seeded.high}")  # reopened: the mark is there
        expect(page.get_by_text("marked: lesion at")).to_be_visible()
    mark = current_marks(db.get_engine(seeded.settings), seeded.high)[second]
    assert mark["kind"] == "lesion" and mark["radius"] is None
    assert abs(mark["x"] - 128) <= 3 and abs(mark["y"] - 256) <= 3  # of the 512 px slice
