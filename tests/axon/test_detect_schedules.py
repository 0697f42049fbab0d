"""Issue 13, schedules: a nightly job run in the middle of the day, and the look-alikes.

Each (host, program) combination of the window carries its hour: a job always seen within
an hour or two of the day runs on a schedule, and far from those hours it is news.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.axon.stories import Proc, Story, flags, linux_base

HISTORY = 120  # five days, hourly: five nightly runs


def _nightly(hours=frozenset({2})):
    return Proc("restic", "/usr/bin/restic", parent="cron", runs=lambda i, hod: hod in hours,
                cpu=lambda rng, i, hod: round(rng.uniform(20, 40), 1), mem=150)


def _story() -> Story:
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    first_night = next(i for i in range(24) if (start + timedelta(hours=i)).hour == 3)
    # certbot renews once a month: seen once in the window, at 03:00
    certbot = Proc("certbot", "/usr/bin/certbot", parent="cron", runs=lambda i, hod: i == first_night, mem=60)
    db = linux_base() + [Proc("postgres", "/usr/lib/postgresql/15/bin/postgres", user="postgres", count=4), _nightly()]
    web = linux_base() + [Proc("nginx", "/usr/sbin/nginx", user="www-data", count=3), certbot]
    return Story(hosts={"db-01": ("linux", db), "db-02": ("linux", db), "web-01": ("linux", web),
                        "web-02": ("linux", web)}, start=start)


def _next(story: Story, hour_of_day: int) -> int:
    """The first hour index after the history that falls at this UTC hour of the day."""
    return next(i for i in range(HISTORY, HISTORY + 24) if (story.start + timedelta(hours=i)).hour == hour_of_day)


@pytest.fixture
def trained(db):
    return _story().trained(HISTORY)


@pytest.mark.clock
@pytest.mark.django_db
def test_a_nightly_job_at_midday_is_news(trained):
    at = _next(trained, 14)
    results = trained.ingest(at, at + 1, extra={"db-01": [_nightly(frozenset({14}))]})
    assert flags(results) == [("db-01", "restic", ("restic runs at 02:00 UTC on this host, not at 14:00",))]


@pytest.mark.clock
@pytest.mark.django_db
def test_the_job_at_its_hour_or_the_next_and_a_monthly_job_seen_once_are_not_news(trained):
    night = _next(trained, 2)
    late = _nightly(frozenset({3}))  # a slow night: the next hour
    monthly = Proc("certbot", "/usr/bin/certbot", parent="cron", runs=lambda i, hod: hod == 3, mem=60)
    results = trained.ingest(night, night + 2, extra={"db-02": [late], "web-02": [monthly]})
    names = {p["name"] for r in trained.payloads(night, night + 2, extra={"db-02": [late], "web-02": [monthly]})
             for p in r["processes"]}
    assert {"restic", "certbot"} <= names
    assert flags(results) == []
