from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from audit.models import AuditEvent, Channel, Delivery
from audit.notifications import services
from audit.notify import SEVERITIES
from voltaxe.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The trail is evidence: nobody adds, edits or deletes it through the admin."""

    list_display = ["timestamp", "actor_name", "action", "outcome", "count", "last_seen", "resource_type", "resource_id",
                    "ip_address"]
    list_filter = ["outcome", "action", "resource_type"]
    search_fields = ["actor_name", "action", "resource_id", "ip_address"]
    date_hierarchy = "timestamp"


class ChannelForm(forms.ModelForm):
    """Checked by the same service as the API; the secret is write-only (and generated for a webhook when left empty)."""

    min_severity = forms.ChoiceField(choices=[(s, s) for s in SEVERITIES])
    secret = forms.CharField(required=False, widget=forms.PasswordInput, help_text=(
        "Webhook signing secret; leave empty to have one generated (shown once). Never shown again."))

    class Meta:
        model = Channel
        fields = ["name", "kind", "target", "secret", "events", "min_severity", "format", "enabled"]

    def clean(self):
        data = super().clean()
        given = {f: data[f] for f in services.FIELDS if f in data}
        if self.instance.pk and not given.get("secret"):
            given.pop("secret", None)  # empty on a change: keep the secret it has
        try:
            self.cleaned_values = services.channel_clean(given, instance=self.instance if self.instance.pk else None)
        except services.InvalidChannel as exc:
            for field, said in exc.errors.items():
                self.add_error(field if field in self.fields else None, said)
        return data


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "target", "events", "min_severity", "enabled", "health"]
    list_filter = ["kind", "enabled"]
    actions = ["send_test"]

    @admin.display(description="state")
    def health(self, obj: Channel) -> str:
        if obj.failing_since:
            return format_html('<strong style="color:#b00">failing since {} ({} failures in a row)</strong>',
                               f"{obj.failing_since:%Y-%m-%d %H:%M} UTC", obj.failures_in_row)
        return "ok"

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_values[f] for f in services.FIELDS}
        if change:
            services.channel_update(actor=request.user, channel=Channel.objects.get(pk=obj.pk), data=data, request=request)
            return
        channel, secret = services.channel_create(actor=request.user, data=data, request=request)
        obj.pk = channel.pk
        if secret and not form.cleaned_data.get("secret"):
            messages.warning(request, f"Signing secret of {channel.name} (shown this once): {secret}")

    def delete_model(self, request, obj):
        services.channel_delete(actor=request.user, channel=obj, request=request)

    def delete_queryset(self, request, queryset):
        for channel in queryset:
            services.channel_delete(actor=request.user, channel=channel, request=request)

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test(self, request, queryset):
        for channel in queryset:
            answer = services.channel_test(actor=request.user, channel=channel, request=request)
            level = messages.SUCCESS if answer.delivered else messages.ERROR
            self.message_user(request, f"{channel.name}: {'delivered' if answer.delivered else 'not delivered'} "
                                       f"({answer.status}) {answer.detail[:200]}", level)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "channel", "kind", "state", "attempts", "last_status", "latency_ms", "delivered_at",
                    "next_attempt_at", "error"]
    list_filter = ["kind", "channel"]
    list_select_related = ["channel"]
    search_fields = ["message_id", "group"]
    date_hierarchy = "created_at"
