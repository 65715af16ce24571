"""Benchmark of data sessions, on this machine (not part of the test suite).

    .venv/bin/python bench/sessions_bench.py [--launches 20] [--round-trips 500]

It starts a throwaway platform (``run_platform`` on a temporary data folder) and measures:

- launch: from ``POST /api/v1/sessions`` to the app's state arriving through the websocket
  proxy (what a browser waits for before its page is interactive);
- proxy round trip: one small request and its reply through the proxy, beside the same
  exchange straight with the session process (the proxy's own cost).

It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import throwaway
from throwaway import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(values),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "n": len(values),
    }


def start_platform(folder: Path, port: int) -> subprocess.Popen:
    process = throwaway.start(folder, port)
    time.sleep(2)  # let the session manager warm its pool
    return process


async def launch_once(base: str, headers: dict, ws_base: str, app: str) -> tuple[float, str]:
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    session = await asyncio.to_thread(
        lambda: requests.post(f"{base}/api/v1/sessions", json={"app": app}, headers=headers, timeout=30).json()
    )
    async with connect(f"{ws_base}/ws/sessions/{session['id']}/", additional_headers=headers, origin=base) as ws:
        state = json.loads(await ws.recv())
        assert state["type"] == "state"
        return time.perf_counter() - started, session["id"]


async def round_trips(url: str, headers: dict, origin: str | None, count: int) -> list[float]:
    from websockets.asyncio.client import connect

    times = []
    async with connect(url, additional_headers=headers, origin=origin) as ws:
        await ws.recv()
        for n in range(count):
            started = time.perf_counter()
            await ws.send(
                json.dumps({"op": "set", "identifier": "demand", "key": ["Chicago"], "value": 300 + n % 7, "re": n + 1})
            )
            while json.loads(await ws.recv()).get("re") != n + 1:
                pass
            times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument(
        "--app", default="transport", help="the sample launched (pyomo-blending: an app environment of its own)"
    )
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--out", default=str(ROOT / "bench" / "sessions-results.json"))
    args = parser.parse_args()
    base, ws_base = f"http://127.0.0.1:{args.port}", f"ws://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="pro-bench-") as folder:
        platform = start_platform(Path(folder), args.port)
        try:
            ticket = requests.post(
                f"{base}/api/v1/auth/tickets", json={"username": "admin", "password": PASSWORD}, timeout=30
            ).json()["ticket"]
            headers = {"Authorization": f"Bearer {ticket}"}
            launches = []
            for _ in range(args.launches):
                seconds, session_id = asyncio.run(launch_once(base, headers, ws_base, args.app))
                launches.append(seconds)
                requests.post(f"{base}/api/v1/sessions/{session_id}/stop", headers=headers, timeout=30)
                time.sleep(1.2)  # the pool refills between launches, as between users' clicks
            session = requests.post(
                f"{base}/api/v1/sessions", json={"app": "transport"}, headers=headers, timeout=30
            ).json()
            proxied = asyncio.run(
                round_trips(f"{ws_base}/ws/sessions/{session['id']}/", headers, base, args.round_trips)
            )
            os.environ["DJANGO_SETTINGS_MODULE"] = "pro_portal.settings"
            os.environ["PRO_DATA_DIR"] = folder
            sys.path.insert(0, str(ROOT))
            import django

            django.setup()
            from sessions.models import DataSession

            row = DataSession.objects.get(pk=session["id"])
            if row.state != "running":
                raise RuntimeError(f"the benchmark's session is {row.state}: {row.error_message}")
            direct = asyncio.run(
                round_trips(
                    f"ws://127.0.0.1:{row.port}/", {"Authorization": f"Secret {row.secret}"}, None, args.round_trips
                )
            )
        finally:
            os.killpg(platform.pid, signal.SIGINT)
            platform.wait(timeout=60)
    results = {"launch": summary(launches), "proxy_round_trip": summary(proxied), "direct_round_trip": summary(direct)}
    print(f"{'measure':40} {'median':>10} {'p95':>10}")
    for label, key in (
        ("launch to state through the proxy", "launch"),
        ("round trip through the proxy", "proxy_round_trip"),
        ("round trip straight to the session", "direct_round_trip"),
    ):
        print(f"{label:40} {results[key]['median'] * 1000:8.1f}ms {results[key]['p95'] * 1000:8.1f}ms")
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
