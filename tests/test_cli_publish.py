"""``pro app pack`` refuses what verification would refuse; ``pro app publish`` waits for the verification and
says its result; no mistake of the user's ends in a traceback of the CLI.

The real ``pro`` against the real web server; the test process plays the task queue (it runs the
verification, a real sandboxed import, while ``pro`` waits for it).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from sessions.runtime import package
from tests.helpers import CLIENT_ENV, PRO, Pro, table, verify_pending, wait_until
from tests.live import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@pytest.fixture
def alice_pro(platform_server, alice, runtime, tmp_path) -> Pro:
    client = Pro(tmp_path / "config" / "alice", platform_server.url)
    client.login("alice")
    return client


def rename_app_in_code(folder, name: str) -> None:
    """The app's code calls it ``name``, whatever its manifest says."""
    model = folder / "demo_model.py"
    model.write_text(model.read_text().replace('App("demo"', f'App("{name}"', 1))


def start(client: Pro, *args: str) -> subprocess.Popen:
    """``pro ARGS`` as ``Pro.run`` runs it, but in the background."""
    clean = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return subprocess.Popen(
        [str(PRO), *args],
        env={**clean, "PRO_CONFIG_DIR": str(client.config_dir)},
        cwd=client.config_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def verify_while_it_waits(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """Once the version is published and ``pro`` waits, run its verification as the task queue would."""
    from apps.catalog.models import AppVersion

    wait_until(lambda: AppVersion.objects.exists() or process.poll() is not None, timeout=60)
    assert process.poll() is None, process.communicate()
    verify_pending()
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


# ---------------------------------------------------------------- pack


def test_pack_refuses_an_app_that_calls_itself_otherwise(alice_pro, platform_server, make_app_folder, tmp_path):
    folder = make_app_folder(name="demo")
    rename_app_in_code(folder, "demo-2")
    output = tmp_path / "demo.proapp"
    stderr = alice_pro.fails("app", "pack", str(folder), "--url", platform_server.url, "-o", str(output))
    assert stderr == (
        f"pro: error: cannot pack {folder}: the app calls itself 'demo-2' but its manifest says 'demo': "
        "give App() the manifest's name\n"
    )
    assert not output.exists()


@pytest.mark.parametrize(
    "code, says",
    [
        (
            "x = undefined_name\n",
            "importing the app failed: NameError: name 'undefined_name' is not defined (demo_model.py, line ",
        ),
        ("def broken(:\n", "importing the app failed: SyntaxError: "),
        ("import sys\nsys.exit(3)\n", "the app exited while it was imported (code 3) (demo_model.py, line "),
        (
            'bad = app.parameter("bad", index=[items], default=1.0, minimum=0, data={"a": -2})\n',
            "the app's initial data does not fit its declarations: bad[a]: must be at least 0",
        ),
    ],
    ids=["name-error", "syntax-error", "exit", "bad-initial-data"],
)
def test_pack_says_what_is_wrong_with_the_app_in_one_line(alice_pro, platform_server, make_app_folder, code, says):
    folder = make_app_folder(name="demo")
    with open(folder / "demo_model.py", "a") as model:
        model.write("print('the app prints while it loads')\n" + code)
    stderr = alice_pro.fails("app", "pack", str(folder), "--url", platform_server.url)
    assert stderr.startswith(f"pro: error: cannot pack {folder}: {says}"), stderr
    assert stderr.count("\n") == 1 and "the app prints" not in stderr
    assert not list(alice_pro.config_dir.glob("*.proapp"))


def test_pack_mistakes_of_the_user_are_one_line(alice_pro, platform_server, make_app_folder, tmp_path):
    folder = make_app_folder(name="demo")
    url = platform_server.url
    cases = {
        ("app", "pack", str(tmp_path / "nowhere"), "--url", url): "is not a folder",
        ("app", "pack", str(folder / "manifest.toml"), "--url", url): "is not a folder",
        ("app", "pack", str(folder), "--key", str(tmp_path / "no.pem")): "cannot read the publisher key",
        ("app", "pack", str(folder), "--key", str(folder / "manifest.toml")): "gave no publisher key",
        ("app", "pack", str(folder), "--url", f"http://127.0.0.1:{free_port()}"): "cannot reach http://127.0.0.1:",
        ("app", "pack", str(folder), "--url", "127.0.0.1:8000"): "cannot send a request to 127.0.0.1:8000",
    }
    for args, says in cases.items():
        stderr = alice_pro.fails(*args)
        assert says in stderr and stderr.count("\n") == 1, (args, stderr)
    (folder / "manifest.toml").write_text('name = "demo"\nversion = "one"\n')
    assert "cannot pack" in alice_pro.fails("app", "pack", str(folder), "--url", url)
    (folder / "manifest.toml").write_text("name = \n")
    assert "manifest.toml is not valid TOML" in alice_pro.fails("app", "pack", str(folder), "--url", url)


# ---------------------------------------------------------------- publish


def test_publish_waits_for_the_verification_and_says_it_passed(alice_pro, platform_server, make_app_folder):
    package_file = alice_pro.config_dir / "demo.proapp"
    alice_pro.run(
        "app", "pack", str(make_app_folder(name="demo")), "--url", platform_server.url, "-o", str(package_file)
    )
    code, stdout, stderr = verify_while_it_waits(start(alice_pro, "app", "publish", str(package_file)))
    assert code == 0, stderr
    assert stdout == "Published demo 1.0.0, verified; latest is 1.0.0.\n"
    assert stderr == "Uploaded demo 1.0.0; waiting for the platform to verify it.\n"
    shown = alice_pro.run("app", "show", "demo").stdout
    assert table(shown.split("\n", 1)[1])["1.0.0"][:4] == ["1.0.0", "latest", "py311-highs@1.0", "verified"]


def test_publish_fails_with_the_reason_when_verification_fails(alice_pro, platform_server, make_app_folder):
    """A package built without pack's check (by hand, or by an older pro) whose app calls itself otherwise."""
    from apps.catalog.keys import platform_private_key

    folder = make_app_folder(name="demo")
    interface = package.describe_folder(folder)
    rename_app_in_code(folder, "other")
    manifest = package.validate_manifest(
        {
            "name": "demo",
            "version": "1.0.0",
            "runtime": "py311-highs",
            "entry_point": "demo_model:app",
            "title": "Demo",
            "interface": interface,
        }
    )
    blob = package.encrypt(package.build_archive(folder, manifest.to_dict()), platform_private_key().public_key())
    package_file = alice_pro.config_dir / "demo.proapp"
    package_file.write_bytes(blob)

    code, stdout, stderr = verify_while_it_waits(start(alice_pro, "app", "publish", str(package_file)))
    assert (code, stdout) == (1, "")
    assert stderr.splitlines() == [
        "Uploaded demo 1.0.0; waiting for the platform to verify it.",
        "pro: error: demo 1.0.0 failed verification, so no one can use it: the app calls itself 'other' but its "
        "manifest says 'demo' ('pro app show demo' shows the whole report; 'pro app delete demo 1.0.0' removes it)",
    ]
    shown = alice_pro.run("app", "show", "demo").stdout
    assert table(shown.split("\n", 1)[1].split("\n\n")[0])["1.0.0"][3] == "failed"
    assert "Verification of 1.0.0 failed:\n    the app calls itself 'other' but its manifest says 'demo'" in shown


def test_publish_without_waiting_and_a_wait_that_ends(alice_pro, platform_server, make_app_folder):
    from apps.catalog.models import AppVersion

    for version in ("1.0.0", "1.1.0"):
        folder = make_app_folder(name="demo", version=version)
        alice_pro.run(
            "app", "pack", str(folder), "--url", platform_server.url, "-o", str(alice_pro.config_dir / version)
        )
    done = alice_pro.run("app", "publish", "1.0.0", "--no-wait")
    assert done.stdout == "Published demo 1.0.0; its verification is pending ('pro app show demo' shows its result).\n"
    assert AppVersion.objects.get().verification_state == "pending"
    # Nothing verifies it here: the wait ends at its timeout, saying so.
    done = alice_pro.run("app", "publish", "1.1.0", "--timeout", "1", ok=False)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        "Uploaded demo 1.1.0; waiting for the platform to verify it.",
        "pro: error: demo 1.1.0 is still pending after 1 s of waiting (is the platform's task queue running?); "
        "'pro app show demo' shows its result later",
    ]


def test_publish_mistakes_of_the_user_are_one_line(alice_pro, platform_server, tmp_path):
    cases = {
        ("app", "publish", str(tmp_path / "none.proapp")): f"{tmp_path / 'none.proapp'} is not a file",
        ("app", "publish", str(tmp_path)): "is not a file",
    }
    for args, says in cases.items():
        assert says in alice_pro.fails(*args), args
    garbage = tmp_path / "garbage.proapp"
    garbage.write_bytes(b"not a package")
    assert "(not_a_package)" in alice_pro.fails("app", "publish", str(garbage))
    elsewhere = {"PRO_URL": f"http://127.0.0.1:{free_port()}"}
    assert "cannot reach http://127.0.0.1:" in alice_pro.fails("app", "publish", str(garbage), env=elsewhere)
    assert "unknown, expired or revoked" in alice_pro.fails("app", "list", env={"PRO_TICKET": "pro_t_nonsense"})
    # A broken configuration file is named, not a traceback.
    (alice_pro.config_dir / "config.json").write_text("{not json")
    assert "config.json" in alice_pro.fails("app", "list")
    (alice_pro.config_dir / "config.json").write_text(json.dumps({"url": platform_server.url + "/healthz"}))
    assert alice_pro.fails("app", "list", env={"PRO_TICKET": "x"}).count("\n") == 1


def test_a_download_into_a_missing_folder_is_one_line(alice_pro, tmp_path):
    local = tmp_path / "notes.txt"
    local.write_text(textwrap.dedent("some notes\n"))
    alice_pro.run("storage", "put", str(local), "users/alice/notes.txt")
    stderr = alice_pro.fails("storage", "get", "users/alice/notes.txt", str(tmp_path / "missing" / "notes.txt"))
    assert "No such file or directory" in stderr
