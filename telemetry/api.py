from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from telemetry.authentication import AgentBasicAuthentication, AgentKeyAuthentication, IsAgent
from telemetry.event_formats import SYSMON
from telemetry.events import MAX_EVENTS, events_ingest, records_ingest, records_parse
from telemetry.ingest import IngestRefused, host_report, snapshot_ingest, snapshot_ingest_batch
from telemetry.models import ProcessRecord
from telemetry.schema import (
    PROCESS_START_RECORDS,
    AnomalyPage,
    BatchResult,
    EventIn,
    EventsResult,
    HostReportIn,
    HostReportResult,
    RecordsRefused,
    RecordsResult,
    SnapshotIn,
    SnapshotResult,
    Summary,
)
from telemetry.selectors import anomalies_list, telemetry_summary
from telemetry.validation import PayloadError
from voltaxe.api import BadRequest, CanViewTelemetry, next_page_url, parse_int, parse_since, query_text
from voltaxe.schema import Detail, refusals

AGENT_REFUSED = {403: "Not an agent key (people read, agents write), or a host this key may not report for: "
                      "nothing was stored and the refusal is audited."}
INGEST_REFUSED = refusals(400, 401, 403, 409, 413, said={
    **AGENT_REFUSED, 409: "This host and time are stored already with other content or from another key; kept as stored."})
READ_REFUSED = refusals(401, 403, said={403: "You need the Analyst or Security Admin role (an agent key holds neither)."})


def bad_request(detail: str, errors: dict | None = None) -> Response:
    return Response({"detail": detail, "errors": errors or {}}, status=status.HTTP_400_BAD_REQUEST)


class SnapshotIngestView(APIView):
    """POST one snapshot (rich or legacy body); also answers the legacy agent path."""

    # People authenticate as well, so that a person here is told 403 (not an agent), not 401.
    authentication_classes = [AgentKeyAuthentication, AgentBasicAuthentication, JWTAuthentication, SessionAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(request=SnapshotIn, responses={
        201: OpenApiResponse(SnapshotResult, "Stored (and scored when a model is active)."),
        200: OpenApiResponse(SnapshotResult, "The same snapshot again from the same key: the first answer."),
        **INGEST_REFUSED})
    def post(self, request):
        try:
            result = snapshot_ingest(payload=request.data, agent=request.auth, request=request)
        except PayloadError as exc:
            return bad_request(exc.detail, exc.errors)
        except IngestRefused as exc:
            return Response({"detail": exc.detail}, status=exc.status)
        return Response(result.body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class SnapshotBatchIngestView(APIView):
    authentication_classes = SnapshotIngestView.authentication_classes
    permission_classes = [IsAgent]

    @extend_schema(request=SnapshotIn(many=True, max_length=100), responses={
        201: OpenApiResponse(BatchResult, "One result or error per snapshot, in order; each stands or falls alone."),
        **refusals(400, 401, 403, 413, said={400: "Not a list, an empty one, or more than 100 snapshots.", **AGENT_REFUSED})})
    def post(self, request):
        payloads = request.data
        if not isinstance(payloads, list):
            return bad_request("Send a JSON array of snapshots to the batch endpoint.", {"non_field_errors": ["expected a list"]})
        if not payloads:
            return bad_request("The batch is empty; send at least one snapshot.", {"non_field_errors": ["empty list"]})
        if len(payloads) > settings.MAX_BATCH_SNAPSHOTS:
            return bad_request(
                f"A batch holds at most {settings.MAX_BATCH_SNAPSHOTS} snapshots; this one has {len(payloads)}. Split it.",
                {"non_field_errors": ["too many snapshots"]},
            )
        results = snapshot_ingest_batch(payloads=payloads, agent=request.auth, request=request)
        return Response({"results": results}, status=status.HTTP_201_CREATED)


class EventIngestView(APIView):
    """POST up to 1,000 process-start events; each is scored and stored like a snapshot's process."""

    authentication_classes = SnapshotIngestView.authentication_classes
    permission_classes = [IsAgent]

    @extend_schema(request=EventIn(many=True, max_length=MAX_EVENTS), responses={
        201: OpenApiResponse(EventsResult, "One result or error per event, in order; each stands or falls alone."),
        **refusals(400, 401, 403, 413, said={400: f"Not a list, an empty one, or more than {MAX_EVENTS} events.",
                                             **AGENT_REFUSED})})
    def post(self, request):
        payloads = request.data
        if not isinstance(payloads, list):
            return bad_request("Send a JSON array of process-start events.", {"non_field_errors": ["expected a list"]})
        if not payloads:
            return bad_request("The list is empty; send at least one event.", {"non_field_errors": ["empty list"]})
        if len(payloads) > MAX_EVENTS:
            return bad_request(f"A request holds at most {MAX_EVENTS} events; this one has {len(payloads)}. Split it.",
                               {"non_field_errors": ["too many events"]})
        return Response({"results": events_ingest(payloads=payloads, agent=request.auth, request=request)},
                        status=status.HTTP_201_CREATED)


class RecordsIngestView(APIView):
    """Sysmon or ECS records, NDJSON or a JSON array: the process starts among them are stored as events."""

    authentication_classes = SnapshotIngestView.authentication_classes
    permission_classes = [IsAgent]
    source = SYSMON

    @extend_schema(request={"application/x-ndjson": {"type": "string", "description": "One record per line."},
                            "application/json": PROCESS_START_RECORDS},
                   responses={201: OpenApiResponse(RecordsResult, "Some records were used; `refused` lists the others."),
                              400: OpenApiResponse(RecordsRefused, "Nothing could be used: `detail` says why, "
                                                                   "`errors` by record position."),
                              403: OpenApiResponse(RecordsRefused, AGENT_REFUSED[403]),
                              409: OpenApiResponse(RecordsRefused, "Every record is stored already with other content "
                                                                   "or from another key."),
                              **refusals(401, 413)})
    def post(self, request):
        # The raw body: NDJSON is no JSON document, and DRF's parser would refuse it whole.
        try:
            used, body = records_ingest(records=records_parse(request.body), source=self.source, agent=request.auth,
                                        request=request)
        except PayloadError as exc:
            return bad_request(exc.detail.replace("Nothing of this snapshot was stored", "Nothing was stored"),
                               exc.errors)
        refusals = {r.get("status", 400) for r in body["refused"]}
        if not used and not body["skipped"] and len(refusals) == 1 and refusals & {403, 409}:
            # Every record refused for the same reason a snapshot would be: that answer, as the snapshot endpoint gives it.
            (code,) = refusals
            first = body["refused"][0]["detail"].split(": ", 1)[1].rsplit("; it was not stored.", 1)[0] + "."
            return Response({**body, "detail": first, "errors": {}}, status=code)
        if not used:
            skipped = f"{body['skipped']} were not process starts" if body["skipped"] else "none was a process start"
            body["detail"] = (f"Nothing could be used: of {body['skipped'] + len(body['refused'])} {self.source.name} "
                              f"records, {skipped} and {len(body['refused'])} were refused (see refused).")
            body["errors"] = {str(r["index"]): [r["detail"]] for r in body["refused"]}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body, status=status.HTTP_201_CREATED)


class AgentSideView(APIView):
    """The Voltaxe Sentinel's other paths: authenticated like ingestion, answered in JSON, cheap (no writes)."""

    authentication_classes = SnapshotIngestView.authentication_classes
    permission_classes = [IsAgent]


class CommandPollView(AgentSideView):
    @extend_schema(responses={200: OpenApiResponse({"type": "array", "maxItems": 0, "items": {"type": "string"}},
                                                   "Always []: this server sends agents no commands."),
                              **refusals(401, 403, said=AGENT_REFUSED)})
    def get(self, request):
        return Response([])  # this server sends agents no commands


class HostReportView(AgentSideView):
    @extend_schema(request=HostReportIn, responses={
        200: OpenApiResponse(HostReportResult, "The host's OS is recorded when the report names one; nothing else is kept."),
        **refusals(400, 401, 403, 413, said=AGENT_REFUSED)})
    def post(self, request):
        try:
            return Response(host_report(payload=request.data, agent=request.auth, request=request))
        except PayloadError as exc:
            return bad_request(exc.detail, exc.errors)
        except IngestRefused as exc:
            return Response({"detail": exc.detail}, status=exc.status)


class NotCollectedView(AgentSideView):
    """Network snapshots and the agent's own event reports: answered, never stored."""

    what = ""

    # The body is never read, so it is not described.
    @extend_schema(request=None, responses={
        404: OpenApiResponse(Detail, "Not collected by this server; nothing was stored."),
        **refusals(401, 403, 413, said=AGENT_REFUSED)})
    def post(self, request):
        return Response({"detail": f"{self.what} is not collected by this server; nothing was stored."},
                        status=status.HTTP_404_NOT_FOUND)


class SummaryView(APIView):
    permission_classes = [CanViewTelemetry]

    @extend_schema(responses={200: Summary, **READ_REFUSED})
    def get(self, request):
        return Response(telemetry_summary())


def anomaly_json(r: ProcessRecord) -> dict:
    return {
        "id": r.pk, "hostname": r.endpoint.hostname, "timestamp": r.observed_at, "name": r.name, "exe": r.exe,
        "pid": r.pid, "parent": r.parent_name, "username": r.username,
        "score": r.score, "reasons": r.reasons, "model_version": r.model_number, "status": r.status,
    }


class AnomalyListView(APIView):
    permission_classes = [CanViewTelemetry]

    @extend_schema(parameters=[
        OpenApiParameter("since", OpenApiTypes.DATETIME, description="Observed at or after (RFC 3339; UTC without an offset)."),
        OpenApiParameter("hostname", str, description="Exactly this host."),
        OpenApiParameter("status", str, enum=list(ProcessRecord.Status.values)),
        OpenApiParameter("offset", int, description="Skip this many (default 0)."),
        OpenApiParameter("limit", int, description="At most this many (default 50, at most 500)."),
    ], responses={200: AnomalyPage, **refusals(400, said={400: "A malformed or out-of-range filter: `errors` names it."}),
                  **READ_REFUSED})
    def get(self, request):
        q = request.query_params
        limit = parse_int(q.get("limit"), "limit", 50, 1, 500)
        offset = parse_int(q.get("offset"), "offset", 0, 0, 10**9)
        status_filter = q.get("status", "")
        if status_filter and status_filter not in ProcessRecord.Status.values:
            raise BadRequest("status must be one of open, approved, cleared.", {"status": ["unknown"]})
        rows, more = anomalies_list(
            since=parse_since(q.get("since")), hostname=query_text(q, "hostname"), status=status_filter, limit=limit,
            offset=offset
        )
        return Response({"results": [anomaly_json(r) for r in rows], "next": next_page_url(request, offset, limit, more)})
