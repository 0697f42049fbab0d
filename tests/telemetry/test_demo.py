"""The demo tells the same story whenever it is started: the new app and the intruder flagged, nothing else."""
from datetime import UTC

import pytest
from django.core.management import call_command

from telemetry.demo import INTRUDER, NEW_APP
from telemetry.models import ProcessRecord

pytestmark = pytest.mark.clock


@pytest.mark.django_db(transaction=True)
def test_demo_flags_the_new_app_and_the_intruder_and_nothing_else():
    call_command("demo_data", "--if-empty")
    flagged = set(ProcessRecord.objects.filter(flagged=True).values_list("endpoint__hostname", "name").distinct())
    assert flagged == {(NEW_APP[0], NEW_APP[1][0]), (INTRUDER[0], INTRUDER[1][0])}


def test_the_same_span_tells_the_same_story_whatever_the_date():
    from datetime import datetime, timedelta

    from telemetry.demo import demo_payloads

    def story(start):
        return [
            (p["hostname"], [(r["name"], r["pid"], r["ppid"], r["cpu_percent"]) for r in p["processes"]])
            for p in demo_payloads(start=start, end=start + timedelta(days=2), novelties=False)
        ]

    assert story(datetime(2026, 1, 1, 3, tzinfo=UTC)) == story(datetime(2027, 6, 5, 17, tzinfo=UTC))
