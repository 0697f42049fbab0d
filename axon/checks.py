"""System checks for settings that would make training fail or run twice."""
from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Warning, register

from voltaxe.rates import parse_rate


def store_writable(directory: Path) -> str:
    """'' when a file can be created in `directory`, else why not (os.access lies to root)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


@register()
def model_store_writable(app_configs, **kwargs):
    directory = Path(settings.MODEL_STORE_DIR)
    problem = store_writable(directory)
    if problem:
        return [Error(
            f"The model store {directory} is not writable ({problem}): no new model version can be saved.",
            hint="Point MODEL_STORE_DIR at a directory this user can write, or fix its permissions.",
            id="axon.E001",
        )]
    return []


@register()
def task_timeout_below_retry(app_configs, **kwargs):
    q = settings.Q_CLUSTER
    problems = []
    if q.get("timeout") is None or q.get("retry") is None or q["timeout"] >= q["retry"]:
        problems.append(Warning(
            "The task timeout is not below the queue's retry: django-q2 would hand a long training run to a second worker.",
            hint="Keep Q_CLUSTER['timeout'] below Q_CLUSTER['retry'] (RETRAIN_TIMEOUT_SECONDS sets both).",
            id="axon.W001",
        ))
    if q.get("max_attempts") != 1:
        problems.append(Warning(
            "Training tasks may be attempted more than once.",
            hint="Set Q_CLUSTER['max_attempts'] to 1.",
            id="axon.W002",
        ))
    return problems


@register()
def retrain_rates_parse(app_configs, **kwargs):
    """A typo in a limit would otherwise be a 500 at the first press."""
    problems = []
    for name in ("RETRAIN_USER_RATE", "RETRAIN_GLOBAL_RATE"):
        try:
            parse_rate(getattr(settings, name))
        except ValueError as exc:
            problems.append(Error(f"{name}: {exc}.", hint="Write it as COUNT/PERIOD, e.g. 1/5m or 10/h (units s, m, h, d).",
                                  id="axon.E002"))
    return problems
