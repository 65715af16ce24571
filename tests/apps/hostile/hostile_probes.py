"""What a hostile publisher's code tries from inside the platform: one small function per attempt.

``probe(targets)`` runs every attempt against the host paths and addresses the tests wrote into
``targets.json`` and says, per attempt, ``"denied: <the exception>"`` or ``"SUCCEEDED: <what it
got>"``. ``facts()`` says what the process sees of its surroundings. Standard library only.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

SUCCEEDED, DENIED = "SUCCEEDED: ", "denied: "


def _denied(exc: BaseException) -> str:
    return f"{DENIED}{type(exc).__name__}: {exc}"


def read_file(path: str) -> str:
    """Read a host file that holds a secret (the key, the database, another user's file...)."""
    with open(path, "rb") as handle:
        data = handle.read(4096)
    return f"{SUCCEEDED}read {len(data)} bytes: {data[:40]!r}"


def list_folder(path: str) -> str:
    """List a host folder (the data folder, the other sandboxes' working folders)."""
    return f"{SUCCEEDED}{sorted(os.listdir(path))[:10]}"


def create_file(path: str) -> str:
    """Plant a file in a host folder (the platform's source tree)."""
    with open(path, "x") as handle:
        handle.write("planted by the hostile app\n")
    return f"{SUCCEEDED}created {path}"


def connect(host: str, port: int) -> str:
    """Open a TCP connection to a service of the node (database, broker, another session)."""
    with socket.create_connection((host, port), timeout=3) as connection:
        return f"{SUCCEEDED}connected to {connection.getpeername()}"


def signal_process(pid: int) -> str:
    """Reach a host process (the platform's own) with a signal; 0 only checks that it could."""
    os.kill(pid, 0)
    return f"{SUCCEEDED}pid {pid} can be signalled"


def environment_leak(name: str) -> str:
    """Find a secret of the platform's environment in our own."""
    leaked = [key for key in (name, "PRO_SECRET_KEY", "DATABASE_URL", "REDIS_URL") if key in os.environ]
    if leaked:
        return f"{SUCCEEDED}inherited {leaked}"
    raise LookupError(f"none of {name}, PRO_SECRET_KEY, DATABASE_URL, REDIS_URL is set")


def attempt(function, *args) -> str:
    try:
        return function(*args)
    except Exception as exc:
        return _denied(exc)


def probe(targets: dict) -> dict[str, str]:
    """Every attempt against the host's ``targets``; what happened to each."""
    results = {}
    for name, path in targets.get("read", {}).items():
        results[f"read {name}"] = attempt(read_file, path)
    for name, path in targets.get("list", {}).items():
        results[f"list {name}"] = attempt(list_folder, path)
    for name, path in targets.get("create", {}).items():
        results[f"create {name}"] = attempt(create_file, path)
    for name, (host, port) in targets.get("connect", {}).items():
        results[f"connect {name}"] = attempt(connect, host, port)
    if "platform_pid" in targets:
        results["signal the platform"] = attempt(signal_process, targets["platform_pid"])
    if "secret_env" in targets:
        results["inherit the environment"] = attempt(environment_leak, targets["secret_env"])
    return results


def succeeded(results: dict[str, str]) -> dict[str, str]:
    return {name: outcome for name, outcome in results.items() if outcome.startswith(SUCCEEDED)}


def _root_is_writable() -> str:
    """Whether the sandbox's own root (not the host's) takes a new file; informational."""
    try:
        with open(f"/hostile-{os.getpid()}", "x"):
            return "yes"
    except OSError as exc:
        return f"no ({exc.strerror})"


def facts() -> dict[str, str]:
    """What this process sees around it: processes, user, network interfaces, /tmp, its root."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return {
        "uid": str(os.getuid()),
        "processes": str(sum(entry.isdigit() for entry in os.listdir("/proc"))),
        "interfaces": ",".join(sorted(line.split(":")[0].strip() for line in lines)),
        "tmp": str(sorted(os.listdir("/tmp"))),
        "hostname": socket.gethostname(),
        "root writable": _root_is_writable(),
    }
