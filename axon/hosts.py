"""Axon's part of the hosts pages (telemetry's): open alerts counted per host, and the host page's alerts panel.

Registered with telemetry in AxonConfig.ready; telemetry knows nothing of triage.
"""
from __future__ import annotations

from collections import Counter

from axon.api import candidate_json, flood_json
from axon.models import Alert
from axon.selectors import alerts_list, flagged_candidates, host_floods
from telemetry.models import ProcessRecord

# Past this many hosts a name list costs more than counting every open flag once and picking.
HOSTS_IN_QUERY = 200


def open_alerts_by_host(hostnames: list[str]) -> dict[str, int]:
    """Open alerts (groups by approval key, as the alerts list shows them) per host."""
    records = ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN)
    if len(hostnames) <= HOSTS_IN_QUERY:
        records = records.filter(endpoint__hostname__in=hostnames)
    floods = host_floods(records)
    counted = Counter(c.hostname for c in flagged_candidates(records, floods=floods) if c.status == Alert.Status.OPEN)
    for f in floods.values():  # a flood's programs are counted, not grouped one by one
        counted[f.hostname] += f.programs
    return counted


class HostAlertsPanel:
    """The host page's alerts: every alert of the host that is not closed, worst first."""

    template = "axon/_host_alerts.html"
    shown = 100

    def context(self, user, hostname: str) -> dict:
        here = ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN, endpoint__hostname=hostname)
        if floods := host_floods(here):  # one line, as everywhere: the alerts list has them one by one
            return {"host_alerts": [], "host_floods": [flood_json(f) for f in floods.values()], "hostname": hostname}
        alerts, more = alerts_list(hostname=hostname, limit=self.shown)
        return {"host_alerts": [candidate_json(a) for a in alerts], "host_alerts_more": more,
                "host_alerts_shown": self.shown, "hostname": hostname}
