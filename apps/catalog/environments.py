"""Runtimes and app environments on a node: fetched from storage, checked, unpacked once, built in a sandbox.

A node's cache (``PRO_ENV_CACHE_DIR``, shared by the nodes of one machine) holds:

- ``runtimes/<key>-<sha>/``: a signed runtime's packages, unpacked after its signature (against
  this node's ``PRO_RUNTIME_TRUSTED_KEYS``) and its payload's hash were checked;
- ``envs/<key>/``: an app environment's packages, unpacked after its archive's SHA-256 (recorded
  in the database by the build) was checked;
- ``pythons/<version>-<hash>/``: a bare virtual environment of a base interpreter, so that a
  runtime sees only its own packages;
- ``tools/pip-<version>/``: the platform's pip, which a build runs inside its sandbox;
- ``wheelhouse/``: a copy of the wheels admins uploaded to storage.

Each folder is made under a lock by whichever process needs it first (the others wait) and
is complete once its ``.pro-ready`` marker exists; the marker's time is its last use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone

from pro_portal.errors import ApplicationError
from sessions import launcher
from sessions.launcher import workfiles
from sessions.network import NetworkGrant
from sessions.runtime import folder_archive, runtime_file
from sessions.runtime.manifest import package_name

from .models import AppVersion, Environment, EnvironmentState, Runtime
from .selectors import WHEELHOUSE

logger = logging.getLogger(__name__)

READY = ".pro-ready"

LOG_LIMIT = 200_000  # characters of a build's output kept


class EnvironmentUnavailable(ApplicationError):
    status = 503
    code = "environment_unavailable"


# ---------------------------------------------------------------- the cache


def _cache(*parts: str) -> Path:
    return Path(settings.PRO_ENV_CACHE_DIR).joinpath(*parts)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ready(folder: Path) -> bool:
    marker = folder / READY
    if not marker.is_file():
        return False
    with contextlib.suppress(OSError):
        if time.time() - marker.stat().st_mtime > 3600:
            marker.touch()  # last use, for the sweep; an hour's precision is plenty
    return True


def _fill(folder: Path, fill: Callable[[Path], object]) -> Path:
    """Make ``folder`` once with ``fill(temporary_folder)``, under its lock; concurrent callers wait."""
    if _ready(folder):
        return folder
    with _locked(folder):
        if _ready(folder):
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            fill(building)
            (building / READY).touch()
            building.chmod(0o755)
            building.rename(folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


# ---------------------------------------------------------------- interpreters


def _python_version(interpreter: str) -> str:
    done = subprocess.run(
        [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip()


def base_interpreter(python: str) -> str:
    """A base interpreter of Python ``python`` (e.g. ``3.11``) on this node, or a clear error."""
    own = getattr(sys, "_base_executable", sys.executable)
    if "{}.{}".format(*sys.version_info[:2]) == python:
        return own
    for candidate in settings.PRO_PYTHONS:
        if _python_version(candidate) == python:
            return candidate
    raise EnvironmentUnavailable(
        f"No Python {python} on node {settings.PRO_NODE_NAME}: install it and name it in PRO_PYTHONS."
    )


def bare_python(python: str) -> str:
    """The interpreter of a bare virtual environment of Python ``python``: only the standard library."""
    base = base_interpreter(python)
    folder = _cache("pythons", f"{python}-{hashlib.sha256(base.encode()).hexdigest()[:12]}")

    def make(building: Path) -> None:
        subprocess.run([base, "-m", "venv", "--without-pip", str(building)], check=True, timeout=120)

    _fill(folder, make)
    return str(folder / "bin" / "python")


# ---------------------------------------------------------------- runtimes


def builtin_packages() -> dict[str, str]:
    """The packages of the platform's own interpreter (the built-in runtime)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[package_name(f"{name}==0")] = dist.version
    return dict(sorted(found.items()))


def runtime_fingerprint(runtime: Runtime) -> str:
    """What an environment built on ``runtime`` depends on: its signed file, or the built-in's packages."""
    if runtime.is_builtin:
        return hashlib.sha256(json.dumps(runtime.packages, sort_keys=True).encode()).hexdigest()
    return runtime.file_sha256


def runtime_folder(runtime: Runtime) -> Path:
    """A signed runtime's packages on this node, fetched and checked on first use."""
    folder = _cache("runtimes", f"{runtime.key}-{runtime.file_sha256[:12]}")

    def fetch(building: Path) -> None:
        trusted = runtime_file.trusted_keys(settings.PRO_RUNTIME_TRUSTED_KEYS)
        with default_storage.open(runtime.file_path, "rb") as stream, tempfile.TemporaryFile(dir=building) as payload:
            header = runtime_file.read_header(stream, trusted)
            if header.key != runtime.key:
                raise runtime_file.RuntimeFileError("tampered_runtime", f"the file of {runtime.key} is {header.key}")
            runtime_file.check_payload(stream, header, sink=payload)
            payload.seek(0)
            folder_archive.extract(payload, building / "site")
        _compile(building / "site", runtime)

    try:
        _fill(folder, fetch)
    except (runtime_file.RuntimeFileError, folder_archive.ArchiveError, OSError) as exc:
        raise EnvironmentUnavailable(f"Runtime {runtime.key} cannot be used on this node: {exc}") from None
    return folder / "site"


def _compile(site: Path, runtime: Runtime) -> None:
    """Byte-compile unpacked packages once, with the runtime's own interpreter.

    A sandbox cannot write bytecode, and what pip wrote is stale once unpacked (packing drops
    file times): without this every process would compile every module it imports, at each
    start (+5.5 MB and +0.4 s a session). Hash-based bytecode does not depend on file times.
    """
    interpreter = runtime.interpreter if runtime.is_builtin else bare_python(runtime.python)
    command = [interpreter, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", str(site)]
    subprocess.run(command, check=False, capture_output=True, timeout=900)


def runtime_python(runtime: Runtime) -> tuple[str, tuple[Path, ...]]:
    """(interpreter, package folders) of a runtime alone."""
    if runtime.is_builtin:
        return runtime.interpreter, ()
    return bare_python(runtime.python), (runtime_folder(runtime),)


# ---------------------------------------------------------------- app environments


def environment_for(runtime: Runtime, requirements: tuple[str, ...] | list[str]) -> Environment | None:
    """The environment row of a runtime plus requirements (made if new), or None when there are none."""
    if not requirements:
        return None
    pins = sorted(requirements, key=package_name)
    identity = {"runtime": runtime.key, "fingerprint": runtime_fingerprint(runtime), "requirements": pins}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    environment, _ = Environment.objects.get_or_create(key=key, defaults={"runtime": runtime, "requirements": pins})
    return environment


def environment_folder(environment: Environment) -> Path:
    """A built environment's packages on this node, fetched and checked by hash on first use."""
    if environment.state != EnvironmentState.READY:
        raise EnvironmentUnavailable(f"The environment of {environment} is {environment.state}, not ready.")
    folder = _cache("envs", environment.key)

    def fetch(building: Path) -> None:
        digest = hashlib.sha256()
        with default_storage.open(environment.archive_path, "rb") as stream, tempfile.TemporaryFile() as payload:
            while chunk := stream.read(folder_archive.CHUNK):
                digest.update(chunk)
                payload.write(chunk)
            if digest.hexdigest() != environment.archive_sha256:
                raise runtime_file.RuntimeFileError("tampered_environment", "its archive does not match its hash")
            payload.seek(0)
            folder_archive.extract(payload, building / "site")
        _compile(building / "site", environment.runtime)

    try:
        _fill(folder, fetch)
    except (runtime_file.RuntimeFileError, folder_archive.ArchiveError, OSError) as exc:
        raise EnvironmentUnavailable(f"The environment of {environment} cannot be used on this node: {exc}") from None
    return folder / "site"


def builtin_python() -> tuple[str, tuple[Path, ...]] | None:
    """What most apps run with: the built-in runtime's Python, alone (the warm pools' default)."""
    builtin = Runtime.objects.filter(is_builtin=True).first()
    return (builtin.interpreter, ()) if builtin is not None else None


def version_python(version: AppVersion) -> tuple[str, tuple[Path, ...]]:
    """(interpreter, package folders) an app version runs with; what is missing here is fetched first."""
    interpreter, runtime_sites = runtime_python(version.runtime)
    if version.environment is None:
        return interpreter, runtime_sites
    return interpreter, (environment_folder(version.environment), *runtime_sites)


# ---------------------------------------------------------------- building


def _pip_folder() -> Path:
    """A copy of the platform's pip on its own, for a build sandbox's sys.path."""
    import pip

    source = Path(pip.__file__).parent
    return _fill(_cache("tools", f"pip-{pip.__version__}"), lambda building: shutil.copytree(source, building / "pip"))


def _wheelhouse() -> Path:
    """This node's copy of the wheels in storage (new and changed files fetched)."""
    folder = _cache("wheelhouse")
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        names = default_storage.listdir(WHEELHOUSE)[1] if default_storage.exists(WHEELHOUSE) else []
        for name in names:
            if not name.endswith((".whl", ".tar.gz", ".zip")) or "/" in name:
                continue
            target = folder / name
            size = default_storage.size(f"{WHEELHOUSE}/{name}")
            if target.is_file() and target.stat().st_size == size:
                continue
            with default_storage.open(f"{WHEELHOUSE}/{name}", "rb") as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, folder_archive.CHUNK)
    return folder


def _wheel_folders(sandboxed: bool) -> dict[str, Path]:
    """Where the build finds wheels (inside path -> host folder): the wheelhouse, the node's own folders."""
    folders = {"/pro/wheels": _wheelhouse()}
    for number, folder in enumerate(f for f in settings.PRO_FIND_LINKS if f.is_dir()):
        folders[f"/pro/find-links/{number}"] = folder
    return folders if sandboxed else {str(host): host for host in folders.values()}


def _pip_args(wheels_inside: list[str]) -> list[str]:
    args = ["--no-input", "--disable-pip-version-check", "--no-warn-script-location", "--progress-bar", "off"]
    args += ["--no-cache-dir"]
    for folder in wheels_inside:
        args += ["--find-links", folder]
    if settings.PRO_PACKAGE_INDEX_URL:
        return [*args, "--index-url", settings.PRO_PACKAGE_INDEX_URL]
    return [*args, "--no-index"]


def _runtime_packages(runtime: Runtime) -> dict[str, str]:
    return runtime.packages or (builtin_packages() if runtime.is_builtin else {})


def _write_build_inputs(workdir: Path, environment: Environment, wheels_inside: list[str]) -> None:
    packages = _runtime_packages(environment.runtime)
    pinned = {package_name(pin) for pin in environment.requirements}
    constraints = [f"{name}=={version}" for name, version in packages.items() if name not in pinned]
    (workdir / "requirements.txt").write_text("\n".join(environment.requirements) + "\n")
    (workdir / "constraints.txt").write_text("\n".join(constraints) + "\n")
    (workdir / "runtime_packages.json").write_text(json.dumps(packages))
    (workdir / "pip_args.json").write_text(json.dumps(_pip_args(wheels_inside)))


def _run_build(environment: Environment) -> tuple[bool, str]:
    """Build in a sandbox and store the archive; (succeeded, log)."""
    interpreter, sites = runtime_python(environment.runtime)
    workdir = launcher.new_workdir(f"envbuild-{environment.pk}")
    try:
        wheels = _wheel_folders(launcher.mode() == "bubblewrap")
        _write_build_inputs(workdir, environment, list(wheels))
        spec = launcher.LaunchSpec(
            name=workdir.name,
            interpreter=interpreter,
            module="sessions.runtime.env_build",
            args=[launcher.work_path(workdir)],
            workdir=workdir,
            env={"PIP_CONFIG_FILE": os.devnull},
            network=NetworkGrant(outbound=bool(settings.PRO_PACKAGE_INDEX_URL)),
            memory_limit_mb=settings.PRO_ENV_BUILD_MEMORY_MB,
            read_only=wheels if launcher.mode() == "bubblewrap" else {},
            site_dirs=(*sites, _pip_folder()),
        )
        completed = launcher.run(spec, timeout=settings.PRO_ENV_BUILD_TIMEOUT)
        log = (completed.stdout + completed.stderr)[-LOG_LIMIT:]
        if completed.timed_out:
            return False, log + f"\nThe build did not finish within {settings.PRO_ENV_BUILD_TIMEOUT} s."
        if completed.returncode != 0:
            return False, log
        _store_build(environment, workdir)
        return True, log
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _store_build(environment: Environment, workdir: Path) -> None:
    summary = json.loads(workfiles.read_bytes(workdir, "env.json", 10 * 1024 * 1024) or b"{}")
    digest, size = hashlib.sha256(), 0
    with workfiles.open_regular(workdir, "env.tar.gz") as archive:
        while chunk := archive.read(folder_archive.CHUNK):
            digest.update(chunk)
            size += len(chunk)
        archive.seek(0)
        path = default_storage.save(f"environments/{environment.key}.tar.gz", archive)
    environment.archive_path, environment.archive_sha256, environment.archive_size = path, digest.hexdigest(), size
    environment.packages = summary.get("packages", {})
    environment.installed_size = int(summary.get("installed_size", 0))


def environment_build(environment: Environment) -> Environment:
    """Make ``environment`` ready: build it here, or wait for the node that builds it. Never raises
    for a failed build: the row says ``failed`` with the installer's log."""
    stale = timezone.now() - timedelta(seconds=settings.PRO_ENV_BUILD_TIMEOUT + 60)
    claimable = Environment.objects.filter(pk=environment.pk).filter(
        Q(state__in=[EnvironmentState.PENDING, EnvironmentState.FAILED])
        | Q(state=EnvironmentState.BUILDING, build_started_at__lt=stale)
    )
    if claimable.update(state=EnvironmentState.BUILDING, build_started_at=timezone.now(), build_log=""):
        environment.refresh_from_db()
        try:
            ok, log = _run_build(environment)
        except Exception as exc:
            logger.exception("The build of %s failed to run", environment)
            ok, log = False, f"The build could not run: {exc}"
        environment.state = EnvironmentState.READY if ok else EnvironmentState.FAILED
        environment.build_log, environment.built_at = log, timezone.now()
        environment.save()
        return environment
    deadline = time.monotonic() + settings.PRO_ENV_BUILD_TIMEOUT + 60
    while time.monotonic() < deadline:
        environment.refresh_from_db()
        if environment.state in (EnvironmentState.READY, EnvironmentState.FAILED):
            return environment
        time.sleep(0.5)
    return environment


# ---------------------------------------------------------------- housekeeping


def cache_sweep(max_age_days: float | None = None) -> list[str]:
    """Remove runtimes and environments this machine has not used for ``PRO_ENV_CACHE_DAYS``."""
    age = settings.PRO_ENV_CACHE_DAYS if max_age_days is None else max_age_days
    limit = time.time() - age * 86400
    removed = []
    for kind in ("runtimes", "envs"):
        root = _cache(kind)
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            marker = folder / READY
            if folder.name.startswith(".") or not marker.is_file() or marker.stat().st_mtime > limit:
                continue
            with _locked(folder):
                if marker.is_file() and marker.stat().st_mtime <= limit:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(f"{kind}/{folder.name}")
    return removed


def cache_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
