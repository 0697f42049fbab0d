from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        DENIED = "denied"

    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as written at the time: the user may be renamed or deleted later.
    actor_name = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    resource_type = models.CharField(max_length=64, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # Identical repeats (the same refusal hammered by a script) are counted on one event
    # instead of written one by one: `timestamp` is the first, `last_seen` the latest.
    count = models.PositiveIntegerField(default=1)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["resource_type", "resource_id"], name="audit_resource")]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action} {self.outcome}"


class Channel(models.Model):
    """Where messages go: a webhook, a Slack incoming webhook, e-mail addresses or a syslog collector (issue 22)."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook"
        SLACK = "slack"
        EMAIL = "email"
        SYSLOG = "syslog"

    class Format(models.TextChoices):
        JSON = "json"
        CEF = "cef"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    target = models.CharField(max_length=2048, help_text="A URL, comma-separated e-mail addresses, or "
                                                         "udp|tcp|tls://host:port for syslog.")
    # Signs webhook bodies; never shown again after creation (the API's 201 and the admin's message show it once).
    secret = models.CharField(max_length=255, blank=True)
    events = models.JSONField(default=list, help_text='Event kinds, or ["*"] for all.')
    min_severity = models.CharField(max_length=8, default="low")
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON, help_text="syslog only")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Failing: this many attempts in a row failed (audit.notifications.services.FAILING_AFTER); cleared by a delivery.
    failures_in_row = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    # Storm control: what the rate held back since the last digest, by kind, and repeats of alert groups already sent.
    held = models.JSONField(default=dict, blank=True)
    held_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Delivery(models.Model):
    """One message to one channel, with every attempt to deliver it."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=32, db_index=True)
    # The idempotency id (Voltaxe-Delivery): the same on every retry of this message.
    message_id = models.CharField(max_length=32, unique=True)
    group = models.CharField(max_length=64, blank=True, help_text="The alert group, for storm control.")
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status = models.CharField(max_length=64, blank=True, help_text="What the receiver answered, or why none did.")
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    # [{"at", "status", "latency_ms", "error"}], one per attempt.
    history = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When the next attempt is due; None once delivered or given up.
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Held back by storm control's rate: never sent on its own, counted in the channel's next digest.
    held = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["channel", "group", "created_at"], name="audit_delivery_group")]

    def __str__(self) -> str:
        return f"{self.kind} to {self.channel.name}: {self.state}"

    @property
    def state(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.held:
            return "held (in a digest)"
        return "retrying" if self.next_attempt_at else ("given up" if self.attempts else "pending")
