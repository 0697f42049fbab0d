"""Notifications through the real task queue: a django-q2 worker in a subprocess carries messages to a receiver."""
from __future__ import annotations

import subprocess
import sys

import pytest

from audit.models import Delivery
from tests import fleet
from tests.audit.receivers import WebhookReceiver, verify
from tests.axon.test_exact_approvals import MINER, agent, post, snapshot
from tests.conftest import REPO
from tests.harness import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def receiver(db):
    from audit.notifications import services

    with WebhookReceiver() as r:
        r.channel = services.channel_create(actor=None, data={
            "name": "soc", "kind": "webhook", "target": r.url, "events": ["*"], "min_severity": "low"})[0]
        yield r


def test_a_command_in_a_subprocess_is_told_by_the_worker_signed(receiver, worker, broker_env):
    worker().wait_ready()
    result = subprocess.run([sys.executable, str(REPO / "manage.py"), "create_agent", "ws-09"], cwd=REPO,
                            env=broker_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: receiver.requests, 60, "the worker to deliver agent.created")
    (request,) = receiver.requests
    assert verify(receiver.channel.secret, request["headers"], request["body"])
    body = receiver.bodies()[0]
    assert body["kind"] == "agent.created" and body["host"] == {"name": "ws-09"}
    assert result.stdout.strip() not in request["body"].decode()  # the key itself is never in a message
    wait_for(lambda: Delivery.objects.filter(delivered_at__isnull=False).exists(), 30, "the delivery to be recorded")


def test_an_ingested_intruder_reaches_the_receiver_through_the_worker(receiver, worker, broker_env):
    if "REDIS_URL" in broker_env:
        pytest.skip("this process queues on the ORM broker; the command test covers Redis")
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    receiver.requests.clear()  # the press above
    worker().wait_ready()
    assert "xmrig" in post(agent("build-01"), snapshot("build-01", [MINER], seconds_ago=60))
    wait_for(lambda: any(b["kind"] == "alert.new" for b in receiver.bodies()), 60, "alert.new from the worker")
    (alert,) = [b for b in receiver.bodies() if b["kind"] == "alert.new"]
    assert alert["process"]["name"] == "xmrig" and alert["host"] == {"name": "build-01"}
