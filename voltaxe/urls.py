from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from audit.api import AuditEventListView
from audit.logins import AdminLoginForm
from audit.notifications import api as notifications_api
from axon.urls import page as axon_page
from telemetry.api import (
    AnomalyListView,
    CommandPollView,
    EventIngestView,
    HostReportView,
    NotCollectedView,
    RecordsIngestView,
    SnapshotBatchIngestView,
    SnapshotIngestView,
    SummaryView,
)
from telemetry.event_formats import ECS, SYSMON
from telemetry.hosts_api import HostDetailView, HostListView
from voltaxe.views import (
    LogoutView,
    TokenObtainView,
    TokenRefreshLimitedView,
    healthz,
    login_form_limited,
    site_login,
)

api = [
    path("auth/token/", TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", TokenRefreshLimitedView.as_view(), name="token-refresh"),
    path("auth/logout/", LogoutView.as_view(), name="token-logout"),
    path("telemetry/snapshots/", SnapshotIngestView.as_view(), name="snapshot-ingest"),
    path("telemetry/snapshots/batch/", SnapshotBatchIngestView.as_view(), name="snapshot-ingest-batch"),
    path("telemetry/events/", EventIngestView.as_view(), name="events-ingest"),
    path("telemetry/events/sysmon/", RecordsIngestView.as_view(source=SYSMON), name="events-ingest-sysmon"),
    path("telemetry/events/ecs/", RecordsIngestView.as_view(source=ECS), name="events-ingest-ecs"),
    path("telemetry/summary/", SummaryView.as_view(), name="telemetry-summary"),
    path("telemetry/anomalies/", AnomalyListView.as_view(), name="telemetry-anomalies"),
    path("telemetry/hosts/", HostListView.as_view(), name="telemetry-hosts"),
    path("telemetry/hosts/<str:hostname>/", HostDetailView.as_view(), name="telemetry-host"),
    path("audit/events/", AuditEventListView.as_view(), name="audit-events"),
    path("axon/", include("axon.urls")),
    path("notifications/channels/", notifications_api.ChannelListView.as_view(), name="notification-channels"),
    path("notifications/channels/<int:pk>/", notifications_api.ChannelDetailView.as_view(), name="notification-channel"),
    path("notifications/channels/<int:pk>/test/", notifications_api.ChannelTestView.as_view(), name="notification-test"),
    path("notifications/deliveries/", notifications_api.DeliveryListView.as_view(), name="notification-deliveries"),
    path("schema/", SpectacularJSONAPIView.as_view(), name="schema"),  # JSON, like every other answer here
    # A page for people: log in through the form first, like the Live page.
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("ingest/process-snapshot", SnapshotIngestView.as_view(), name="legacy-ingest"),
    # The Voltaxe Sentinel's other paths (see README "Voltaxe Sentinel agents").
    path("ingest/snapshot", HostReportView.as_view(), name="sentinel-host-report"),
    path("command/poll", CommandPollView.as_view(), name="sentinel-command-poll"),
    path("ingest/network-snapshot", NotCollectedView.as_view(what="Network activity"), name="sentinel-network"),
    path("ingest/suspicious_event", NotCollectedView.as_view(what="The agent's suspicious-event report"),
         name="sentinel-suspicious"),
    path("ingest/rootkit_event", NotCollectedView.as_view(what="The agent's rootkit report"), name="sentinel-rootkit"),
    path("ingest/vulnerability_event", NotCollectedView.as_view(what="The agent's vulnerability report"),
         name="sentinel-vulnerability"),
    path("api/", include(api)),
    # The admin's own log-in view, behind the same body limit and log-in limits as the page's.
    path("admin/login/", login_form_limited(admin.site.login)),  # with AdminLoginForm (below): refusals audited
    path("admin/", admin.site.urls),
    path("login/", site_login, name="login"),
    path("", include("telemetry.urls")),
    path("", include(axon_page)),
]

# Under /api/ (and for any client that does not ask for a page) errors are JSON, like DRF's own.
handler400 = "voltaxe.views.bad_request"
handler403 = "voltaxe.views.permission_denied"
handler404 = "voltaxe.views.page_not_found"
handler500 = "voltaxe.views.server_error"

# The right password of an account that may not use the admin is a refusal, audited like any other log-in.
admin.site.login_form = AdminLoginForm
