"""django-q2 tasks: thin wrappers around the notification services."""
from __future__ import annotations

from audit.notifications import services


def notify_dispatch_task(messages: list[dict]) -> str:
    deliveries = services.messages_dispatch(messages)
    return f"{len(messages)} message(s), {len(deliveries)} delivery(ies)"


def notify_tick_task() -> str:
    return services.notifications_tick()
