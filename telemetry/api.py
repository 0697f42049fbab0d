from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from telemetry.authentication import AgentBasicAuthentication, AgentKeyAuthentication, IsAgent
from telemetry.event_formats import SYSMON
from telemetry.events import MAX_EVENTS, events_ingest, records_ingest, records_parse
from telemetry.models import ProcessRecord
from telemetry.services import (
    IngestRefused,
    anomalies_list,
    host_report,
    snapshot_ingest,
    snapshot_ingest_batch,
    telemetry_summary,
)
from telemetry.validation import PayloadError
from voltaxe.api import BadRequest, CanViewTelemetry, next_page_url, parse_int, parse_since, query_text


def bad_request(detail: str, errors: dict | None = None) -> Response:
    return Response({"detail": detail, "errors": errors or {}}, status=status.HTTP_400_BAD_REQUEST)


class SnapshotIngestView(APIView):
    """POST one snapshot (rich or legacy body); also answers the legacy agent path."""

    # People authenticate as well, so that a person here is told 403 (not an agent), not 401.
    authentication_classes = [AgentKeyAuthentication, AgentBasicAuthentication, JWTAuthentication, SessionAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(responses={201: OpenApiResponse(OpenApiTypes.OBJECT, "Stored (and scored when a model is active)."),
                              200: OpenApiResponse(OpenApiTypes.OBJECT, "The same snapshot again: the first answer.")})
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

    @extend_schema(request={"application/json": {"type": "array", "items": {"type": "object"}, "maxItems": 100}},
                   responses={201: OpenApiResponse(OpenApiTypes.OBJECT, "One result or error per snapshot, in order.")})
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

    @extend_schema(request={"application/json": {"type": "array", "items": {"type": "object"}, "maxItems": MAX_EVENTS}},
                   responses={201: OpenApiResponse(OpenApiTypes.OBJECT, "One result or error per event, in order.")})
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

    @extend_schema(request={"application/x-ndjson": {"type": "string"},
                            "application/json": {"type": "array", "items": {"type": "object"}}},
                   responses={201: OpenApiResponse(OpenApiTypes.OBJECT, "{stored, skipped, refused, results}"),
                              400: OpenApiResponse(OpenApiTypes.OBJECT, "Nothing could be used.")})
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
    def get(self, request):
        return Response([])  # this server sends agents no commands


class HostReportView(AgentSideView):
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

    def post(self, request):
        return Response({"detail": f"{self.what} is not collected by this server; nothing was stored."},
                        status=status.HTTP_404_NOT_FOUND)


class SummaryView(APIView):
    permission_classes = [CanViewTelemetry]

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
