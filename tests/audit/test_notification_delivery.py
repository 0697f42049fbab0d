"""Delivery to real receivers: signed webhooks, Slack, e-mail, syslog (sockets and a real rsyslog); retries, failing
channels, and storm control."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit import notify
from audit.models import AuditEvent, Channel, Delivery
from audit.notifications import services
from tests.audit.conftest import channel
from tests.audit.receivers import Rsyslog, SilentServer, SyslogReceiver, WebhookReceiver, verify
from tests.conftest import _user

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync_queue(sync_queue):
    """`sync_queue(kind, **fields)`: emit, and carry the queued work out once it commits."""

    def emit(kind: str, **fields) -> None:
        with sync_queue():
            notify.emit(kind, **fields)

    return emit


PRESS = {"summary": "sam pressed the panic button (api): 2 program(s) to learn as normal, 1 left flagged",
         "severity": "medium", "url": "/admin/axon/trainingrun/7/change/", "user": "sam", "details": {"run_id": 7}}


def test_a_webhook_body_follows_the_schema_and_its_signature_verifies_by_the_readme_recipe(sync_queue, settings):
    settings.VOLTAXE_URL = "https://voltaxe.example"
    with WebhookReceiver() as receiver:
        hook = channel("webhook", receiver.url)
        sync_queue("panic.pressed", **PRESS)
    (request,) = receiver.requests
    body = json.loads(request["body"])
    assert verify(hook.secret, request["headers"], request["body"])
    assert not verify("another secret", request["headers"], request["body"])
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Voltaxe-Event"] == "panic.pressed" == body["kind"]
    assert request["headers"]["Voltaxe-Delivery"] == body["id"] == Delivery.objects.get().message_id
    assert body["url"] == "https://voltaxe.example/admin/axon/trainingrun/7/change/"
    assert body["event"] == {"severity": "medium"} and body["user"] == {"name": "sam"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["at"])
    assert set(body) == {"id", "kind", "at", "summary", "url", "event", "user", "details"}
    assert hook.secret not in request["body"].decode()
    event = AuditEvent.objects.get(action="notification.sent")
    assert event.outcome == "success" and event.details["kind"] == "panic.pressed"


def test_a_channel_gets_only_its_kinds_at_or_above_its_severity(sync_queue):
    with WebhookReceiver() as receiver:
        channel("webhook", receiver.url, events=["alert.new"], min_severity="high")
        sync_queue("panic.pressed", **PRESS)
        sync_queue("alert.new", summary="medium one", severity="medium", group="g1")
        sync_queue("alert.new", summary="high one", severity="high", group="g2")
    assert [b["summary"] for b in receiver.bodies()] == ["high one"]


def test_a_failed_delivery_is_retried_on_the_schedule_with_the_same_id_then_delivered(sync_queue):
    with WebhookReceiver(statuses=[500, 502, 200]) as receiver:
        channel("webhook", receiver.url)
        sync_queue("panic.pressed", **PRESS)
        delivery = Delivery.objects.get()
        assert (delivery.attempts, delivery.last_status, delivery.delivered_at) == (1, "500", None)
        first = delivery.created_at
        assert delivery.next_attempt_at - timezone.now() <= timedelta(minutes=1)
        services.notifications_tick()  # not due yet
        assert len(receiver.requests) == 1
        with time_machine.travel(first + timedelta(seconds=61), tick=False):
            services.notifications_tick()
        with time_machine.travel(first + timedelta(seconds=61 + 121), tick=False):
            services.notifications_tick()
    delivery.refresh_from_db()
    assert [h["status"] for h in delivery.history] == ["500", "502", "200"]
    assert delivery.delivered_at and delivery.next_attempt_at is None and delivery.error == ""
    assert len({r["headers"]["Voltaxe-Delivery"] for r in receiver.requests}) == 1
    assert not Channel.objects.get().failing_since


def test_a_receiver_that_never_answers_times_out_is_given_up_after_the_schedule_and_the_channel_is_failing(
        sync_queue, anon_client, admin_user, client):
    with SilentServer() as silent:
        hook = channel("webhook", silent.url)
        sync_queue("panic.pressed", **PRESS)
        start = Delivery.objects.get().created_at
        elapsed = timedelta()
        for wait in services.RETRY_AFTER:
            elapsed += wait + timedelta(seconds=1)
            with time_machine.travel(start + elapsed, tick=False):
                services.notifications_tick()
    delivery = Delivery.objects.get()
    assert delivery.attempts == 1 + len(services.RETRY_AFTER) == 7
    assert {h["status"] for h in delivery.history} == {"timeout"}
    assert delivery.next_attempt_at is None and delivery.delivered_at is None
    hook.refresh_from_db()
    assert hook.failing_since is not None and hook.failures_in_row == 7
    health = anon_client.get("/healthz").json()
    assert health["status"] == "ok" and health["notifications"] == {"channels": 1, "failing": [hook.name]}
    assert AuditEvent.objects.get(action="notification.sent").outcome == "failure"
    admin_user.is_staff = True  # the admin's door; the role carries the rights
    admin_user.save()
    client.force_login(admin_user)
    page = client.get("/admin/audit/channel/").content.decode()
    assert "failing since" in page and "7 failures in a row" in page
    # And on the pages people watch: a security admin is told nobody is being told; an analyst is not.
    live = client.get("/live-telemetry/").content.decode()
    assert f"Notification channel {hook.name} has failed every attempt since" in live
    analyst_page = Client()
    analyst_page.force_login(_user("ann", "Analyst"))
    assert "has failed every attempt" not in analyst_page.get("/live-telemetry/").content.decode()


def test_slack_gets_a_line_of_text_with_the_link(sync_queue, settings):
    settings.VOLTAXE_URL = "https://voltaxe.example"
    with WebhookReceiver() as receiver:
        channel("slack", receiver.url)
        sync_queue("panic.pressed", **PRESS)
    (body,) = receiver.bodies()
    assert body == {"text": f"{PRESS['summary']} <https://voltaxe.example{PRESS['url']}|open>"}
    assert "Voltaxe-Signature" not in receiver.requests[0]["headers"]


def test_email_goes_through_djangos_mail_backend(sync_queue, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel("email", "soc@example.com, cto@example.com")
    sync_queue("panic.pressed", **PRESS)
    (sent,) = mail.outbox
    assert sent.to == ["soc@example.com", "cto@example.com"]
    assert sent.subject == f"[Voltaxe] {PRESS['summary']}" and "/admin/axon/trainingrun/7/change/" in sent.body
    assert Delivery.objects.get().delivered_at is not None


@pytest.mark.parametrize(("proto", "fmt"), [("udp", "json"), ("tcp", "json"), ("tcp", "cef"), ("udp", "cef")])
def test_syslog_sends_rfc5424_with_json_or_cef(sync_queue, proto, fmt):
    with SyslogReceiver(proto) as receiver:
        channel("syslog", receiver.target, format=fmt)
        sync_queue("alert.new", summary="kdevtmpfsi started by nginx on api-01 from /tmp/kdevtmpfsi: never seen (high)",
                   severity="high", host="api-01", user="www-data", group="k1",
                   process={"name": "kdevtmpfsi", "executable": "/tmp/kdevtmpfsi", "parent": {"name": "nginx"}})
        (line,) = receiver.wait(1)
    match = re.fullmatch(r"<(\d+)>1 (\S+) (\S+) voltaxe - alert\.new - (.*)", line, re.S)
    assert match, line
    assert int(match[1]) == 16 * 8 + 2  # local0, critical
    content = match[4]
    if fmt == "json":
        assert json.loads(content)["host"] == {"name": "api-01"}
    else:
        assert content.startswith("CEF:0|Voltaxe|Voltaxe|1|alert.new|kdevtmpfsi started by nginx")
        assert "|8|" in content and "dhost=api-01" in content and "filePath=/tmp/kdevtmpfsi" in content


@pytest.mark.skipif(not Rsyslog.available(), reason="rsyslog is not installed (apt-get install rsyslog; bootstrap.py "
                                                    "test installs it as root)")
def test_a_real_rsyslog_receives_and_writes_the_message(sync_queue, tmp_path):
    with Rsyslog(tmp_path) as rsyslog:
        channel("syslog", rsyslog.target, format="cef")
        sync_queue("panic.pressed", **PRESS)
        written = rsyslog.wait("CEF:0|Voltaxe")
    assert "voltaxe panic.pressed CEF:0|Voltaxe|Voltaxe|1|panic.pressed|sam pressed the panic button" in written, written


def test_storm_control_one_message_per_group_per_window_then_a_digest_that_counts(sync_queue, settings):
    """10,000 flagged observations of 500 alert groups in a minute: the rate's 10 messages and one digest."""
    settings.NOTIFY_RATE = "10/m"
    with WebhookReceiver() as receiver:
        channel("webhook", receiver.url)
        for _burst in range(20):
            services.messages_dispatch([notify.message("alert.new", summary=f"name{g} on host{g % 7}", severity="high",
                                                       group=f"g{g}") for g in range(500)])
        assert len(receiver.requests) == 10
        services.notifications_tick()
        assert services.notifications_tick() == "retried 0, sent 0 digest(s)"  # nothing more held back
    bodies = receiver.bodies()
    assert len(bodies) == 11 and bodies[-1]["kind"] == "digest"
    assert bodies[-1]["details"]["held"] == {"alert.new": 490}
    assert bodies[-1]["details"]["repeats"] == 19 * 500
    assert bodies[-1]["details"]["sample"][0] == "name10 on host3"
    assert "held back 490 message(s)" in bodies[-1]["summary"]
    assert Delivery.objects.filter(held=True).count() == 490 and Delivery.objects.count() == 501
