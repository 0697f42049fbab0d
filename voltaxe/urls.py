from django.contrib import admin
from django.urls import include, path

from audit.api import AuditEventListView
from telemetry.api import AnomalyListView, SnapshotBatchIngestView, SnapshotIngestView, SummaryView
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
    path("api/", include(api)),
    path("admin/", admin.site.urls),
    path("", include("telemetry.urls")),
]
