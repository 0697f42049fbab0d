"""Activating a model version: the service checks the permission and audits a refusal, the same at every door."""
import pytest
from django.test import Client

from audit.models import AuditEvent
from tests.conftest import client_for


@pytest.mark.django_db
def test_an_analysts_activation_is_refused_and_audited_with_who_and_where_at_the_api_and_the_page(analyst):
    api = client_for(analyst).post("/api/axon/models/1/activate/", HTTP_USER_AGENT="curl/8")
    assert api.status_code == 403
    page = Client()
    page.force_login(analyst)
    # Unconfirmed: a person without the permission is not shown the confirmation, the service refuses them.
    assert page.post("/live-telemetry/models/2/activate/", HTTP_USER_AGENT="firefox/140").status_code == 403
    # Two versions, so two rows: repeats of one refusal are counted on one row.
    refused = list(AuditEvent.objects.filter(action="model.activated").order_by("id"))
    assert [(e.outcome, e.resource_id, e.actor_id, e.ip_address, e.user_agent) for e in refused] == [
        ("denied", "1", analyst.pk, "127.0.0.1", "curl/8"),
        ("denied", "2", analyst.pk, "127.0.0.1", "firefox/140"),
    ]
    assert refused[0].details == {"reason": "missing axon.activate_modelversion"}
