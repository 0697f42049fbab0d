import pytest
from django.apps import apps
from django.contrib import admin


@pytest.mark.django_db
def test_every_model_admin_lists_without_error(client, admin_user):
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", "root@x.test", "pw")
    client.force_login(root)
    for model in apps.get_models():
        if model in admin.site._registry:
            url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            assert client.get(url).status_code == 200, url
