from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from audit.actors import Actor, Denied, InvalidInput
from axon.models import Alert, Approval, ModelVersion, TrainingRun
from axon.services.approvals import approval_revoke
from axon.services.press import RateLimited, retrain_request
from axon.services.selection import retrain_preview
from axon.services.versions import model_version_activate
from axon.store import ArtifactError
from voltaxe.admin_base import ReadOnlyAdmin


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    change_list_template = "admin/axon/trainingrun/change_list.html"
    list_display = ["id", "status", "stage", "progress", "trigger", "triggered_by_name", "created_at", "duration",
                    "model_version"]
    list_filter = ["status", "trigger"]
    search_fields = ["triggered_by_name", "reason", "message"]
    actions = ["retrain_model"]

    @admin.display(description="duration")
    def duration(self, run):
        return f"{run.duration_seconds:.1f} s" if run.duration_seconds is not None else "-"

    @admin.action(description="Retrain model (review what it will learn)", permissions=["trigger_retrain"])
    def retrain_model(self, request, queryset):
        # A press approves what the person ticked: the review page shows the candidates with their keys.
        return redirect("admin:axon_trainingrun_retrain")

    def has_trigger_retrain_permission(self, request):
        return request.user.has_perm("axon.trigger_retrain")

    def get_urls(self):
        # Also a button above the list: a retrain needs no selection, and the first one has no runs to select.
        urls = [path("retrain/", self.admin_site.admin_view(self.retrain_view), name="axon_trainingrun_retrain")]
        return urls + super().get_urls()

    def retrain_view(self, request):
        """GET: the review (candidates, risk, default ticks). POST: the press, through the same service as every door."""
        if request.method == "POST":
            actor = Actor.from_request(request, TrainingRun.Trigger.ADMIN)
            body = {"reason": request.POST.get("reason", ""), "approve": request.POST.getlist("approve"),
                    "confirm_high_risk": request.POST.getlist("confirm_high_risk")}
            try:
                outcome = retrain_request(actor=actor, body=body)
            except Denied:
                raise PermissionDenied from None
            except (InvalidInput, RateLimited) as exc:
                # The review again, as the person left it: their ticks and reason are not thrown away.
                self.message_user(request, getattr(exc, "detail", None) or str(exc), messages.ERROR)
                return self._review(request, body)
            verb = "Started" if outcome.started else "Joined the run already in progress:"
            self.message_user(request, f"{verb} training run {outcome.run.pk}; it approves "
                                       f"{len(outcome.run.approved) if outcome.started else 0} item(s).", messages.SUCCESS)
            return redirect("admin:axon_trainingrun_changelist")
        if not self.has_trigger_retrain_permission(request):
            raise PermissionDenied
        return self._review(request)

    def _review(self, request, posted: dict | None = None):
        preview = retrain_preview()
        for item in preview["will_learn"]:
            item["ticked"] = item["key"] in posted["approve"] if posted else item["default"]
            item["confirmed"] = bool(posted) and item["key"] in posted["confirm_high_risk"]
        return TemplateResponse(request, "admin/axon/trainingrun/retrain.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Retrain the model",
            "preview": preview, "reason": posted["reason"] if posted else "",
        })


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["version", "status", "is_active", "trained_at", "records", "processes", "hosts", "flag_rate",
                    "training_seconds", "gate_reason"]
    list_filter = ["is_active"]
    actions = ["activate_version"]

    @admin.display(description="recent flag rate")
    def flag_rate(self, v):
        rate = v.metrics.get("recent_flag_rate")
        return f"{rate:.3%}" if rate is not None else "-"

    @admin.action(description="Activate this version (roll back or forward)", permissions=["activate"])
    def activate_version(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = queryset.get().version
        try:
            model_version_activate(version=version, actor=Actor.from_request(request, TrainingRun.Trigger.ADMIN))
        except (ArtifactError, ValueError) as exc:
            self.message_user(request, f"v{version} was not activated: {exc}", messages.ERROR)
            return
        self.message_user(request, f"Model v{version} is now active.", messages.SUCCESS)

    def has_activate_permission(self, request):
        return request.user.has_perm("axon.activate_modelversion")


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "approved_by_name", "hostname", "name", "exe", "parent", "script", "observations", "run"]
    list_filter = ["hostname"]
    search_fields = ["name", "exe", "hostname", "approved_by_name"]
    actions = ["revoke"]

    @admin.action(description="Revoke (effective from the next model version)", permissions=["revoke"])
    def revoke(self, request, queryset):
        actor = Actor.from_request(request, TrainingRun.Trigger.ADMIN)
        for approval in queryset:
            approval_revoke(actor=actor, approval_id=approval.pk)
        self.message_user(request, f"Revoked {len(queryset)} approval(s); the next model version will not honour them.",
                          messages.SUCCESS)

    def has_revoke_permission(self, request):
        return request.user.has_perm("axon.delete_approval")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["updated_at", "status", "hostname", "name", "exe", "parent", "updated_by_name", "note"]
    list_filter = ["status"]
    search_fields = ["name", "exe", "hostname", "note"]
