"""Project-wide scheduled jobs."""
from __future__ import annotations

from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken


def tokens_flush_task() -> str:
    """Daily: forget refresh tokens that have expired (their blacklist entries go with them)."""
    deleted, _ = OutstandingToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return f"deleted {deleted} expired token row(s)"
