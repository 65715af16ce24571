"""Settings of the platform, read from the environment only (see the table in README.md).

Embedded defaults (SQLite, a storage folder and django-q2's ORM broker under ``PRO_DATA_DIR``,
an in-memory channel layer) run one machine; ``DATABASE_URL``, ``PRO_STORAGE_URL`` and
``REDIS_URL`` move each part to a shared service without any change of code.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("PRO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """``PRO_SECRET_KEY``, else one generated once and kept in the data folder."""
    key = env_str("PRO_SECRET_KEY")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("PRO_DEBUG", False)
ALLOWED_HOSTS = env_list("PRO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("PRO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_q",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "mozilla_django_oidc",
    "apps.accounts",
    "apps.catalog",
    "apps.storage",
    "apps.cluster",
    "apps.portal",
    "apps.webhooks",
    "apps.connections",
    "apps.schedules",
    "sessions",
]

MIDDLEWARE = [
    "apps.cluster.metrics.RequestMetrics",
    "apps.accounts.middleware.ClientAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.accounts.middleware.NetworkFilterMiddleware",
    "apps.accounts.middleware.TwoFactorEnrolmentMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "pro_portal.middleware.ApplicationErrorMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pro_portal.urls"
ASGI_APPLICATION = "pro_portal.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # static/ for webui/shell.html, the WebUI's markup that `pro app run` serves too.
        "DIRS": [BASE_DIR / "templates", BASE_DIR / "static"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.portal.context.platform",
            ],
        },
    },
]

# ---------------------------------------------------------------- admin database

_database_url = env_str("DATABASE_URL")
# How long a process keeps a connection (run_platform sets it for its children; 0: one per request).
_conn_max_age = env_int("PRO_DB_CONN_MAX_AGE", 0, minimum=0)
_conn_health_checks = env_bool("PRO_DB_CONN_HEALTH_CHECKS", True)
if _database_url:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_health_checks=_conn_health_checks, conn_max_age=_conn_max_age
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["TEST"] = {"NAME": env_str("PRO_TEST_DATABASE", "test_pro_platform")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "CONN_MAX_AGE": _conn_max_age,
            "CONN_HEALTH_CHECKS": _conn_health_checks,
            # A file, not memory, so that the platform processes a test starts share it.
            "TEST": {"NAME": DATA_DIR / "test-db.sqlite3"},
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------- storage


def _storage_backend(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return {
            "BACKEND": "apps.storage.backends.AtomicFileSystemStorage",
            "OPTIONS": {"location": parsed.path, "allow_overwrite": True},
        }
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ImproperlyConfigured(f"PRO_STORAGE_URL={url!r} names no bucket (s3://bucket/prefix)")
        return {
            "BACKEND": "apps.storage.backends.StreamingS3Storage",
            "OPTIONS": {
                "bucket_name": parsed.netloc,
                "location": parsed.path.strip("/"),
                "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or env_str("AWS_ENDPOINT_URL") or None,
                "region_name": env_str("AWS_DEFAULT_REGION") or env_str("AWS_REGION") or None,
                "file_overwrite": True,
                "default_acl": None,
                "querystring_auth": False,
            },
        }
    raise ImproperlyConfigured(f"PRO_STORAGE_URL={url!r}: use file:///path or s3://bucket/prefix")


STORAGES = {
    "default": _storage_backend(env_str("PRO_STORAGE_URL", (DATA_DIR / "storage").as_uri())),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None
# Request bodies (pro_portal.body_limits refuses larger ones with 413 before reading them): the limit
# of every endpoint without one of its own, and of every request without a valid ticket, key or
# signed-in session, which stays in memory (under FILE_UPLOAD_MAX_MEMORY_SIZE), never on disk.
PRO_MAX_REQUEST_BYTES = env_int("PRO_MAX_REQUEST_BYTES", 4 * 1024 * 1024, minimum=64 * 1024)
PRO_MAX_UNAUTHENTICATED_BYTES = env_int("PRO_MAX_UNAUTHENTICATED_BYTES", 1024 * 1024, minimum=16 * 1024)
if PRO_MAX_UNAUTHENTICATED_BYTES > FILE_UPLOAD_MAX_MEMORY_SIZE:
    raise ImproperlyConfigured(
        f"PRO_MAX_UNAUTHENTICATED_BYTES={PRO_MAX_UNAUTHENTICATED_BYTES} must be at most "
        f"{FILE_UPLOAD_MAX_MEMORY_SIZE}: a body without credentials is never spooled to disk"
    )
DATA_UPLOAD_MAX_MEMORY_SIZE = PRO_MAX_REQUEST_BYTES

# ---------------------------------------------------------------- queue and channels

REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER = {
    "name": "pro",
    "workers": env_int("PRO_WORKERS", 2, minimum=1),
    "timeout": 600,
    "retry": 720,  # must exceed timeout, or django-q2 runs a slow task twice
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    # Without Redis the queue is a table, and its pusher waits for a notification of a new task
    # (pro_portal.task_broker) rather than sleeping between looks.
    "poll": 0,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "pro_portal.task_broker.NotifiedORM"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# ---------------------------------------------------------------- auth and API

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # django-axes counts failed logins of the portal, the admin and the ticket API together.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PRO_SECURITY_EVENT_RETENTION_DAYS = env_int("PRO_SECURITY_EVENT_RETENTION_DAYS", 365, minimum=1)
# Failed password logins (portal, admin, ticket API) lock by three rules (apps.accounts.lockout,
# docs/security.md): an account from one address after AXES_FAILURE_LIMIT failures (Microsoft
# Entra smart lockout's default, 10, counted per location), an account from every address after
# PRO_LOCKOUT_ACCOUNT_FAILURES (NIST SP 800-63B's ceiling, 100), and an address that fails on
# PRO_LOCKOUT_SPRAY_ACCOUNTS different accounts (password spraying). Each lasts the cool-off.
AXES_FAILURE_LIMIT = env_int("PRO_LOCKOUT_FAILURES", 10, minimum=1)
PRO_LOCKOUT_ACCOUNT_FAILURES = env_int("PRO_LOCKOUT_ACCOUNT_FAILURES", 100, minimum=1)
PRO_LOCKOUT_SPRAY_ACCOUNTS = env_int("PRO_LOCKOUT_SPRAY_ACCOUNTS", 20, minimum=2)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PRO_LOCKOUT_MINUTES", 15, minimum=1))
AXES_HANDLER = "apps.accounts.lockout.LockoutHandler"
# What a successful login clears: that account's failures from that address, nothing else.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# An attempt refused while locked checks no password: it is not counted and does not extend the lock.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "pro_portal.errors.lockout_response"
AXES_VERBOSE = False
# REMOTE_ADDR is the client's address once ClientAddressMiddleware has run (trusted proxies only).
AXES_CLIENT_IP_CALLABLE = "apps.accounts.events.client_address"
# Single sign-on by OpenID Connect (apps.accounts.oidc, docs/security.md): the provider's issuer
# (its endpoints from the discovery document), this platform's client at it, and how the
# provider's groups become platform groups and roles at every login.
PRO_OIDC_ISSUER = env_str("PRO_OIDC_ISSUER").rstrip("/")
PRO_OIDC_NAME = env_str("PRO_OIDC_NAME", "single sign-on")  # the login page's "Log in with …"
PRO_OIDC_GROUPS_CLAIM = env_str("PRO_OIDC_GROUPS_CLAIM", "groups")
PRO_SSO_GROUP_MAP = env_list("PRO_SSO_GROUP_MAP", [])  # provider-group=platform-group, …
PRO_SSO_ADMIN_GROUPS = env_list("PRO_SSO_ADMIN_GROUPS", [])
PRO_SSO_PUBLISHER_GROUPS = env_list("PRO_SSO_PUBLISHER_GROUPS", [])
OIDC_RP_CLIENT_ID = env_str("PRO_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("PRO_OIDC_CLIENT_SECRET")
OIDC_RP_SIGN_ALGO = env_str("PRO_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("PRO_OIDC_SCOPES", "openid email profile groups")
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = True  # the hint of the logout at the provider
OIDC_TIMEOUT = env_float("PRO_OIDC_TIMEOUT", 10.0, minimum=1.0)
OIDC_AUTHENTICATE_CLASS = "apps.accounts.oidc.AuthenticationRequestView"
OIDC_CALLBACK_CLASS = "apps.accounts.oidc.CallbackView"
if PRO_OIDC_ISSUER:
    if not OIDC_RP_CLIENT_ID or not OIDC_RP_CLIENT_SECRET:
        raise ImproperlyConfigured("PRO_OIDC_ISSUER needs PRO_OIDC_CLIENT_ID and PRO_OIDC_CLIENT_SECRET (or _FILE)")
    AUTHENTICATION_BACKENDS.append("apps.accounts.oidc.ProviderBackend")
# LDAP / Active Directory login (apps.accounts.directory, django-auth-ldap): the directory, the
# account that searches it (or a DN template to bind with directly), where users and groups are.
PRO_LDAP_URL = env_str("PRO_LDAP_URL")
if PRO_LDAP_URL:
    import ldap
    from django_auth_ldap.config import (
        ActiveDirectoryGroupType,
        GroupOfNamesType,
        LDAPSearch,
        NestedActiveDirectoryGroupType,
        PosixGroupType,
    )

    AUTH_LDAP_SERVER_URI = PRO_LDAP_URL
    AUTH_LDAP_BIND_DN = env_str("PRO_LDAP_BIND_DN")
    AUTH_LDAP_BIND_PASSWORD = env_str("PRO_LDAP_BIND_PASSWORD")
    AUTH_LDAP_START_TLS = env_bool("PRO_LDAP_START_TLS", False)
    if env_str("PRO_LDAP_USER_DN_TEMPLATE"):  # e.g. uid=%(user)s,ou=people,dc=example,dc=com
        AUTH_LDAP_USER_DN_TEMPLATE = env_str("PRO_LDAP_USER_DN_TEMPLATE")
    else:  # Active Directory: (sAMAccountName=%(user)s)
        AUTH_LDAP_USER_SEARCH = LDAPSearch(
            env_str("PRO_LDAP_USER_BASE"), ldap.SCOPE_SUBTREE, env_str("PRO_LDAP_USER_FILTER", "(uid=%(user)s)")
        )
    LDAP_GROUP_TYPES = {
        "groupOfNames": (GroupOfNamesType, "(objectClass=groupOfNames)"),
        "activeDirectory": (ActiveDirectoryGroupType, "(objectClass=group)"),
        "nestedActiveDirectory": (NestedActiveDirectoryGroupType, "(objectClass=group)"),
        "posixGroup": (PosixGroupType, "(objectClass=posixGroup)"),
    }
    group_type, group_filter = LDAP_GROUP_TYPES.get(env_str("PRO_LDAP_GROUP_TYPE", "groupOfNames"), (None, ""))
    if group_type is None:
        raise ImproperlyConfigured(f"PRO_LDAP_GROUP_TYPE takes one of {', '.join(LDAP_GROUP_TYPES)}")
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(env_str("PRO_LDAP_GROUP_BASE"), ldap.SCOPE_SUBTREE, group_filter)
    AUTH_LDAP_GROUP_TYPE = group_type(name_attr="cn")
    AUTH_LDAP_USER_ATTR_MAP = {"email": "mail", "first_name": "givenName", "last_name": "sn"}
    AUTH_LDAP_ALWAYS_UPDATE_USER = True
    AUTH_LDAP_CONNECTION_OPTIONS = {ldap.OPT_NETWORK_TIMEOUT: 10, ldap.OPT_REFERRALS: 0}
    AUTHENTICATION_BACKENDS.append("apps.accounts.directory.DirectoryBackend")
# Two-factor login (apps.accounts.two_factor): the roles that must use it ("admins",
# "publishers"); the issuer name authenticator apps show beside the account.
PRO_2FA_REQUIRED_FOR = env_list("PRO_2FA_REQUIRED_FOR", [])
if unknown_roles := set(PRO_2FA_REQUIRED_FOR) - {"admins", "publishers"}:
    raise ImproperlyConfigured(f"PRO_2FA_REQUIRED_FOR takes admins and publishers, not {sorted(unknown_roles)}")
OTP_TOTP_ISSUER = env_str("PRO_2FA_ISSUER", "Optimization platform")
# Mail (password reset links): SMTP when PRO_EMAIL_HOST (or EMAIL_HOST) is set, otherwise one
# file per message in <data>/mail, readable by the platform's user only, for a machine without
# a mail server. PRO_EMAIL_BACKEND: smtp, file, console or a backend's dotted path.
EMAIL_HOST = env_str("PRO_EMAIL_HOST", env_str("EMAIL_HOST"))
EMAIL_PORT = env_int("PRO_EMAIL_PORT", env_int("EMAIL_PORT", 25, minimum=1), minimum=1)
EMAIL_HOST_USER = env_str("PRO_EMAIL_USER", env_str("EMAIL_HOST_USER"))
EMAIL_HOST_PASSWORD = env_str("PRO_EMAIL_PASSWORD", env_str("EMAIL_HOST_PASSWORD"))
EMAIL_USE_TLS = env_bool("PRO_EMAIL_USE_TLS", env_bool("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = env_bool("PRO_EMAIL_USE_SSL", env_bool("EMAIL_USE_SSL", False))
EMAIL_TIMEOUT = env_int("PRO_EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("PRO_EMAIL_FROM", env_str("DEFAULT_FROM_EMAIL", "platform@localhost"))
EMAIL_FILE_PATH = DATA_DIR / "mail"
_email_backends = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
}
_email_backend = env_str("PRO_EMAIL_BACKEND", "smtp" if EMAIL_HOST else "file")
EMAIL_BACKEND = _email_backends.get(_email_backend, _email_backend)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("PRO_EMAIL_USE_TLS and PRO_EMAIL_USE_SSL: choose one (STARTTLS, or TLS from the start)")
if EMAIL_BACKEND.endswith(".filebased.EmailBackend"):
    EMAIL_FILE_PATH.mkdir(mode=0o700, exist_ok=True)  # the messages hold live password reset links
# A reset link works once, and for this long (Django's default is three days).
PASSWORD_RESET_TIMEOUT = env_int("PRO_PASSWORD_RESET_MINUTES", 60, minimum=1) * 60
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:catalogue"
LOGOUT_REDIRECT_URL = "portal:login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.TicketAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.accounts.authentication.TicketScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # A new view refuses numbers beyond a float and deep nesting without asking (pro_portal.strict).
    "DEFAULT_PARSER_CLASSES": [
        "pro_portal.strict.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "pro_portal.openapi.PlatformAutoSchema",
    "EXCEPTION_HANDLER": "pro_portal.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Optimization platform API",
    "DESCRIPTION": "Publish apps, run solves, move files. Authenticate with `Authorization: Bearer <ticket>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Jobs, sessions and environments each have a "state": each its own named enum in the schema.
    "ENUM_NAME_OVERRIDES": {
        "EnvironmentStateEnum": "apps.catalog.models.EnvironmentState",
        "JobStateEnum": "sessions.models.JobState",
        "SessionStateEnum": "sessions.models.SessionState",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "pro_portal.openapi.link_to_portal",
        "sessions.task_schema.add_app_tasks",  # each published app's typed task operations
    ],
}

# ---------------------------------------------------------------- the platform

PRO_TICKET_TTL_SECONDS = env_int("PRO_TICKET_TTL", 15 * 60, minimum=30)
PRO_TICKET_MAX_AGE_SECONDS = env_int("PRO_TICKET_MAX_AGE", 12 * 3600, minimum=60)
PRO_API_KEY_MAX_DAYS = env_int("PRO_API_KEY_MAX_DAYS", 0, minimum=0)  # 0: keys may have no expiry
# IP range filtering: empty lists allow every address; X-Forwarded-For is read only from trusted proxies.
PRO_ALLOWED_NETWORKS = env_list("PRO_ALLOWED_NETWORKS", [])
PRO_TRUSTED_PROXIES = env_list("PRO_TRUSTED_PROXIES", [])
for _name in ("PRO_ALLOWED_NETWORKS", "PRO_TRUSTED_PROXIES"):
    for _value in globals()[_name]:
        try:
            ipaddress.ip_network(_value, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{_name}: {_value!r} is not an address range (CIDR, such as 10.0.0.0/8)"
            ) from None
if PRO_TRUSTED_PROXIES:
    USE_X_FORWARDED_HOST = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
PRO_MAX_PACKAGE_BYTES = env_int("PRO_MAX_PACKAGE_BYTES", 256 * 1024 * 1024, minimum=1024)
PRO_MAX_PACKAGE_UNPACKED_BYTES = env_int("PRO_MAX_PACKAGE_UNPACKED_BYTES", 1024 * 1024 * 1024, minimum=1024)
PRO_MAX_PACKAGE_RATIO = env_int("PRO_MAX_PACKAGE_RATIO", 200, minimum=2)  # uncompressed / compressed, per entry
PRO_MAX_PACKAGE_ENTRIES = env_int("PRO_MAX_PACKAGE_ENTRIES", 10_000, minimum=10)
PRO_MAX_UPLOAD_BYTES = env_int("PRO_MAX_UPLOAD_BYTES", 10 * 1024**3, minimum=1024)
PRO_PLATFORM_KEY = env_str("PRO_PLATFORM_KEY")
PRO_PLATFORM_KEY_PATH = DATA_DIR / "keys" / "platform_key.pem"
PRO_NODE_NAME = env_str("PRO_NODE_NAME", socket.gethostname())
# /metrics (apps.cluster.metrics): admins read it, and so does a scraper holding this token.
PRO_METRICS_TOKEN = env_str("PRO_METRICS_TOKEN")  # or PRO_METRICS_TOKEN_FILE
# A node with no role (PRO_NODE_ROLES=none) is a backend node: its agent and its task workers only.
PRO_NODE_ROLES = [role for role in env_list("PRO_NODE_ROLES", ["web", "sessions", "solves"]) if role != "none"]
if set(PRO_NODE_ROLES) - {"web", "sessions", "solves"}:
    raise ImproperlyConfigured(
        f"PRO_NODE_ROLES={','.join(PRO_NODE_ROLES)!r}: the roles are web, sessions and solves (or none)"
    )
# Every node heartbeats into the admin database; a node silent for two intervals is declared
# dead by the master. The master's lease lasts 1.5 intervals and is renewed every half interval.
PRO_HEARTBEAT_SECONDS = env_float("PRO_HEARTBEAT_SECONDS", 60.0, minimum=0.2)
# The address other nodes (their websocket proxies) reach this node's data session processes at.
PRO_NODE_ADDRESS = env_str("PRO_NODE_ADDRESS", "127.0.0.1")
PRO_EXAMPLES_DIR = BASE_DIR / "examples"

# ---------------------------------------------------------------- misc

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("PRO_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# ---------------------------------------------------------------- transport

# PRO_HTTPS: the platform is reached over HTTPS (its own certificate, or a TLS-terminating
# proxy listed in PRO_TRUSTED_PROXIES). Cookies then travel only over HTTPS, plain HTTP is
# redirected, and browsers are told to use HTTPS only (HSTS).
if env_bool("PRO_HTTPS", bool(env_str("PRO_TLS_CERT"))):
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("PRO_SSL_REDIRECT", True)
    # Health checks of load balancers and containers come over plain HTTP from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("PRO_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("PRO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("PRO_HSTS_PRELOAD", True)
# Scripts, styles, images and connections from this site only; websockets to the same host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
if PRO_OIDC_ISSUER:
    # The logout form's answer redirects to the provider's end of session: form-action covers redirects.
    from urllib.parse import urlsplit

    issuer = urlsplit(PRO_OIDC_ISSUER)
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"].append(f"{issuer.scheme}://{issuer.netloc}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("PRO_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# ---------------------------------------------------------------- solve jobs

PRO_JOB_TIME_LIMIT = env_int("PRO_JOB_TIME_LIMIT", 3600, minimum=1)
PRO_JOB_MEMORY_MB = env_int("PRO_JOB_MEMORY_MB", 4096, minimum=64)
PRO_JOB_MAX_ATTEMPTS = env_int("PRO_JOB_MAX_ATTEMPTS", 3, minimum=1)
PRO_JOB_LEASE_SECONDS = env_int("PRO_JOB_LEASE_SECONDS", 60, minimum=2)
PRO_JOB_RETENTION_DAYS = env_int("PRO_JOB_RETENTION_DAYS", 30, minimum=1)
# A job's stored log: its head and its tail are kept, the middle past this is dropped (sessions.jobs).
PRO_JOB_LOG_MAX_BYTES = env_int("PRO_JOB_LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
PRO_MAX_SOLVES = env_int("PRO_MAX_SOLVES", 2, minimum=1)
# Solve sandboxes started ahead of need, each for one future job (sessions.solve_pool); 0: none.
PRO_SOLVE_POOL = env_int("PRO_SOLVE_POOL", 2, minimum=0)
# Jobs of apps on their runtime's own packages are forked, walled off, from a warm fork server
# per runtime (sessions.fork_pool) where the pool is on; off: each starts a warm runner of its own.
PRO_FORK_SERVER = env_bool("PRO_FORK_SERVER", True)
# Threads of each web server process that serve requests, each with its own database connection
# (pro_portal.handler). One a process serves the most: a request is Python code that holds the
# interpreter's lock (measured: 528 job GETs a second with one, 419 with two, fewer with more);
# more let a process go on with others while one waits on slow storage or a slow query.
PRO_WEB_THREADS = env_int("PRO_WEB_THREADS", 1, minimum=1)
# The longest a task call (POST /api/v1/apps/{app}/tasks/{procedure}?wait=N) may wait for its job.
PRO_TASK_MAX_WAIT = env_float("PRO_TASK_MAX_WAIT", 300.0, minimum=0.0)
# Idle solve workers and session managers wait for a notification (pro_portal.notify) and look at
# the queue on their own only this often: the safety net, not the way work is found.
PRO_QUEUE_SAFETY_POLL_SECONDS = env_float("PRO_QUEUE_SAFETY_POLL_SECONDS", 10.0, minimum=0.05)
PRO_WORK_DIR = DATA_DIR / "work"
PRO_MAX_CASE_BYTES = env_int("PRO_MAX_CASE_BYTES", 2 * 1024**3, minimum=1024)
# Webhooks of jobs (apps.webhooks): each state change POSTed, signed, retried after these delays
# (seconds) while it fails; hosts (or addresses, networks) a webhook may reach although loopback,
# link-local or private (refused otherwise); the time one attempt may take.
PRO_WEBHOOK_RETRY_DELAYS = [float(d) for d in env_list("PRO_WEBHOOK_RETRY_DELAYS", ["10", "30", "120", "600", "3600"])]
PRO_WEBHOOK_ALLOWED_HOSTS = env_list("PRO_WEBHOOK_ALLOWED_HOSTS", [])
PRO_WEBHOOK_TIMEOUT = env_float("PRO_WEBHOOK_TIMEOUT", 5.0, minimum=0.1)
# The address users reach the portal at (https://opt.example.com): webhooks and e-mails link to
# job pages with it; unset, they carry the page's path only.
PRO_PUBLIC_URL = env_str("PRO_PUBLIC_URL").rstrip("/")
if PRO_PUBLIC_URL and not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", PRO_PUBLIC_URL):
    raise ImproperlyConfigured(f"PRO_PUBLIC_URL={PRO_PUBLIC_URL!r} is not an http:// or https:// address.")

# Where a solve node's claims run (sessions.executors, docs/executors.md): ``local`` (its own
# sandboxes), ``slurm`` (one batch job per attempt) or ``kubernetes`` (one Job per attempt). A
# node of another executor has up to PRO_EXECUTOR_SLOTS attempts at the engine at once (queued
# there or running), polls the engine's states every PRO_EXECUTOR_POLL_SECONDS, and gives the
# engine's job the API's address PRO_EXECUTOR_API_URL to report to.
PRO_EXECUTOR = env_str("PRO_EXECUTOR", "local").strip().lower()
if PRO_EXECUTOR not in ("local", "slurm", "kubernetes"):
    raise ImproperlyConfigured(f"PRO_EXECUTOR={PRO_EXECUTOR!r}: use local (the default), slurm or kubernetes")
PRO_EXECUTOR_SLOTS = env_int("PRO_EXECUTOR_SLOTS", 100, minimum=1)
PRO_EXECUTOR_POLL_SECONDS = env_float("PRO_EXECUTOR_POLL_SECONDS", 2.0, minimum=0.1)
PRO_EXECUTOR_API_URL = env_str("PRO_EXECUTOR_API_URL").rstrip("/")
# The engine's queue (a Slurm partition, a Kubernetes namespace) of a job, by app or by its
# owner's group: JSON {"default": "solve", "apps": {"big-model": "long"}, "groups": {"research": "gpu"}}.
try:
    PRO_EXECUTOR_QUEUES = json.loads(env_str("PRO_EXECUTOR_QUEUES", "{}") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f"PRO_EXECUTOR_QUEUES is not JSON: {exc}") from None
if not isinstance(PRO_EXECUTOR_QUEUES, dict) or not all(
    isinstance(PRO_EXECUTOR_QUEUES.get(key, {}), dict) for key in ("apps", "groups")
):
    raise ImproperlyConfigured('PRO_EXECUTOR_QUEUES must be {"default": ..., "apps": {...}, "groups": {...}}')
# Slurm: the configuration file of the cluster (empty: the commands' own default), extra sbatch
# options (an account, a QOS), the platform's Python on the Slurm nodes and the folder there
# where each attempt's working folder is made.
PRO_SLURM_CONF = env_str("PRO_SLURM_CONF")
PRO_SLURM_OPTIONS = env_str("PRO_SLURM_OPTIONS")
PRO_SLURM_PYTHON = env_str("PRO_SLURM_PYTHON", sys.executable)
PRO_SLURM_WORK_DIR = env_str("PRO_SLURM_WORK_DIR")  # empty: the temporary folder of the Slurm node
# Kubernetes: the API server and this pod's service account (in-cluster defaults), the image of
# the attempts' pods (the platform's own) and the namespace they run in.
PRO_K8S_API_URL = env_str("PRO_K8S_API_URL", "https://kubernetes.default.svc").rstrip("/")
PRO_K8S_TOKEN_FILE = env_str("PRO_K8S_TOKEN_FILE", "/var/run/secrets/kubernetes.io/serviceaccount/token")
PRO_K8S_CA_FILE = env_str("PRO_K8S_CA_FILE", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
PRO_K8S_NAMESPACE = env_str("PRO_K8S_NAMESPACE", "default")
PRO_K8S_IMAGE = env_str("PRO_K8S_IMAGE", "pro-portal:latest")
PRO_K8S_APP_DIR = env_str("PRO_K8S_APP_DIR", "/app")  # the platform's code in the image (the Dockerfile's WORKDIR)
PRO_K8S_WORK_DIR = env_str("PRO_K8S_WORK_DIR", "/work")  # where the pod's emptyDir is mounted
PRO_K8S_RUNNER_COMMAND = env_list("PRO_K8S_RUNNER_COMMAND", ["python", "-m", "sessions.remote_runner"])

# ---------------------------------------------------------------- data sessions

PRO_SESSIONS_PER_USER = env_int("PRO_SESSIONS_PER_USER", 3, minimum=1)  # the default of the sessions quota
PRO_SESSIONS_STARTING_LIMIT = env_int("PRO_SESSIONS_STARTING_LIMIT", 4, minimum=1)  # of one user at once
# Quotas (apps.accounts.quotas): what a user may use and ask for where neither their own quota nor
# one of their groups' says (open sessions: PRO_SESSIONS_PER_USER); 0 means no limit. Admins have none.
PRO_QUOTA_DEFAULTS = {
    "running_jobs": env_int("PRO_QUOTA_RUNNING_JOBS", 0, minimum=0) or None,
    "queued_jobs": env_int("PRO_QUOTA_QUEUED_JOBS", 1000, minimum=0) or None,
    "max_priority": env_int("PRO_QUOTA_MAX_PRIORITY", 10, minimum=0),
    "max_time_limit": env_float("PRO_QUOTA_MAX_TIME_LIMIT", 24 * 3600.0, minimum=0) or None,
    "max_memory_mb": env_int("PRO_QUOTA_MAX_MEMORY_MB", 16384, minimum=0) or None,
}
# Seats: at most this many users at once with a live session or a running solve (0: no limit).
PRO_SEATS = env_int("PRO_SEATS", 0, minimum=0)
PRO_SESSION_IDLE_SECONDS = env_int("PRO_SESSION_IDLE_SECONDS", 300, minimum=5)
PRO_SESSION_POOL = env_int("PRO_SESSION_POOL", 2, minimum=0)
PRO_MAX_SESSIONS = env_int("PRO_MAX_SESSIONS", 20, minimum=1)  # data sessions one node hosts
PRO_SESSION_TICKET_TTL = env_int("PRO_SESSION_TICKET_TTL", 24 * 3600, minimum=60)
PRO_INTERNAL_API_URL = env_str("PRO_INTERNAL_API_URL", f"http://127.0.0.1:{env_int('PRO_HTTP_PORT', 8000, minimum=1)}")

# ---------------------------------------------------------------- the sandbox of app code

PRO_SANDBOX = env_str("PRO_SANDBOX", "bubblewrap").strip().lower()
if PRO_SANDBOX not in ("bubblewrap", "off"):
    raise ImproperlyConfigured(f"PRO_SANDBOX={PRO_SANDBOX!r}: use bubblewrap (the default) or off")
PRO_SANDBOX_MAX_PROCESSES = env_int("PRO_SANDBOX_MAX_PROCESSES", 256, minimum=8)  # per sandbox
PRO_SANDBOX_TMP_MB = env_int("PRO_SANDBOX_TMP_MB", 1024, minimum=16)  # size of each sandbox's /tmp
PRO_SESSION_MEMORY_MB = env_int("PRO_SESSION_MEMORY_MB", 4096, minimum=64)  # per data session
PRO_VERIFY_MEMORY_MB = env_int("PRO_VERIFY_MEMORY_MB", 2048, minimum=64)
PRO_SESSION_LOG_BYTES = env_int("PRO_SESSION_LOG_BYTES", 10 * 1024 * 1024, minimum=0)  # a session's own output kept

# ---------------------------------------------------------------- runtimes and app environments

# Public keys (``ed25519:<base64>``, from ``pro runtime keygen``) whose signed runtimes this node
# accepts; comma- or line-separated, or in a file named by PRO_RUNTIME_TRUSTED_KEYS_FILE.
PRO_RUNTIME_TRUSTED_KEYS = [
    line.strip() for line in env_str("PRO_RUNTIME_TRUSTED_KEYS").replace(",", "\n").splitlines() if line.strip()
]
PRO_MAX_RUNTIME_BYTES = env_int("PRO_MAX_RUNTIME_BYTES", 4 * 1024**3, minimum=1024)
PRO_MAX_WHEEL_BYTES = env_int("PRO_MAX_WHEEL_BYTES", 512 * 1024**2, minimum=1024)
# Where environments are built from: a package index the nodes reach (through the sandbox's proxy),
# and the wheelhouse admins upload to storage. Empty: the wheelhouse only.
PRO_PACKAGE_INDEX_URL = env_str("PRO_PACKAGE_INDEX_URL", "https://pypi.org/simple")
# Folders of wheels on the node itself (a local mirror), read-only in the build sandbox.
PRO_FIND_LINKS = [Path(folder) for folder in env_list("PRO_FIND_LINKS", [])]
PRO_ENV_BUILD_TIMEOUT = env_int("PRO_ENV_BUILD_TIMEOUT", 1800, minimum=10)
PRO_ENV_BUILD_MEMORY_MB = env_int("PRO_ENV_BUILD_MEMORY_MB", 4096, minimum=256)
# Unpacked runtimes and environments of this machine's nodes, and how long an unused one stays.
PRO_ENV_CACHE_DIR = Path(env_str("PRO_ENV_CACHE_DIR", str(DATA_DIR / "env-cache"))).resolve()
PRO_ENV_CACHE_DAYS = env_float("PRO_ENV_CACHE_DAYS", 14, minimum=0)
# Interpreters of other Python versions for runtimes that ask for them (the platform's own base
# interpreter serves its version).
PRO_PYTHONS = env_list("PRO_PYTHONS", [])

# ---------------------------------------------------------------- schedules (docs/schedules.md)

PRO_SCHEDULE_MIN_INTERVAL_SECONDS = env_int("PRO_SCHEDULE_MIN_INTERVAL_SECONDS", 60, minimum=1)
PRO_SCHEDULE_POLL_SECONDS = env_float("PRO_SCHEDULE_POLL_SECONDS", 1.0, minimum=0.05)  # longest sleep of a ticker
PRO_SCHEDULE_GRACE_SECONDS = env_float(
    "PRO_SCHEDULE_GRACE_SECONDS", 60.0, minimum=0.1
)  # a slot later than this: missed
PRO_SCHEDULE_MAX_REFUSALS = env_int("PRO_SCHEDULE_MAX_REFUSALS", 5, minimum=1)  # refused runs in a row that pause it
PRO_SCHEDULE_TICKER = env_bool("PRO_SCHEDULE_TICKER", True)  # this node's agent fires due schedules
