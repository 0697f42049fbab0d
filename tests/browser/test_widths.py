"""Every page fits a phone, a laptop and a desktop without a horizontal page scroll (issue 20 §8): tables scroll
inside their panels, the nav wraps, the modal's buttons stay on screen."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_live_page import dialog, open_modal, retrain_now

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = (390, 1280, 1440)


def overflow(page) -> list[str]:
    """What sticks out of the window, if the page scrolls sideways."""
    page.wait_for_load_state("load")
    return page.evaluate("""document.scrollingElement.scrollWidth <= innerWidth ? [] :
        Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
          .slice(0, 6).map(e => `${e.tagName}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`)""")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_live_page_the_modal_and_the_other_pages_fit_the_window(fleet_flagged, admin_user, login, width):
    page = login("sam")
    page.set_viewport_size({"width": width, "height": 900})
    page.reload()
    assert overflow(page) == [], f"live page at {width} px"
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Live Telemetry", "Alerts", "Hosts", "API docs"):
        expect(nav.get_by_role("link", name=name)).to_be_in_viewport()
    expect(nav.get_by_role("button", name="Log out")).to_be_in_viewport()

    open_modal(page)
    assert overflow(page) == [], f"modal at {width} px"
    retrain_now(page).scroll_into_view_if_needed()
    box = retrain_now(page).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"modal-{width}.png"))
    dialog(page).get_by_role("button", name="Cancel").click()

    for path in ("/alerts/?status=all", "/hosts/"):
        page.goto(path)
        assert overflow(page) == [], f"{path} at {width} px"
    page.screenshot(path=str(ARTIFACTS / f"hosts-{width}.png"), full_page=True)
