"""Configuration by environment only: each variable read in a fresh interpreter, as a node would."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from pro_portal import env
from tests.helpers import probe


def settings_with(tmp_path, monkeypatch, **environment) -> dict:
    result = probe(tmp_path, monkeypatch, **environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_embedded_defaults(tmp_path, monkeypatch):
    found = settings_with(tmp_path, monkeypatch)
    assert found["engine"] == "django.db.backends.sqlite3"
    assert found["db_name"] == str(tmp_path / "data" / "db.sqlite3")
    assert found["storage"] == "apps.storage.backends.AtomicFileSystemStorage"
    assert found["storage_options"]["location"] == str(tmp_path / "data" / "storage")
    assert found["q"] == {"orm": "default"}
    assert found["channels"] == "channels.layers.InMemoryChannelLayer"
    assert found["debug"] is False
    secret_file = tmp_path / "data" / "secret_key"
    assert found["secret"] == secret_file.read_text().strip() and len(found["secret"]) > 40
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert settings_with(tmp_path, monkeypatch)["secret"] == found["secret"]


def test_services_by_environment(tmp_path, monkeypatch):
    found = settings_with(
        tmp_path,
        monkeypatch,
        DATABASE_URL="postgres://pro:pw@db.example:5432/platform",
        PRO_STORAGE_URL="s3://cases-bucket/prod/eu",
        REDIS_URL="redis://cache:6379/0",
        PRO_SECRET_KEY="k" * 50,
        PRO_DEBUG="true",
        PRO_ALLOWED_HOSTS="pro.example.com, .internal",
    )
    assert found["engine"] == "django.db.backends.postgresql"
    assert (found["db_name"], found["db_host"]) == ("platform", "db.example")
    assert found["storage"] == "apps.storage.backends.StreamingS3Storage"
    assert found["storage_options"]["bucket_name"] == "cases-bucket"
    assert found["storage_options"]["location"] == "prod/eu"
    assert found["q"] == {"redis": "redis://cache:6379/0"}
    assert found["channels"] == "channels_redis.core.RedisChannelLayer"
    assert found["secret"] == "k" * 50 and found["debug"] is True
    assert found["hosts"] == ["pro.example.com", ".internal"]


def test_file_storage_url(tmp_path, monkeypatch):
    found = settings_with(tmp_path, monkeypatch, PRO_STORAGE_URL=f"file://{tmp_path}/shared")
    assert found["storage_options"]["location"] == f"{tmp_path}/shared"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PRO_STORAGE_URL", "ftp://host/x", "use file:///path or s3://bucket/prefix"),
        ("PRO_STORAGE_URL", "s3:///prefix", "names no bucket"),
        ("PRO_DEBUG", "maybe", "is not a boolean"),
        ("PRO_WORKERS", "many", "is not a whole number"),
        ("PRO_HEARTBEAT_SECONDS", "0", "must be at least 0.2"),
    ],
)
def test_bad_values_fail_loudly(tmp_path, monkeypatch, name, value, message):
    result = probe(tmp_path, monkeypatch, **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_secret_from_file(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" * 5 + "\n")
    assert settings_with(tmp_path, monkeypatch, PRO_SECRET_KEY_FILE=str(secret))["secret"] == "from-a-file-" * 5


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    monkeypatch.setenv("X_FILE", "/no/such/file")
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env.env_str("X")
    assert env.env_int("X_UNSET_INT", 7) == 7
