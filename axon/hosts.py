"""Axon's part of the hosts pages (telemetry's): open alerts counted per host, and the host page's alerts panel.

Registered with telemetry in AxonConfig.ready; telemetry knows nothing of triage.
"""
from __future__ import annotations

from collections import Counter

from axon.api import candidate_json
from axon.models import Alert
from axon.selectors import alerts_list, flagged_candidates
from telemetry.models import ProcessRecord

# Past this many hosts a name list costs more than counting every open flag once and picking.
HOSTS_IN_QUERY = 200


def open_alerts_by_host(hostnames: list[str]) -> dict[str, int]:
    """Open alerts (groups by approval key, as the alerts list shows them) per host."""
    records = ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN)
    if len(hostnames) <= HOSTS_IN_QUERY:
        records = records.filter(endpoint__hostname__in=hostnames)
    return Counter(c.hostname for c in flagged_candidates(records) if c.status == Alert.Status.OPEN)


class HostAlertsPanel:
    """The host page's alerts: every alert of the host that is not closed, worst first."""

    template = "axon/_host_alerts.html"
    shown = 100

    def context(self, user, hostname: str) -> dict:
        alerts, more = alerts_list(hostname=hostname, limit=self.shown)
        return {"host_alerts": [candidate_json(a) for a in alerts], "host_alerts_more": more,
                "host_alerts_shown": self.shown, "hostname": hostname}
