"""The main nav's links to pages of the apps above the project, registered in their AppConfig.ready.

templates/base.html is rendered by every app's pages; naming an upper app's URL there would make
the lower apps' pages depend on it. An app adds (label, URL name) here instead, as axon adds Alerts.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse

links: list[tuple[str, str]] = []
# What every page warns its user of (a notification channel failing, say): each takes the user and returns
# sentences, registered the same way. Kept cheap: it runs on every page.
warnings: list[Callable[[Any], list[str]]] = []


def nav(request) -> dict:
    user = getattr(request, "user", None)
    said = [line for warn in warnings for line in warn(user)] if user is not None and user.is_authenticated else []
    return {"nav_links": [(label, reverse(name)) for label, name in links], "page_warnings": said}
