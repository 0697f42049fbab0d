"""The OpenAPI schema (drf-spectacular): what it cannot guess from views that are plain APIViews."""
from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class AutoSchema(openapi.AutoSchema):
    """Every view declares its bodies with extend_schema (the serializers of each app's schema.py): nothing is guessed."""

    def get_operation_id(self) -> str:
        # A GET on a collection and on one of its items would otherwise share one id (path variables are dropped).
        operation_id = super().get_operation_id()
        last = self.path.rstrip("/").rsplit("/", 1)[-1]
        if self.method == "GET" and last.startswith("{"):
            return f"{operation_id}_by_{last.strip('{}')}"
        return operation_id


class AgentKeyScheme(OpenApiAuthenticationExtension):
    target_class = "telemetry.authentication.AgentKeyAuthentication"
    name = "agentKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "Agents: `Api-Key <key>` (or HTTP Basic with the key as the password)."}


class AgentBasicScheme(OpenApiAuthenticationExtension):
    target_class = "telemetry.authentication.AgentBasicAuthentication"
    name = "agentBasic"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic",
                "description": "Agents such as an unmodified Voltaxe Sentinel: any user name, the agent key as the password."}


# --- the shapes every app shares (API.md: every error body has a human-readable `detail`) -----------------


class Error(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in a sentence a person can act on.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="A 400's messages by field (or list position); empty when no one field is to blame.")


class RateLimitedError(serializers.Serializer):
    detail = serializers.CharField()
    retry_after = serializers.IntegerField(help_text="Seconds to wait; also in the Retry-After header.")


class Detail(serializers.Serializer):
    detail = serializers.CharField()


REFUSALS = {
    400: "Bad input: `detail` says what to change and `errors` names each field; nothing was stored.",
    401: 'Not authenticated: {"detail": "Not authenticated"}.',
    403: "Authenticated, but not allowed to do this.",
    404: "Nothing of that id or name.",
    409: "Conflicts with what is stored; what is stored is kept.",
    413: "The body is larger than this route takes; it was not read.",
    429: "Too many requests: wait `retry_after` seconds (also the Retry-After header).",
}
# Goes in the `parameters` of a view that answers 429: the header of that answer.
RETRY_AFTER = OpenApiParameter("Retry-After", int, location=OpenApiParameter.HEADER, response=[429],
                               description="Seconds to wait before trying again.")


def refusals(*codes: int, said: dict[int, str] | None = None) -> dict[int, OpenApiResponse]:
    """The error answers of an operation, each with the contract's body; `said` words one for this view."""
    said = said or {}
    return {code: OpenApiResponse(RateLimitedError if code == 429 else Error, said.get(code, REFUSALS[code]))
            for code in codes}


# --- voltaxe's own doors: the tokens and /healthz -----------------------------------------------------------


class TokenObtainIn(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True)


class TokenPair(serializers.Serializer):
    access = serializers.CharField(help_text="For `Authorization: Bearer <access>`.")
    refresh = serializers.CharField(help_text="For /api/auth/token/refresh/ and /api/auth/logout/.")


class RefreshIn(serializers.Serializer):
    refresh = serializers.CharField()


class AccessToken(serializers.Serializer):
    access = serializers.CharField()


HEALTH_STATUSES = ["ok", "error"]


class NotificationsHealth(serializers.Serializer):
    channels = serializers.IntegerField(help_text="Enabled notification channels.")
    failing = serializers.ListField(child=serializers.CharField(), help_text="The names of those failing every attempt.")


class Health(serializers.Serializer):
    status = serializers.ChoiceField(HEALTH_STATUSES)
    database = serializers.CharField(help_text='"ok", or "error: <what failed>".')
    worker = serializers.ChoiceField(["ok", "down"])
    active_model = serializers.IntegerField(allow_null=True, help_text="The active model's version, or null.")
    notifications = NotificationsHealth(required=False)
