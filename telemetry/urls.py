from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from telemetry import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="live-telemetry", permanent=False)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("live-telemetry/", views.live_telemetry, name="live-telemetry"),
]
