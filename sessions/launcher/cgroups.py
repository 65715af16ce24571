"""Hard limits over every process of a sandbox: a cgroup with ``pids.max`` and a memory ceiling.

Used where this node may create cgroups (cgroup v2 with the pids and memory controllers
delegated, or v1 hierarchies it can write). Elsewhere the launcher's own polling is the only
limit, which a fast fork bomb can outrun: ``limits_available()`` tells which, and the nodes page
and the log say so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

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
    parents = {}
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
    """The cgroup(s) of one sandbox: join them before exec, read whether memory ran out, remove."""

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs

    @classmethod
    def create(cls, name: str, max_processes: int, memory_bytes: int | None) -> SandboxCgroup | None:
        parents = _parents()
        if not parents:
            return None
        dirs = {kind: parent / name for kind, parent in parents.items()}
        try:
            for folder in dirs.values():
                folder.mkdir()
            cgroup = cls(dirs)
            cgroup._set_limits(max_processes, memory_bytes)
        except OSError as exc:
            cls(dirs).remove()
            logger.warning("Cannot create the cgroup of sandbox %s: %s", name, exc)
            return None
        return cgroup

    def _set_limits(self, max_processes: int, memory_bytes: int | None) -> None:
        if "v2" in self.dirs:
            (self.dirs["v2"] / "pids.max").write_text(str(max_processes))
            if memory_bytes:
                (self.dirs["v2"] / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (self.dirs["v2"] / "memory.swap.max").write_text("0")
            return
        (self.dirs["pids"] / "pids.max").write_text(str(max_processes))
        if memory_bytes:
            (self.dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))

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

    def memory_exhausted(self) -> bool:
        """Whether the kernel killed a process of the sandbox at its memory ceiling."""
        return self._memory_file("memory.events", "memory.oom_control").get("oom_kill", 0) > 0

    def processes_exhausted(self) -> bool:
        """Whether a fork was refused because the sandbox reached its process limit."""
        folder = self.dirs.get("v2") or self.dirs.get("pids")
        try:
            if "v2" in self.dirs:
                events = dict(line.split() for line in (folder / "pids.events").read_text().splitlines())
                return int(events.get("max", 0)) > 0
            return int((folder / "pids.events").read_text().split()[1]) > 0
        except (OSError, ValueError, IndexError):
            return False

    def remove(self) -> None:
        for folder in self.dirs.values():
            with contextlib.suppress(OSError):
                folder.rmdir()


def remove_stale_cgroups(prefix: str) -> None:
    """Remove the empty cgroups whose names start with ``prefix`` (their sandboxes are gone)."""
    for parent in _parents().values():
        for folder in parent.glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                folder.rmdir()
