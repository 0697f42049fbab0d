"""Notification channels and deliveries: one service per action, every door (API, admin, task) calls these.

Storm control, per channel: one message per alert group per NOTIFY_GROUP_WINDOW_SECONDS (repeats
are counted, not sent), and at most NOTIFY_RATE messages; what the rate holds back is counted by
kind and sent as one `digest` by the next tick (every minute). Delivery: one attempt at once,
then retries at RETRY_AFTER (1, 2, 5, 10, 30 and 60 minutes after each failure: 7 attempts
over about 1 h 50 min), each recorded; FAILING_AFTER failures in a row mark the channel failing
until a delivery succeeds.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditEvent, Channel, Delivery
from audit.notifications import senders
from audit.notify import KINDS, SEVERITIES, message, severity_rank
from audit.services import audit_record
from voltaxe.rates import parse_rate

RETRY_AFTER = [timedelta(minutes=m) for m in (1, 2, 5, 10, 30, 60)]
FAILING_AFTER = 3
FIELDS = ("name", "kind", "target", "secret", "events", "min_severity", "format", "enabled")


class InvalidChannel(Exception):
    def __init__(self, detail: str, errors: dict):
        super().__init__(detail)
        self.detail, self.errors = detail, errors


# --- channels ------------------------------------------------------------------------------


def channel_clean(data: dict, *, instance: Channel | None = None) -> dict:
    """The channel's fields after `data` is applied, checked; raises InvalidChannel naming each wrong field."""
    if not isinstance(data, dict):
        raise InvalidChannel("Send the channel as a JSON object.", {"non_field_errors": ["expected an object"]})
    unknown = sorted(set(data) - set(FIELDS))
    values: dict[str, Any] = {f: getattr(instance, f) for f in FIELDS} if instance else {
        "secret": "", "events": ["*"], "min_severity": "low", "format": "json", "enabled": True}
    values.update({k: v for k, v in data.items() if k in FIELDS})
    errors: dict[str, list[str]] = {f: ["not a field of a channel"] for f in unknown}
    for text_field, most in (("name", 100), ("target", 2048), ("secret", 255)):
        value = values.get(text_field)
        if not isinstance(value, str) or "\x00" in value or len(value) > most:
            errors[text_field] = [f"must be text of at most {most} characters"]
    if isinstance(values.get("name"), str) and not values["name"].strip():
        errors["name"] = ["required"]
    kind, target = values.get("kind"), values.get("target", "")
    if kind not in Channel.Kind.values:
        errors["kind"] = [f"must be one of {', '.join(Channel.Kind.values)}"]
    elif "target" not in errors:
        try:
            _target_check(kind, target)
        except ValueError as exc:
            errors["target"] = [str(exc)]
    events = values.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        errors["events"] = ['must be a list of event kinds, or ["*"]']
    elif bad := [e for e in events if e != "*" and e not in KINDS]:
        errors["events"] = [f"unknown kind {bad[0]!r}; kinds are {', '.join(KINDS)}, or *"]
    if values.get("min_severity") not in SEVERITIES:
        errors["min_severity"] = [f"must be one of {', '.join(SEVERITIES)}"]
    if values.get("format") not in Channel.Format.values:
        errors["format"] = ["must be json or cef"]
    if not isinstance(values.get("enabled"), bool):
        errors["enabled"] = ["must be true or false"]
    if "name" not in errors:
        same_name = Channel.objects.filter(name=values["name"].strip())
        if (same_name.exclude(pk=instance.pk) if instance else same_name).exists():
            errors["name"] = ["another channel has this name"]
    if errors:
        field, said = next(iter(errors.items()))
        raise InvalidChannel(f"{field}: {said[0]}. Nothing was saved.", errors)
    values["name"] = values["name"].strip()
    return values


def _target_check(kind: str, target: str) -> None:
    if kind in (Channel.Kind.WEBHOOK, Channel.Kind.SLACK):
        try:
            URLValidator(schemes=["http", "https"])(target)
        except ValidationError:
            raise ValueError("must be an http:// or https:// URL, e.g. https://hooks.example/voltaxe") from None
    elif kind == Channel.Kind.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        try:
            for address in addresses:
                validate_email(address)
        except ValidationError:
            raise ValueError(f"{address!r} is not an e-mail address; give addresses separated by commas") from None
        if not addresses:
            raise ValueError("give at least one e-mail address")
    else:
        senders.syslog_address(target)


def channel_create(*, actor, data: dict, request=None) -> tuple[Channel, str]:
    """A new channel; returns it and its webhook secret (generated when none was given), shown this once."""
    values = channel_clean(data)
    if values["kind"] == Channel.Kind.WEBHOOK and not values["secret"]:
        values["secret"] = secrets.token_urlsafe(32)
    channel = Channel.objects.create(**values)
    _audit("notification.channel_created", channel, actor, request)
    return channel, values["secret"]


def channel_update(*, actor, channel: Channel, data: dict, request=None) -> Channel:
    values = channel_clean(data, instance=channel)
    changed = sorted(f for f in FIELDS if values[f] != getattr(channel, f))
    for field in changed:
        setattr(channel, field, values[field])
    channel.save()
    _audit("notification.channel_changed", channel, actor, request, changed=changed)
    return channel


def channel_delete(*, actor, channel: Channel, request=None) -> None:
    _audit("notification.channel_deleted", channel, actor, request)
    channel.delete()


def _audit(action: str, channel: Channel, actor, request, **extra) -> None:
    # Never the secret: the trail is read by people who may not sign as the channel.
    audit_record(action=action, actor=actor, request=request, resource_type="notification_channel",
                 resource_id=channel.pk, details={"name": channel.name, "kind": channel.kind, "target": channel.target,
                                                  "events": channel.events, "min_severity": channel.min_severity, **extra})


def channel_json(channel: Channel) -> dict:
    return {"id": channel.pk, "name": channel.name, "kind": channel.kind, "target": channel.target,
            "events": channel.events, "min_severity": channel.min_severity, "format": channel.format,
            "enabled": channel.enabled, "created_at": channel.created_at, "failing": channel.failing_since is not None,
            "failing_since": channel.failing_since, "has_secret": bool(channel.secret)}


def channel_test(*, actor, channel: Channel, request=None) -> senders.Answer:
    """Send a `test` message now, bypassing storm control and the queue; returns what the receiver answered."""
    who = getattr(actor, "get_username", lambda: "")()
    payload = message("test", severity="low", url=_absolute("/admin/audit/channel/"),
                      summary=f"Test message from Voltaxe to channel {channel.name}" + (f", sent by {who}" if who else ""))
    delivery = Delivery.objects.create(channel=channel, kind="test", message_id=payload["id"], payload=payload)
    answer = delivery_attempt(delivery=delivery, retry=False)
    _audit("notification.tested", channel, actor, request, delivered=answer.delivered, status=answer.status)
    return answer


def channels_failing() -> list[str]:
    return list(Channel.objects.filter(enabled=True, failing_since__isnull=False).values_list("name", flat=True))


def failing_warnings(user) -> list[str]:
    """What every page tells a security admin while a channel keeps failing: nobody is being told."""
    if not user.has_perm("audit.view_channel"):
        return []
    return [f"Notification channel {c.name} has failed every attempt since {c.failing_since:%Y-%m-%d %H:%M} UTC: "
            "messages to it are not arriving (see Admin > Deliveries)."
            for c in Channel.objects.filter(enabled=True, failing_since__isnull=False).order_by("name")[:5]]


def health() -> dict:
    """For /healthz: how many channels are enabled, and which are failing."""
    return {"channels": Channel.objects.filter(enabled=True).count(), "failing": channels_failing()}


# --- sending -------------------------------------------------------------------------------


def _absolute(url: str) -> str:
    return settings.VOLTAXE_URL.rstrip("/") + url if url.startswith("/") else url


def _wants(channel: Channel, kind: str, severity: str) -> bool:
    return ("*" in channel.events or kind in channel.events) and severity_rank(severity) >= severity_rank(
        channel.min_severity)


def messages_dispatch(messages: list[dict]) -> list[Delivery]:
    """Fan messages out to the channels that want them, under storm control, and make the first attempt of each."""
    channels = list(Channel.objects.filter(enabled=True))
    limit, period = parse_rate(settings.NOTIFY_RATE)
    window = timedelta(seconds=settings.NOTIFY_GROUP_WINDOW_SECONDS)
    created: list[Delivery] = []
    for channel in channels:
        wanted = [m for m in messages if _wants(channel, m["kind"], m["event"]["severity"])]
        if not wanted:
            continue
        # The channel's row is the lock: two workers never both send one group, nor both take the last of the rate.
        with transaction.atomic():
            locked = Channel.objects.select_for_update().get(pk=channel.pk)
            now = timezone.now()
            sent = Delivery.objects.filter(channel=locked, created_at__gt=now - period, held=False).exclude(
                kind__in=("test", "digest")).count()
            groups = {m["group"] for m in wanted if m.get("group")}
            recent = set(Delivery.objects.filter(channel=locked, group__in=groups, created_at__gt=now - window)
                         .values_list("group", flat=True)) if groups else set()
            for m in wanted:
                group = m.get("group", "")
                if group in recent:
                    _hold(locked, "repeats", now)
                    continue
                payload = {k: v for k, v in m.items() if k != "group"}
                payload.update(id=f"{m['id'][:16]}{locked.pk:016x}", url=_absolute(m.get("url", "")))
                held = sent >= limit
                # A held message is kept (the admin lists it, the digest samples it) and counts as its group's one.
                delivery = Delivery.objects.create(channel=locked, kind=m["kind"], message_id=payload["id"], group=group,
                                                   payload=payload, created_at=now, held=held,
                                                   last_status="held" if held else "")
                if held:
                    _hold(locked, m["kind"], now)
                else:
                    created.append(delivery)
                    sent += 1
                if group:
                    recent.add(group)
            if locked.held_since is not None:
                locked.save(update_fields=["held", "held_since"])
    for delivery in created:
        delivery_attempt(delivery=delivery)
    return created


def _hold(channel: Channel, what: str, now) -> None:
    channel.held[what] = channel.held.get(what, 0) + 1
    channel.held_since = channel.held_since or now


def digests_send() -> list[Delivery]:
    """One `digest` per channel that storm control held messages back from, counting them; then the count starts again."""
    sent = []
    for channel_id in Channel.objects.filter(enabled=True, held_since__isnull=False).values_list("pk", flat=True):
        with transaction.atomic():
            channel = Channel.objects.select_for_update().get(pk=channel_id)
            held, since = channel.held, channel.held_since
            if since is None:
                continue
            channel.held, channel.held_since = {}, None
            channel.save(update_fields=["held", "held_since"])
            repeats = held.pop("repeats", 0)
            total = sum(held.values())
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(held.items()))
            summary = (f"Storm control held back {total} message(s) since {since:%H:%M:%S} UTC ({kinds or 'none'})"
                       f" and {repeats} repeat(s) of alert groups already sent; see the Live page for all of them")
            severity = "high" if total else "low"
            sample = list(Delivery.objects.filter(channel=channel, held=True, created_at__gte=since).order_by("id")
                          .values_list("payload__summary", flat=True)[:10])
            payload = message("digest", summary=summary, severity=severity, url=_absolute("/live-telemetry/"),
                              details={"held": held, "repeats": repeats, "since": since.isoformat(), "sample": sample})
            sent.append(Delivery.objects.create(channel=channel, kind="digest", message_id=payload["id"], payload=payload))
    for delivery in sent:
        delivery_attempt(delivery=delivery)
    return sent


def delivery_attempt(*, delivery: Delivery, retry: bool = True) -> senders.Answer:
    """One attempt, recorded; on failure the next is scheduled (RETRY_AFTER), or the delivery is given up."""
    channel = delivery.channel
    answer = senders.send(channel, delivery.payload)
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_status, delivery.latency_ms = answer.status, answer.latency_ms
    delivery.error = "" if answer.delivered else answer.detail
    delivery.history = [*delivery.history, {"at": now.isoformat(), "status": answer.status,
                                            "latency_ms": answer.latency_ms, "error": delivery.error[:200]}]
    if answer.delivered:
        delivery.delivered_at, delivery.next_attempt_at = now, None
        Channel.objects.filter(pk=channel.pk).update(failures_in_row=0, failing_since=None)
    else:
        more = retry and delivery.attempts <= len(RETRY_AFTER)
        delivery.next_attempt_at = now + RETRY_AFTER[delivery.attempts - 1] if more else None
        Channel.objects.filter(pk=channel.pk).update(failures_in_row=F("failures_in_row") + 1)
        Channel.objects.filter(pk=channel.pk, failing_since__isnull=True,
                               failures_in_row__gte=FAILING_AFTER).update(failing_since=now)
    delivery.save()
    if answer.delivered or delivery.next_attempt_at is None:
        audit_record(action="notification.sent", resource_type="notification_channel", resource_id=channel.pk,
                     outcome=AuditEvent.Outcome.SUCCESS if answer.delivered else AuditEvent.Outcome.FAILURE,
                     details={"channel": channel.name, "kind": delivery.kind, "delivery": delivery.message_id,
                              "summary": delivery.payload.get("summary", "")[:300], "attempts": delivery.attempts,
                              "status": answer.status, "error": delivery.error[:300]})
    return answer


def deliveries_retry(*, limit: int = 100) -> int:
    """Attempt again the deliveries whose retry is due; claimed first, so two workers never send one twice."""
    done = 0
    due_now = Delivery.objects.filter(next_attempt_at__lte=timezone.now(), channel__enabled=True)
    for pk in due_now.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        due = Delivery.objects.filter(pk=pk, next_attempt_at__lte=timezone.now())
        if due.update(next_attempt_at=None):
            delivery_attempt(delivery=Delivery.objects.select_related("channel").get(pk=pk))
            done += 1
    return done


def notifications_tick() -> str:
    """Every minute: retries that are due, then the digests of what storm control held back."""
    retried = deliveries_retry()
    digests = digests_send()
    return f"retried {retried}, sent {len(digests)} digest(s)"


def deliveries_list(*, channel: str = "", kind: str = "", offset: int = 0, limit: int = 100) -> tuple[list[Delivery], bool]:
    qs = Delivery.objects.all()
    if channel:
        qs = qs.filter(channel_id=int(channel)) if channel.isdigit() else qs.filter(channel__name=channel)
    if kind:
        qs = qs.filter(kind=kind)
    rows = list(qs[offset:offset + limit + 1])
    return rows[:limit], len(rows) > limit


def delivery_json(d: Delivery) -> dict:
    return {"id": d.pk, "message_id": d.message_id, "channel": d.channel_id, "kind": d.kind, "created_at": d.created_at,
            "attempts": d.attempts, "last_status": d.last_status, "latency_ms": d.latency_ms,
            "delivered_at": d.delivered_at, "next_attempt_at": d.next_attempt_at, "error": d.error, "held": d.held,
            "summary": d.payload.get("summary", "")}
