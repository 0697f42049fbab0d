from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

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
    path("schema/", SpectacularJSONAPIView.as_view(), name="schema"),  # JSON, like every other answer here
    # A page for people: log in through the form first, like the Live page.
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("ingest/process-snapshot", SnapshotIngestView.as_view(), name="legacy-ingest"),
    path("api/", include(api)),
    path("admin/", admin.site.urls),
    path("", include("telemetry.urls")),
]
