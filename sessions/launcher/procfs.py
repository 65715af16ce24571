"""The one reader of the process table (``/proc``) for the platform's supervisors.

Sandboxed processes are found by their PID namespace, not their process group: a ``setsid``
or double-forked child leaves its group but never its namespace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """What a set of processes uses now: resident memory, CPU time so far, how many there are."""

    memory_mb: float = 0.0
    cpu_seconds: float = 0.0
    processes: int = 0


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_namespace(pid: int) -> str | None:
    """The PID namespace of a process (``pid:[4026532...]``), or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def live_pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def namespace_members(namespace: str, among: list[int] | None = None) -> list[int]:
    """The live (not zombie) processes of a PID namespace, as host pids: of ``among`` when the
    caller knows a set they are all in (a cgroup's), else of the whole process table."""
    members = []
    for pid in live_pids() if among is None else among:
        if pid_namespace(pid) == namespace:
            fields = _stat_fields(pid)
            if fields is not None and fields[0] != "Z":
                members.append(pid)
    return members


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (for the unconfined mode)."""
    members = []
    for pid in live_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(pid)
    return members


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def nested_pids(pid: int) -> list[int]:
    """A process's pid in each PID namespace it is in, from this ``/proc``'s down to its own."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return [int(value) for value in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def proportional_kb(pid: int) -> int:
    """A process's proportional set size (pages shared by N processes count 1/N), in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def usage_of(pids: list[int], memory_mb: float | None = None) -> Usage:
    """CPU and count of ``pids``; their memory is ``memory_mb`` if known, else the sum of their PSS."""
    ticks = count = pss_kb = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        try:
            ticks += int(fields[11]) + int(fields[12])
        except (IndexError, ValueError):
            continue
        if memory_mb is None:
            pss_kb += proportional_kb(pid)
        count += 1
    return Usage(memory_mb if memory_mb is not None else pss_kb / 1024, ticks / CLOCK_TICKS, count)
