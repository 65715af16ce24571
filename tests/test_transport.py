"""Transport: production settings pass check --deploy, HTTPS straight from a certificate, headers."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.test import Client

from tests.helpers import ROOT, wait_until
from tests.live import free_port, platform_env, start_group, stop_group, web_server_command

PRODUCTION = {
    "PRO_HTTPS": "true",
    "PRO_ALLOWED_HOSTS": "pro.example.com",
    "PRO_CSRF_TRUSTED_ORIGINS": "https://pro.example.com",
    "PRO_SECRET_KEY": "k" * 20 + "-production-secret-key-of-sufficient-length-0123456789",
}


def manage(*args: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "PRO_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "pro_portal.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_health_checks_over_plain_http_are_not_redirected(tmp_path):
    """Load balancers and container health checks ask /healthz over HTTP from inside the network."""
    script = (
        "from django.test import Client; c = Client(HTTP_HOST='pro.example.com'); "
        "print(c.get('/healthz').status_code, c.get('/').status_code, c.get('/').get('Location'))"
    )
    result = manage("shell", "-c", script, env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["200", "301", "https://pro.example.com/"]


def test_plain_http_defaults_are_reported_by_check_deploy(tmp_path):
    # The embedded defaults serve plain HTTP on this machine; check --deploy says what to switch on.
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr


@pytest.mark.django_db
def test_security_headers_on_the_portal_and_the_api_docs(carol):
    client = Client()
    client.force_login(carol)
    for path in ("/", "/api/v1/docs/", "/account/"):
        response = client.get(path)
        assert response.status_code == 200, path
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert b"<script>" not in response.content  # no inline script: the policy would block it


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.live
def test_web_server_serves_https_from_a_certificate_in_the_environment(
    transactional_db, carol, storage_folder, tmp_path, monkeypatch
):
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("PRO_TLS_CERT", str(cert))
    monkeypatch.setenv("PRO_TLS_KEY", str(key))
    port = free_port()
    command = web_server_command("127.0.0.1", port)
    assert command[command.index("--ssl-certfile") + 1] == str(cert)
    log = tmp_path / "web.log"
    process = start_group(command, platform_env(port, storage_folder.as_uri()), log)
    url = f"https://127.0.0.1:{port}"

    def answer():
        try:
            return requests.get(f"{url}/login/", verify=str(cert), timeout=2)
        except requests.RequestException:
            return None

    try:
        response = wait_until(answer, 30, interval=0.2)
        assert response is not None, log.read_text()
        assert response.status_code == 200
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert "Secure" in response.headers["Set-Cookie"]
        ticket = requests.post(
            f"{url}/api/v1/auth/tickets",
            json={"username": "carol", "password": "carol-Secret-pw-1"},
            verify=str(cert),
            timeout=10,
        )
        assert ticket.status_code == 201
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/login/", timeout=5)
    finally:
        stop_group(process)


def test_half_a_certificate_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PRO_TLS_CERT", str(tmp_path / "missing.pem"))
    monkeypatch.delenv("PRO_TLS_KEY", raising=False)
    with pytest.raises(CommandError, match="PRO_TLS_CERT and PRO_TLS_KEY"):
        call_command("run_platform")
