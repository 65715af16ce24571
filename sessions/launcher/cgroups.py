"""Hard limits over every process of a sandbox: a cgroup with ``pids.max`` and a memory ceiling.

Used where this node may create cgroups (cgroup v2 with the pids and memory controllers
delegated, or v1 hierarchies it can write). Elsewhere the launcher's own polling is the only
limit, which a fast fork bomb can outrun: ``limits_available()`` tells which, and the nodes page
and the log say so.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import threading
from pathlib import Path
from typing import ClassVar

logger = logging.getLogger(__name__)

PARENT = "pro-sandboxes"


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, root inside the hierarchy, controllers) of every cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if tail and tail[0] in ("cgroup", "cgroup2"):
                options = set(tail[2].split(",")) if tail[0] == "cgroup" and len(tail) > 2 else set()
                found.append((fields[4], fields[3], options if tail[0] == "cgroup" else {"cgroup2"}))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "cgroup2" for the unified one."""
    paths = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else ["cgroup2"]:
                paths[name] = path
    return paths


def _join(mount: str, root: str, path: str) -> Path:
    relative = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    return Path(mount) / ("" if relative == "." else relative)


def _prepare_v2(base: Path) -> Path | None:
    try:
        if not {"pids", "memory"} <= set((base / "cgroup.controllers").read_text().split()):
            return None
        (base / "cgroup.subtree_control").write_text("+pids +memory")
        parent = base / PARENT
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+pids +memory")
        return parent
    except OSError:
        return None


def _prepare_v1(base: Path) -> Path | None:
    try:
        parent = base / PARENT
        parent.mkdir(exist_ok=True)
        return parent
    except OSError:
        return None


@functools.cache
def _parents() -> dict[str, Path]:
    """Where sandboxes' cgroups go: {"v2": dir} or {"pids": dir, "memory": dir}, or {} if nowhere."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError:
        return {}
    for mount, root, controllers in mounts:
        if "cgroup2" in controllers and "cgroup2" in own:
            parent = _prepare_v2(_join(mount, root, own["cgroup2"]))
            if parent is not None:
                return {"v2": parent}
    parents: dict[str, Path] = {}
    for mount, root, controllers in mounts:
        for name in ("pids", "memory"):
            if name in controllers and name in own and name not in parents:
                parent = _prepare_v1(_join(mount, root, own[name]))
                if parent is not None:
                    parents[name] = parent
    return parents if set(parents) == {"pids", "memory"} else {}


def limits_available() -> bool:
    return bool(_parents())


class SandboxCgroup:
    """The cgroup(s) of one sandbox: join them before exec, read its memory and its limits' hits.

    Cgroups are reused: a process keeps the ones its ended sandboxes leave (a fresh cgroup
    costs a new sandbox several milliseconds more than a used one), with their counters taken
    as the baseline of the next sandbox.
    """

    _free: ClassVar[list[SandboxCgroup]] = []
    _draining: ClassVar[list[SandboxCgroup]] = []  # ended, but their last processes still exiting
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _made: ClassVar[itertools.count] = itertools.count()

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs
        self.baseline = {"oom_kill": 0, "pids_max": 0}

    @classmethod
    def create(cls, prefix: str, max_processes: int, memory_bytes: int | None) -> SandboxCgroup | None:
        """A cgroup for one sandbox, named from ``prefix`` (e.g. the node's name) when new."""
        parents = _parents()
        if not parents:
            return None
        cgroup = cls._reusable()
        for _ in range(2):  # a reused cgroup that refuses its new limits is replaced by a fresh one
            if cgroup is None:
                name = f"{prefix}.{os.getpid()}.{next(cls._made)}"
                cgroup = cls({kind: parent / name for kind, parent in parents.items()})
            try:
                for folder in cgroup.dirs.values():
                    folder.mkdir(exist_ok=True)
                cgroup._set_limits(max_processes, memory_bytes)
                cgroup.baseline = {"oom_kill": cgroup._oom_kills(), "pids_max": cgroup._pids_max_events()}
                return cgroup
            except OSError as exc:
                logger.warning("Cannot prepare the cgroup %s: %s", cgroup.dirs, exc)
                cgroup._remove_dirs()
                cgroup = None
        return None

    @classmethod
    def _reusable(cls) -> SandboxCgroup | None:
        with cls._lock:
            still: list[SandboxCgroup] = []
            for cgroup in cls._draining:
                (cls._free if cgroup.is_empty() else still).append(cgroup)
            cls._draining[:] = still
            return cls._free.pop() if cls._free else None

    def is_empty(self) -> bool:
        try:
            return all(not Path(path).read_text().strip() for path in self.procs_files)
        except OSError:
            return False

    def _set_limits(self, max_processes: int, memory_bytes: int | None) -> None:
        # A reused cgroup keeps its last sandbox's limits unless each is written again.
        if "v2" in self.dirs:
            (self.dirs["v2"] / "pids.max").write_text(str(max_processes))
            (self.dirs["v2"] / "memory.max").write_text(str(memory_bytes) if memory_bytes else "max")
            if memory_bytes:
                with contextlib.suppress(OSError):
                    (self.dirs["v2"] / "memory.swap.max").write_text("0")
            return
        (self.dirs["pids"] / "pids.max").write_text(str(max_processes))
        (self.dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes) if memory_bytes else "-1")

    def memory_limit_bytes(self) -> int | None:
        """The memory ceiling set on it, None if there is none."""
        v2 = "v2" in self.dirs
        path = self.dirs["v2"] / "memory.max" if v2 else self.dirs["memory"] / "memory.limit_in_bytes"
        text = path.read_text().strip()
        return None if text == "max" or (not v2 and int(text) >= 2**62) else int(text)

    def pids(self) -> list[int] | None:
        """The processes in it (host pids), None if it cannot be read."""
        try:
            return [int(pid) for pid in Path(self.procs_files[0]).read_text().split()]
        except (OSError, ValueError):
            return None

    @property
    def procs_files(self) -> list[str]:
        return [str(folder / "cgroup.procs") for folder in self.dirs.values()]

    def _memory_file(self, v2_name: str, v1_name: str) -> dict[str, int]:
        folder, name = (self.dirs["v2"], v2_name) if "v2" in self.dirs else (self.dirs["memory"], v1_name)
        try:
            pairs = (line.split() for line in (folder / name).read_text().splitlines())
            return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2 and pair[1].isdigit()}
        except OSError:
            return {}

    def memory_mb(self) -> float | None:
        """The sandbox's own memory (anonymous and shared pages, each counted once), or None."""
        stat = self._memory_file("memory.stat", "memory.stat")
        if not stat:
            return None
        used = (
            stat.get("anon", 0) + stat.get("shmem", 0)
            if "v2" in self.dirs
            else stat.get("rss", 0) + stat.get("shmem", 0)
        )
        return used / (1024 * 1024)

    def _oom_kills(self) -> int:
        return self._memory_file("memory.events", "memory.oom_control").get("oom_kill", 0)

    def _pids_max_events(self) -> int:
        folder = self.dirs.get("v2") or self.dirs["pids"]
        try:
            return int(dict(line.split() for line in (folder / "pids.events").read_text().splitlines()).get("max", 0))
        except (OSError, ValueError):
            return 0

    def memory_exhausted(self) -> bool:
        """Whether the kernel killed a process of this sandbox at its memory ceiling."""
        return self._oom_kills() > self.baseline["oom_kill"]

    def processes_exhausted(self) -> bool:
        """Whether a fork was refused because this sandbox reached its process limit."""
        return self._pids_max_events() > self.baseline["pids_max"]

    def remove(self) -> None:
        """Give the cgroup back for the next sandbox of this process (once its processes are gone)."""
        with self._lock:
            (self._free if self.is_empty() else self._draining).append(self)

    def _remove_dirs(self) -> None:
        for folder in self.dirs.values():
            with contextlib.suppress(OSError):
                folder.rmdir()


def remove_stale_cgroups() -> None:
    """Remove the sandboxes' cgroups (``NODE.PID.N``) whose process PID is gone, and so their sandboxes."""
    for parent in _parents().values():
        for folder in parent.glob("*.*.*"):
            owner = folder.name.rsplit(".", 2)[-2]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    folder.rmdir()


@atexit.register
def _remove_free() -> None:
    """At exit, the cgroups this process keeps for reuse go (those still draining, at the next sweep)."""
    with SandboxCgroup._lock:
        for cgroup in SandboxCgroup._free:
            cgroup._remove_dirs()
        SandboxCgroup._free.clear()
