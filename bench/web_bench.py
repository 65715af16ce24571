"""The web tier under load, as a new user runs it (``make run`` defaults), measured with wrk (not a test).

    .venv/bin/python bench/web_bench.py [--seconds 10] [--connections 16] [--out bench/web-results.json]

It starts a throwaway platform (``run_platform`` on a temporary data folder: SQLite, every role,
one web server process per core), logs in for a ticket, runs one job, and points Debian's ``wrk``
(``apt-get install wrk``) at: a job's detail with the ticket (what every polling script and page
does), the app list with the ticket, and ``/healthz``. It prints requests per second and the
latency percentiles, and writes JSON.

What it measures is the node's steady state: it waits for the job to end and for the node to be
idle (start-up warms pools and fork servers for some seconds), and each endpoint gets a
short run of wrk, not counted, before the measured one.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
from throwaway import throwaway_platform

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
WARM_UP_SECONDS = 3  # a run of wrk per endpoint before the measured one, not counted
SETTLED_BUSY_SHARE = 0.15  # the machine counts as idle below this share of busy CPU


def milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * UNITS[unit]


def wrk(url: str, seconds: float, connections: int, header: str | None) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    if header:
        command[1:1] = ["-H", header]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}
    for percentile in ("50", "99"):
        found[f"p{percentile}_ms"] = milliseconds(re.search(rf"\s{percentile}%\s+(\S+)", out)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    found["non_2xx"] = int(errors[1]) if errors else 0
    return found


def wait_ended(url: str, job_id: int, auth: str, timeout: float = 120) -> None:
    """Wait for the job to end, then for the machine to settle (its CPU mostly idle for a second)."""
    deadline = time.monotonic() + timeout
    name, _, value = auth.partition(": ")
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/api/v1/jobs/{job_id}", headers={name: value}, timeout=30).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    while time.monotonic() < deadline and machine_busy_share(1.0) > SETTLED_BUSY_SHARE:
        pass


def machine_busy_share(seconds: float) -> float:
    """The share of the machine's CPU time that was busy over the next ``seconds``."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]

    (total_before, idle_before), _ = sample(), time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle_before) / max(1, total_after - total_before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=8793)
    parser.add_argument("--out", default=str(ROOT / "bench" / "web-results.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    with throwaway_platform(args.port) as platform:
        ticket = platform.ticket()
        auth = f"Authorization: Bearer {ticket}"
        job = requests.post(
            f"{platform.url}/api/v1/jobs",
            json={"app": "transport", "procedure": "solve"},
            headers={"Authorization": f"Bearer {ticket}"},
            timeout=30,
        ).json()
        wait_ended(platform.url, job["id"], auth)
        targets = {
            "job_detail": (f"{platform.url}/api/v1/jobs/{job['id']}", auth),
            "app_list": (f"{platform.url}/api/v1/apps", auth),
            "healthz": (f"{platform.url}/healthz", None),
        }
        results = {}
        for name, (url, header) in targets.items():
            wrk(url, WARM_UP_SECONDS, args.connections, header)
            results[name] = wrk(url, args.seconds, args.connections, header)
    print(f"{'endpoint':14} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for name, found in results.items():
        print(f"{name:14} {found['requests_per_second']:10.0f} {found['p50_ms']:9.1f} {found['p99_ms']:9.1f}")
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
