"""Agent authentication: `Authorization: Api-Key <key>`. Kept apart from voltaxe.api so DRF settings can import it."""
from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework_api_key.permissions import KeyParser

from telemetry.models import AgentKey


class Agent:
    """The principal behind an agent key: may ingest telemetry, nothing else."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, key: AgentKey):
        self.key = key
        self.username = f"agent:{key.name}"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj=None) -> bool:
        return False


class AgentKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>`; keys are hashed at rest and can be revoked."""

    keyword = "Api-Key"

    def authenticate(self, request):
        key = KeyParser().get(request)
        if key is None:
            return None
        prefix, _, _ = key.partition(".")
        agent_key = AgentKey.objects.filter(prefix=prefix).first()
        if agent_key is None or not agent_key.is_valid(key):
            raise exceptions.AuthenticationFailed("This agent key is not valid; create one with `manage.py create_agent NAME`.")
        if agent_key.revoked:
            raise exceptions.AuthenticationFailed("This agent key has been revoked; ask an administrator for a new one.")
        if agent_key.has_expired:
            raise exceptions.AuthenticationFailed("This agent key has expired; ask an administrator for a new one.")
        return Agent(agent_key), agent_key

    def authenticate_header(self, request) -> str:
        return self.keyword
