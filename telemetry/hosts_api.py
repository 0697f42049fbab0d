"""GET /api/telemetry/hosts/ and /api/telemetry/hosts/<hostname>/: the hosts, and which have gone silent."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.hosts import host_get, host_last_snapshot, hosts_list
from telemetry.schema import HostDetail, HostPage
from voltaxe.api import BadRequest, CanViewTelemetry, query_text
from voltaxe.schema import refusals

LATE_VALUES = {"true": True, "false": False}
REFUSED = refusals(400, 401, 403, 404, said={
    400: "A filter has a value it cannot take: `detail` says which.",
    403: "Not an analyst or security admin (agent keys included).",
    404: "No host of that name has reported."})


def parse_late(value: str | None) -> bool | None:
    if value in (None, ""):
        return None
    if value.lower() not in LATE_VALUES:
        raise BadRequest("late must be true or false (or left out for every host).",
                         {"late": [f"not true or false: {value[:40]}"]})
    return LATE_VALUES[value.lower()]


class HostListView(APIView):
    permission_classes = [CanViewTelemetry]

    @extend_schema(
        parameters=[OpenApiParameter("late", OpenApiTypes.BOOL, description="Only the late hosts (true) or the others (false)."),
                    OpenApiParameter("q", OpenApiTypes.STR, description="Part of the host name.")],
        responses={200: OpenApiResponse(HostPage, "Every host that matches, by host name."),
                   **{k: v for k, v in REFUSED.items() if k != 404}},
    )
    def get(self, request):
        hosts = hosts_list(late=parse_late(request.query_params.get("late")), q=query_text(request.query_params, "q"))
        return Response({"total": len(hosts), "results": [h.json() for h in hosts]})


class HostDetailView(APIView):
    permission_classes = [CanViewTelemetry]

    @extend_schema(responses={200: OpenApiResponse(HostDetail, "The host, with `last_snapshot` and its processes."),
                              **{k: v for k, v in REFUSED.items() if k != 400}})
    def get(self, request, hostname: str):
        host = host_get(hostname=hostname)
        if host is None:
            return Response({"detail": f"No host called {hostname[:255]} has reported. Check the name in the address."},
                            status=status.HTTP_404_NOT_FOUND)
        return Response({**host.json(), "last_snapshot": host_last_snapshot(host=host)})
