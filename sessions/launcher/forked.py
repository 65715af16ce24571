"""Jobs a fork server forked (sessions.runtime.fork_server), under the launcher's one contract.

The server's sandbox was started by :func:`sessions.launcher.launch`; each job it forks walls
itself off in namespaces of its own. What the worker holds of such a job is a
:class:`ForkedProcess`: the same poll, wait, usage, signal, stop and cleanup as any sandbox, its
processes in a cgroup of their own (:func:`adopt`) with the job's limits, its end reported by
the server. Its processes are signalled through pidfds: they are not this process's children,
and a number freed by their end could be another process's by then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import IO

from django.conf import settings

from . import LaunchSpec, SandboxedProcess, _limits, procfs
from .cgroups import SandboxCgroup


class ForkedLeader:
    """What a sandbox's leader (a ``Popen``) is to :class:`SandboxedProcess`, for a forked job:
    the server's child that made the job's namespaces, its pipes, and its exit code as the
    server reports it (128 + N for signal N, as bubblewrap reports)."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]):
        self.stdin, self.stdout = stdin, stdout
        self.pid = 0  # a host pid once known; never signalled by number (see pidfd)
        self.pidfd: int | None = None
        self.returncode: int | None = None
        self.ended = threading.Event()

    def end(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self.ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired("forked job", timeout or 0)
        return self.returncode


class ForkedProcess(SandboxedProcess):
    """A forked job: ``init_pid`` is its namespace's pid 1, the leader the server's child above it."""

    popen: ForkedLeader  # type: ignore[assignment]

    def __init__(self, spec: LaunchSpec, leader: ForkedLeader, init_pid: int, cgroup: SandboxCgroup | None):
        super().__init__(spec, leader, init_pid, cgroup)  # type: ignore[arg-type]
        self.init_pidfd = os.pidfd_open(init_pid)

    def kill(self) -> None:
        """SIGKILL the job's init (its whole PID namespace dies with it) and the leader."""
        self.stopped_by_us = True
        for pidfd in (self.init_pidfd, self.popen.pidfd):
            if pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)

    def cleanup(self, remove_workdir: bool = True) -> None:
        super().cleanup(remove_workdir)
        for pidfd in (self.init_pidfd, self.popen.pidfd):
            if pidfd is not None:
                with contextlib.suppress(OSError):
                    os.close(pidfd)
        self.init_pidfd = self.popen.pidfd = None  # type: ignore[assignment]


def adopt(spec: LaunchSpec, leader: ForkedLeader, init_pid: int) -> ForkedProcess:
    """Take a forked job (host pid ``init_pid`` of its init) under ``spec``'s limits: its
    processes move into a cgroup of their own before its app is told to start."""
    leader.pidfd = os.pidfd_open(leader.pid)
    processes, memory = _limits(spec)
    cgroup = SandboxCgroup.create(settings.PRO_NODE_NAME, processes, memory)
    process = ForkedProcess(spec, leader, init_pid, cgroup)
    if cgroup is not None:
        try:
            for path in cgroup.procs_files:
                for pid in (init_pid, *procfs.children(init_pid)):
                    with open(path, "w") as handle:
                        handle.write(str(pid))
        except OSError:
            process.cleanup(remove_workdir=False)
            raise
    return process
