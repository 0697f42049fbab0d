"""The product's URLs and error handlers, plus an API view and a page that fail the way a bug would."""
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from voltaxe.urls import *  # noqa: F401,F403  (the handlers come along with the patterns)
from voltaxe.urls import urlpatterns as product_urlpatterns


class Failing(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise ZeroDivisionError("a bug")


def failing_page(request):
    raise ZeroDivisionError("a bug")


urlpatterns = [path("api/fail/", Failing.as_view()), path("fail/", failing_page), *product_urlpatterns]
