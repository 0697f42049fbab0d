"""A changelist filter the database cannot hold is refused like any bad lookup (a redirect to ?e=1), never a 500.

An aware time whose UTC is past year 9999 or before year 1 cannot be converted for SQLite, nor
put in a PostgreSQL query; a date hierarchy's year 9999 has no next year to end at.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from axon.models import Alert
from telemetry.models import AgentKey, Endpoint, Snapshot

FIELD = {
    "telemetry/snapshot": "timestamp", "telemetry/endpoint": "last_seen", "telemetry/agentkey": "created",
    "axon/alert": "updated_at", "axon/trainingrun": "created_at", "audit/auditevent": "timestamp",
    "auth/user": "date_joined", "django_q/success": "started", "token_blacklist/outstandingtoken": "expires_at",
}
# The security admin role does not see these lists.
ROOT_ONLY = {"axon/alert", "auth/user", "django_q/success", "token_blacklist/outstandingtoken"}
# Changelists with a date hierarchy (the year, month and day links above the list).
HIERARCHY = {"telemetry/snapshot": "timestamp", "telemetry/processrecord": "observed_at", "audit/auditevent": "timestamp"}

EXTREME = [
    "{f}__gte=9999-12-31T23:59:59-23:59",     # past year 9999 once in UTC
    "{f}__lt=0001-01-01T00:00:00%2B14:00",    # before year 1 once in UTC
    "{f}__gte=0000-00-00",
    "{f}__gte=99999999999999999999999",
    "{f}__range=9999-12-31T23:00:00-20:00,9999-12-31T23:59:59-23:59",
    "{f}__year=99999999999999999999999",
    "{f}__gte=2026-11-26T09:00:00-23:59",     # an offset Python parses and PostgreSQL refuses
    "id__gte=99999999999999999999999",        # a huge integer
]
EXTREME_HIERARCHY = [
    "{f}__year=9999",
    "{f}__year=9999&{f}__month=12",
    "{f}__year=9999&{f}__month=12&{f}__day=31",
    "{f}__year=99999999999999999999999",
    "{f}__year=0",
]


@pytest.fixture
def staff(admin_user) -> Client:
    """A staff security admin for the product's lists, a superuser for the libraries' (auth, django-q2, simplejwt)."""
    admin_user.is_staff = True
    admin_user.save()
    root = User.objects.create_superuser("root", "root@voltaxe.test", "pw")
    clients = {}
    for name, user in {"staff": admin_user, "root": root}.items():
        clients[name] = Client(raise_request_exception=False)
        clients[name].force_login(user)
    return clients


@pytest.fixture
def rows(db):
    """A row in each list, so that a filter that slips through is evaluated against data."""
    now = timezone.now()
    key, _ = AgentKey.objects.create_key(name="k")
    endpoint = Endpoint.objects.create(hostname="ws-01", first_seen=now, last_seen=now)
    Snapshot.objects.create(endpoint=endpoint, timestamp=now, process_count=0)
    Alert.objects.create(key="k1", hostname="ws-01", name="tool", status="closed")
    AuditEvent.objects.create(action="test", resource_type="test")


def assert_refused(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].endswith("?e=1"), (url, response.status_code)
    # With the flag already set, Django's "Database error" page, still not a 500.
    again = client.get(url + "&e=1")
    assert again.status_code == 200 and b"Database error" in again.content, (url, again.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("query", EXTREME)
@pytest.mark.parametrize("model", list(FIELD))
def test_an_extreme_filter_is_a_bad_lookup_not_a_500(staff, rows, model, query):
    client = staff["root" if model in ROOT_ONLY else "staff"]
    url = f"/admin/{model}/?{query.format(f=FIELD[model])}"
    if query.startswith("id__gte"):  # beyond any id: some backends answer an empty list, which is as good
        assert client.get(url).status_code in {200, 302}, url
        return
    assert_refused(client, url)


@pytest.mark.django_db
@pytest.mark.parametrize("query", EXTREME_HIERARCHY)
@pytest.mark.parametrize("model", list(HIERARCHY))
def test_an_extreme_date_hierarchy_is_a_bad_lookup_not_a_500(staff, rows, model, query):
    assert_refused(staff["staff"], f"/admin/{model}/?{query.format(f=HIERARCHY[model])}")


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["timestamp__gte=9999-12-31T23:59:59%2B14:00", "timestamp__lt=0001-01-01T00:00:00Z",
                                   "timestamp__year=9998&timestamp__month=12&timestamp__day=31", "timestamp__year=2026",
                                   "timestamp__date=9999-12-31"])
def test_times_at_the_edge_of_the_range_still_filter(staff, rows, query):
    """The controls: extreme but representable times list as usual."""
    response = staff["staff"].get(f"/admin/audit/auditevent/?{query}")
    assert response.status_code == 200, (query, response.status_code)


def test_every_registered_admin_lists_through_the_guard(rf):
    """The libraries' admins (auth, simplejwt, django-q2) too: any changelist takes date lookups from the URL."""
    from django.contrib import admin

    from voltaxe.admin_base import GuardedChangeList

    assert all(model_admin.get_changelist(rf.get("/")) is GuardedChangeList for model_admin in admin.site._registry.values())
