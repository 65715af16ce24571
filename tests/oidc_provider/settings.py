"""Settings of the test OpenID Connect provider; nothing of the platform's.

The environment, set by ``tests.oidc`` for the server and for every command run against it:

- ``OIDC_PROVIDER_DIR``: its folder, with the SQLite database and ``rsa.pem``, the ID tokens' signing key;
- ``OIDC_PROVIDER_ISSUER``: the issuer, ``http://127.0.0.1:<port>/o``;
- ``OIDC_PROVIDER_SECRET_KEY``: shared by the server and the commands (they read its sessions).
"""

import os
from pathlib import Path

FOLDER = Path(os.environ["OIDC_PROVIDER_DIR"])
ISSUER = os.environ["OIDC_PROVIDER_ISSUER"]

SECRET_KEY = os.environ["OIDC_PROVIDER_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.oidc_provider.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).parent / "templates"],
        "APP_DIRS": True,  # DOT's own pages (its errors, the logout prompt)
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
STATIC_URL = "/static/"  # DOT's base template links its stylesheet; nothing is served
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": FOLDER / "db.sqlite3", "OPTIONS": {"timeout": 20}}
}
# Fast hashing: the provider's users exist for one test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The platform under test also runs on 127.0.0.1, and browsers share cookies between the ports
# of one host: names of its own keep the provider's session and the platform's apart.
SESSION_COOKIE_NAME = "oidc_provider_session"
CSRF_COOKIE_NAME = "oidc_provider_csrftoken"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (FOLDER / "rsa.pem").read_text(),
    # Fixed rather than derived from each request's Host header: the ID tokens' ``iss`` and the
    # discovery document's ``issuer`` then agree whichever host name a client used.
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OAUTH2_VALIDATOR_CLASS": "tests.oidc_provider.validators.ClaimsValidator",
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "User name and full name",
        "email": "E-mail address",
        "groups": "Group names",
    },
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,  # S256 only, no "plain"
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    # A logout with the ID token of the signed-in user needs no click at the provider.
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
}

# On stderr, into the server's log that tests.oidc prints: every request, and why DOT refused one
# (a redirect URI that matches none registered is told at DEBUG only). Handlers are named for
# each logger: Django's defaults leave "django.server" with none and not propagating.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "oauth2_provider": {"handlers": ["console"], "level": "DEBUG", "propagate": False},
        "oauthlib": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
