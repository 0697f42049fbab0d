"""Small request bodies, validated the same way whichever door they come through."""
from __future__ import annotations

from rest_framework import serializers

from telemetry.validation import encodable

MAX_REASON = 1000
MAX_EXCLUDE = 200
MAX_KEYS = 10_000


class Text(serializers.CharField):
    """A string and nothing else (DRF would turn 5 into "5"), storable in any database: no NUL, no lone surrogate."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if not encodable(data):
            raise serializers.ValidationError("must be text without unpaired surrogates")
        return super().to_internal_value(data)


class RetrainBody(serializers.Serializer):
    reason = Text(required=False, allow_blank=True, allow_null=True, max_length=MAX_REASON, default="")
    exclude = serializers.ListField(child=Text(min_length=1, max_length=255), required=False, allow_null=True,
                                    default=list, max_length=MAX_EXCLUDE)
    # Absent or null: the preview's default items. A list, even empty: exactly these preview keys.
    approve = serializers.ListField(child=Text(min_length=1, max_length=64), required=False, allow_null=True,
                                    default=None, max_length=MAX_KEYS)
    # The second step a person takes for each high-risk key they approve (see press_selection).
    confirm_high_risk = serializers.ListField(child=Text(min_length=1, max_length=64), required=False,
                                              allow_null=True, default=list, max_length=MAX_KEYS)

    def validate(self, attrs):
        # null is as good as absent
        return {**attrs, "reason": attrs.get("reason") or "", "exclude": attrs.get("exclude") or [],
                "confirm_high_risk": attrs.get("confirm_high_risk") or []}


class TriageBody(serializers.Serializer):
    # Messages a person acts on: the page's empty form lands here too.
    keys = serializers.ListField(child=Text(min_length=1, max_length=64), min_length=1, max_length=MAX_KEYS,
                                 error_messages={"min_length": "tick at least one alert first.",
                                                 "required": "tick at least one alert first."})
    status = serializers.ChoiceField(choices=["open", "acknowledged", "malicious", "closed"], error_messages={
        "invalid_choice": "choose what to mark them: open, acknowledged, malicious or closed.",
        "required": "choose what to mark them: open, acknowledged, malicious or closed."})
    note = Text(required=False, allow_blank=True, max_length=MAX_REASON, default="")


def first_error(errors: dict) -> str:
    """'reason: Ensure this field has no more than 1000 characters.' from DRF's nested errors."""
    field, messages = next(iter(errors.items()))
    while isinstance(messages, (list, dict)):
        if isinstance(messages, dict):
            messages = next(iter(messages.values()))
        else:
            messages = messages[0]
    return f"{field}: {messages}" if field != "non_field_errors" else str(messages)
