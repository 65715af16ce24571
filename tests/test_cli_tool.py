"""The `pro` command-line tool, run as a real program against a live node."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessions.runtime import package

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PRO = str(Path(sys.executable).parent / "pro")
EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture
def pro(live_node, tmp_path):
    """Run ``pro`` as a user: ``pro("alice", "app", "list")`` -> CompletedProcess."""

    def run(user: str | None, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        config = tmp_path / f"config-{user or 'nobody'}"
        environment = {**os.environ, "PRO_CONFIG_DIR": str(config), **(env or {})}
        environment.pop("PRO_TICKET", None)
        if user and not (config / "config.json").exists():
            login = [PRO, "login", "--url", live_node.url, "--username", user]
            done = subprocess.run(
                login,
                env={**environment, "PRO_PASSWORD": f"{user}-Secret-pw-1"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        done = subprocess.run([PRO, *args], env=environment, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    return run


def test_login_with_a_wrong_password(pro, live_node, alice, tmp_path):
    done = subprocess.run(
        [PRO, "login", "--url", live_node.url, "--username", "alice"],
        env={**os.environ, "PRO_CONFIG_DIR": str(tmp_path / "c"), "PRO_PASSWORD": "wrong"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "user name or password is wrong" in done.stderr


def test_without_login(pro):
    done = pro(None, "app", "list", check=False)
    assert done.returncode == 1 and "pro login" in done.stderr


def test_pack_publish_and_manage(pro, live_node, alice, carol, runtime, make_app_folder, tmp_path):
    folder = make_app_folder(name="cli-demo")
    packed = pro("alice", "app", "pack", str(folder), "--url", live_node.url, "-o", "cli.proapp")
    assert "Packed cli-demo 1.0.0" in packed.stdout
    assert (tmp_path / "cli.proapp").read_bytes().startswith(package.MAGIC)
    assert "Published cli-demo" in pro("alice", "app", "publish", "cli.proapp").stdout
    assert "cli-demo" in pro("alice", "app", "list").stdout
    second = make_app_folder(name="cli-demo", version="1.1.0")
    pro("alice", "app", "pack", str(second), "--url", live_node.url, "-o", "cli2.proapp")
    pro("alice", "app", "publish", "cli2.proapp", "--no-latest")
    _verify_all()
    shown = pro("alice", "app", "show", "cli-demo").stdout
    assert "1.1.0" in shown and "latest" in shown
    pro("alice", "app", "latest", "cli-demo", "1.1.0")
    pro("alice", "app", "hide", "cli-demo", "1.0.0")
    pro("alice", "app", "unhide", "cli-demo", "1.0.0")
    refused = pro("alice", "app", "delete", "cli-demo", "1.1.0", check=False)
    assert refused.returncode == 1 and "latest tag" in refused.stderr
    pro("alice", "app", "grant", "cli-demo", "--user", "carol")
    assert "cli-demo" in pro("carol", "app", "list").stdout
    pro("alice", "app", "delete", "cli-demo", "1.0.0")
    assert "1.0.0" not in pro("alice", "app", "show", "cli-demo").stdout


def _verify_all() -> None:
    from tests.conftest import verify_pending

    verify_pending()


def test_publishing_garbage(pro, alice, runtime, tmp_path):
    (tmp_path / "junk.proapp").write_bytes(b"not a package")
    done = pro("alice", "app", "publish", "junk.proapp", check=False)
    assert done.returncode == 1 and "not_a_package" in done.stderr


def test_storage_round_trip(pro, alice, carol, runtime, pack, tmp_path):
    from tests.conftest import publish_as

    publish_as(alice, pack(name="shared")).app.grants.create(user=carol, level="viewer")
    local = tmp_path / "numbers.csv"
    local.write_bytes(os.urandom(300_000))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    for remote in ("users/alice/in/numbers.csv", "apps/shared/data/numbers.csv"):
        assert "Stored" in pro("alice", "storage", "put", str(local), remote).stdout
    assert "numbers.csv" in pro("alice", "storage", "ls", "users/alice/in").stdout
    pro("carol", "storage", "get", "apps/shared/data/numbers.csv", "back.csv")
    assert hashlib.sha256((tmp_path / "back.csv").read_bytes()).hexdigest() == digest
    refused = pro("carol", "storage", "get", "users/alice/in/numbers.csv", check=False)
    assert refused.returncode == 1 and "not_found" in refused.stderr
    pro("alice", "storage", "rm", "users/alice/in/numbers.csv")
    assert "numbers.csv" not in pro("alice", "storage", "ls", "users/alice/in").stdout


def test_job_commands(pro, alice, runtime, platform_public_key, tmp_path):
    from tests.conftest import publish_as

    blob, _ = package.pack_folder(Path(__file__).parent / "apps" / "lab", platform_public_key)
    publish_as(alice, blob)
    done = pro("alice", "job", "submit", "lab", "solve", "--set", "cap=6.5", "--wait")
    assert "objective 6.5" in done.stdout and "succeeded" in done.stdout
    job_id = done.stdout.split()[2]
    result = json.loads(pro("alice", "job", "result", job_id, "--json").stdout)
    assert result["objective"] == 6.5
    pro("alice", "job", "result", job_id, "-o", "result.case")
    assert (tmp_path / "result.case").read_bytes().startswith(b"PROCASE")
    assert "succeeded" in pro("alice", "job", "status", job_id).stdout
    assert "objective 6.5" in pro("alice", "job", "log", job_id).stdout
    slow = pro("alice", "job", "submit", "lab", "slow", "--set", "seconds=600", "-q").stdout.strip()
    listed = pro("alice", "job", "list").stdout
    assert slow in listed and job_id in listed
    pro("alice", "job", "cancel", slow)
    assert json.loads(pro("alice", "job", "status", slow, "--json").stdout)["cancel_requested_at"]
    failed = pro("alice", "job", "submit", "lab", "crash", "--wait", check=False)
    assert failed.returncode == 1 and "row 3 of the demand table is negative" in failed.stdout + failed.stderr
