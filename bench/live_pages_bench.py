"""Open pages that follow the platform, measured (not a test).

    .venv/bin/python bench/live_pages_bench.py [--pages 500] [--idle 30] [--out bench/live-pages-results.json]

It starts a throwaway platform (``make run`` defaults), logs in as the admin, and opens
``--pages`` jobs-list pages' websockets (``/ws/live/?topics=jobs``, what static/js/live.js
opens). Then it measures:

- while nothing changes, for ``--idle`` seconds: the CPU seconds the web server processes spend
  and their memory (what the open pages cost), and the frames the pages receive (none);
- one job submitted: how long until every page has been told (the fan-out), and how many
  frames they got;
- the baseline: what the same pages cost when each polls the jobs list every 2 seconds, as the
  page did before (one request per page per 2 s, measured as the requests per second the node
  must then serve, beside its measured rate for that request).

It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import requests
from throwaway import PASSWORD, throwaway_platform
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 2.0  # how often the jobs page polled before it followed the websocket


def login_cookie(url: str) -> str:
    session = requests.Session()
    session.get(f"{url}/login/", timeout=30)
    token = session.cookies["csrftoken"]
    session.post(
        f"{url}/login/",
        data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{url}/login/"},
        timeout=30,
    )
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def web_processes(root: int) -> list[int]:
    """The web server's processes among ``root``'s descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [(root, False)]
    while todo:
        pid, web = todo.pop()
        for child in children.get(pid, []):
            # uvicorn's workers are its children (multiprocessing), named by their parent only
            is_web = web or b"uvicorn" in Path(f"/proc/{child}/cmdline").read_bytes()
            todo.append((child, is_web))
            if is_web:
                found.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def memory_mb(pids: list[int]) -> float:
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page for pid in pids) / 1e6


async def open_pages(url: str, cookie: str, count: int) -> list:
    headers = {"Cookie": cookie, "Origin": url}
    ws_url = url.replace("http://", "ws://") + "/ws/live/?topics=jobs"
    pages = []
    for _ in range(count):
        pages.append(await connect(ws_url, additional_headers=headers, open_timeout=30))
    return pages


async def frames_within(pages: list, seconds: float) -> list[float]:
    """When each page got its first frame within ``seconds`` (monotonic time), or nothing."""

    async def first(page) -> float | None:
        try:
            await asyncio.wait_for(page.recv(), seconds)
        except TimeoutError:
            return None
        return time.monotonic()

    return [t for t in await asyncio.gather(*(first(page) for page in pages)) if t is not None]


async def measure(url: str, ticket: str, cookie: str, count: int, idle: float, web: list) -> dict:
    pages = await open_pages(url, cookie, count)
    memory = memory_mb(web)
    cpu_before = cpu_seconds(web)
    idle_frames = await frames_within(pages, idle)
    idle_cpu = cpu_seconds(web) - cpu_before
    submitted = time.monotonic()
    answer = await asyncio.to_thread(
        requests.post,
        f"{url}/api/v1/jobs",
        json={"app": "transport", "procedure": "solve"},
        headers={"Authorization": f"Bearer {ticket}"},
        timeout=30,
    )
    answer.raise_for_status()
    told = await frames_within(pages, 30)
    for page in pages:
        await page.close()
    delays = sorted(t - submitted for t in told)
    return {
        "pages": count,
        "idle_seconds": idle,
        "idle_frames": len(idle_frames),
        "idle_web_cpu_seconds": idle_cpu,
        "idle_web_cpu_share_of_one_core": idle_cpu / idle,
        "web_memory_mb_with_pages_open": memory,
        "pages_told_of_a_job": len(told),
        "fanout_p50_ms": delays[len(delays) // 2] * 1000 if delays else None,
        "fanout_last_ms": delays[-1] * 1000 if delays else None,
    }


def polling_baseline(url: str, ticket: str, count: int, seconds: float = 5) -> dict:
    """What ``count`` pages polling the jobs list would ask of the node, beside what it serves."""
    headers = {"Authorization": f"Bearer {ticket}"}
    done, started = 0, time.monotonic()
    with requests.Session() as session:
        while time.monotonic() - started < seconds:
            session.get(f"{url}/api/v1/jobs?limit=50", headers=headers, timeout=30).raise_for_status()
            done += 1
    one_client_rate = done / (time.monotonic() - started)
    return {
        "polling_requests_per_second": count / POLL_SECONDS,
        "jobs_list_requests_per_second_one_client": one_client_rate,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--idle", type=float, default=30)
    parser.add_argument("--port", type=int, default=8794)
    parser.add_argument("--out", default=str(ROOT / "bench" / "live-pages-results.json"))
    args = parser.parse_args()
    with throwaway_platform(args.port) as platform:
        ticket = platform.ticket()
        cookie = login_cookie(platform.url)
        web = web_processes(platform.process.pid)
        results = asyncio.run(measure(platform.url, ticket, cookie, args.pages, args.idle, web))
        results.update(polling_baseline(platform.url, ticket, args.pages))
    print(f"{args.pages} open jobs pages, {args.idle:g} s while nothing changes:")
    print(
        f"  frames received {results['idle_frames']}, web CPU {results['idle_web_cpu_seconds']:.2f} s "
        f"({results['idle_web_cpu_share_of_one_core'] * 100:.1f} % of a core), web memory {results['web_memory_mb_with_pages_open']:.0f} MB"
    )
    print(
        f"  one job submitted: {results['pages_told_of_a_job']} pages told, p50 {results['fanout_p50_ms']:.0f} ms, "
        f"last {results['fanout_last_ms']:.0f} ms"
    )
    print(
        f"  polling every {POLL_SECONDS:g} s instead: {results['polling_requests_per_second']:.0f} requests/s "
        f"(one client gets {results['jobs_list_requests_per_second_one_client']:.0f}/s of the jobs list)"
    )
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
