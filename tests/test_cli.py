"""The real ``pro`` executable against the real web server: login, keys, apps, storage, jobs (on a live node)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pytest

from apps.accounts.services import CREDENTIAL_CACHE_SECONDS
from sessions.runtime import package
from tests.helpers import LAB, Pro, publish_folder, table, verify_pending, wait_until
from tests.live import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@pytest.fixture
def pro_as(platform_server, tmp_path):
    """``pro_as("alice")``: a ``Pro`` logged in as that user (each user gets a config folder)."""

    def make(username: str | None) -> Pro:
        client = Pro(tmp_path / "config" / (username or "nobody"), platform_server.url)
        if username:
            client.login(username)
        return client

    return make


# ---------------------------------------------------------------- login


def test_login_remembers_the_server_and_a_ticket(platform_server, alice, tmp_path):
    client = Pro(tmp_path / "config", platform_server.url)
    done = client.login("alice")
    assert done.stdout.startswith(f"Logged in to {platform_server.url} as alice until ")
    config_file = tmp_path / "config" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["url"] == platform_server.url
    assert config["username"] == "alice"
    assert len(config["ticket"]) >= 20
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    # The ticket works: the list is empty, with its header.
    assert client.run("app", "list").stdout.split() == ["NAME", "LATEST", "VERSIONS", "CATEGORY", "ACCESS", "TITLE"]


def test_login_with_a_wrong_password_fails_clearly(platform_server, alice, tmp_path):
    client = Pro(tmp_path / "config", platform_server.url)
    stderr = client.fails(
        "login", "--url", platform_server.url, "--username", "alice", env={"PRO_PASSWORD": "not-her-password"}
    )
    assert "The user name or password is wrong." in stderr
    assert not (tmp_path / "config" / "config.json").exists()


def test_logout_revokes_the_ticket_on_the_server(pro_as, alice):
    from apps.accounts.models import ApiTicket

    client = pro_as("alice")
    ticket = json.loads((client.config_dir / "config.json").read_text())["ticket"]
    assert client.run("logout").stdout.strip() == "Logged out."
    assert ApiTicket.objects.get(user=alice).revoked_at is not None
    assert "not logged in" in client.fails("app", "list", env={"PRO_URL": client.url})
    assert "unknown, expired or revoked" in client.fails("app", "list", env={"PRO_TICKET": ticket})


def test_a_ticket_near_its_expiry_is_renewed_in_use(pro_as, alice):
    from datetime import timedelta

    from django.utils import timezone

    from apps.accounts.models import ApiTicket

    client = pro_as("alice")
    config_file = client.config_dir / "config.json"
    soon = timezone.now() + timedelta(minutes=2)
    ApiTicket.objects.filter(user=alice).update(expires_at=soon)
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "expires_at": soon.isoformat()}))
    client.run("app", "list")
    renewed = ApiTicket.objects.get(user=alice).expires_at
    assert renewed > soon + timedelta(minutes=5)
    assert json.loads(config_file.read_text())["expires_at"] != soon.isoformat()


def test_api_keys_for_scripts(pro_as, carol):
    client = pro_as("carol")
    created = client.run("key", "create", "nightly import", "--expires", "2099-01-01T00:00:00Z")
    key = created.stdout.strip()
    assert key.startswith("pro_k_") and "shown this once" in created.stderr
    listed = client.run("key", "list").stdout
    assert "nightly import" in listed and key not in listed and "active" in listed
    script = Pro(client.config_dir.parent / "script", client.url)
    env = {"PRO_URL": client.url, "PRO_API_KEY": key}
    assert script.run("app", "list", env=env).stdout.startswith("NAME")
    assert "API keys cannot create or revoke API keys" in script.fails("key", "create", "more", env=env)
    key_id = next(line.split()[0] for line in listed.splitlines() if "nightly" in line)
    client.run("key", "revoke", key_id)
    # Each web process caches a credential for a second (CREDENTIAL_CACHE_SECONDS): the server runs
    # several processes, so one may still accept the key until its cache lapses, never after.
    refusal = wait_until(lambda: refusal_of(script.run("app", "list", env=env, ok=False)), timeout=5)
    assert refusal and "unknown, expired or revoked" in refusal, "a revoked key still works"
    time.sleep(CREDENTIAL_CACHE_SECONDS)
    for _ in range(4):
        assert "unknown, expired or revoked" in script.fails("app", "list", env=env)
    assert "The expiry must be in the future" in client.fails(
        "key", "create", "old", "--expires", "2001-01-01T00:00:00Z"
    )


def refusal_of(completed: subprocess.CompletedProcess) -> str:
    return completed.stderr if completed.returncode == 1 else ""


def test_commands_without_login_say_what_to_do(platform_server, tmp_path):
    client = Pro(tmp_path / "config", platform_server.url)
    assert "no server: run 'pro login --url URL' or set PRO_URL" in client.fails("app", "list")
    stderr = client.fails("storage", "ls", "users/", env={"PRO_URL": platform_server.url})
    assert "not logged in, or the ticket expired: run 'pro login'" in stderr


def test_unreachable_server_is_reported(tmp_path):
    client = Pro(tmp_path / "config", f"http://127.0.0.1:{free_port()}")
    stderr = client.fails("login", "--url", client.url, "--username", "alice", env={"PRO_PASSWORD": "x"})
    assert f"cannot reach {client.url}" in stderr


# ---------------------------------------------------------------- apps


def test_app_pack_publish_and_manage_versions(
    pro_as, platform_server, runtime, alice, carol, make_app_folder, tmp_path
):
    alice_pro = pro_as("alice")

    first = tmp_path / "cli-demo-1.proapp"
    folder = make_app_folder(name="cli-demo", version="1.0.0")
    done = alice_pro.run("app", "pack", str(folder), "--url", platform_server.url, "-o", str(first))
    assert done.stdout.startswith(f"Packed cli-demo 1.0.0 into {first} (")
    assert first.read_bytes().startswith(package.MAGIC)
    done = alice_pro.run("app", "publish", str(first), "--no-wait")
    assert done.stdout.strip() == (
        "Published cli-demo 1.0.0; its verification is pending ('pro app show cli-demo' shows its result)."
    )
    assert table(alice_pro.run("app", "show", "cli-demo").stdout.split("\n", 1)[1])["1.0.0"][3] == "pending"
    verify_pending()  # what the task queue would do

    listed = table(alice_pro.run("app", "list").stdout)
    assert listed["cli-demo"][:5] == ["cli-demo", "1.0.0", "1", "General", "manager"]

    shown = alice_pro.run("app", "show", "cli-demo").stdout
    assert shown.splitlines()[0] == "Cli-Demo (cli-demo), category General, owner alice, your access: manager"
    assert table(shown.split("\n", 1)[1])["1.0.0"][:4] == ["1.0.0", "latest", "py311-highs@1.0", "verified"]

    # A second version, published without the latest tag.
    second = tmp_path / "cli-demo-2.proapp"
    folder = make_app_folder(name="cli-demo", version="2.0.0")
    alice_pro.run("app", "pack", str(folder), "--url", platform_server.url, "-o", str(second))
    done = alice_pro.run("app", "publish", str(second), "--no-latest", "--no-wait")
    assert done.stdout.startswith("Published cli-demo 2.0.0; its verification is pending")
    verify_pending()
    versions = table(alice_pro.run("app", "show", "cli-demo").stdout.split("\n", 1)[1])
    assert versions["1.0.0"][1] == "latest"
    assert versions["2.0.0"][1] == "py311-highs@1.0"  # no tag, not hidden

    assert alice_pro.run("app", "latest", "cli-demo", "2.0.0").stdout.strip() == "cli-demo 2.0.0: latest done."
    versions = table(alice_pro.run("app", "show", "cli-demo").stdout.split("\n", 1)[1])
    assert versions["2.0.0"][1] == "latest"
    assert versions["1.0.0"][1] == "py311-highs@1.0"

    alice_pro.run("app", "hide", "cli-demo", "1.0.0")
    versions = table(alice_pro.run("app", "show", "cli-demo").stdout.split("\n", 1)[1])
    assert versions["1.0.0"][1:3] == ["hidden", "py311-highs@1.0"]
    alice_pro.run("app", "unhide", "cli-demo", "1.0.0")
    versions = table(alice_pro.run("app", "show", "cli-demo").stdout.split("\n", 1)[1])
    assert versions["1.0.0"][1] == "py311-highs@1.0"

    # The version carrying the latest tag cannot be deleted; another one can.
    stderr = alice_pro.fails("app", "delete", "cli-demo", "2.0.0")
    assert "Version 2.0.0 cannot be deleted: it carries the latest tag. (version_in_use)" in stderr
    assert alice_pro.run("app", "delete", "cli-demo", "1.0.0").stdout.strip() == "Deleted cli-demo 1.0.0."
    assert list(table(alice_pro.run("app", "show", "cli-demo").stdout.split("\n", 1)[1])) == ["2.0.0"]

    # carol sees nothing until alice grants her the app.
    carol_pro = pro_as("carol")
    assert "cli-demo" not in carol_pro.run("app", "list").stdout
    assert "(not_found)" in carol_pro.fails("app", "show", "cli-demo")
    done = alice_pro.run("app", "grant", "cli-demo", "--user", "carol")
    assert done.stdout.strip() == "Granted carol viewer access to cli-demo."
    listed = table(carol_pro.run("app", "list").stdout)
    assert listed["cli-demo"][:5] == ["cli-demo", "2.0.0", "1", "General", "viewer"]
    # A viewer does not manage the app.
    assert "(forbidden)" in carol_pro.fails("app", "hide", "cli-demo", "2.0.0")


def test_publishing_garbage_is_refused(pro_as, runtime, alice, tmp_path):
    alice_pro = pro_as("alice")
    garbage = tmp_path / "garbage.proapp"
    garbage.write_bytes(os.urandom(4096))
    stderr = alice_pro.fails("app", "publish", str(garbage))
    assert "this file is not an app package (build one with 'pro app pack') (not_a_package)" in stderr
    assert table(alice_pro.run("app", "list").stdout) == {}


def test_a_user_cannot_publish(pro_as, platform_server, runtime, carol, make_app_folder, tmp_path):
    carol_pro = pro_as("carol")
    blob = tmp_path / "x.proapp"
    carol_pro.run("app", "pack", str(make_app_folder(name="carols")), "--url", platform_server.url, "-o", str(blob))
    assert "Only publishers and admins can publish apps. (forbidden)" in carol_pro.fails("app", "publish", str(blob))


# ---------------------------------------------------------------- storage


def payload(size: int) -> bytes:
    """Every byte value, then random bytes: no text mode or encoding can pass it unchanged by accident."""
    return bytes(range(256)) + os.urandom(size)


def test_storage_round_trip_in_my_folder(pro_as, alice, storage_folder, tmp_path):
    alice_pro = pro_as("alice")
    content = payload(3 * 1024 * 1024 + 17)  # more than one chunk of the client
    local = tmp_path / "results.bin"
    local.write_bytes(content)

    done = alice_pro.run("storage", "put", str(local), "users/alice/runs/")
    assert done.stdout.strip() == f"Stored users/alice/runs/results.bin ({len(content)} bytes)."
    assert (storage_folder / "users" / "alice" / "runs" / "results.bin").read_bytes() == content

    assert table(alice_pro.run("storage", "ls", "users/alice").stdout)["runs/"] == ["runs/"]
    listed = table(alice_pro.run("storage", "ls", "users/alice/runs").stdout)
    assert listed["results.bin"][:2] == ["results.bin", str(len(content))]

    target = tmp_path / "downloads"
    target.mkdir()
    done = alice_pro.run("storage", "get", "users/alice/runs/results.bin", str(target))
    assert done.stdout.strip() == f"Saved {target / 'results.bin'} ({len(content)} bytes)."
    assert (target / "results.bin").read_bytes() == content
    assert sorted(p.name for p in target.iterdir()) == ["results.bin"]  # no .part left behind

    # Replacing a file keeps one file, with the new content.
    local.write_bytes(b"second version\n")
    alice_pro.run("storage", "put", str(local), "users/alice/runs/results.bin")
    alice_pro.run("storage", "get", "users/alice/runs/results.bin", str(target / "again.bin"))
    assert (target / "again.bin").read_bytes() == b"second version\n"

    assert alice_pro.run("storage", "rm", "users/alice/runs/results.bin").stdout.strip() == (
        "Deleted users/alice/runs/results.bin."
    )
    assert table(alice_pro.run("storage", "ls", "users/alice/runs").stdout) == {}
    assert "(not_found)" in alice_pro.fails("storage", "get", "users/alice/runs/results.bin", str(target / "x"))
    assert not (target / "x").exists()


def test_storage_round_trip_in_an_app_folder(pro_as, published, carol, dave, storage_folder, tmp_path):
    alice_pro = pro_as("alice")
    content = payload(100_000)
    local = tmp_path / "model.mps"
    local.write_bytes(content)
    alice_pro.run("storage", "put", str(local), "apps/demo/data/")
    assert (storage_folder / "apps" / "demo" / "data" / "model.mps").read_bytes() == content
    assert table(alice_pro.run("storage", "ls", "apps/demo/data/").stdout)["model.mps"][1] == str(len(content))

    # Everyone granted the app shares its data folder; others do not see it.
    alice_pro.run("app", "grant", "demo", "--user", "carol")
    carol_pro = pro_as("carol")
    carol_pro.run("storage", "get", "apps/demo/data/model.mps", str(tmp_path / "carols.mps"))
    assert (tmp_path / "carols.mps").read_bytes() == content
    dave_pro = pro_as("dave")
    assert "(not_found)" in dave_pro.fails("storage", "get", "apps/demo/data/model.mps", str(tmp_path / "daves"))
    assert "(not_found)" in dave_pro.fails("storage", "put", str(local), "apps/demo/data/mine.mps")
    assert not (tmp_path / "daves").exists()

    # A viewer reads the app's data; changing it takes a collaborator.
    assert "(forbidden)" in carol_pro.fails("storage", "rm", "apps/demo/data/model.mps")
    assert (storage_folder / "apps" / "demo" / "data" / "model.mps").exists()
    alice_pro.run("app", "grant", "demo", "--user", "carol", "--level", "collaborator")
    carol_pro.run("storage", "rm", "apps/demo/data/model.mps")
    assert not (storage_folder / "apps" / "demo" / "data" / "model.mps").exists()
    assert table(alice_pro.run("storage", "ls", "apps/demo/data").stdout) == {}


def test_storage_of_someone_else_is_out_of_reach(pro_as, alice, bob, storage_folder, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"alice's numbers\n")
    alice_pro, bob_pro = pro_as("alice"), pro_as("bob")
    alice_pro.run("storage", "put", str(secret), "users/alice/secret.txt")

    stderr = bob_pro.fails("storage", "get", "users/alice/secret.txt", str(tmp_path / "stolen.txt"))
    assert "There is no file or folder 'users/alice/secret.txt' you have access to. (not_found)" in stderr
    assert not (tmp_path / "stolen.txt").exists()
    assert not (tmp_path / "stolen.txt.part").exists()
    assert "(not_found)" in bob_pro.fails("storage", "rm", "users/alice/secret.txt")
    assert "(not_found)" in bob_pro.fails("storage", "put", str(secret), "users/alice/secret.txt")
    assert "(not_found)" in bob_pro.fails("storage", "ls", "users/alice")
    assert (storage_folder / "users" / "alice" / "secret.txt").read_bytes() == b"alice's numbers\n"
    # bob's own view of users/ holds his folder only.
    assert table(bob_pro.run("storage", "ls", "users").stdout) == {"bob/": ["bob/"]}


# ---------------------------------------------------------------- jobs


def test_job_commands(live_node, alice, runtime, platform_public_key, tmp_path):
    """Submit, follow, inspect, list, cancel and fetch results through a node that runs the solves."""
    publish_folder(alice, LAB, platform_public_key)
    alice_pro = Pro(tmp_path / "config", live_node.url)
    alice_pro.login("alice")
    done = alice_pro.run("job", "submit", "lab", "solve", "--set", "cap=6.5", "--wait")
    assert "objective 6.5" in done.stdout and "succeeded" in done.stdout
    job_id = done.stdout.split()[2]
    result = json.loads(alice_pro.run("job", "result", job_id, "--json").stdout)
    assert result["objective"] == 6.5
    alice_pro.run("job", "result", job_id, "-o", str(tmp_path / "result.case"))
    assert (tmp_path / "result.case").read_bytes().startswith(b"PROCASE")
    assert "succeeded" in alice_pro.run("job", "status", job_id).stdout
    assert "objective 6.5" in alice_pro.run("job", "log", job_id).stdout

    slow = alice_pro.run("job", "submit", "lab", "slow", "--set", "seconds=600", "-q").stdout.strip()
    listed = alice_pro.run("job", "list").stdout
    assert slow in listed and job_id in listed
    alice_pro.run("job", "cancel", slow)
    assert json.loads(alice_pro.run("job", "status", slow, "--json").stdout)["cancel_requested_at"]

    failed = alice_pro.run("job", "submit", "lab", "crash", "--wait", ok=False)
    assert failed.returncode == 1 and "row 3 of the demand table is negative" in failed.stdout + failed.stderr
