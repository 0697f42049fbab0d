"""The Live page is telemetry's: it stands without axon, and a panel's parts come only from the panel."""
import re

import pytest
from django.urls import include, path

from axon.views import ModelPanel
from telemetry import views
from tests import fleet
from tests.conftest import REPO
from voltaxe import nav

# The site as it would be without axon: telemetry's pages only (no panic button, no alerts workspace, no axon API).
urlpatterns = [path("", include("telemetry.urls"))]


@pytest.fixture
def without_axon(monkeypatch):
    """Axon unregistered from every seam the Live page and its base template read."""
    monkeypatch.setattr(views, "panels", [])
    monkeypatch.setattr(views, "hour_link", None)
    monkeypatch.setattr(nav, "links", [])


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_the_page_renders_without_any_panel_and_names_nothing_of_axon(client, analyst, without_axon):
    fleet.history(days=1)
    client.force_login(analyst)
    response = client.get("/live-telemetry/")  # an axon URL named anywhere would be a NoReverseMatch here
    assert response.status_code == 200
    html = response.content.decode()
    for key in views.LIVE_FRAGMENTS:
        assert len(re.findall(rf'id="{key}"', html)) == 1, key
    assert "Recent snapshots" in html and "Activity, last 24 hours" in html and "<rect" in html
    for key in ModelPanel.fragments:
        assert f'id="{key}"' not in html, key
    assert "panic" not in html.lower()
    rendered = {t.origin.name for t in response.templates if t.origin.name}
    assert rendered and not [name for name in rendered if name.startswith(str(REPO / "axon"))]
    assert {t.name for t in response.templates} >= {"telemetry/live.html", *views.LIVE_FRAGMENTS.values()}

    poll = client.get("/live-telemetry/data/")
    assert poll.status_code == 200 and set(poll.json()["fragments"]) == set(views.LIVE_FRAGMENTS)


@pytest.mark.django_db
def test_each_live_part_is_on_the_page_once_where_its_panel_put_it(client, admin_user):
    """The ids are the panel's: its sections hold the elements, its fragments fill them, the page names neither."""
    client.force_login(admin_user)
    html = client.get("/live-telemetry/").content.decode()
    for key in views.live_templates():
        assert len(re.findall(rf'id="{key}"', html)) == 1, key
    # In the panel's order, at its places: the training banner under the figures, the rest below the snapshots.
    order = [html.index(f'id="{key}"') for key in ("figures", "training-banner", "snapshots-body", "alerts-body",
                                                   "runs-body", "versions-body", "approvals-body", "panic-modal")]
    assert order == sorted(order)
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/static/axon/panel.js", "/static/js/live.js"]
