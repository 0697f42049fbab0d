from django.urls import path, re_path

from axon import api, pages, views

urlpatterns = [
    re_path(r"^retrain/?$", api.RetrainView.as_view(), name="axon-retrain"),
    path("retrain/preview/", api.RetrainPreviewView.as_view(), name="axon-retrain-preview"),
    path("runs/", api.RunListView.as_view(), name="axon-runs"),
    path("runs/<int:pk>/", api.RunDetailView.as_view(), name="axon-run"),
    path("status/", api.StatusView.as_view(), name="axon-status"),
    path("models/", api.ModelListView.as_view(), name="axon-models"),
    path("models/<int:version>/activate/", api.ModelActivateView.as_view(), name="axon-model-activate"),
    path("approvals/", api.ApprovalListView.as_view(), name="axon-approvals"),
    path("approvals/<int:pk>/revoke/", api.ApprovalRevokeView.as_view(), name="axon-approval-revoke"),
    path("alerts/", api.AlertListView.as_view(), name="axon-alerts"),
    path("alerts/triage/", api.AlertTriageView.as_view(), name="axon-alerts-triage"),
    path("alerts/<str:key>/", api.AlertDetailView.as_view(), name="axon-alert"),
]

# The pages' doors: the Live page's panic button under its own address (see voltaxe/urls.py), the alerts workspace.
page = [
    path("live-telemetry/retrain/", views.live_retrain, name="live-retrain"),
    path("live-telemetry/triage/", views.live_triage, name="live-triage"),
    path("live-telemetry/preview/", views.live_preview, name="live-preview"),
    path("live-telemetry/approvals/<int:pk>/revoke/", views.live_revoke, name="live-revoke"),
    path("live-telemetry/models/<int:version>/activate/", views.live_activate, name="live-activate"),
    path("alerts/", pages.alerts_page, name="alerts"),
    path("alerts/triage/", pages.alerts_triage_page, name="alerts-triage"),
    path("alerts/<str:key>/", pages.alert_page, name="alert"),
]
