"""``pro runtime``, ``pro wheelhouse`` and ``pro env``: the real executable against the real web server.

The publisher's side runs here as it would on the publisher's machine: ``pro runtime keygen`` makes
the signing key, ``pro runtime build`` installs a lock file with pip from a wheel made in the test
(no network) and signs the result. The web server trusts that key through its environment
(``PRO_RUNTIME_TRUSTED_KEYS``), as a node's operator would set it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessions.runtime import runtime_file
from tests.helpers import Pro, make_wheel, table
from tests.live import free_port, platform_env, start_web_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PYTHON = "{}.{}".format(*sys.version_info[:2])  # the runtimes built here are for this interpreter's version
FORBIDDEN = "Only admins manage runtimes and the wheelhouse. (forbidden)"

# ---------------------------------------------------------------- the publisher's machine


@dataclass
class Publisher:
    folder: Path
    key: Path
    public_key: str
    wheels: Path
    wheel: Path
    lock: Path
    runtime: Path  # tiny-rt 1.0, built from ``lock`` and signed with ``key``
    built: str = ""  # what ``pro runtime build`` printed

    def pro(self) -> Pro:
        return Pro(self.folder)

    def build(self, *args: str) -> subprocess.CompletedProcess:
        """``pro runtime build`` from the wheels folder alone (no package index), with ``args``."""
        return self.pro().run("runtime", "build", "--find-links", str(self.wheels), "--no-index", *args, ok=False)


def lock_line(wheel: Path, digest: str = "") -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}=={version} --hash=sha256:{digest or hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"


@pytest.fixture(scope="module")
def publisher(tmp_path_factory) -> Publisher:
    """A key from ``pro runtime keygen``, tinypkg 1.0's wheel, its lock, and runtime tiny-rt 1.0 built from them."""
    folder = tmp_path_factory.mktemp("publisher")
    key, lock, runtime = folder / "runtimes.pem", folder / "lock.txt", folder / "tiny.proruntime"
    public_key = Pro(folder).run("runtime", "keygen", "--out", str(key)).stdout.strip()
    wheel = make_wheel(folder / "wheels", "tinypkg", "1.0")
    lock.write_text(lock_line(wheel))
    made = Publisher(folder, key, public_key, folder / "wheels", wheel, lock, runtime)
    built = made.build(
        "--name", "tiny-rt", "--version", "1.0", "--lock", str(lock), "--key", str(key), "-o", str(runtime)
    )
    assert built.returncode == 0, built.stderr
    made.built = built.stdout
    return made


@pytest.fixture
def trusting_server(transactional_db, storage_folder, tmp_path, publisher):
    """The web server on the test database and storage folder, trusting the publisher's key."""
    env = platform_env(free_port(), storage_folder.as_uri(), PRO_RUNTIME_TRUSTED_KEYS=publisher.public_key)
    with start_web_server(env, tmp_path / "web.log") as server:
        yield server


@pytest.fixture
def pro_as(trusting_server, tmp_path):
    """``pro_as("root")``: a ``Pro`` logged in to the trusting server as that user."""

    def make(username: str) -> Pro:
        client = Pro(tmp_path / "config" / username, trusting_server.url)
        client.login(username)
        return client

    return make


# ---------------------------------------------------------------- keygen and build


def test_keygen_writes_a_private_key_and_prints_the_line_nodes_trust(tmp_path):
    pro = Pro(tmp_path)
    key_file = tmp_path / "runtimes.pem"
    done = pro.run("runtime", "keygen", "--out", str(key_file))
    public_line = done.stdout.strip()
    assert public_line.startswith("ed25519:") and done.stdout.count("\n") == 1
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = runtime_file.load_signing_key(key_file.read_bytes())
    assert runtime_file.public_key_text(key.public_key()) == public_line
    assert runtime_file.signer_id(key.public_key()) in done.stderr and "PRO_RUNTIME_TRUSTED_KEYS" in done.stderr

    # An existing key is never overwritten.
    before = key_file.read_bytes()
    assert f"{key_file} exists: a key is never overwritten" in pro.fails("runtime", "keygen", "--out", str(key_file))
    assert key_file.read_bytes() == before


def test_build_installs_the_lock_with_pip_and_signs_the_result(publisher):
    signer = runtime_file.signer_id(runtime_file.load_public_key(publisher.public_key))
    size = publisher.runtime.stat().st_size
    assert publisher.built == (
        f"Built runtime tiny-rt@1.0 (Python {PYTHON}, 1 package, signer {signer}) into {publisher.runtime} ({size} bytes).\n"
    )
    with publisher.runtime.open("rb") as stream:
        header = runtime_file.read_header(stream, runtime_file.trusted_keys([publisher.public_key]))
        payload = io.BytesIO()
        runtime_file.check_payload(stream, header, payload)
    assert (header.key, header.python, header.signer) == ("tiny-rt@1.0", PYTHON, signer)
    assert header.packages == {"tinypkg": "1.0"}
    assert header.lock == publisher.lock.read_text()
    payload.seek(0)
    with tarfile.open(fileobj=payload, mode="r:gz") as archive:
        names = archive.getnames()
        assert archive.extractfile("tinypkg/__init__.py").read() == b"VERSION = '1.0'\n"
    assert "tinypkg-1.0.dist-info/METADATA" in names
    assert not [name for name in names if name.endswith(".pyc")]  # nodes unpack the files with new times


def test_build_refuses_a_lock_without_hashes_or_with_a_wrong_hash(publisher):
    output = publisher.folder / "refused.proruntime"
    common = ["--name", "tiny-rt", "--version", "1.1", "--key", str(publisher.key), "-o", str(output)]

    unhashed = publisher.folder / "unhashed.txt"
    unhashed.write_text("tinypkg==1.0\n")
    failed = publisher.build(*common, "--lock", str(unhashed))
    assert failed.returncode == 1 and failed.stdout == ""
    assert "ERROR: Hashes are required in --require-hashes mode" in failed.stderr  # pip's own words
    assert f"pro: error: pip could not install the lock file {unhashed} (exit code 1)" in failed.stderr

    wrong = publisher.folder / "wrong.txt"
    wrong.write_text(lock_line(publisher.wheel, "0" * 64))
    failed = publisher.build(*common, "--lock", str(wrong))
    assert failed.returncode == 1 and failed.stdout == ""
    assert "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE" in failed.stderr
    assert f"pro: error: pip could not install the lock file {wrong} (exit code 1)" in failed.stderr
    assert not output.exists() and not output.with_name(output.name + ".part").exists()

    # A malformed name, or a file that is no signing key, is refused before pip runs.
    pro = publisher.pro()
    stderr = pro.fails("runtime", "build", *common, "--name", "Tiny_RT", "--lock", str(publisher.lock))
    assert "'Tiny_RT' is not a runtime name" in stderr and "Looking in" not in stderr
    stderr = pro.fails("runtime", "build", *common, "--key", str(wrong), "--lock", str(publisher.lock))
    assert f"{wrong} is not a runtime signing key (make one with 'pro runtime keygen')" in stderr


# ---------------------------------------------------------------- runtimes on the platform


def test_admins_add_list_deprecate_and_delete_runtimes(pro_as, publisher, admin_user, carol, runtime, storage_folder):
    root = pro_as("root")
    size = publisher.runtime.stat().st_size
    done = root.run("runtime", "add", str(publisher.runtime))
    assert done.stdout == f"Added runtime tiny-rt@1.0 (Python {PYTHON}, 1 package, {size} bytes).\n"
    assert [p.read_bytes() for p in (storage_folder / "runtimes").iterdir()] == [publisher.runtime.read_bytes()]

    signer = runtime_file.signer_id(runtime_file.load_public_key(publisher.public_key))
    listed = table(root.run("runtime", "list").stdout)
    assert listed["tiny-rt@1.0"] == ["tiny-rt@1.0", PYTHON, "active", "0", signer, str(size)]
    assert listed["py311-highs@1.0"][2:] == ["active", "0", "built-in", "-"]
    as_json = {r["key"]: r for r in json.loads(root.run("runtime", "list", "--json").stdout)}
    assert as_json["tiny-rt@1.0"]["packages"] == {"tinypkg": "1.0"}

    shown = root.run("runtime", "show", "tiny-rt@1.0").stdout.splitlines()
    assert shown[0] == f"tiny-rt@1.0: Python {PYTHON}: tinypkg"
    assert shown[1].startswith(f"Python {PYTHON}, active, signer {signer}, {size} bytes, added 20")
    assert shown[2:5] == ["Used by: no app version", "", "PACKAGE  VERSION"]
    assert table("\n".join(shown[4:])) == {"tinypkg": ["tinypkg", "1.0"]}
    detail = json.loads(root.run("runtime", "show", "tiny-rt@1.0", "--json").stdout)
    assert (detail["lock"], detail["used_by"], detail["environments"]) == (publisher.lock.read_text(), [], [])

    stderr = root.fails("runtime", "add", str(publisher.runtime))
    assert "Runtime tiny-rt@1.0 exists: give the new one another version. (duplicate_runtime)" in stderr

    # Users see which runtimes there are; nothing more, and they change nothing.
    carol_pro = pro_as("carol")
    assert table(carol_pro.run("runtime", "list").stdout)["tiny-rt@1.0"][2] == "active"
    assert "Only admins see a runtime's details. (forbidden)" in carol_pro.fails("runtime", "show", "tiny-rt@1.0")
    assert FORBIDDEN in carol_pro.fails("runtime", "add", str(publisher.runtime))
    assert "(forbidden)" in carol_pro.fails("runtime", "deprecate", "tiny-rt@1.0")
    assert FORBIDDEN in carol_pro.fails("runtime", "delete", "tiny-rt@1.0")

    done = root.run("runtime", "deprecate", "tiny-rt@1.0")
    assert done.stdout.startswith("Runtime tiny-rt@1.0 deprecated: new publishes do not choose it")
    assert table(root.run("runtime", "list").stdout)["tiny-rt@1.0"][2] == "deprecated"
    assert ", deprecated since 20" in root.run("runtime", "show", "tiny-rt@1.0").stdout.splitlines()[1]
    assert root.run("runtime", "undeprecate", "tiny-rt@1.0").stdout == "Runtime tiny-rt@1.0 is no longer deprecated.\n"
    assert table(root.run("runtime", "list").stdout)["tiny-rt@1.0"][2] == "active"

    stderr = root.fails("runtime", "delete", "py311-highs@1.0")
    assert "The built-in runtime cannot be deleted. (runtime_in_use)" in stderr
    assert root.run("runtime", "delete", "tiny-rt@1.0").stdout == "Deleted runtime tiny-rt@1.0.\n"
    assert "tiny-rt@1.0" not in table(root.run("runtime", "list").stdout)
    assert list((storage_folder / "runtimes").iterdir()) == []
    assert "There is no runtime 'tiny-rt@1.0'. (not_found)" in root.fails("runtime", "show", "tiny-rt@1.0")


def test_untrusted_tampered_and_foreign_files_are_refused(pro_as, publisher, admin_user, storage_folder, tmp_path):
    root = pro_as("root")
    # The same lock, built and signed by a key the platform does not trust.
    stranger = tmp_path / "stranger.pem"
    Pro(tmp_path).run("runtime", "keygen", "--out", str(stranger))
    untrusted = tmp_path / "untrusted.proruntime"
    args = ["--name", "tiny-rt", "--version", "1.0", "--lock", str(publisher.lock), "--key", str(stranger)]
    built = publisher.build(*args, "-o", str(untrusted))
    assert built.returncode == 0, built.stderr
    stderr = root.fails("runtime", "add", str(untrusted))
    assert "which this platform does not trust (PRO_RUNTIME_TRUSTED_KEYS) (untrusted_runtime)" in stderr

    # A byte of the packages changed after signing.
    tampered = tmp_path / "tampered.proruntime"
    blob = bytearray(publisher.runtime.read_bytes())
    blob[-20] ^= 0x01
    tampered.write_bytes(bytes(blob))
    stderr = root.fails("runtime", "add", str(tampered))
    assert "runtime tiny-rt@1.0: the packages do not match the signature (tampered_runtime)" in stderr

    garbage = tmp_path / "garbage.proruntime"
    garbage.write_bytes(os.urandom(4096))
    assert "this is not a runtime file (.proruntime) (bad_runtime)" in root.fails("runtime", "add", str(garbage))
    assert f"{tmp_path / 'missing'} is not a file" in root.fails("runtime", "add", str(tmp_path / "missing"))

    assert "tiny-rt@1.0" not in table(root.run("runtime", "list").stdout)
    assert not (storage_folder / "runtimes").exists() or not list((storage_folder / "runtimes").iterdir())


# ---------------------------------------------------------------- the wheelhouse and environments


def test_wheelhouse_add_list_and_delete(pro_as, admin_user, carol, storage_folder, tmp_path):
    root = pro_as("root")
    first = make_wheel(tmp_path / "wheels", "tinypkg", "1.0")
    second = make_wheel(tmp_path / "wheels", "tinypkg", "2.0")
    done = root.run("wheelhouse", "add", str(first), str(second))
    assert done.stdout.splitlines() == [
        f"Added {wheel.name} to the wheelhouse ({wheel.stat().st_size} bytes)." for wheel in (first, second)
    ]
    for wheel in (first, second):
        assert (storage_folder / "wheelhouse" / wheel.name).read_bytes() == wheel.read_bytes()
    assert table(root.run("wheelhouse", "list").stdout) == {
        wheel.name: [wheel.name, str(wheel.stat().st_size)] for wheel in (first, second)
    }
    assert [w["name"] for w in json.loads(root.run("wheelhouse", "list", "--json").stdout)] == [first.name, second.name]

    assert root.run("wheelhouse", "delete", first.name).stdout == f"Deleted {first.name} from the wheelhouse.\n"
    assert list(table(root.run("wheelhouse", "list").stdout)) == [second.name]
    assert not (storage_folder / "wheelhouse" / first.name).exists()
    assert "(not_found)" in root.fails("wheelhouse", "delete", first.name)

    # A file that is no wheel is refused; a missing file stops the command before anything is sent.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a wheel\n")
    assert "is not a wheel or source archive file name. (invalid)" in root.fails("wheelhouse", "add", str(notes))
    assert f"{tmp_path / 'gone.whl'} is not a file" in root.fails(
        "wheelhouse", "add", str(first), str(tmp_path / "gone.whl")
    )
    assert list(table(root.run("wheelhouse", "list").stdout)) == [second.name]

    carol_pro = pro_as("carol")
    assert "Only admins see the wheelhouse. (forbidden)" in carol_pro.fails("wheelhouse", "list")
    assert FORBIDDEN in carol_pro.fails("wheelhouse", "add", str(first))
    assert FORBIDDEN in carol_pro.fails("wheelhouse", "delete", second.name)
    assert not (storage_folder / "wheelhouse" / first.name).exists()


def test_environments_list_and_show_with_their_build_log(pro_as, admin_user, carol, runtime):
    """The rows are made as publishing makes them; their builds (a sandbox on a node) are tests/test_runtimes.py's."""
    from apps.catalog.environments import environment_for

    log = "$ pip install tinypkg==1.0\nERROR: No matching distribution found for tinypkg==1.0\n"
    failed = environment_for(runtime, ["tinypkg==1.0"])
    failed.state, failed.build_log = "failed", log
    failed.save(update_fields=["state", "build_log"])
    pending = environment_for(runtime, ["tinypkg==2.0"])
    short = failed.key[:12]

    root = pro_as("root")
    listed = table(root.run("env", "list").stdout)
    assert listed[short] == [short, "py311-highs@1.0", "failed", "-", "tinypkg==1.0"]
    assert listed[pending.key[:12]][2] == "pending"
    shown = root.run("env", "show", short).stdout
    assert shown == (
        f"Environment {failed.key}\n"
        "Runtime py311-highs@1.0, failed, installed 0 bytes, archive 0 bytes, built not yet\n"
        "Requirements: tinypkg==1.0\n"
        "Used by: no app version\n"
        f"\nBuild log:\n{log}"
    )
    assert json.loads(root.run("env", "show", failed.key, "--json").stdout)["build_log"] == log
    assert "There is no environment 'not-a-key'. (not_found)" in root.fails("env", "show", "not-a-key")
    assert "'' starts 2 environment keys: give more of it" in root.fails("env", "show", "")
    # A runtime's details list its environments.
    assert short in root.run("runtime", "show", "py311-highs@1.0").stdout

    carol_pro = pro_as("carol")
    assert "Only admins see the app environments. (forbidden)" in carol_pro.fails("env", "list")
    assert "Only admins see the app environments. (forbidden)" in carol_pro.fails("env", "show", short)
