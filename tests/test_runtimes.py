"""Runtimes and app environments, for real: signed runtime files (good, tampered, untrusted), app
requirements built in a sandbox from a wheelhouse made here (no network), shared by apps with the
same needs, two conflicting versions of one package in two apps at once, a signed runtime that
jobs run on, and the node cache fetching what it lacks once.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.catalog import environments, runtimes
from apps.catalog.models import Environment, Runtime
from pro_portal.errors import ApplicationError
from sessions import jobs
from sessions.models import JobState
from sessions.runtime import package, runtime_file
from tests.helpers import api_as, make_wheel, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODEL = """
from pro_sdk import App, Button, Field

app = App("{name}", title="{name}")
seen = app.output("seen", type="str")


def _which():
    import tinypkg

    return f"tinypkg {{tinypkg.VERSION}} from {{tinypkg.__file__}}"


@app.procedure(title="Which")
def which(data):
    data["seen"] = _which()


@app.solve(title="Solve")
def solve(data, ctx):
    ctx.log("SEEN " + _which())
    data["seen"] = _which()


app.page("Data", [Field(seen), Button(which), Button(solve)])
"""


@pytest.fixture
def wheelhouse(settings, tmp_path, storage_folder):
    """tinypkg 1.0 and 2.0 in the platform's wheelhouse; no package index; a cache of this test's own."""
    settings.PRO_PACKAGE_INDEX_URL = ""
    settings.PRO_ENV_CACHE_DIR = tmp_path / "env-cache"
    for version in ("1.0", "2.0"):
        wheel = make_wheel(tmp_path / "wheels", "tinypkg", version)
        default_storage.save(f"wheelhouse/{wheel.name}", ContentFile(wheel.read_bytes()))
    return tmp_path / "wheels"


@pytest.fixture
def publish_needing(alice, runtime, platform_public_key, tmp_path):
    """``publish_needing(name, requirements, runtime=...)``: an app whose procedures report the tinypkg they import."""
    from tests.helpers import publish_as

    def publish(name: str, requirements: list[str], runtime_ref: str = "py311-highs", version: str = "1.0.0"):
        folder = tmp_path / "apps" / f"{name}-{version}"
        folder.mkdir(parents=True)
        pins = ", ".join(f'"{pin}"' for pin in requirements)
        (folder / "manifest.toml").write_text(
            f'name = "{name}"\nversion = "{version}"\nruntime = "{runtime_ref}"\n'
            f'entry_point = "model:app"\ntitle = "{name}"\nrequirements = [{pins}]\n'
        )
        (folder / "model.py").write_text(textwrap.dedent(MODEL.format(name=name)))
        blob, _ = package.pack_folder(folder, platform_public_key)
        return publish_as(alice, blob)

    return publish


# ---------------------------------------------------------------- the signed runtime file


@pytest.fixture
def signing_key():
    return runtime_file.generate_signing_key()


def runtime_blob(key, name="tiny-rt", version="1.0", site: Path | None = None, packages=None) -> bytes:
    payload = runtime_file.pack_folder(site if site is not None else Path(tempfile.mkdtemp()))
    return runtime_file.build(
        name=name,
        version=version,
        python="{}.{}".format(*sys.version_info[:2]),
        lock="",
        packages=packages or {},
        payload=payload,
        key=key,
    )


def test_a_runtime_file_is_checked_against_the_trusted_keys(signing_key):
    blob = runtime_blob(signing_key)
    trusted = runtime_file.trusted_keys([runtime_file.public_key_text(signing_key.public_key())])
    stream = io.BytesIO(blob)
    header = runtime_file.read_header(stream, trusted)
    runtime_file.check_payload(stream, header)
    assert header.key == "tiny-rt@1.0"

    other = runtime_file.trusted_keys([runtime_file.public_key_text(runtime_file.generate_signing_key().public_key())])
    with pytest.raises(runtime_file.RuntimeFileError) as refused:
        runtime_file.read_header(io.BytesIO(blob), other)
    assert refused.value.code == "untrusted_runtime"

    header_flipped = bytearray(blob)
    header_flipped[blob.index(b'"tiny-rt"') + 2] ^= 1
    with pytest.raises(runtime_file.RuntimeFileError) as refused:
        runtime_file.read_header(io.BytesIO(bytes(header_flipped)), trusted)
    assert refused.value.code in ("tampered_runtime", "untrusted_runtime")

    payload_flipped = bytearray(blob)
    payload_flipped[-10] ^= 1
    stream = io.BytesIO(bytes(payload_flipped))
    header = runtime_file.read_header(stream, trusted)
    with pytest.raises(runtime_file.RuntimeFileError) as refused:
        runtime_file.check_payload(stream, header)
    assert refused.value.code == "tampered_runtime"

    with pytest.raises(runtime_file.RuntimeFileError) as refused:
        runtime_file.read_header(io.BytesIO(b"PK\x03\x04 an unsigned zip"), trusted)
    assert refused.value.code == "bad_runtime"


def test_admins_add_deprecate_and_delete_runtimes_through_the_api(settings, signing_key, admin_user, alice, runtime):
    settings.PRO_RUNTIME_TRUSTED_KEYS = [runtime_file.public_key_text(signing_key.public_key())]
    admin, publisher = api_as(admin_user), api_as(alice)
    blob = runtime_blob(signing_key)

    def post(client, body: bytes):
        return client.generic("POST", "/api/v1/runtimes", body, content_type="application/octet-stream")

    assert post(publisher, blob).status_code == 403
    tampered = bytearray(blob)
    tampered[-10] ^= 1
    refused = post(admin, bytes(tampered))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "tampered_runtime"
    untrusted = post(admin, runtime_blob(runtime_file.generate_signing_key()))
    assert untrusted.json()["error"]["code"] == "untrusted_runtime"
    assert "PRO_RUNTIME_TRUSTED_KEYS" in untrusted.json()["error"]["message"]
    assert not Runtime.objects.filter(key="tiny-rt@1.0").exists()

    added = post(admin, blob)
    assert added.status_code == 201, added.content
    assert added.json()["key"] == "tiny-rt@1.0" and not added.json()["deprecated"]
    assert post(admin, blob).status_code == 409
    keys = [r["key"] for r in publisher.get("/api/v1/runtimes").json()]
    assert "tiny-rt@1.0" in keys and "py311-highs@1.0" in keys

    deprecated = admin.patch("/api/v1/runtimes/tiny-rt@1.0", {"deprecated": True}, format="json")
    assert deprecated.json()["deprecated"] is True
    with pytest.raises(ApplicationError, match="deprecated"):
        runtimes.runtime_resolve("tiny-rt@1")
    admin.patch("/api/v1/runtimes/tiny-rt@1.0", {"deprecated": False}, format="json")
    assert runtimes.runtime_resolve("tiny-rt").key == "tiny-rt@1.0"

    assert admin.delete("/api/v1/runtimes/py311-highs@1.0").status_code == 409
    assert admin.delete("/api/v1/runtimes/tiny-rt@1.0").status_code == 204
    assert not default_storage.exists(
        Runtime.objects.filter(key="tiny-rt@1.0").values_list("file_path", flat=True).first() or "x"
    )


def test_a_family_resolves_to_its_newest_version(settings, signing_key, admin_user, runtime):
    settings.PRO_RUNTIME_TRUSTED_KEYS = [runtime_file.public_key_text(signing_key.public_key())]
    for version in ("1.0", "1.2", "1.10", "2.0"):
        runtimes.runtime_add(user=admin_user, stream=io.BytesIO(runtime_blob(signing_key, version=version)))
    assert runtimes.runtime_resolve("tiny-rt@1").key == "tiny-rt@1.10"
    assert runtimes.runtime_resolve("tiny-rt@1.2").key == "tiny-rt@1.2"
    assert runtimes.runtime_resolve("tiny-rt").key == "tiny-rt@2.0"
    runtimes.runtime_deprecate(user=admin_user, key="tiny-rt@1.10")
    assert runtimes.runtime_resolve("tiny-rt@1").key == "tiny-rt@1.2"
    with pytest.raises(ApplicationError, match="not on this platform"):
        runtimes.runtime_resolve("tiny-rt@3")


# ---------------------------------------------------------------- app environments


def test_requirements_are_built_once_and_shared(wheelhouse, publish_needing, alice, worker):
    first = publish_needing("needs-one", ["tinypkg==1.0"])
    assert first.verification_state == "verified", first.verification_error
    environment = first.environment
    assert environment.state == "ready" and environment.packages == {"tinypkg": "1.0"}
    assert "tinypkg" in environment.build_log and environment.archive_size > 0

    second = publish_needing("needs-one-too", ["tinypkg==1.0"])
    assert second.environment_id == environment.pk  # same needs: the same environment, not built again
    assert Environment.objects.count() == 1

    job = jobs.job_submit(user=alice, app_name="needs-one", procedure="solve")
    wait_for(job, JobState.SUCCEEDED)
    log = jobs.job_log(job)[0]
    assert "SEEN tinypkg 1.0 from /pro/site/0/tinypkg/__init__.py" in log


def test_a_failed_build_fails_verification_with_the_resolver_message(wheelhouse, publish_needing):
    version = publish_needing("needs-missing", ["tinypkg==9.9"])
    assert version.verification_state == "failed"
    assert "could not be built" in version.verification_error
    assert "No matching distribution found for tinypkg==9.9" in version.verification_error
    assert version.environment.state == "failed"


def test_conflicting_versions_run_side_by_side(wheelhouse, publish_needing, alice, worker, manager, platform_server):
    from sessions import data_sessions
    from tests.helpers import wait_state

    old = publish_needing("needs-old", ["tinypkg==1.0"])
    new = publish_needing("needs-new", ["tinypkg==2.0"])
    assert old.environment_id != new.environment_id
    job_old = jobs.job_submit(user=alice, app_name="needs-old", procedure="solve")
    job_new = jobs.job_submit(user=alice, app_name="needs-new", procedure="solve")
    sessions = [data_sessions.session_launch(user=alice, app_name=name) for name in ("needs-old", "needs-new")]
    for job, version in ((job_old, "1.0"), (job_new, "2.0")):
        wait_for(job, JobState.SUCCEEDED)
        assert f"SEEN tinypkg {version} from" in jobs.job_log(job)[0]
    for session in sessions:
        wait_state(session, "running")
    assert len(manager.running) == 2  # both live at once, each with its own tinypkg


def test_a_node_fetches_an_environment_once_and_checks_its_hash(wheelhouse, publish_needing, settings, tmp_path):
    version = publish_needing("needs-one", ["tinypkg==1.0"])
    settings.PRO_ENV_CACHE_DIR = tmp_path / "another-node-cache"  # a node that has never seen it
    folders = []
    threads = [threading.Thread(target=lambda: folders.append(environments.version_python(version))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({sites for _, sites in folders}) == 1  # four launches at once: one fetch, one folder
    site = folders[0][1][0]
    assert (site / "tinypkg" / "__init__.py").read_text().startswith("VERSION = '1.0'")

    shutil.rmtree(site.parent)
    environment = version.environment
    environment.archive_sha256 = "0" * 64
    environment.save()
    with pytest.raises(environments.EnvironmentUnavailable, match="does not match its hash"):
        environments.environment_folder(environment)


def test_a_signed_runtime_runs_jobs_on_a_bare_interpreter(
    settings, signing_key, admin_user, alice, wheelhouse, publish_needing, worker, tmp_path
):
    """A runtime of its own packages (numpy, highspy and tinypkg 2.0 copied in), signed, added, fetched
    by the node, checked, and put on a bare interpreter: the job sees its packages, not the platform's."""
    import highspy
    import numpy

    settings.PRO_RUNTIME_TRUSTED_KEYS = [runtime_file.public_key_text(signing_key.public_key())]
    site = tmp_path / "runtime-site"
    for module in (numpy, highspy):
        source = Path(module.__file__).parent
        shutil.copytree(source, site / source.name, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    libs = Path(numpy.__file__).parent.parent / "numpy.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / "numpy.libs")
    shutil.unpack_archive(make_wheel(tmp_path / "w", "tinypkg", "2.0"), site, "zip")
    blob = runtime_blob(signing_key, name="tiny-rt", version="1.0", site=site, packages={"tinypkg": "2.0"})
    runtimes.runtime_add(user=admin_user, stream=io.BytesIO(blob))

    version = publish_needing("on-tiny-rt", [], runtime_ref="tiny-rt@1")
    assert version.runtime.key == "tiny-rt@1.0" and version.runtime_requested == "tiny-rt@1"
    assert version.verification_state == "verified", version.verification_error
    job = jobs.job_submit(user=alice, app_name="on-tiny-rt", procedure="solve")
    wait_for(job, JobState.SUCCEEDED)
    assert "SEEN tinypkg 2.0 from /pro/site/0/tinypkg/__init__.py" in jobs.job_log(job)[0]

    with_needs = publish_needing("on-tiny-rt-needs", ["tinypkg==1.0"], runtime_ref="tiny-rt@1.0")
    assert with_needs.verification_state == "verified", with_needs.verification_error
    job = jobs.job_submit(user=alice, app_name="on-tiny-rt-needs", procedure="solve")
    wait_for(job, JobState.SUCCEEDED)
    assert "SEEN tinypkg 1.0 from /pro/site/0/" in jobs.job_log(job)[0]  # the app's pin before the runtime's


def test_the_cache_sweep_removes_what_was_not_used(wheelhouse, publish_needing):
    version = publish_needing("needs-one", ["tinypkg==1.0"])
    _, sites = environments.version_python(version)
    assert environments.cache_sweep(max_age_days=1) == []
    assert sites[0].is_dir()
    assert environments.cache_sweep(max_age_days=0) == [f"envs/{version.environment.key}"]
    assert not sites[0].exists()
    _, again = environments.version_python(version)  # fetched again on the next launch
    assert again[0].is_dir()


# ---------------------------------------------------------------- the sample that needs Pyomo


def test_the_pyomo_sample_solves_to_its_optimum(settings, admin_user, runtime, platform_public_key, worker, tmp_path):
    """examples/pyomo-blending needs Pyomo, which the built-in runtime lacks: built from the test
    wheelhouse (``make test`` downloads it), solved as a job through Pyomo's HiGHS interface."""
    from apps.catalog.bootstrap import sample_pack
    from sessions.cases import case_read_bytes
    from sessions.runtime.case import read_case
    from tests.helpers import ROOT, publish_as

    settings.PRO_ENV_CACHE_DIR = tmp_path / "env-cache"
    assert list((ROOT / "var" / "test-wheelhouse").glob("pyomo-*.whl")), "run `make test-wheelhouse` first"
    blob, manifest = sample_pack(ROOT / "examples" / "pyomo-blending", platform_public_key)
    assert manifest.requirements == ("pyomo==6.10.1",)
    version = publish_as(admin_user, blob)
    assert version.verification_state == "verified", version.verification_error
    assert "pyomo" in version.environment.packages and "numpy" not in version.environment.packages
    assert "pyomo.environ" in version.environment.preload  # what its warm interpreters import ahead
    assert not [name for name in version.environment.preload if name.split(".")[0] in ("numpy", "sessions")]

    job = jobs.job_submit(user=admin_user, app_name="pyomo-blending", procedure="solve")
    wait_for(job, JobState.SUCCEEDED)
    result = read_case(case_read_bytes(job.result_case))
    assert result.values["total_cost"] == pytest.approx(0.52, rel=1e-6)
    assert result.values["status"] == "Optimal"
