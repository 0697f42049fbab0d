from django.urls import path, re_path

from axon import api

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
]
