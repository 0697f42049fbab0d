"""The OpenAPI schema (drf-spectacular): what it cannot guess from views that are plain APIViews."""
from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes


class AutoSchema(openapi.AutoSchema):
    """Bodies are JSON objects described in API.md; views without a serializer say so instead of being dropped."""

    def _get_serializer(self):
        view = self.view
        try:
            declared = view.get_serializer_class() if hasattr(view, "get_serializer_class") else view.serializer_class
        except Exception:  # none: a plain APIView, a GenericAPIView (it asserts), simplejwt's TokenViewBase (import)
            declared = None
        return OpenApiTypes.OBJECT if declared is None else super()._get_serializer()

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
