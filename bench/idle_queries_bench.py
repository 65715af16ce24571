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
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Bench-pass-123"  # noqa: S105 - the throwaway platform's admin
DATABASE = "pro_idle_bench"


def commits(server: str) -> int:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [DATABASE]).fetchone()
        return int(row[0]) if row else 0


def start(folder: Path, server: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PRO_DATA_DIR": str(folder),
        "PRO_HTTP_PORT": str(port),
        "PRO_ADMIN_PASSWORD": PASSWORD,
        "DATABASE_URL": f"{server}/{DATABASE}",
        "DJANGO_SETTINGS_MODULE": "pro_portal.settings",
    }
    for name in ("REDIS_URL", "PRO_STORAGE_URL"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["pro_bootstrap"]):
        subprocess.run([*manage, *command], env=env, cwd=ROOT, check=True, capture_output=True)
    log = open(folder / "platform.log", "ab")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(
        [*manage, "run_platform"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return process
        except requests.RequestException:  # not listening yet, or busy starting
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("the platform did not start")


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
    with tempfile.TemporaryDirectory(prefix="pro-bench-", ignore_cleanup_errors=True) as folder:
        platform = start(Path(folder), args.server, args.port)
        try:
            time.sleep(args.settle)
            before = commits(args.server)
            time.sleep(args.seconds)
            idle = (commits(args.server) - before) / args.seconds
            base = f"http://127.0.0.1:{args.port}"
            ticket = requests.post(
                f"{base}/api/v1/auth/tickets", json={"username": "admin", "password": PASSWORD}, timeout=30
            ).json()["ticket"]
            headers = {"Authorization": f"Bearer {ticket}"}
            latencies = sorted(submit_to_running(base, headers) for _ in range(10))
        finally:
            os.killpg(platform.pid, signal.SIGINT)
            platform.wait(timeout=60)
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
