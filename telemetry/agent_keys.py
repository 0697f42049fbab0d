"""Agent keys and the hosts bound to them: which key may report for which host, creating keys, moving hosts."""
from __future__ import annotations

from typing import cast

from django.db import transaction

from audit import notify
from audit.actors import Actor
from audit.services import actor_name
from telemetry.models import AgentHost, AgentKey

# Why a key may not report for a host, as the audit log says it.
BOUND_ELSEWHERE = "host bound to another key"
NOT_BOUND_HERE = "host not bound to this key"


def agent_hosts_refused(*, agent: AgentKey | None, hostnames: set[str]) -> dict[str, str]:
    """The hostnames among `hostnames` that this key may not report for, each with the reason.

    A key reports for the hosts bound to it. An enrolling key is bound to each host nobody owns
    yet as it first reports for it; a concurrent claim by another key wins or loses on the
    hostname's unique constraint. A relay reports for hosts bound to no key too, and binds none
    of them; a host bound to a key is that key's alone, or a relay could write it and take its
    next timestamps (issue 19). The server itself (agent None) reports for any host.
    """
    if agent is None or not hostnames:
        return {}
    owners = dict(AgentHost.objects.filter(hostname__in=hostnames).values_list("hostname", "key_id"))
    free = sorted(h for h in hostnames if h not in owners)
    if free and agent.scope == AgentKey.Scope.ENROLL:
        AgentHost.objects.bulk_create([AgentHost(hostname=h, key=agent) for h in free], ignore_conflicts=True)
        owners.update(AgentHost.objects.filter(hostname__in=free).values_list("hostname", "key_id"))
    relay = agent.scope == AgentKey.Scope.RELAY
    return {h: BOUND_ELSEWHERE if h in owners else NOT_BOUND_HERE
            for h in hostnames if owners.get(h) != agent.pk and not (relay and h not in owners)}


class HostTaken(ValueError):
    """Hosts already bound to other keys; moving them is a deliberate, audited step."""

    def __init__(self, taken: dict[str, AgentKey]):
        self.taken = taken
        listed = ", ".join(f"{h} (key {k.name!r}, prefix {k.prefix})" for h, k in sorted(taken.items()))
        super().__init__(f"Already bound to another agent key: {listed}. A host reports with one key at a time; "
                         "move it deliberately (create_agent --move, or change the host binding in the admin).")


def agent_key_create(*, name: str, hosts: list[str] | tuple = (), any_host: bool = False, move: bool = False,
                     actor: Actor) -> tuple[AgentKey, str]:
    """A new agent key bound to `hosts` (or a relay for any host); returns (key, the secret shown once).

    A host bound to another key is refused (HostTaken) unless `move`: then it is rebound to the new
    key, each move audited; the old key is not revoked (it keeps its other hosts). Who may is the door's
    to check (the admin's permissions; the command is the operator's shell), as before; the audit says which door.
    """
    name = name.strip()[:50]
    hosts = sorted({h.strip() for h in hosts if h.strip()})
    if not name:
        raise ValueError("Give the agent a name, e.g. `manage.py create_agent laptop-12`.")
    if any_host and hosts:
        raise ValueError("A relay key (--any-host) reports for any host; give it no --host.")
    if not any_host and not hosts:
        hosts = [name]
    with transaction.atomic():
        bound = AgentHost.objects.select_related("key").select_for_update().filter(hostname__in=hosts)
        taken = {b.hostname: b.key for b in bound}
        if taken and not move:
            raise HostTaken(taken)
        created, secret = AgentKey.objects.create_key(
            name=name, scope=AgentKey.Scope.RELAY if any_host else AgentKey.Scope.HOSTS
        )
        agent = cast(AgentKey, created)
        for hostname in hosts:
            if hostname in taken:
                agent_host_move(hostname=hostname, key=agent, actor=actor)
            else:
                AgentHost.objects.create(hostname=hostname, key=agent)
        actor.audit("agent.created", resource_type="agent_key", resource_id=agent.prefix,
                    details={"name": agent.name, "scope": agent.scope, "hosts": hosts, "via": actor.door})
        agent_notify("agent.created", agent, actor.user, hosts)
    return agent, secret


def agent_host_move(*, hostname: str, key: AgentKey, actor: Actor) -> AgentHost:
    """Bind `hostname` to `key` (a re-imaged machine with a new key), audited; the previous key is not revoked."""
    with transaction.atomic():
        binding = AgentHost.objects.select_for_update().filter(hostname=hostname).select_related("key").first()
        previous = binding.key if binding else None
        if binding is None:
            binding = AgentHost.objects.create(hostname=hostname, key=key)
        elif previous is not None and previous.pk != key.pk:
            binding.key = key
            binding.save(update_fields=["key"])
        actor.audit("agent.host_moved", resource_type="host", resource_id=hostname[:64],
                    details={"hostname": hostname, "to_key": key.prefix, "to_name": key.name,
                             "from_key": previous.prefix if previous else None,
                             "from_name": previous.name if previous else None, "via": actor.door,
                             "note": "the previous key was not revoked"})
        if previous is not None and previous.pk != key.pk:
            agent_notify("agent.rebound", key, actor.user, [hostname], previous=previous)
    return binding


def agent_notify(kind: str, agent: AgentKey, actor, hosts: list[str], previous: AgentKey | None = None) -> None:
    """Tell people of an agent key created, revoked or rebound; the message names the key by its prefix, never the key."""
    who = actor_name(actor) or "an operator"
    what = {"agent.created": f"created agent key {agent.name!r} ({agent.prefix}) for "
                             f"{', '.join(hosts) if hosts else 'any host (relay)'}",
            "agent.revoked": f"revoked agent key {agent.name!r} ({agent.prefix})",
            "agent.rebound": f"moved host {', '.join(hosts)} to agent key {agent.name!r} ({agent.prefix})"
                             + (f" from {previous.name!r} ({previous.prefix}), which was not revoked" if previous else "")}
    notify.emit(kind, severity="medium", summary=f"{who} {what[kind]}", url="/admin/telemetry/agentkey/",
                host=hosts[0] if len(hosts) == 1 else "", user=actor_name(actor),
                details={"key_prefix": agent.prefix, "name": agent.name, "hosts": hosts,
                         "previous_key_prefix": previous.prefix if previous else None})
