"""The main nav's links to pages of the apps above the project, registered in their AppConfig.ready.

templates/base.html is rendered by every app's pages; naming an upper app's URL there would make
the lower apps' pages depend on it. An app adds (label, URL name) here instead, as axon adds Alerts.
"""
from __future__ import annotations

from django.urls import reverse

links: list[tuple[str, str]] = []


def nav(request) -> dict:
    return {"nav_links": [(label, reverse(name)) for label, name in links]}
