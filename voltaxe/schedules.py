"""Each app keeps its own django-q2 schedules in step with the settings, from its post_migrate."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_q.models import Schedule


def schedules_keep(wanted: dict[str, tuple[str, int]]) -> None:
    """name -> (task path, every N minutes); 0 minutes removes the schedule (switched off in the settings)."""
    for name, (func, minutes) in wanted.items():
        if minutes:
            # First run one interval from now: a fresh install has just trained its first model.
            Schedule.objects.update_or_create(
                name=name, defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
                create_defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1,
                                 "next_run": timezone.now() + timedelta(minutes=minutes)},
            )
        else:
            Schedule.objects.filter(name=name).delete()
