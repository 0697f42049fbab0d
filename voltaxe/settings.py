"""Voltaxe settings, read from the environment.

Nothing set: an embedded default (SQLite in WAL mode, the django-q2 ORM broker,
a local-memory cache, models in ./models_store). DATABASE_URL points at
PostgreSQL; REDIS_URL at Redis for the cache and the task broker.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from voltaxe.clientip import parse_networks
from voltaxe.rates import parse_rate

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number (seconds), not {value!r}.") from None
    if not number >= minimum:  # also refuses nan
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}, not {value!r}.")
    return number


def env_rate(name: str, default: str) -> str:
    """A rate is otherwise parsed on the first request that uses it: a typo would be a 500, not a refusal to start."""
    value = os.environ.get(name) or default
    try:
        parse_rate(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a rate such as 1/5m or 10/h (count/[number]s|m|h|d), not {value!r}."
        ) from None
    return value.strip()


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("VOLTAXE_TESTING", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or TESTING or env_bool("VOLTAXE_HELP_ONLY", False)):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "voltaxe-development-only-key-never-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver" if (DEBUG or TESTING) else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "rest_framework_simplejwt.token_blacklist",
    "django_q",
    "django_ratelimit",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "telemetry.apps.TelemetryConfig",
    "axon.apps.AxonConfig",
    "audit.apps.AuditConfig",
    "voltaxe",  # the roles (a migration) and ensure_admin
]

MIDDLEWARE = [
    "voltaxe.bodylimit.BodyLimitMiddleware",  # first: nothing below may read a body over its route's limit
    "django.middleware.security.SecurityMiddleware",
    "voltaxe.clientip.ClientIPMiddleware",
    "voltaxe.querystring.NulRefusalMiddleware",  # before sessions and auth: a NUL never reaches the database
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "voltaxe.urls"
WSGI_APPLICATION = "voltaxe.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "voltaxe.nav.nav",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------
SQLITE_PATH = Path(os.environ.get("SQLITE_PATH", BASE_DIR / "db.sqlite3"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            # Web threads and the worker write at the same time: WAL lets readers
            # go on, IMMEDIATE takes the write lock up front instead of failing
            # half-way, and the busy timeout waits for it instead of erroring.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and queue ----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    # One process's memory: rate limits then hold per web process only (README).
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "voltaxe"},
        # django-q2 keeps its cluster heartbeat in a cache; it must be one that
        # the web process and the worker both see.
        "qstats": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.environ.get("QSTATS_CACHE_DIR", str(BASE_DIR / ".cache" / "qstats")),
        },
    }

RETRAIN_TIMEOUT_SECONDS = env_int("RETRAIN_TIMEOUT_SECONDS", 300, minimum=5)
Q_CLUSTER = {
    "name": "voltaxe",
    "workers": env_int("Q_WORKERS", 1, minimum=1),
    "recycle": 50,
    # The run stops itself at RETRAIN_TIMEOUT_SECONDS; the queue kills it a little
    # later if it cannot, and must never hand it out again (retry above timeout).
    "timeout": RETRAIN_TIMEOUT_SECONDS + 10,
    "retry": RETRAIN_TIMEOUT_SECONDS + 70,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 500,
    "catch_up": False,
    "poll": 0.5,
    "orm": "default",
}
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["django_redis"] = "default"
else:
    Q_CLUSTER["cache"] = "qstats"

# --- auth ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "live-telemetry"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    # Agents authenticate too, so that an agent key on a person's endpoint is a 403, not a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "telemetry.authentication.AgentKeyAuthentication",
        "telemetry.authentication.AgentBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "voltaxe.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "voltaxe.schema.AutoSchema",
}
# /api/schema/ and /api/docs/ are for people and scripts that have an account (any logged-in user or agent key):
# the contract holds nothing secret, but a security product need not map its own surface for strangers.
SPECTACULAR_SETTINGS = {
    "TITLE": "Voltaxe API",
    "DESCRIPTION": "Process telemetry from agents, the anomaly model and its panic button. The contract is API.md.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/",  # operations are grouped by what follows: telemetry, axon, audit, auth
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",  # from static files, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for each choice set whose field name ("status") other choice sets share.
    "ENUM_NAME_OVERRIDES": {
        "AlertStatusEnum": "axon.models.Alert.Status",
        "RunStatusEnum": "axon.models.TrainingRun.Status",
        "RetrainStatusEnum": "axon.schema.RETRAIN_STATUSES",
        "HealthStatusEnum": "voltaxe.schema.HEALTH_STATUSES",
        "SeverityEnum": "audit.notify.SEVERITIES",
    },
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 1, minimum=1)),
    # A token issued sends user_logged_in (voltaxe/tokens.py): Django's receiver updates last_login.
    # Clocks disagree by seconds (NTP steps, several web hosts behind one balancer): a token
    # issued by a host a little ahead is not refused as "not yet valid" by one a little behind.
    # It also lets an access token live this much past its lifetime.
    "LEEWAY": env_int("JWT_LEEWAY_SECONDS", 10),
    # Tokens die with the password, the account and the logout (voltaxe/tokens.py).
    "CHECK_REVOKE_TOKEN": True,
    "AUTH_TOKEN_CLASSES": ("voltaxe.tokens.AccessToken",),
    "TOKEN_OBTAIN_SERIALIZER": "voltaxe.tokens.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "voltaxe.tokens.TokenRefreshSerializer",
}

# --- the doors: client address, login limits, body sizes ----------------------------
# Reverse proxies whose X-Forwarded-For is believed (addresses or networks); none by default,
# so that a client cannot pick its own address for the limits and the audit log.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

parse_networks(TRUSTED_PROXIES)  # fail at start, not on the first request
RATELIMIT_IP_META_KEY = "voltaxe.clientip.rate_limit_ip"
# Log-in attempts (admin, page form, token endpoint together) per user name and address...
TOKEN_RATE = env_rate("TOKEN_RATE", "10/m")
# ...and per address whatever the user name; token refreshes and logouts have a budget of the same size.
AUTH_ADDRESS_RATE = env_rate("AUTH_ADDRESS_RATE", "30/m")
# Request bodies, per route (voltaxe/bodylimit.py): a larger one is a 413 before it is read. Parsed
# JSON takes up to ~25 times its size (a 32 MiB `[{},{},…]` took ~800 MB), so each route gets what
# its largest real body needs. The log-in and token endpoints need a few hundred bytes.
AUTH_MAX_BODY_BYTES = 8192
# One snapshot of MAX_PROCESSES_PER_SNAPSHOT processes of a busy machine (a quarter of them browser
# renderers with 1.7 KB command lines, one in twenty a JVM with an 8 KB class path) is 4.6 MiB
# (benchmarks/body_limits.py --sizes); a Linux server's processes average 240 bytes.
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
# 100 snapshots of 150 such processes are 14.4 MiB, of 600 average ones 13.8 MiB; larger batches are split.
INGEST_BATCH_MAX_BODY_BYTES = env_int("INGEST_BATCH_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
# Everything else: admin forms, API writes (a retrain's list of approved keys: 24 characters each).
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

# --- telemetry -------------------------------------------------------------------
MAX_PROCESSES_PER_SNAPSHOT = env_int("MAX_PROCESSES_PER_SNAPSHOT", 5000, minimum=1)
MAX_BATCH_SNAPSHOTS = 100
MAX_FUTURE_SKEW_SECONDS = env_int("MAX_FUTURE_SKEW_SECONDS", 300)
# A record received more than this after its timestamp is late history: stored and scored, but
# never what makes a program look established to a default press (axon.services.selection._late_history).
LATE_HISTORY_SECONDS = env_int("LATE_HISTORY_SECONDS", 3600, minimum=60)
# Django's own check when request.body or a form is read (DRF's JSON parser reads request.body): a
# backstop behind the limits above, so never below the largest of them.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(INGEST_MAX_BODY_BYTES, INGEST_BATCH_MAX_BODY_BYTES, MAX_BODY_BYTES)

# --- axon ------------------------------------------------------------------------
MODEL_STORE_DIR = Path(os.environ.get("MODEL_STORE_DIR", BASE_DIR / "models_store"))
TRAINING_WINDOW_DAYS = env_int("TRAINING_WINDOW_DAYS", 30, minimum=1)
MIN_TRAINING_RECORDS = env_int("MIN_TRAINING_RECORDS", 50, minimum=1)
MIN_TRAINING_PROCESSES = env_int("MIN_TRAINING_PROCESSES", 10, minimum=1)
MODEL_REFRESH_SECONDS = env_float("MODEL_REFRESH_SECONDS", 1.0)
RESCORE_HOURS = env_int("RESCORE_HOURS", 24)
# Telemetry older than this is deleted by a scheduled job (0 keeps everything).
RETENTION_DAYS = env_int("RETENTION_DAYS", TRAINING_WINDOW_DAYS + 7)
RETRAIN_USER_RATE = env_rate("RETRAIN_USER_RATE", "1/5m")
RETRAIN_GLOBAL_RATE = env_rate("RETRAIN_GLOBAL_RATE", "10/h")
RETRAIN_SCHEDULE_MINUTES = env_int("RETRAIN_SCHEDULE_MINUTES", 24 * 60)
RETRAIN_REAP_GRACE_SECONDS = env_int("RETRAIN_REAP_GRACE_SECONDS", 60)
# What one press may approve (what a person can review), and how many new programs one host may
# put before a person before its items stop being ticked by default (a stolen key's flood).
MAX_APPROVALS_PER_PRESS = env_int("MAX_APPROVALS_PER_PRESS", 500, minimum=1)
HOST_NEW_PROGRAMS_BUDGET = env_int("HOST_NEW_PROGRAMS_BUDGET", 100, minimum=1)
RATELIMIT_USE_CACHE = "default"
# The embedded default's local-memory cache is per process; the README says so.
SILENCED_SYSTEM_CHECKS = [] if REDIS_URL else ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- mail, i18n, static -------------------------------------------------------------
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "voltaxe@localhost")
# --- notifications (audit/notifications) ---------------------------------------------
# Where messages link to: this server as people reach it.
VOLTAXE_URL = os.environ.get("VOLTAXE_URL", "http://127.0.0.1:8000")
# Storm control, per channel: one message per alert group per window, at most NOTIFY_RATE messages (then a digest).
NOTIFY_GROUP_WINDOW_SECONDS = env_int("NOTIFY_GROUP_WINDOW_SECONDS", 15 * 60, minimum=1)
NOTIFY_RATE = env_rate("NOTIFY_RATE", "10/m")
NOTIFY_TIMEOUT_SECONDS = env_float("NOTIFY_TIMEOUT_SECONDS", 5.0, minimum=0.1)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))

# --- production hardening -------------------------------------------------------------
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Off by default so that a plain-HTTP listener behind a TLS proxy works; production sets it (.env.example).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not (DEBUG or TESTING))
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not (DEBUG or TESTING))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
