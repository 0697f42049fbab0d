"""Agent authentication: `Authorization: Api-Key <key>`, or HTTP Basic with the key as the password.

Kept apart from telemetry.api so DRF settings can import it.
"""
from __future__ import annotations

import base64

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
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
        self.username = key.principal

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj=None) -> bool:
        return False


def agent_key_check(key: str) -> tuple[Agent, AgentKey]:
    """The one check behind every way an agent presents its key: hash, revocation, expiry."""
    prefix, _, _ = key.partition(".")
    # A made-up prefix is looked up like any other, but one PostgreSQL cannot compare (a NUL) was a 500.
    usable = prefix and prefix.isascii() and prefix.isprintable()
    agent_key = AgentKey.objects.filter(prefix=prefix).first() if usable else None
    if agent_key is None or not agent_key.is_valid(key):
        raise exceptions.AuthenticationFailed("This agent key is not valid; create one with `manage.py create_agent NAME`.")
    if agent_key.revoked:
        raise exceptions.AuthenticationFailed("This agent key has been revoked; ask an administrator for a new one.")
    if agent_key.has_expired:
        raise exceptions.AuthenticationFailed("This agent key has expired; ask an administrator for a new one.")
    return Agent(agent_key), agent_key


class AgentKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>`; keys are hashed at rest and can be revoked."""

    keyword = "Api-Key"

    def authenticate(self, request):
        key = KeyParser().get(request)
        if key is None:
            return None
        return agent_key_check(key)

    def authenticate_header(self, request) -> str:
        return self.keyword


class AgentBasicAuthentication(BaseAuthentication):
    """HTTP Basic with an agent key as the password (any user name), for agents that can only put a secret in a URL.

    The Voltaxe Sentinel's server URL `https://agent:<key>@host` becomes `Authorization: Basic`.
    Only agent keys are accepted here: a person's password never authenticates the API.
    """

    def authenticate(self, request):
        keyword, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if keyword.lower() != "basic":
            return None
        try:
            _, colon, key = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            colon = key = ""
        if not colon or not key:
            raise exceptions.AuthenticationFailed(
                "HTTP Basic credentials must be user:key with an agent key as the password, e.g. https://agent:<key>@host."
            )
        return agent_key_check(key)

    def authenticate_header(self, request) -> str:
        return 'Basic realm="voltaxe agents"'


class IsAgent(BasePermission):
    message = "Only agents (Authorization: Api-Key <key>, or HTTP Basic with the key as the password) may send telemetry."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, AgentKey)
