"""What a press could approve now: the candidates, what holds each back, and the press's choice of them."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone

from audit.actors import InvalidInput
from axon.detector.risk import HIGH, Candidate
from axon.models import Alert, ModelVersion
from axon.selectors import Flood, flagged_candidates, host_floods, span_words
from telemetry.models import ProcessRecord
from telemetry.normalize import normalize_name


def _excluded_names(exclude) -> set[str]:
    names = set()
    for name in exclude:
        for os_name in ("linux", "windows"):
            names.add(normalize_name(name, os_name).lower())
    return names


def _pending_flags(active: ModelVersion | None) -> Q:
    """Open flags on data the active model did not learn from: newer than its data, or delivered after it was trained."""
    q = Q(flagged=True, status=ProcessRecord.Status.OPEN)
    if active is not None and active.data_until is not None:
        q &= Q(observed_at__gt=active.data_until) | Q(snapshot__received_at__gt=active.trained_at)
    return q


def _press_candidates(*, exclude=(), hostname: str = "", whole: bool = False
                      ) -> tuple[list[Candidate], list[Flood], ModelVersion | None]:
    """What a press could approve now: flagged since the newest data the active model learned from,
    neither excluded by name nor marked malicious or closed. High risk first, then by program.

    A host past its budget of new programs is one Flood line, its programs not listed (so the list, and a
    default press, cost the same whatever one key sends), unless it is `hostname` (someone asked for that
    host by name: only its candidates are listed) or `whole` (a press that names its keys: any may be one).
    """
    active = ModelVersion.objects.filter(is_active=True).first()
    excluded = _excluded_names(exclude)
    pending = ProcessRecord.objects.filter(_pending_flags(active))
    floods = {} if whole else host_floods(pending, hostname=hostname)
    candidates = [
        c for c in flagged_candidates(pending, floods=floods)
        # Re-opened after closing: in front of people again, still never learned unless someone re-triages it.
        if c.status not in Alert.NOT_LEARNABLE and not c.reopened and c.name_norm.lower() not in excluded
        and (not hostname or c.hostname == hostname)
    ]
    late = _late_history(_pending_flags(active) & ~Q(endpoint_id__in=list(floods)))
    per_host: dict[str, int] = defaultdict(int)
    for c in candidates:
        per_host[c.hostname] += 1
    budget = settings.HOST_NEW_PROGRAMS_BUDGET
    for c in candidates:
        if per_host[c.hostname] > budget:  # one host's flood is one decision, never a default
            c.held.append(f"one of {per_host[c.hostname]:,} new programs from {c.hostname} since the model last learned, "
                          f"more than the {budget} one host may put before you at once: a flood; tick it deliberately")
        if c.status == Alert.Status.ACKNOWLEDGED:
            c.held.append(f"acknowledged: someone is looking into it{f' ({c.note})' if c.note else ''}")
        if (group := (c.hostname, c.name_norm, c.exe_norm, c.parent, c.script)) in late:
            c.held.append(late[group])
    # What a default press will learn first, then what stays flagged unless someone ticks it (high risk first).
    candidates.sort(key=lambda c: (not c.default, c.risk != HIGH, c.name_norm.lower(), c.exe_norm, c.hostname, c.parent))
    cap = settings.MAX_APPROVALS_PER_PRESS
    for c in [c for c in candidates if c.default][cap:]:  # a default press stays within what one press may approve
        c.held.append(f"beyond the {cap} items one press may approve; press again once this run is done")
    candidates.sort(key=lambda c: not c.default)  # stable: those just held move behind the ones that stay ticked
    return candidates, sorted(floods.values(), key=lambda f: (-f.programs, f.hostname)), active


def _late_history(pending: Q) -> dict[tuple, str]:
    """Groups with observations received long after their timestamps, and what that looks like in words.

    A key that sits on an endpoint can backdate a month of snapshots in seconds; such history is
    stored and scored, but it must not make a program look established to a default press. What
    an operator loads without a key (the demo, a replay, ``manage.py collect``) is taken as on time.
    """
    late = timedelta(seconds=settings.LATE_HISTORY_SECONDS)
    rows = (ProcessRecord.objects.filter(pending, snapshot__agent__isnull=False)
            .filter(snapshot__received_at__gt=F("observed_at") + late).order_by()
            .values_list("endpoint__hostname", "name_norm", "exe_norm", "parent_name", "script")
            .annotate(n=Count("id"), first=Min("observed_at"), last=Max("observed_at"),
                      came=Min("snapshot__received_at"), went=Max("snapshot__received_at")))
    return {tuple(group): (f"{n} observation{'s' if n != 1 else ''} arrived late: {span_words((last - first).total_seconds())} "
                           f"of history arrived in {span_words((went - came).total_seconds())}; tick it only if you know "
                           "the host was offline")
            for *group, n, first, last, came, went in rows}


def retrain_preview(*, exclude=(), offset: int = 0, limit: int | None = None, hostname: str = "") -> dict:
    """Every candidate a press could approve now, with its key and risk; `total` counts them all. A flooding
    host is one line in `floods` (a Flood each), its programs listed only when asked for by `hostname`."""
    candidates, floods, active = _press_candidates(exclude=exclude, hostname=hostname)
    page = candidates[offset:None if limit is None else offset + limit]
    return {
        "as_of": timezone.now(),
        "total": len(candidates),
        "will_learn": [{
            "key": c.key, "name": c.name, "exe": c.exe, "parent": c.parent, "script": c.script, "user": c.user,
            "hostnames": [c.hostname], "observations": c.observations, "first_seen": c.first_seen,
            "last_seen": c.last_seen, "reasons": c.reasons, "risk": c.risk, "risk_reasons": c.risk_reasons,
            "default": c.default, "held_reasons": c.held, "note": c.note,
            "status": c.status,
        } for c in page],
        "more": limit is not None and offset + limit < len(candidates),
        "floods": floods,
        "active_model": active.version if active else None,
    }


def press_selection(*, approve: list[str] | None, exclude=(), confirmed=()) -> tuple[list[dict], list[str], list[str]]:
    """(approved, unticked, not approvable) for a press now.

    approve None: the default (low-risk) candidates. Otherwise the listed keys that are
    candidates now; a key that is not (flagged after the preview and so never shown, marked
    malicious or closed since, unknown) is not approved and is reported as not approvable.
    A high-risk key is approved only when it is also in `confirmed`: a tick alone can be a
    slip or a forged form, so every door asks for the second step and this refuses without it.
    """
    candidates, floods, _ = _press_candidates(exclude=exclude)
    if approve is not None and floods and set(approve) - {c.key for c in candidates}:
        # Keys from a flooding host's own list (asked for by name): look among every candidate, at that cost.
        candidates, _, _ = _press_candidates(exclude=exclude, whole=True)
    if approve is None:
        chosen = [c for c in candidates if c.default]
        refused: list[str] = []
    else:
        wanted = set(approve)
        chosen = [c for c in candidates if c.key in wanted]
        refused = sorted(wanted - {c.key for c in chosen})
        unconfirmed = [c for c in chosen if c.risk == HIGH and c.key not in set(confirmed)]
        if unconfirmed:
            named = [f"{c.key}: {c.name} on {c.hostname}: {'; '.join(c.risk_reasons)}" for c in unconfirmed]
            raise InvalidInput(
                f"confirm_high_risk: {len(unconfirmed)} high-risk item{'s' if len(unconfirmed) != 1 else ''} "
                f"{'were' if len(unconfirmed) != 1 else 'was'} ticked without the second step, for example "
                f"{unconfirmed[0].name} on {unconfirmed[0].hostname} ({'; '.join(unconfirmed[0].risk_reasons)}). "
                "Confirm each one you mean to learn as normal, or untick it. Nothing was started.",
                {"confirm_high_risk": named[:50]})
    if len(chosen) > (cap := settings.MAX_APPROVALS_PER_PRESS):
        raise InvalidInput(
            f"approve: this press would approve {len(chosen):,} items, more than the {cap:,} one press may approve "
            "(what a person can review). Untick or exclude some, or approve them over several presses. "
            "Nothing was started.", {"approve": [f"more than {cap} items"]})
    keys = {c.key for c in chosen}
    return [c.approval for c in chosen], [c.key for c in candidates if c.key not in keys], refused
