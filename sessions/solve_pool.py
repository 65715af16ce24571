"""The solve worker's pool of warm runners: sandboxes started ahead of need, one per future job.

A job's start costs a sandbox, an interpreter and the imports of numpy and HiGHS before the
app's own code runs: a tenth of a second of CPU, most of a job's start. A warm runner has paid
that already: it waits in its own fresh sandbox, its working folder empty, for the worker to
put one job's app, input and order there and say GO. Each warm runner serves exactly one job and
is gone with it, so a job never shares a process, a folder or a namespace with another; the
pool only moves the cost of starting off the job's path.

A job takes a warm runner when it runs with the pool's defaults (the runtime environment's
Python, the node's default memory limit, no network grant); any other job starts cold, as
before. The pool of the built-in runtime is kept full; another environment's gets as many
runners as it had jobs in the last ``POOL_USE_SECONDS``, up to the pool's size. A refill thread
starts the runners, so a job never waits for one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from django.conf import settings

from . import launcher
from .fork_pool import ForkedRunner, ForkFailed, ForkServer
from .launcher import read_until
from .runtime.warm import READY

logger = logging.getLogger(__name__)

Python = tuple[str, tuple[Path, ...]]  # (interpreter, package folders): apps.catalog.environments
POOL_USE_SECONDS = 600.0
READY_TIMEOUT = 30.0  # seconds a warm runner may take to import what it imports
REFILL_EVERY = 5.0  # seconds between the refill thread's rounds when no job took a runner
WARM_PREFIX = "warm-job"  # a waiting runner's working folder; a job's is renamed job-<id>-<attempt>-…


class WarmRunner:
    """One started solve sandbox waiting for its job: ``workdir`` to fill, then :meth:`go`."""

    def __init__(self, python: Python, preload: tuple[str, ...] = ()):
        self.python = python
        self.workdir = launcher.new_workdir(WARM_PREFIX)
        (self.workdir / "app").mkdir()  # mounted read-only; the job's app is extracted into it
        args = ["--pool", launcher.work_path(self.workdir)]
        if preload:
            (self.workdir / "preload.txt").write_text("\n".join(preload))
            args += ["--preload", f"{launcher.work_path(self.workdir)}/preload.txt"]
        self.control_read, control_write = os.pipe()
        try:
            self.process = launcher.launch(
                launcher.LaunchSpec(
                    name=self.workdir.name,
                    interpreter=python[0],
                    site_dirs=python[1],
                    module="sessions.runtime.solve_runner",
                    args=args,
                    workdir=self.workdir,
                    env={"PRO_CONTROL_FD": str(control_write)},
                    memory_limit_mb=settings.PRO_JOB_MEMORY_MB,
                    pass_fds=(control_write,),
                    stdin=True,
                )
            )
        except BaseException:
            os.close(self.control_read)
            raise
        finally:
            os.close(control_write)
        self.ready = threading.Event()
        threading.Thread(target=self._await_ready, name=f"{self.workdir.name}-ready", daemon=True).start()

    def _await_ready(self) -> None:
        # The one reader of its stdout until the READY line, which is not the job's log.
        if read_until(self.process, READY, READY_TIMEOUT) == READY:
            self.ready.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Whether it has imported what it imports and waits for its job."""
        return self.ready.wait(timeout) and self.process.poll() is None

    def claim(self, workdir: Path) -> Path:
        """Make the working folder the job's own (named after it); the sandbox keeps it mounted."""
        self.workdir.rename(workdir)
        self.workdir = workdir
        self.process.spec = replace(self.process.spec, workdir=workdir)
        return workdir

    def go(self) -> None:
        self.process.stdin.write(b"GO\n")
        self.process.stdin.flush()

    def discard(self) -> None:
        self.process.stop()
        self.process.cleanup()
        os.close(self.control_read)


class SolveRunnerPool:
    """Warm runners by Python, refilled by a thread of their own (:meth:`start`)."""

    def __init__(self, size: int, default: Python | None):
        self.size = size
        self.default = default
        self.warm: dict[Python, list[WarmRunner]] = {}
        self.uses: dict[Python, list[float]] = {}
        self.forking = settings.PRO_FORK_SERVER and launcher.mode() == "bubblewrap"
        self.servers: dict[Python, ForkServer] = {}
        self.forked: dict[Python, list[ForkedRunner]] = {}  # forked ahead, each for one job
        self.fork_uses: dict[Python, list[float]] = {}
        self.preloads: dict[Python, tuple[str, ...]] = {}
        self.lock = threading.Lock()
        self.wanted = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def take(
        self,
        python: Python,
        *,
        memory_limit_mb: int,
        networked: bool,
        preload: tuple[str, ...] = (),
        forkable: bool = False,
    ) -> WarmRunner | ForkedRunner | None:
        """A place for a job of ``python`` started ahead, or None: the job then starts its own sandbox.

        ``forkable``: the job's app runs on its runtime's own packages, and may be forked from
        the runtime's fork server (sessions.fork_pool), with any memory limit.
        """
        if networked:
            return None
        if forkable and self.forking:
            with self.lock:
                self.fork_uses.setdefault(python, []).append(time.monotonic())
                server = self.servers.get(python)
            if server is not None and server.usable():
                return self._forked_runner(server, memory_limit_mb)
            self.wanted.set()
        if memory_limit_mb != settings.PRO_JOB_MEMORY_MB:
            return None
        found = None
        with self.lock:
            self.uses.setdefault(python, []).append(time.monotonic())
            if preload:
                self.preloads[python] = preload
            warm = self.warm.get(python, [])
            while warm and found is None:
                candidate = warm.pop(0)
                if candidate.process.poll() is None:
                    found = candidate
                else:
                    candidate.discard()
        self.wanted.set()
        return found

    def _forked_runner(self, server: ForkServer, memory_limit_mb: int) -> ForkedRunner:
        """One forked ahead if there is one for the limit, else one forked when claimed."""
        found = None
        if memory_limit_mb == settings.PRO_JOB_MEMORY_MB:
            with self.lock:
                ready = self.forked.get(server.python, [])
                while ready and found is None:
                    candidate = ready.pop(0)
                    if candidate.wait_ready():
                        found = candidate
                    else:
                        candidate.discard()
            self.wanted.set()
        return found or ForkedRunner(server, memory_limit_mb)

    def sizes(self) -> dict[Python, int]:
        """How many warm runners each Python gets (see the module's docstring)."""
        since = time.monotonic() - POOL_USE_SECONDS
        sizes = {}
        with self.lock:
            for python, times in list(self.uses.items()):
                times[:] = [t for t in times if t > since]
                if times:
                    sizes[python] = min(self.size, len(times))
                else:
                    del self.uses[python]
        if self.default is not None:
            server = self.servers.get(self.default)
            # Its jobs are forked while its fork server works; warm runners are kept otherwise.
            sizes[self.default] = 0 if server is not None and server.usable() else self.size
        return sizes

    def forked_pythons(self) -> set[Python]:
        """The Pythons that get a fork server: the default's, and those forked from lately."""
        since = time.monotonic() - POOL_USE_SECONDS
        with self.lock:
            for python, times in list(self.fork_uses.items()):
                times[:] = [t for t in times if t > since]
                if not times:
                    del self.fork_uses[python]
            wanted = set(self.fork_uses)
        return wanted | ({self.default} if self.default is not None and self.forking else set())

    def refill_servers(self) -> None:
        wanted = self.forked_pythons()
        for python, server in list(self.servers.items()):
            # A server that cannot wall off its jobs stays (and forks none): it would fail again.
            if python not in wanted or server.process.poll() is not None:
                with self.lock:
                    del self.servers[python]
                    retired = self.forked.pop(python, [])
                for runner in retired:
                    runner.discard()
                server.close()
        for python in wanted - set(self.servers):
            if self.stopping.is_set():
                return
            server = ForkServer(python)  # outside the lock: a take never waits for a start
            with self.lock:
                self.servers[python] = server
            if server.ready.wait(READY_TIMEOUT) and not server.broken:
                continue
            logger.warning("The fork server %s did not start; its jobs start warm runners", server.workdir.name)
        for python, server in list(self.servers.items()):
            self._fork_ahead(python, server)

    def _fork_ahead(self, python: Python, server: ForkServer) -> None:
        while not self.stopping.is_set() and server.usable():
            with self.lock:
                if len(self.forked.setdefault(python, [])) >= self.size:
                    return
            runner = ForkedRunner(server, settings.PRO_JOB_MEMORY_MB)
            try:
                runner.start()
            except (ForkFailed, OSError) as exc:
                logger.warning("The fork server %s could not fork ahead: %s", server.workdir.name, exc)
                runner.discard()
                return
            with self.lock:
                self.forked.setdefault(python, []).append(runner)

    def refill(self) -> None:
        if self.forking:
            self.refill_servers()
        sizes = self.sizes()
        for python in [p for p in list(self.warm) if p not in sizes]:
            with self.lock:
                retired = self.warm.pop(python, [])
            for runner in retired:
                runner.discard()
        for python, size in sizes.items():
            while not self.stopping.is_set():
                with self.lock:
                    missing = size - len(self.warm.setdefault(python, []))
                    preload = self.preloads.get(python, ())
                if missing <= 0:
                    break
                runner = WarmRunner(python, preload)  # outside the lock: a take never waits for a start
                with self.lock:
                    self.warm.setdefault(python, []).append(runner)

    def _refill_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.refill()
            except Exception:
                logger.exception("The solve pool could not start a warm runner; trying again")
                self.stopping.wait(REFILL_EVERY)
            self.wanted.wait(REFILL_EVERY)
            self.wanted.clear()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._refill_loop, name="solve-pool", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        self.stopping.set()
        self.wanted.set()
        if self.thread is not None:
            self.thread.join(timeout=READY_TIMEOUT)
        with self.lock:
            runners: list[WarmRunner | ForkedRunner] = [runner for warm in self.warm.values() for runner in warm]
            self.warm.clear()
            servers, self.servers = list(self.servers.values()), {}
            runners += [runner for ready in self.forked.values() for runner in ready]
            self.forked.clear()
        for runner in runners:
            runner.discard()
        for server in servers:
            server.close()
