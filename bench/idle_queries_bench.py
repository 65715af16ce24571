"""What an idle node costs its database: statements per second, from PostgreSQL's own statistics (not a test).

    .venv/bin/python bench/idle_queries_bench.py [--seconds 60] [--out bench/idle-queries-results.json]

It creates a throwaway database on the PostgreSQL of ``--server`` (default the local one, user
postgres), starts ``run_platform`` on it (every role: web, sessions, solves, the task queue, the
node agent) with a temporary data folder, lets it settle, and counts over ``--seconds`` the
transactions committed in that database (``pg_stat_database.xact_commit``: every autocommit
statement is one) and, where the extension is there, the statements. Then it submits one job and
times submit to running, to show that waking up on a notification did not slow the claim.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg
import requests
from throwaway import throwaway_platform

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "pro_idle_bench"


def commits(server: str) -> int:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [DATABASE]).fetchone()
        return int(row[0]) if row else 0


def submit_to_running(base: str, headers: dict) -> float:
    started = time.perf_counter()
    job = requests.post(
        f"{base}/api/v1/jobs", json={"app": "transport", "procedure": "solve"}, headers=headers, timeout=30
    ).json()
    while requests.get(f"{base}/api/v1/jobs/{job['id']}", headers=headers, timeout=30).json()["state"] == "queued":
        time.sleep(0.002)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=20)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=8792)
    parser.add_argument("--log-statements", action="store_true", help="log every statement (PostgreSQL's log)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "idle-queries-results.json"))
    args = parser.parse_args()
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
        if args.log_statements:  # each statement in PostgreSQL's log, to see who asks what
            admin.execute(f"ALTER DATABASE {DATABASE} SET log_statement = 'all'")
    with throwaway_platform(args.port, DATABASE_URL=f"{args.server}/{DATABASE}") as platform:
        time.sleep(args.settle)
        before = commits(args.server)
        time.sleep(args.seconds)
        idle = (commits(args.server) - before) / args.seconds
        headers = {"Authorization": f"Bearer {platform.ticket()}"}
        latencies = sorted(submit_to_running(platform.url, headers) for _ in range(10))
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    results = {
        "idle_transactions_per_second": round(idle, 2),
        "submit_to_running_median_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "seconds": args.seconds,
    }
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
