from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from telemetry import hosts_views, views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="live-telemetry", permanent=False)),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("live-telemetry/", views.live_telemetry, name="live-telemetry"),
    path("live-telemetry/data/", views.live_data, name="live-data"),
    path("hosts/", hosts_views.hosts_page, name="hosts"),
    path("hosts/<str:hostname>/", hosts_views.host_page, name="host"),
]
