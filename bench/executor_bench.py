"""Submit to running and throughput through Slurm beside the local executor (not a test).

    .venv/bin/python bench/executor_bench.py [--jobs 30] [--latency 10] [--out bench/executor-results.json]

It starts a throwaway platform (a temporary data folder, SQLite, ``run_platform`` with the web
and solves roles) twice on the same data: once with ``PRO_EXECUTOR=local`` (its own sandboxes, the
warm pool included), once with ``PRO_EXECUTOR=slurm`` against a real Slurm cluster on this machine
(tests/slurm_cluster.py: slurmctld and three one-CPU slurmd). For each it measures, with the
trivial app (bench/trivial, which logs the time its solve procedure is entered):

- submit to running: from the submit call to the first line of the solve procedure, one job at a
  time on an idle node;
- throughput: ``--jobs`` trivial jobs submitted at once, to the last one's end.

Slurm's share of a start is its scheduling (up to a second: ``sched_interval``/``bf_interval`` 1
in the test cluster; a site's own settings decide it), a new interpreter for the runner, the
bundle's download and a cold sandbox (no warm pool at an engine). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import jobs_bench  # noqa: E402 - the platform's set-up, publishing and waits of the job benchmark


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(port: int, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "PRO_HTTP_PORT": str(port), "PRO_NODE_ROLES": "web,solves", **env}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "run_platform"],
        env=environment,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                time.sleep(2)  # the solve worker (and its warm pool) start beside the web server
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("the platform did not start")


def stop_node(process: subprocess.Popen) -> None:
    import signal

    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def measure(admin, jobs: int, latency: int) -> dict:
    from sessions.jobs import job_submit
    from sessions.models import Job

    to_running = []
    for _ in range(latency):
        time.sleep(jobs_bench.IDLE_PAUSE)
        submitted = time.time()
        job = job_submit(user=admin, app_name="bench-trivial", procedure="solve", memory_limit_mb=1024)
        jobs_bench.wait_finished([job.pk], timeout=120)
        job.refresh_from_db()
        to_running.append(jobs_bench.first_line_time(job) - submitted)
    started = time.time()
    ids = [
        job_submit(user=admin, app_name="bench-trivial", procedure="solve", memory_limit_mb=1024).pk
        for _ in range(jobs)
    ]
    finished = jobs_bench.wait_finished(ids, timeout=900)
    failed = Job.objects.filter(pk__in=ids).exclude(state="succeeded").count()
    return {
        "submit_to_running": jobs_bench.summary(to_running),
        "throughput_jobs_per_s": jobs / (max(finished.values()) - started) if finished else 0.0,
        "jobs": jobs,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--latency", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "executor-results.json")
    args = parser.parse_args()
    from tests.slurm_cluster import running_slurm_cluster

    with tempfile.TemporaryDirectory(prefix="pro-bench-executors-") as folder:
        jobs_bench.setup_platform(Path(folder))
        admin = jobs_bench.publish(jobs_bench.TRIVIAL_APP)
        results = {}
        port = free_port()
        node = start_node(port, PRO_EXECUTOR="local")
        try:
            results["local"] = measure(admin, args.jobs, args.latency)
        finally:
            stop_node(node)
        with running_slurm_cluster() as cluster:
            node = start_node(
                port,
                PRO_EXECUTOR="slurm",
                PRO_SLURM_CONF=str(cluster.conf),
                PRO_EXECUTOR_API_URL=f"http://127.0.0.1:{port}",
                PRO_EXECUTOR_POLL_SECONDS="0.5",
                PRO_JOB_MEMORY_MB="1024",
            )
            try:
                results["slurm"] = measure(admin, args.jobs, args.latency)
                results["slurm"]["nodes"] = len(cluster.nodes)
            finally:
                stop_node(node)
    print(f"{'executor':10} {'submit->running p50':>20} {'p95':>8} {'jobs/s':>8} {'failed':>7}")
    for name, row in results.items():
        latency = row["submit_to_running"]
        print(
            f"{name:10} {latency['median'] * 1000:17.0f} ms {latency['p95'] * 1000:5.0f} ms"
            f" {row['throughput_jobs_per_s']:8.2f} {row['failed']:7d}"
        )
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
