from django.contrib import admin
from django.urls import include, path

from audit.api import AuditEventListView
from telemetry.api import (
    AnomalyListView, CommandPollView, HostReportView, NotCollectedView, SnapshotBatchIngestView, SnapshotIngestView,
    SummaryView,
)
from voltaxe.views import RateLimitedTokenObtainPairView, TokenRefreshForExistingUserView, healthz

api = [
    path("auth/token/", RateLimitedTokenObtainPairView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", TokenRefreshForExistingUserView.as_view(), name="token-refresh"),
    path("telemetry/snapshots/", SnapshotIngestView.as_view(), name="snapshot-ingest"),
    path("telemetry/snapshots/batch/", SnapshotBatchIngestView.as_view(), name="snapshot-ingest-batch"),
    path("telemetry/summary/", SummaryView.as_view(), name="telemetry-summary"),
    path("telemetry/anomalies/", AnomalyListView.as_view(), name="telemetry-anomalies"),
    path("audit/events/", AuditEventListView.as_view(), name="audit-events"),
    path("axon/", include("axon.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("ingest/process-snapshot", SnapshotIngestView.as_view(), name="legacy-ingest"),
    # The Voltaxe Sentinel's other paths (see README "Voltaxe Sentinel agents").
    path("ingest/snapshot", HostReportView.as_view(), name="sentinel-host-report"),
    path("command/poll", CommandPollView.as_view(), name="sentinel-command-poll"),
    path("ingest/network-snapshot", NotCollectedView.as_view(what="Network activity"), name="sentinel-network"),
    path("ingest/suspicious_event", NotCollectedView.as_view(what="The agent's suspicious-event report"), name="sentinel-suspicious"),
    path("ingest/rootkit_event", NotCollectedView.as_view(what="The agent's rootkit report"), name="sentinel-rootkit"),
    path("ingest/vulnerability_event", NotCollectedView.as_view(what="The agent's vulnerability report"), name="sentinel-vulnerability"),
    path("api/", include(api)),
    path("admin/", admin.site.urls),
    path("", include("telemetry.urls")),
]
