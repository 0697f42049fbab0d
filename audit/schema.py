"""What audit's API takes and answers (the audit log, notification channels), for the OpenAPI schema only."""
from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent, Channel
from audit.notify import KINDS, SEVERITIES


class AuditEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    timestamp = serializers.DateTimeField()
    actor = serializers.CharField(allow_blank=True)
    action = serializers.CharField(help_text="For example retrain.started, retrain.rate_limited, alert.triaged.")
    resource_type = serializers.CharField(allow_blank=True)
    resource_id = serializers.CharField(allow_blank=True, help_text="A run id, for a retrain's events.")
    outcome = serializers.ChoiceField(AuditEvent.Outcome.values)
    ip_address = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField(allow_blank=True)
    details = serializers.DictField(help_text="What the action recorded, by name.")
    count = serializers.IntegerField(help_text="Repeats of the same refusal, counted on one event.")
    last_seen = serializers.DateTimeField()


class AuditPage(serializers.Serializer):
    results = AuditEventOut(many=True, help_text="Newest first.")
    next = serializers.URLField(allow_null=True)


EVENTS_HELP = 'Event kinds, or ["*"] for all.'


class ChannelIn(serializers.Serializer):
    """A channel to create; a PATCH sends any of these fields."""

    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(Channel.Kind.values)
    target = serializers.CharField(max_length=2048, help_text="A URL, comma-separated e-mail addresses, or "
                                                              "udp|tcp|tls://host:port (syslog).")
    secret = serializers.CharField(required=False, write_only=True,
                                   help_text="Webhook: generated when absent and shown once in the 201.")
    events = serializers.ListField(child=serializers.ChoiceField([*KINDS, "digest", "test", "*"]), required=False,
                                   help_text=EVENTS_HELP)
    min_severity = serializers.ChoiceField(SEVERITIES, required=False)
    format = serializers.ChoiceField(Channel.Format.values, required=False, help_text="syslog only")
    enabled = serializers.BooleanField(required=False)


class ChannelOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(Channel.Kind.values)
    target = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField(), help_text=EVENTS_HELP)
    min_severity = serializers.ChoiceField(SEVERITIES)
    format = serializers.ChoiceField(Channel.Format.values)
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    failing = serializers.BooleanField()
    failing_since = serializers.DateTimeField(allow_null=True)
    has_secret = serializers.BooleanField(help_text="Secrets are never returned after creation.")


class ChannelCreated(ChannelOut):
    secret = serializers.CharField(required=False, help_text="A webhook's signing secret: shown this once.")


class ChannelPage(serializers.Serializer):
    results = ChannelOut(many=True)


class TestAnswer(serializers.Serializer):
    delivered = serializers.BooleanField()
    status = serializers.CharField(help_text='What the receiver answered: "200", "timeout", "refused", "sent" (UDP).')
    detail = serializers.CharField(allow_blank=True)
    latency_ms = serializers.FloatField()


class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.CharField(help_text="The Voltaxe-Delivery header: the same on every retry.")
    channel = serializers.IntegerField()
    kind = serializers.CharField()
    created_at = serializers.DateTimeField()
    attempts = serializers.IntegerField()
    last_status = serializers.CharField(allow_blank=True)
    latency_ms = serializers.FloatField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    held = serializers.BooleanField(help_text="Held back by storm control, for the digest.")
    summary = serializers.CharField(allow_blank=True)


class DeliveryPage(serializers.Serializer):
    results = DeliveryOut(many=True, help_text="Newest first.")
    next = serializers.URLField(allow_null=True)
