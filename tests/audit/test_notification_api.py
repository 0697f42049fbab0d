"""/api/notifications/: security admins manage channels; secrets are shown once; bad input is a 400 naming the field."""
from __future__ import annotations

import pytest

from audit.models import AuditEvent, Channel, Delivery
from tests.audit.receivers import WebhookReceiver, verify
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
CHANNELS, DELIVERIES = "/api/notifications/channels/", "/api/notifications/deliveries/"


def webhook(url: str = "https://hooks.example/voltaxe", **extra) -> dict:
    return {"name": "soc", "kind": "webhook", "target": url, "events": ["*"], "min_severity": "medium", **extra}


def test_a_webhook_secret_is_generated_shown_once_and_never_again(admin_client):
    response = admin_client.post(CHANNELS, webhook(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert len(secret) >= 32 and Channel.objects.get(pk=body["id"]).secret == secret
    listed = admin_client.get(CHANNELS).json()["results"]
    assert [c["name"] for c in listed] == ["soc"] and listed[0]["has_secret"] is True
    for answer in (admin_client.get(CHANNELS), admin_client.get(f"{CHANNELS}{body['id']}/"),
                   admin_client.patch(f"{CHANNELS}{body['id']}/", {"min_severity": "high"}, format="json")):
        assert answer.status_code == 200 and secret not in answer.content.decode()
    events = AuditEvent.objects.filter(resource_type="notification_channel")
    assert {e.action for e in events} == {"notification.channel_created", "notification.channel_changed"}
    assert not any(secret in str(e.details) for e in events)


def test_a_given_secret_is_kept_and_other_kinds_have_none(admin_client):
    given = admin_client.post(CHANNELS, webhook(secret="s3cret-of-the-receiver"), format="json").json()
    assert given["secret"] == "s3cret-of-the-receiver"
    mail = admin_client.post(CHANNELS, {"name": "mail", "kind": "email", "target": "soc@example.com, cto@example.com",
                                        "events": ["panic.pressed"], "min_severity": "low"}, format="json")
    assert mail.status_code == 201 and "secret" not in mail.json()


@pytest.mark.parametrize(("body", "field"), [
    (webhook("ftp://hooks.example/x"), "target"),
    (webhook("not a url"), "target"),
    ({**webhook(), "kind": "pager"}, "kind"),
    ({**webhook(), "events": ["alert.nw"]}, "events"),
    ({**webhook(), "events": []}, "events"),
    ({**webhook(), "min_severity": "critical"}, "min_severity"),
    ({"name": "s", "kind": "syslog", "target": "siem.example:514", "events": ["*"]}, "target"),
    ({"name": "s", "kind": "syslog", "target": "udp://siem.example:99999", "events": ["*"]}, "target"),
    ({"name": "s", "kind": "syslog", "target": "tcp://siem.example:514", "events": ["*"], "format": "xml"}, "format"),
    ({"name": "m", "kind": "email", "target": "soc@", "events": ["*"]}, "target"),
    ({**webhook(), "colour": "red"}, "colour"),
])
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(admin_client, body, field):
    response = admin_client.post(CHANNELS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"] and response.json()["detail"].startswith(field)
    assert not Channel.objects.exists()


def test_a_patch_is_checked_like_a_create_and_delete_removes(admin_client):
    channel = admin_client.post(CHANNELS, webhook(), format="json").json()
    bad = admin_client.patch(f"{CHANNELS}{channel['id']}/", {"target": "udp://nowhere"}, format="json")
    assert bad.status_code == 400 and "target" in bad.json()["errors"]
    assert Channel.objects.get().target == "https://hooks.example/voltaxe"
    assert admin_client.delete(f"{CHANNELS}{channel['id']}/").status_code == 204
    assert not Channel.objects.exists()
    assert AuditEvent.objects.filter(action="notification.channel_deleted").exists()


def test_only_security_admins_manage_channels(analyst, agent_client, anon_client, admin_client):
    channel = admin_client.post(CHANNELS, webhook(), format="json").json()
    analyst_client = client_for(analyst)
    for method, path, body in (("get", CHANNELS, None), ("post", CHANNELS, webhook(name="x")),
                               ("patch", f"{CHANNELS}{channel['id']}/", {"enabled": False}),
                               ("delete", f"{CHANNELS}{channel['id']}/", None),
                               ("post", f"{CHANNELS}{channel['id']}/test/", None), ("get", DELIVERIES, None)):
        assert getattr(anon_client, method)(path, body, format="json").status_code == 401
        assert getattr(analyst_client, method)(path, body, format="json").status_code == 403
        assert getattr(agent_client, method)(path, body, format="json").status_code == 403
    assert Channel.objects.get().enabled is True


def test_send_a_test_reports_what_the_receiver_answered_and_is_signed(admin_client):
    with WebhookReceiver(statuses=[200]) as ok, WebhookReceiver(statuses=[503]) as down:
        good = admin_client.post(CHANNELS, webhook(ok.url, name="ok"), format="json").json()
        bad = admin_client.post(CHANNELS, webhook(down.url, name="down"), format="json").json()
        answer = admin_client.post(f"{CHANNELS}{good['id']}/test/").json()
        assert answer["delivered"] is True and answer["status"] == "200"
        refused = admin_client.post(f"{CHANNELS}{bad['id']}/test/").json()
        assert refused == {**refused, "delivered": False, "status": "503", "detail": "receiver says no"}
    (request,) = ok.requests
    assert verify(good["secret"], request["headers"], request["body"])
    assert request["headers"]["Voltaxe-Event"] == "test" and ok.bodies()[0]["kind"] == "test"
    listed = admin_client.get(f"{DELIVERIES}?channel={bad['id']}&kind=test").json()["results"]
    assert [(d["kind"], d["attempts"], d["last_status"], d["delivered_at"]) for d in listed] == [("test", 1, "503", None)]
    assert Delivery.objects.count() == 2


def test_a_test_to_a_closed_port_says_refused(admin_client):
    with WebhookReceiver() as receiver:
        url = receiver.url
    channel = admin_client.post(CHANNELS, webhook(url), format="json").json()
    answer = admin_client.post(f"{CHANNELS}{channel['id']}/test/").json()
    assert answer["delivered"] is False and answer["status"] == "refused"


def test_the_admin_adds_a_channel_shows_its_secret_once_and_sends_a_test(admin_user, client):
    admin_user.is_staff = True  # the admin's door; the role carries the rights
    admin_user.save()
    client.force_login(admin_user)
    with WebhookReceiver(statuses=[204]) as receiver:
        added = client.post("/admin/audit/channel/add/", {
            "name": "soc", "kind": "webhook", "target": receiver.url, "secret": "", "events": '["*"]',
            "min_severity": "low", "format": "json", "enabled": "on"}, follow=True)
        channel = Channel.objects.get()
        assert f"Signing secret of soc (shown this once): {channel.secret}" in added.content.decode()
        assert channel.secret not in client.get(f"/admin/audit/channel/{channel.pk}/change/").content.decode()
        bad = client.post("/admin/audit/channel/add/", {
            "name": "bad", "kind": "syslog", "target": "siem:514", "events": '["*"]', "min_severity": "low",
            "format": "json"})
        assert bad.status_code == 200 and "a syslog target is udp://host:port" in bad.content.decode()
        tested = client.post("/admin/audit/channel/", {"action": "send_test", "_selected_action": [channel.pk]},
                             follow=True)
    assert "soc: delivered (204)" in tested.content.decode().lower()  # the admin capitalises its messages
    assert verify(channel.secret, receiver.requests[0]["headers"], receiver.requests[0]["body"])
    assert AuditEvent.objects.filter(action="notification.channel_created", actor=admin_user).exists()
