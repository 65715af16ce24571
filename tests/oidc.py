"""A real OpenID Connect provider for the tests: ``tests/oidc_provider`` (django-oauth-toolkit),
served by Django's development server in a process group of its own.

``oidc_provider`` (fixture; import ``oidc_provider_fixture``) yields an ``OIDCProvider``: its issuer, the platform's client at it,
and methods that change its database (users, groups, allowed redirects) or read it (who is still
signed in there). Those run ``tests.oidc_provider.ctl`` in a subprocess with the provider's
settings: the pytest process has the platform's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import ROOT, wait_until
from tests.live import START_TIMEOUT, free_port, start_group, stop_group

# Registered for any port: DOT follows RFC 8252 and lets an http://127.0.0.1 redirect URI match
# whatever port a request names, so every platform server of the tests is allowed as it is.
PLATFORM_CALLBACK = "http://127.0.0.1/oidc/callback/"
PLATFORM_AFTER_LOGOUT = "http://127.0.0.1/login/"


@dataclass
class OIDCProvider:
    url: str  # the server: http://127.0.0.1:<port>
    issuer: str  # <url>/o, exactly as in the discovery document and the ID tokens' "iss"
    client_id: str  # the platform's client: confidential, authorization code, RS256, no consent page
    client_secret: str
    env: dict[str, str]  # the provider's environment (its settings, folder, issuer, secret key)
    log_path: Path

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def add_user(self, username: str, password: str, groups: Iterable[str] = (), email: str = "") -> None:
        """A user of the provider, in ``groups`` (created as needed): the ``groups`` claim."""
        run_ctl(self.env, "add_user", username=username, password=password, groups=list(groups), email=email)

    def set_groups(self, username: str, groups: Iterable[str]) -> None:
        """The user's groups at the provider become exactly ``groups`` (userinfo answers them at once)."""
        run_ctl(self.env, "set_groups", username=username, groups=list(groups))

    def allow_redirect(self, uri: str) -> None:
        """One more allowed ``redirect_uri`` (``/oidc/callback/`` on 127.0.0.1 is, on any port)."""
        run_ctl(self.env, "allow_redirect", uri=uri)

    def allow_post_logout_redirect(self, uri: str) -> None:
        """One more allowed ``post_logout_redirect_uri`` (``/login/`` on 127.0.0.1 is, on any port)."""
        run_ctl(self.env, "allow_post_logout_redirect", uri=uri)

    def active_sessions(self, username: str) -> int:
        """How many unexpired sessions at the provider are signed in as ``username``: 0 once logged out there."""
        return run_ctl(self.env, "active_sessions", username=username)


def run_ctl(env: dict[str, str], operation: str, **arguments):
    """Run one operation of ``tests.oidc_provider.ctl`` against the provider of ``env``; its result."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.oidc_provider.ctl", operation, json.dumps(arguments)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode:
        raise AssertionError(f"the OIDC provider's {operation} failed:\n{result.stderr[-5000:]}")
    return json.loads(result.stdout)


def provider_env(folder: Path, issuer: str) -> dict[str, str]:
    """The environment of a provider in ``folder`` (and of its commands): this process's, less
    the platform's settings and database. Writes the provider's new RSA key, for the ID tokens."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "rsa.pem").write_bytes(pem)
    return {
        **{k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")},
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
        "OIDC_PROVIDER_DIR": str(folder),
        "OIDC_PROVIDER_ISSUER": issuer,
        "OIDC_PROVIDER_SECRET_KEY": secrets.token_urlsafe(50),
        "PYTHONUNBUFFERED": "1",
    }


def migrated_database(folder: Path) -> Path:
    """An empty, migrated database of the provider, made once in ``folder``: migrating takes
    seconds, copying the result next to nothing."""
    database = folder / "oidc_provider.sqlite3"
    if not database.exists():
        with tempfile.TemporaryDirectory(dir=folder) as work:
            run_ctl(provider_env(Path(work), "http://127.0.0.1/o"), "migrate")
            shutil.copyfile(Path(work) / "db.sqlite3", database)
    return database


def discovery_answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def start_oidc_provider(folder: Path, database: Path | None = None) -> Iterator[OIDCProvider]:
    """The provider on a free port with its files in ``folder`` (its database a copy of
    ``database``, when given), until the block ends; its log is printed then (pytest shows it
    when the test fails)."""
    started = time.monotonic()
    if database:
        shutil.copyfile(database, folder / "db.sqlite3")
    url = f"http://127.0.0.1:{free_port()}"
    env = provider_env(folder, f"{url}/o")
    provider = OIDCProvider(
        url=url,
        issuer=f"{url}/o",
        client_id=f"platform-{secrets.token_hex(4)}",
        client_secret=secrets.token_urlsafe(32),
        env=env,
        log_path=folder / "provider.log",
    )
    run_ctl(
        env,
        "setup",
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        redirect_uris=[PLATFORM_CALLBACK],
        post_logout_redirect_uris=[PLATFORM_AFTER_LOGOUT],
    )
    # The development server is threaded: the browser's requests and the platform's calls to
    # the token, userinfo and JWKS endpoints are served at the same time.
    command = [sys.executable, "-m", "django", "runserver", "--noreload", url.removeprefix("http://")]
    process = start_group(command, env, provider.log_path)
    try:
        wait_until(lambda: process.poll() is not None or discovery_answers(provider.discovery_url), START_TIMEOUT)
        if process.poll() is not None or not discovery_answers(provider.discovery_url):
            raise AssertionError(
                f"the OIDC provider did not answer within {START_TIMEOUT:.0f}s "
                f"(exit code {process.poll()}); its output:\n{provider.log()[-5000:]}"
            )
        print(f"OIDC provider at {provider.issuer}, started in {time.monotonic() - started:.1f}s")
        yield provider
    finally:
        stop_group(process)
        print(f"---- OIDC provider output ({provider.log_path}) ----\n{provider.log()[-20000:]}")


@pytest.fixture(name="oidc_provider")  # the function's own name differs, so modules that import it pass lint (F811)
def oidc_provider_fixture(tmp_path_factory) -> Iterator[OIDCProvider]:
    """A real OpenID Connect provider (see ``OIDCProvider``) with the platform as its one client,
    for one test; its database is migrated once per test process (or xdist worker)."""
    database = migrated_database(tmp_path_factory.getbasetemp())
    with start_oidc_provider(tmp_path_factory.mktemp("oidc_provider"), database) as provider:
        yield provider
