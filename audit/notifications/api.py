"""/api/notifications/: channels and deliveries, for security admins (API.md "Notifications")."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import Channel
from audit.notifications import services
from audit.schema import ChannelCreated, ChannelIn, ChannelOut, ChannelPage, DeliveryPage, TestAnswer
from voltaxe.api import BadRequest, next_page_url, parse_int, query_text
from voltaxe.schema import refusals

MESSAGE = "Only security admins may manage notification channels."
ADMINS = refusals(401, 403, said={403: MESSAGE})
NO_CHANNEL = refusals(404, said={404: "No channel has this id."})
INVALID = refusals(400, 413, said={400: "A field is missing or cannot be used: `errors` names it; nothing was saved."})


class CanManageChannels(BasePermission):
    """Reading needs audit.view_channel; a change, audit.change_channel (both the Security Admin role's)."""

    message = MESSAGE

    def has_permission(self, request, view) -> bool:
        user = request.user
        perm = "audit.view_channel" if request.method in ("GET", "HEAD", "OPTIONS") else "audit.change_channel"
        return bool(user and user.is_authenticated and user.has_perm(perm))


def _invalid(exc: services.InvalidChannel) -> BadRequest:
    return BadRequest(exc.detail, exc.errors)


class ChannelListView(APIView):
    permission_classes = [CanManageChannels]

    @extend_schema(responses={200: ChannelPage, **ADMINS})
    def get(self, request):
        return Response({"results": [services.channel_json(c) for c in Channel.objects.all()]})

    @extend_schema(request=ChannelIn, responses={
        201: OpenApiResponse(ChannelCreated, "Created (audited); a webhook's secret is shown this once."),
        **INVALID, **ADMINS})
    def post(self, request):
        try:
            channel, secret = services.channel_create(actor=request.user, data=request.data, request=request)
        except services.InvalidChannel as exc:
            raise _invalid(exc) from None
        # The only time the secret is shown: the receiver needs it to check signatures.
        body = services.channel_json(channel) | ({"secret": secret} if secret else {})
        return Response(body, status=status.HTTP_201_CREATED)


class ChannelDetailView(APIView):
    permission_classes = [CanManageChannels]

    @extend_schema(responses={200: ChannelOut, **ADMINS, **NO_CHANNEL})
    def get(self, request, pk: int):
        return Response(services.channel_json(get_object_or_404(Channel, pk=pk)))

    @extend_schema(request=ChannelIn, responses={200: OpenApiResponse(ChannelOut, "Changed (audited)."),
                                                 **INVALID, **ADMINS, **NO_CHANNEL})
    def patch(self, request, pk: int):
        channel = get_object_or_404(Channel, pk=pk)
        try:
            channel = services.channel_update(actor=request.user, channel=channel, data=request.data, request=request)
        except services.InvalidChannel as exc:
            raise _invalid(exc) from None
        return Response(services.channel_json(channel))

    @extend_schema(responses={204: OpenApiResponse(None, "Deleted (audited)."), **ADMINS, **NO_CHANNEL})
    def delete(self, request, pk: int):
        services.channel_delete(actor=request.user, channel=get_object_or_404(Channel, pk=pk), request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelTestView(APIView):
    permission_classes = [CanManageChannels]

    @extend_schema(request=None, responses={
        200: OpenApiResponse(TestAnswer, "Sent a `test` message now; what the receiver answered."),
        **ADMINS, **NO_CHANNEL})
    def post(self, request, pk: int):
        answer = services.channel_test(actor=request.user, channel=get_object_or_404(Channel, pk=pk), request=request)
        return Response({"delivered": answer.delivered, "status": answer.status, "detail": answer.detail,
                         "latency_ms": answer.latency_ms})


class DeliveryListView(APIView):
    permission_classes = [CanManageChannels]

    @extend_schema(parameters=[
        OpenApiParameter("channel", str, description="A channel's id or name."),
        OpenApiParameter("kind", str, description="An event kind, for example alert.new."),
        OpenApiParameter("offset", int, description="Skip this many (default 0)."),
        OpenApiParameter("limit", int, description="At most this many (default 100, at most 1000)."),
    ], responses={200: DeliveryPage, **refusals(400), **ADMINS})
    def get(self, request):
        q = request.query_params
        limit = parse_int(q.get("limit"), "limit", 100, 1, 1000)
        offset = parse_int(q.get("offset"), "offset", 0, 0, 10**9)
        rows, more = services.deliveries_list(channel=query_text(q, "channel"), kind=query_text(q, "kind"),
                                              offset=offset, limit=limit)
        return Response({"results": [services.delivery_json(d) for d in rows],
                         "next": next_page_url(request, offset, limit, more)})
