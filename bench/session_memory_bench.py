"""Memory of idle data sessions on this node (not part of the test suite).

    .venv/bin/python bench/session_memory_bench.py [--counts 20,50,100,200] [--min-available-mb 2048]

It starts a throwaway platform (``run_platform`` on a temporary data folder and SQLite, as
``bench/sessions_bench.py`` does, with the session limits raised by environment), launches idle
sessions of a sample app through the API as the admin, up to each count in turn (respecting a
429's ``Retry-After``), waits until each is running, opens each once through the websocket
proxy (a user who opened the app and left it: it got its state), lets them settle, then reads
``/proc``:

- each session's sandbox (the outer bubblewrap, the sandbox's init and the session process,
  found from the session row's ``pid``): USS (``Private_Clean + Private_Dirty``), PSS and RSS
  from ``smaps_rollup``;
- the same for the warm interpreters of the pool (the session manager's other sandboxes);
- the platform's own processes (the session manager holds a thread, a relay socket and two
  pipes per session);
- the node's ``MemAvailable`` (and the kernel's ``PageTables``, ``Slab``, ``KernelStack``) before
  and after.

"All told" a session is its sandbox's PSS plus its share of what the kernel's tables and the
platform's processes grew by: ``MemAvailable`` says the same on a quiet node, but it moves with
whatever else the node runs.

It stops launching, gracefully, when ``MemAvailable`` drops under ``--min-available-mb``. It
prints a table and writes JSON (``bench/session-memory-results.json`` by default).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import throwaway
from throwaway import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
SESSION_MODULE = "sessions.runtime.session_server"
ROLLUP_KEYS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Anonymous", "Swap")


# ---------------------------------------------------------------- /proc


def meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    values = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
    return values


def available_mb() -> float:
    return meminfo()["MemAvailable"] / 1024


def node_memory() -> dict[str, float]:
    info = meminfo()
    keys = ("MemTotal", "MemAvailable", "MemFree", "Cached", "Shmem", "PageTables", "Slab", "KernelStack")
    return {f"{key}_mb": round(info.get(key, 0) / 1024, 1) for key in keys}


def rollup(pid: int) -> dict[str, int]:
    """A process's ``smaps_rollup`` (KiB), with USS; empty if it is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ROLLUP_KEYS:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    values["Uss"] = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values


def mappings(pid: int, top: int = 15) -> list[dict[str, Any]]:
    """A process's memory by mapping (the anonymous ones, the heap, each library), biggest USS first."""
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    name = "?"
    try:
        with open(f"/proc/{pid}/smaps") as handle:
            for line in handle:
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    parts = line.split(None, 5)
                    name = parts[5].strip() if len(parts) > 5 else "[anon]"
                    name = name.rsplit("/", 1)[-1] if "/" in name else name
                else:
                    key, _, rest = line.partition(":")
                    if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                        totals[name][key] += int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return []
    rows: list[dict[str, Any]] = [
        {"mapping": n, "uss_kb": c["Private_Clean"] + c["Private_Dirty"], "pss_kb": c["Pss"], "rss_kb": c["Rss"]}
        for n, c in totals.items()
    ]
    return sorted(rows, key=lambda r: -r["uss_kb"])[:top]


def children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task.name}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant of it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue += children(current)
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def is_session_process(pid: int) -> bool:
    """The Python of a session (bubblewrap's own command line names the module too)."""
    line = cmdline(pid)
    return SESSION_MODULE in line and "bwrap" not in line.split(" ", 1)[0]


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def sandbox_memory(leader: int) -> dict[str, Any]:
    """A sandbox from its leader (the outer bubblewrap): the session process and the rest, in KiB."""
    members = tree(leader)
    app = next((pid for pid in members if is_session_process(pid)), None)
    total: collections.Counter = collections.Counter()
    for pid in members:
        total.update(rollup(pid))
    return {
        "leader": leader,
        "app_pid": app,
        "processes": len(members),
        "app_threads": threads(app) if app else 0,
        "app": rollup(app) if app else {},
        "sandbox": dict(total),
    }


def platform_processes(platform_pid: int) -> dict[str, dict[str, Any]]:
    """The platform's own processes (each child of run_platform with its helpers), sandboxes left out."""
    result = {}
    for child in children(platform_pid):
        line = cmdline(child)
        name = next(
            (n for n in ("session_manager", "solve_worker", "node_agent", "qcluster", "uvicorn") if n in line), line
        )
        pids = [child]
        queue = children(child)
        while queue:
            pid = queue.pop()
            if "bwrap" in cmdline(pid) or SESSION_MODULE in cmdline(pid):
                continue  # a sandbox: counted on its own
            pids.append(pid)
            queue += children(pid)
        total: collections.Counter = collections.Counter()
        for pid in pids:
            total.update(rollup(pid))
        result[name] = {"pid": child, "processes": len(pids), "threads": sum(map(threads, pids)), **dict(total)}
    return result


def manager_pid(platform_pid: int) -> int | None:
    return next((pid for pid in children(platform_pid) if "session_manager" in cmdline(pid)), None)


# ---------------------------------------------------------------- the platform


def start_platform(folder: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    return throwaway.start(folder, port, **extra_env)


class Api:
    def __init__(self, base: str):
        self.base = base
        self.headers: dict[str, str] = {}
        self.renewed = 0.0

    def auth(self) -> dict[str, str]:
        if time.monotonic() - self.renewed > 300:  # tickets last 15 minutes
            ticket = requests.post(
                f"{self.base}/api/v1/auth/tickets", json={"username": "admin", "password": PASSWORD}, timeout=30
            ).json()["ticket"]
            self.headers = {"Authorization": f"Bearer {ticket}"}
            self.renewed = time.monotonic()
        return self.headers

    def launch(self, app: str) -> tuple[str, int]:
        """A new session's id, and how many 429s it met."""
        refused = 0
        while True:
            answer = requests.post(f"{self.base}/api/v1/sessions", json={"app": app}, headers=self.auth(), timeout=60)
            if answer.status_code != 429:
                answer.raise_for_status()
                return answer.json()["id"], refused
            refused += 1
            time.sleep(float(answer.headers.get("Retry-After", "2")))

    def stop(self, session_id: str) -> None:
        requests.post(f"{self.base}/api/v1/sessions/{session_id}/stop", headers=self.auth(), timeout=60)


async def open_once(base: str, ws_base: str, headers: dict[str, str], ids: list[str]) -> int:
    """Open each session once through the proxy and read its state (what a browser tab gets)."""
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    limit = asyncio.Semaphore(8)

    async def one(session_id: str) -> bool:
        async with limit:
            try:
                async with connect(
                    f"{ws_base}/ws/sessions/{session_id}/",
                    additional_headers=headers,
                    origin=Origin(base),
                    open_timeout=30,
                ) as ws:
                    return json.loads(await asyncio.wait_for(ws.recv(), 30)).get("type") == "state"
            except Exception:
                return False

    return sum(await asyncio.gather(*(one(i) for i in ids)))


def rows_of(ids: list[str]) -> dict[str, tuple[str, int | None, str]]:
    from sessions.models import DataSession

    return {
        str(pk): (state, pid, error)
        for pk, state, pid, error in DataSession.objects.filter(pk__in=ids).values_list(
            "pk", "state", "pid", "error_message"
        )
    }


def wait_running(ids: list[str], timeout: float) -> dict[str, int]:
    """Each session's pid once every one is running; a failed one raises."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_of(ids)
        broken = {i: r for i, r in rows.items() if r[0] not in ("starting", "running")}
        if broken:
            raise RuntimeError(f"sessions ended while starting: {list(broken.values())[:3]}")
        if len(rows) == len(ids) and all(r[0] == "running" and r[1] for r in rows.values()):
            return {i: int(r[1]) for i, r in rows.items() if r[1]}
        if time.monotonic() > deadline:
            raise RuntimeError("sessions did not all start in time")
        time.sleep(0.5)


# ---------------------------------------------------------------- measuring


def kb_to_mb(kb: float) -> float:
    return round(kb / 1024, 2)


def measure(platform_pid: int, session_pids: dict[str, int]) -> dict[str, Any]:
    manager = manager_pid(platform_pid)
    leaders = children(manager) if manager else []
    sessions_pids = set(session_pids.values())
    sessions = [sandbox_memory(pid) for pid in leaders if pid in sessions_pids]
    pool = [sandbox_memory(pid) for pid in leaders if pid not in sessions_pids]
    pool = [p for p in pool if p["app_pid"]]

    def stats(sandboxes: list[dict], part: str) -> dict[str, Any]:
        if not sandboxes:
            return {"n": 0}
        out: dict[str, Any] = {"n": len(sandboxes)}
        for key in ("Uss", "Pss", "Rss", "Anonymous"):
            values = [s[part].get(key, 0) for s in sandboxes]
            out[f"{key.lower()}_median_mb"] = kb_to_mb(statistics.median(values))
            out[f"{key.lower()}_total_mb"] = kb_to_mb(sum(values))
        return out

    example = None  # the session nearest the median USS, whose mappings are listed
    if sessions:
        middle = statistics.median(s["app"].get("Uss", 0) for s in sessions)
        example = min(sessions, key=lambda s: abs(s["app"].get("Uss", 0) - middle))
    platform = platform_processes(platform_pid)
    return {
        "node": node_memory(),
        "sessions": {
            "session_process": stats(sessions, "app"),
            "whole_sandbox": stats(sessions, "sandbox"),
            "processes_per_sandbox": statistics.median(s["processes"] for s in sessions) if sessions else 0,
            "threads_per_session_process": statistics.median(s["app_threads"] for s in sessions) if sessions else 0,
            "missing": len(session_pids) - len(sessions),
        },
        "pool": {"session_process": stats(pool, "app"), "whole_sandbox": stats(pool, "sandbox")},
        "platform": {
            name: {
                "uss_mb": kb_to_mb(p.get("Uss", 0)),
                "pss_mb": kb_to_mb(p.get("Pss", 0)),
                "rss_mb": kb_to_mb(p.get("Rss", 0)),
                "threads": p["threads"],
            }
            for name, p in platform.items()
        },
        "example_session_mappings": mappings(example["app_pid"]) if example and example["app_pid"] else [],
    }


def missing_bytecode() -> list[str]:
    """The runtime's own modules with no up-to-date .pyc: a sandbox cannot write one, so each
    session compiles them again, which costs memory (the Docker image compiles them all)."""
    import importlib.util

    missing = []
    for folder in (ROOT / "sessions" / "runtime", ROOT / "pro_sdk"):
        for source in sorted(folder.glob("*.py")):
            cached = Path(importlib.util.cache_from_source(str(source)))
            try:
                header = cached.read_bytes()[:16]
            except OSError:
                missing.append(str(source.relative_to(ROOT)))
                continue
            flags = int.from_bytes(header[4:8], "little")
            stale = flags == 0 and int.from_bytes(header[8:12], "little") != int(source.stat().st_mtime) & 0xFFFFFFFF
            if stale:
                missing.append(str(source.relative_to(ROOT)))
    return missing


def level_row(count: int, result: dict, baseline: dict, idle_platform: dict) -> dict[str, Any]:
    sessions = result["sessions"]["whole_sandbox"]
    process = result["sessions"]["session_process"]
    drop = idle_platform["node"]["MemAvailable_mb"] - result["node"]["MemAvailable_mb"]
    # What can be put on a session: its sandbox's PSS, plus what the kernel and the platform's
    # processes grew by since the platform was idle (MemAvailable also moves with the rest of the node).
    grown = sum(
        result["node"][key] - idle_platform["node"][key] for key in ("PageTables_mb", "KernelStack_mb", "Slab_mb")
    )
    grown += sum(p["pss_mb"] for p in result["platform"].values())
    grown -= sum(p["pss_mb"] for p in idle_platform["platform"].values())
    accounted = (sessions.get("pss_total_mb", 0) + grown) / count if count else None
    return {
        "sessions": count,
        "uss_median_mb": process.get("uss_median_mb"),
        "pss_median_mb": process.get("pss_median_mb"),
        "rss_median_mb": process.get("rss_median_mb"),
        "sandbox_uss_median_mb": sessions.get("uss_median_mb"),
        "sandbox_pss_total_mb": sessions.get("pss_total_mb"),
        "sandbox_uss_total_mb": sessions.get("uss_total_mb"),
        "pool_pss_total_mb": result["pool"]["whole_sandbox"].get("pss_total_mb", 0),
        "platform_pss_mb": round(sum(p["pss_mb"] for p in result["platform"].values()), 1),
        "mem_available_mb": result["node"]["MemAvailable_mb"],
        "mem_available_drop_mb": round(drop, 1),
        "drop_per_session_mb": round(drop / count, 2) if count else None,
        "accounted_per_session_mb": round(accounted, 2) if accounted is not None else None,
        "page_tables_mb": result["node"]["PageTables_mb"],
        "slab_mb": result["node"]["Slab_mb"],
        "kernel_stack_mb": result["node"]["KernelStack_mb"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="20,50,100,200", help="cumulative counts of idle sessions to measure at")
    parser.add_argument("--app", default="transport")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--min-available-mb", type=float, default=2048, help="stop launching under this MemAvailable")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds between the last launch and the reading")
    parser.add_argument("--no-open", action="store_true", help="do not open each session once through the proxy")
    parser.add_argument("--label", default="", help="a note kept in the JSON (e.g. what was changed)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="more environment for the platform"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "session-memory-results.json"))
    args = parser.parse_args()
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    limit = max(counts) + 50
    extra_env = {
        "PRO_SESSIONS_PER_USER": str(limit),
        "PRO_MAX_SESSIONS": str(limit),
        "PRO_SESSIONS_STARTING_LIMIT": "8",
        "PRO_SESSION_IDLE_SECONDS": "86400",  # idle, yet not closed for it during the bench
    }
    extra_env.update(dict(item.split("=", 1) for item in args.env))
    base, ws_base = f"http://127.0.0.1:{args.port}", f"ws://127.0.0.1:{args.port}"
    results: dict[str, Any] = {
        "label": args.label,
        "app": args.app,
        "environment": extra_env,
        "cpus": os.cpu_count(),
        "runtime_modules_without_bytecode": missing_bytecode(),
        "levels": [],
    }
    with tempfile.TemporaryDirectory(prefix="pro-bench-") as folder:
        baseline = {"node": node_memory()}
        platform = start_platform(Path(folder), args.port, extra_env)
        ids: list[str] = []
        api = Api(base)
        try:
            os.environ.update({"DJANGO_SETTINGS_MODULE": "pro_portal.settings", "PRO_DATA_DIR": folder, **extra_env})
            sys.path.insert(0, str(ROOT))
            import django

            django.setup()
            api.auth()
            time.sleep(8)  # the session manager warms its pool
            idle_platform = measure(platform.pid, {})
            results["baseline"] = baseline
            results["idle_platform"] = idle_platform
            print(
                f"MemAvailable {baseline['node']['MemAvailable_mb']:.0f} MB before, "
                f"{idle_platform['node']['MemAvailable_mb']:.0f} MB with the platform up and its pool warm"
            )
            header = f"{'N':>5} {'USS med':>8} {'PSS med':>8} {'RSS med':>8} {'sandbox PSS sum':>16} {'avail':>8}"
            header += f" {'drop/N':>7} {'all told/N':>10}"
            print(header)
            stopped = ""
            for count in counts:
                started = time.monotonic()
                refused = 0
                while len(ids) < count:
                    if available_mb() < args.min_available_mb:
                        stopped = f"MemAvailable under {args.min_available_mb:.0f} MB after {len(ids)} sessions"
                        break
                    session_id, met = api.launch(args.app)
                    ids.append(session_id)
                    refused += met
                pids = wait_running(ids, timeout=120 + 2 * len(ids))
                launch_seconds = time.monotonic() - started
                opened = 0 if args.no_open else asyncio.run(open_once(base, ws_base, api.auth(), ids))
                time.sleep(args.settle)
                pids = wait_running(ids, timeout=60)
                result = measure(platform.pid, pids)
                row = level_row(len(ids), result, baseline, idle_platform)
                row.update({"launch_seconds": round(launch_seconds, 1), "refused_429": refused, "opened": opened})
                results["levels"].append({**row, "detail": result})
                print(
                    f"{len(ids):5} {row['uss_median_mb']:7.1f}M {row['pss_median_mb']:7.1f}M "
                    f"{row['rss_median_mb']:7.1f}M {row['sandbox_pss_total_mb']:15.0f}M "
                    f"{row['mem_available_mb']:7.0f}M {row['drop_per_session_mb']:6.1f}M "
                    f"{row['accounted_per_session_mb']:9.1f}M"
                )
                if stopped:
                    break
            results["stopped_early"] = stopped
            if stopped:
                print(stopped)
            last = results["levels"][-1] if results["levels"] else None
            if last and last["accounted_per_session_mb"]:
                room = idle_platform["node"]["MemAvailable_mb"] - args.min_available_mb
                results["projected_idle_sessions"] = int(room / max(last["accounted_per_session_mb"], 0.1))
                print(
                    f"about {last['accounted_per_session_mb']:.1f} MB a session all told: this node holds about "
                    f"{results['projected_idle_sessions']} idle sessions above {args.min_available_mb:.0f} MB available"
                )
        finally:
            for session_id in ids:
                with contextlib.suppress(requests.RequestException):
                    api.stop(session_id)
            deadline = time.monotonic() + 60 + len(ids)
            while time.monotonic() < deadline:  # the manager stops each sandbox within a second or two
                manager = manager_pid(platform.pid)
                if manager is None or len(children(manager)) <= 4:
                    break
                time.sleep(1)
            os.killpg(platform.pid, signal.SIGINT)
            try:
                platform.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(platform.pid, signal.SIGKILL)
                platform.wait(timeout=30)
    results["after"] = {"node": node_memory()}
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
