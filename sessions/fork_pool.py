"""The solve worker's fork servers: one warm sandbox per runtime that forks a walled-off job each.

A warm runner (sessions.solve_pool) moves a job's start off its path, but every job still costs
a new interpreter and its imports: on two cores, about eight trivial jobs a second. A fork server
(:mod:`sessions.runtime.fork_server`) imports once and forks each job, which then walls itself
off in namespaces of its own; the worker moves it into a cgroup of its own with the job's limits
(:func:`sessions.launcher.forked.adopt`) and tells it GO, as it tells a warm runner.

Only jobs whose app runs on its runtime's own packages are forked (``forkable``): the server's
imports are then the runtime's code, which an admin installed. An app with packages of its own
(an environment) keeps a warm runner: nothing a publisher's package does at import runs in a
process that forks other people's jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
from dataclasses import replace
from pathlib import Path

from django.conf import settings

from . import launcher
from .launcher import read_until
from .launcher.forked import ForkedLeader, ForkedProcess, adopt
from .launcher.procfs import children, nested_pids
from .runtime.fork_server import FORK_FD, JOBS, TMP_BYTES
from .runtime.warm import READY

logger = logging.getLogger(__name__)

Python = tuple[str, tuple[Path, ...]]  # (interpreter, package folders): apps.catalog.environments
FORK_PREFIX = "fork-server"  # a server's working folder; its jobs' folders are in its "jobs"
READY_TIMEOUT = 30.0  # seconds a server may take to import what it imports
FORK_TIMEOUT = 10.0  # seconds a job's walls may take to stand
READY_PREFIX = "ready"  # a job folder forked ahead, renamed after its job when claimed


class ForkFailed(RuntimeError):
    """The server could not start this job: it starts cold instead."""


class _Request:
    def __init__(self, leader: ForkedLeader):
        self.leader = leader
        self.answered = threading.Event()
        self.init_pid = 0  # as the server's sandbox numbers it
        self.error = ""


class ForkServer:
    """One fork server sandbox of a Python; :meth:`fork` starts a job in it."""

    def __init__(self, python: Python):
        self.python = python
        self.workdir = launcher.new_workdir(FORK_PREFIX)
        (self.workdir / JOBS).mkdir()
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = launcher.launch(
                launcher.LaunchSpec(
                    name=self.workdir.name,
                    interpreter=python[0],
                    site_dirs=python[1],
                    module="sessions.runtime.fork_server",
                    workdir=self.workdir,
                    env={FORK_FD: str(theirs.fileno()), TMP_BYTES: str(settings.PRO_SANDBOX_TMP_MB * 1024 * 1024)},
                    memory_limit_mb=settings.PRO_JOB_MEMORY_MB,
                    pass_fds=(theirs.fileno(),),
                    nested_namespaces=True,
                )
            )
        except BaseException:
            self.channel.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        finally:
            theirs.close()
        self.lock = threading.Lock()
        self.requests: dict[str, _Request] = {}
        self.ready = threading.Event()
        self.broken = ""  # why it forks no more jobs
        self.server_pid = 0
        threading.Thread(target=self._await_ready, name=f"{self.workdir.name}-out", daemon=True).start()

    def _await_ready(self) -> None:
        if read_until(self.process, READY, READY_TIMEOUT) == READY:
            self.server_pid = self.process.app_pid() or 0
            threading.Thread(target=self._read_answers, name=f"{self.workdir.name}-answers", daemon=True).start()
            self.ready.set()
        for raw in iter(self.process.stdout.readline, b""):  # what the server itself prints
            logger.warning("Fork server %s: %s", self.workdir.name, raw.decode("utf-8", "replace").rstrip())

    def _read_answers(self) -> None:
        while True:
            try:
                raw = self.channel.recv(65536)
            except OSError:
                raw = b""
            if not raw:
                break
            answer = json.loads(raw)
            with self.lock:
                request = self.requests.get(answer.get("name"))
                if request is not None and "exit" in answer:
                    del self.requests[answer["name"]]
            if request is None:
                continue
            if "pid" in answer:
                request.init_pid = int(answer["pid"])
            elif "error" in answer:
                request.error = str(answer["error"])
                self.broken = self.broken or request.error  # a server that cannot wall off a job forks no more
            else:
                request.leader.end(int(answer["exit"]))
            request.answered.set()
        self.broken = self.broken or "the fork server ended"
        with self.lock:
            ended, self.requests = list(self.requests.values()), {}
        for request in ended:
            request.leader.end(128 + 9)
            request.answered.set()

    def usable(self) -> bool:
        return self.ready.is_set() and not self.broken and self.process.poll() is None

    def job_folder(self, name: str) -> Path:
        folder = self.workdir / JOBS / name
        folder.mkdir(mode=0o700)
        (folder / "app").mkdir()  # there before the job mounts it read-only; filled when claimed
        return folder

    def fork(self, workdir: Path, memory_limit_mb: int) -> tuple[ForkedProcess, int]:
        """Start the job of ``workdir`` (one of :meth:`job_folder`); it waits for GO on stdin.
        Return it and the read end of its control channel."""
        if not self.usable():
            raise ForkFailed(self.broken or "the fork server is not ready")
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        control_read, control_write = os.pipe()
        leader = ForkedLeader(os.fdopen(stdin_write, "wb"), os.fdopen(stdout_read, "rb"))
        request = _Request(leader)
        with self.lock:
            self.requests[workdir.name] = request
        try:
            try:
                message = json.dumps({"name": workdir.name}).encode()
                socket.send_fds(self.channel, [message], [stdin_read, stdout_write, control_write])
            finally:
                for fd in (stdin_read, stdout_write, control_write):
                    os.close(fd)
            if not request.answered.wait(FORK_TIMEOUT) or request.error or not request.init_pid:
                raise ForkFailed(request.error or "the fork server did not answer")
            init_pid = self._host_pid(request.init_pid)
            leader.pid = _parent(init_pid)
            spec = launcher.LaunchSpec(
                name=workdir.name,
                interpreter=self.python[0],
                site_dirs=self.python[1],
                module="sessions.runtime.fork_server",
                workdir=workdir,
                memory_limit_mb=memory_limit_mb,
            )
            return adopt(spec, leader, init_pid), control_read
        except BaseException:
            os.close(control_read)
            for stream in (leader.stdin, leader.stdout):
                stream.close()
            raise

    def _host_pid(self, init_pid: int) -> int:
        """The host pid of a job's init, from the number the server's sandbox knows it by."""
        for child in children(self.server_pid):
            for grandchild in children(child):
                if nested_pids(grandchild)[-2:] == [init_pid, 1]:
                    return grandchild
        raise ForkFailed(f"the job's init ({init_pid} in the server's sandbox) is not there")

    def close(self) -> None:
        """End the server; the jobs it forked end with it."""
        with contextlib.suppress(OSError):
            self.channel.shutdown(socket.SHUT_RDWR)
        self.channel.close()
        self.process.stop()
        self.process.cleanup()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


class ForkedRunner:
    """A job's place in a fork server, used by the supervisor as it uses a warm runner.

    Forked ahead (:meth:`start`, by the pool's refill thread) it waits walled off, in its
    cgroup, for a job: moving a process into a cgroup waits for the kernel's RCU grace period,
    milliseconds a job should not wait. Otherwise it is forked when the job claims it.
    """

    def __init__(self, server: ForkServer, memory_limit_mb: int):
        self.server = server
        self.memory_limit_mb = memory_limit_mb
        self.workdir: Path | None = None
        self.process: ForkedProcess | None = None
        self.control_read = -1

    def start(self) -> None:
        """Fork it now, in a folder of its own, for a job to claim later."""
        self.workdir = self.server.job_folder(f"{READY_PREFIX}-{secrets.token_hex(4)}")
        self._fork()

    def _fork(self) -> None:
        assert self.workdir is not None
        self.process, self.control_read = self.server.fork(self.workdir, self.memory_limit_mb)

    def claim(self, workdir: Path) -> Path:
        """The job's working folder, named as ``workdir``, in the server's jobs folder."""
        if self.workdir is None:
            self.workdir = self.server.job_folder(workdir.name)
            return self.workdir
        target = self.workdir.with_name(workdir.name)
        self.workdir.rename(target)  # the job's mount of it follows: it holds the folder, not its name
        self.workdir = target
        if self.process is not None:
            self.process.spec = replace(self.process.spec, workdir=target)
        return target

    def wait_ready(self, timeout: float = FORK_TIMEOUT) -> bool:
        """Whether it waits for :meth:`go` (forked now if it was not); False if the server could not."""
        if self.process is None:
            try:
                self._fork()
            except (ForkFailed, OSError) as exc:
                logger.warning("The fork server %s could not start %s: %s", self.server.workdir.name, self.workdir, exc)
                return False
        assert self.process is not None
        return self.process.poll() is None

    def go(self) -> None:
        assert self.process is not None
        self.process.stdin.write(b"GO\n")
        self.process.stdin.flush()

    def discard(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process.cleanup()
            os.close(self.control_read)
        elif self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
