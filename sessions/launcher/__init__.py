"""The one way app code is started: a bubblewrap sandbox with limits over all its processes.

Verification, solves, data sessions and the warm pool all call :func:`launch` (or :func:`run`)
with a :class:`LaunchSpec`, and get a :class:`SandboxedProcess` with one contract: poll, wait,
usage over every process of the sandbox, signal the app, stop (SIGTERM, then SIGKILL of the
whole PID namespace after ``TERMINATE_GRACE``) and cleanup. What the sandbox shows and hides is
in :mod:`sessions.launcher.bwrap` and ``docs/security.md``.

``PRO_SANDBOX=off`` runs app code unconfined, in a process group of its own, with the same
contract; nodes say so loudly. With the sandbox on and no working bubblewrap, nothing starts:
:class:`SandboxUnavailable` says what to install or enable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.conf import settings

from ..network import NetworkGrant, SandboxNetwork, open_network
from . import bwrap, procfs
from .cgroups import SandboxCgroup, limits_available, remove_stale_cgroups
from .procfs import Usage

logger = logging.getLogger(__name__)

TERMINATE_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a sandbox
REAP_TIMEOUT = 5.0  # seconds to wait for the sandbox's leader after SIGKILL
CONNECTIONS_FILE = "/pro/connections.json"  # where a sandbox reads its granted connections

__all__ = [
    "LaunchSpec",
    "SandboxUnavailable",
    "SandboxedProcess",
    "Usage",
    "launch",
    "mode",
    "new_workdir",
    "read_until",
    "remove_leftovers",
    "run",
]


class SandboxUnavailable(RuntimeError):
    """This node cannot sandbox app code and was not told to run it unconfined."""


def mode() -> str:
    """``bubblewrap`` or ``off`` (``PRO_SANDBOX``), after checking that bubblewrap works here."""
    if settings.PRO_SANDBOX == "off":
        return "off"
    problem = bwrap.problem()
    if problem:
        raise SandboxUnavailable(
            f"App code cannot be sandboxed on this node: {problem}. Install bubblewrap "
            "(apt-get install bubblewrap) and allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), "
            "or set PRO_SANDBOX=off to run apps unconfined (only for apps you trust)."
        )
    return "bubblewrap"


def describe() -> dict[str, object]:
    """What this node does with app code, for its nodes page row and its start-up log."""
    try:
        current = mode()
    except SandboxUnavailable as exc:
        return {"sandbox": "unavailable", "detail": str(exc), "hard_limits": False}
    return {"sandbox": current, "detail": "", "hard_limits": current != "off" and limits_available()}


@dataclass
class LaunchSpec:
    """What to run and what it may see. Paths in ``args`` are inside paths (see ``work_path``)."""

    name: str  # unique on the node: the cgroup's name and the log's label, e.g. "job-12-1-ab12"
    interpreter: str  # the runtime's Python
    module: str  # e.g. "sessions.runtime.solve_runner"
    workdir: Path  # host folder, the only writable place; "app" inside it is mounted read-only
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    network: NetworkGrant = field(default_factory=NetworkGrant)  # an admin's grant; none by default
    # The app's granted connections, secrets included (apps.connections): a file only it reads.
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory_limit_mb: int | None = None
    max_processes: int | None = None
    read_only: dict[str, Path] = field(default_factory=dict)  # inside path -> host path
    # Package folders (a runtime's, an app environment's) put on sys.path before the interpreter's
    # own, first wins; each is mounted read-only at SITE_ROOT/<n>.
    site_dirs: tuple[Path, ...] = ()
    pass_fds: tuple[int, ...] = ()
    nested_namespaces: bool = False  # only a fork server's: see bwrap._namespaces
    stdin: bool = False
    stderr_to_stdout: bool = True


def node_work_dir() -> Path:
    """This node's folder of working folders (nodes may share ``PRO_WORK_DIR``)."""
    return Path(settings.PRO_WORK_DIR) / settings.PRO_NODE_NAME


def new_workdir(kind: str) -> Path:
    """A fresh private working folder for one sandbox, e.g. ``kind`` = ``job-12-1``."""
    folder = node_work_dir() / f"{kind}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True, mode=0o700)
    return folder


def remove_leftovers(prefix: str) -> int:
    """Remove the working folders (and sockets) that a dead supervisor of this node left behind.

    Their sandboxes died with it (``--die-with-parent``); their cgroups are removed too.
    """
    removed = 0
    folder = node_work_dir()
    for path in folder.glob(f"{prefix}-*") if folder.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    remove_stale_cgroups()
    return removed


def work_path(workdir: Path) -> str:
    """Where the sandbox sees its working folder."""
    return str(workdir) if settings.PRO_SANDBOX == "off" else bwrap.INSIDE_WORK


class SandboxedProcess:
    """One sandbox, from start to cleanup; ``popen`` is its leader (bubblewrap, or the app)."""

    def __init__(
        self,
        spec: LaunchSpec,
        popen: subprocess.Popen,
        init_pid: int | None,
        cgroup: SandboxCgroup | None,
        network: SandboxNetwork | None = None,
    ):
        self.spec, self.popen, self.cgroup, self.network = spec, popen, cgroup, network
        self.init_pid = init_pid  # pid 1 of the sandbox's PID namespace, as a host pid
        self.namespace = procfs.pid_namespace(init_pid) if init_pid else None
        self.stopped_by_us = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdin(self):
        return self.popen.stdin

    @property
    def stdout(self):
        return self.popen.stdout

    @property
    def returncode(self) -> int | None:
        """The app's exit code; ``-N`` when signal N ended it (bubblewrap reports 128 + N)."""
        code = self.popen.returncode
        if code is not None and self.init_pid is not None and 128 < code < 128 + 65:
            return -(code - 128)
        return code

    def poll(self) -> int | None:
        self.popen.poll()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self.popen.wait(timeout=timeout)
        return self.returncode

    def members(self) -> list[int]:
        """Every live process of the sandbox (setsid and double-forked ones included)."""
        if self.namespace is None:
            return procfs.group_members(self.popen.pid)
        # Its processes cannot leave its cgroup (they see no cgroup file system): when it has
        # one, that short list is searched, not the node's whole process table.
        among = self.cgroup.pids() if self.cgroup is not None else None
        return procfs.namespace_members(self.namespace, among)

    def usage(self) -> Usage:
        """What the whole sandbox uses: the cgroup's own memory count where there is one."""
        memory = self.cgroup.memory_mb() if self.cgroup is not None else None
        return procfs.usage_of(self.members(), memory)

    def _in_namespace(self, pid: int) -> bool:
        return self.namespace is None or procfs.pid_namespace(pid) == self.namespace

    def app_pid(self) -> int | None:
        """The app's main process (the sandbox init's child), if it is still there."""
        if self.init_pid is None:
            return self.popen.pid if self.popen.poll() is None else None
        return next((pid for pid in procfs.children(self.init_pid) if self._in_namespace(pid)), None)

    def signal_app(self, signum: int) -> None:
        pid = self.app_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole sandbox at once: its namespace's init, then the leader."""
        self.stopped_by_us = True
        if self.init_pid is not None and self._in_namespace(self.init_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.namespace is None:
                os.killpg(self.popen.pid, signal.SIGKILL)
            else:
                os.kill(self.popen.pid, signal.SIGKILL)

    def stop(self, grace: float = TERMINATE_GRACE) -> None:
        """SIGTERM every process of the sandbox, SIGKILL what is left after ``grace``, reap."""
        self.stopped_by_us = True
        if self.popen.poll() is None:
            for pid in self.members():
                if pid != self.init_pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.popen.poll() is None and self.members():
                time.sleep(0.05)
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=REAP_TIMEOUT)

    def memory_exhausted(self) -> bool:
        return self.cgroup is not None and self.cgroup.memory_exhausted()

    def processes_exhausted(self) -> bool:
        return self.cgroup is not None and self.cgroup.processes_exhausted()

    def cleanup(self, remove_workdir: bool = True) -> None:
        """Kill whatever is left, remove the cgroup and (by default) the working folder."""
        if self.popen.poll() is None or self.members():
            self.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=REAP_TIMEOUT)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.network is not None:
            self.network.close()
        connections_path(self.spec).unlink(missing_ok=True)
        if remove_workdir:
            shutil.rmtree(self.spec.workdir, ignore_errors=True)


def inside_site_dirs(spec: LaunchSpec, sandboxed: bool) -> list[str]:
    """Where the sandbox sees ``spec.site_dirs``."""
    if not sandboxed:
        return [str(folder) for folder in spec.site_dirs]
    return [f"{bwrap.SITE_ROOT}/{number}" for number in range(len(spec.site_dirs))]


def _environment(spec: LaunchSpec, sandboxed: bool) -> dict[str, str]:
    sites = inside_site_dirs(spec, sandboxed)
    base = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work_path(spec.workdir),
        "TMPDIR": "/tmp" if sandboxed else str(spec.workdir),  # noqa: S108 - the sandbox's private /tmp
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([bwrap.INSIDE_LIB if sandboxed else str(settings.BASE_DIR), *sites]),
        "PRO_SITE_DIRS": os.pathsep.join(sites),  # sessions.runtime reads their .pth files
    }
    return {**base, **spec.env}


def _limits(spec: LaunchSpec) -> tuple[int, int | None]:
    processes = spec.max_processes or settings.PRO_SANDBOX_MAX_PROCESSES
    # The ceiling sits above the supervisor's own check so that a job normally ends with its
    # message; the kernel's ceiling catches what grows faster than the supervisor looks.
    memory = int((spec.memory_limit_mb * 1.25 + 64) * 1024 * 1024) if spec.memory_limit_mb else None
    return processes, memory


def _joining(command: list[str], cgroup: SandboxCgroup | None) -> list[str]:
    """Prefix a command so that it enters its cgroup before anything of the sandbox starts."""
    if cgroup is None:
        return command
    files = cgroup.procs_files
    script = 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *files, "--", *command]


def connections_path(spec: LaunchSpec) -> Path:
    return spec.workdir.with_name(f"{spec.workdir.name}.connections.json")


def _hand_connections(spec: LaunchSpec, sandboxed: bool) -> LaunchSpec:
    """Write the granted connections beside the working folder (not in it: nothing of them may
    be kept with the job's files) and show them to the app read-only."""
    if not spec.connections:
        return spec
    path = connections_path(spec)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(spec.connections, handle)
    inside = CONNECTIONS_FILE if sandboxed else str(path)
    read_only = {**spec.read_only, CONNECTIONS_FILE: path} if sandboxed else spec.read_only
    return replace(spec, read_only=read_only, env={**spec.env, "PRO_CONNECTIONS_FILE": inside})


def launch(spec: LaunchSpec) -> SandboxedProcess:
    """Start the app process in its sandbox; raise :class:`SandboxUnavailable` where none can be made."""
    sandboxed = mode() == "bubblewrap"
    spec = _hand_connections(spec, sandboxed)
    env = _environment(spec, sandboxed)
    app_command = [spec.interpreter, "-m", spec.module, *spec.args]
    stdio: dict[str, Any] = {
        "stdin": subprocess.PIPE if spec.stdin else subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT if spec.stderr_to_stdout else subprocess.PIPE,
    }
    if not sandboxed:
        logger.warning("PRO_SANDBOX=off: %s runs UNCONFINED, with the platform's own rights", spec.name)
        popen = subprocess.Popen(
            app_command, cwd=spec.workdir, env=env, pass_fds=spec.pass_fds, start_new_session=True, **stdio
        )
        return SandboxedProcess(spec, popen, None, None)
    if not spec.nested_namespaces:  # a fork server's jobs install the filter themselves
        app_command = [spec.interpreter, "-m", "sessions.runtime.confined", spec.module, *spec.args]
    network = open_network(spec.network, spec.workdir)
    spec = replace(spec, read_only={**spec.read_only, **network.read_only})
    env.update(network.env)
    processes, memory = _limits(spec)
    cgroup = SandboxCgroup.create(settings.PRO_NODE_NAME, processes, memory)
    info_read, info_write = os.pipe()
    try:
        command = bwrap.command(spec, app_command, info_fd=info_write)
        popen = subprocess.Popen(
            _joining(command, cgroup),
            cwd=spec.workdir,
            env=env,
            pass_fds=(*spec.pass_fds, info_write),
            start_new_session=True,
            **stdio,
        )
    except BaseException:
        os.close(info_read)
        network.close()
        connections_path(spec).unlink(missing_ok=True)
        if cgroup is not None:
            cgroup.remove()
        raise
    finally:
        os.close(info_write)
    with os.fdopen(info_read, "rb") as info:
        raw = info.read()  # bubblewrap writes it once its namespaces exist, then closes it
    try:
        init_pid = int(json.loads(raw)["child-pid"])
    except (ValueError, KeyError, TypeError):
        init_pid = None  # it failed before making the sandbox; the exit code and output say why
    return SandboxedProcess(spec, popen, init_pid, cgroup, network)


@dataclass
class Completed:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool


def run(spec: LaunchSpec, timeout: float) -> Completed:
    """Run to the end (or ``timeout``), with the output; the sandbox is cleaned up after."""
    process = launch(spec)
    timed_out = False
    try:
        try:
            output, errors = process.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.stop(grace=0.5)
            output, errors = process.popen.communicate()
        text = (output or b"").decode("utf-8", "replace"), (errors or b"").decode("utf-8", "replace")
        return Completed(process.returncode, *text, timed_out)
    finally:
        process.cleanup(remove_workdir=False)


def read_until(process: SandboxedProcess, prefix: str, timeout: float) -> str:
    """The first stdout line of ``process`` starting with ``prefix`` (or a START FAILED line), within ``timeout``.

    A warm interpreter's READY and a session's LISTENING come this way; the lines before are dropped.
    """
    result: list[str] = []

    def read() -> None:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(prefix) or line.startswith("START FAILED"):
                result.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[-1] if result else ""
