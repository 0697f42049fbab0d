"""JWTs that die on password change, deactivation and logout.

simplejwt's blacklist app covers refresh tokens. An access token is stateless for its 15 minutes,
so it carries what it needs to be refused early: CHECK_REVOKE_TOKEN puts a digest of the user's
password hash in it (JWTAuthentication compares it on every request), and `refresh_jti` names the
refresh token it came from, so that logging that one out ends its access tokens too.
"""
from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from rest_framework_simplejwt import serializers, tokens
from rest_framework_simplejwt.exceptions import AuthenticationFailed, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.utils import get_md5_hash_password

REFRESH_JTI = "refresh_jti"


class AccessToken(tokens.AccessToken):
    def verify(self) -> None:
        super().verify()
        refresh_jti = self.payload.get(REFRESH_JTI)
        if refresh_jti and BlacklistedToken.objects.filter(token__jti=refresh_jti).exists():
            raise TokenError("This token's session was logged out. Log in again.")


class RefreshToken(tokens.RefreshToken):
    access_token_class = AccessToken

    @property
    def access_token(self) -> AccessToken:
        access = super().access_token
        access[REFRESH_JTI] = self[api_settings.JTI_CLAIM]
        return access


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    token_class = RefreshToken

    def validate(self, attrs):
        data = super().validate(attrs)
        # simplejwt logs nobody in, so it sends no user_logged_in; a token issued is a log-in all the same
        # (the audit log records it like the forms' log-ins).
        user_logged_in.send(sender=type(self.user), request=self.context.get("request"), user=self.user)
        return data


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    """simplejwt checks the user is active on refresh, not that the password is unchanged, nor that the user exists."""

    token_class = RefreshToken

    def validate(self, attrs):
        from django.contrib.auth import get_user_model

        refresh = self.token_class(attrs["refresh"])
        user = get_user_model().objects.filter(
            **{api_settings.USER_ID_FIELD: refresh.payload.get(api_settings.USER_ID_CLAIM)}
        ).first()
        if user is None:
            raise AuthenticationFailed("The user of this token no longer exists. Log in again.", "user_not_found")
        if refresh.payload.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The password changed since this token was issued. Log in again.",
                                       "password_changed")
        return super().validate(attrs)
