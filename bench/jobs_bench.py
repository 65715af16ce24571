"""Benchmark of the job queue, on this machine, in one run (not part of the test suite).

    .venv/bin/python bench/jobs_bench.py [--jobs 200] [--out bench/results.json]

It starts a throwaway platform (a temporary data folder, SQLite, a real solve worker process)
and measures, each beside the same work done by a bare subprocess:

- submit to running: from the submit call to the first line of the solve procedure, one job at a
  time on an idle node (``IDLE_PAUSE`` between them);
- end to end: from the submit call to the job seen succeeded;
- throughput: jobs per second for N trivial jobs;
- the solve time of every instance in examples/instances through the platform (mps-solver),
  beside a direct highspy call in this process (a rough figure: for HiGHS's own time in a job
  beside a direct run, interleaved and repeated, see bench/solve_overhead_bench.py).

It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIVIAL_APP = ROOT / "bench" / "trivial"
IDLE_PAUSE = 0.5  # seconds between the latency row's jobs, as between a user's clicks
REPEATS = 3  # solves of each instance; the table shows the best time of each side
INSTANCES = ROOT / "examples" / "instances"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": percentile(values, 0.95), "n": len(values)}


def setup_platform(data_dir: Path) -> None:
    os.environ.update(
        {
            "PRO_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "pro_portal.settings",
            "PRO_ADMIN_PASSWORD": "Bench-pass-123",
        }
    )
    for name in ("DATABASE_URL", "REDIS_URL", "PRO_STORAGE_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("pro_bootstrap", verbosity=0)


def publish(folder: Path):
    from django.contrib.auth import get_user_model

    from apps.catalog.keys import platform_private_key
    from apps.catalog.models import App
    from apps.catalog.services import app_publish
    from apps.catalog.verification import version_verify
    from sessions.runtime import package

    admin = get_user_model().objects.get(username="admin")
    blob, manifest = package.pack_folder(folder, platform_private_key().public_key())
    if not App.objects.filter(name=manifest.name).exists():
        version_verify(version_id=app_publish(user=admin, blob=blob).pk)
    return admin


def start_worker(capacity: int) -> subprocess.Popen:
    # As run_platform starts it (make run): its connections kept, unchecked between uses.
    env = {
        **os.environ,
        "PRO_MAX_SOLVES": str(capacity),
        "PRO_DB_CONN_MAX_AGE": "600",
        "PRO_DB_CONN_HEALTH_CHECKS": "false",
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "solve_worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_finished(job_ids: list[int], timeout: float = 600, every: float = 0.005) -> dict[int, float]:
    """Poll until every job ended; return when each was first seen ended (within ``every``)."""
    from sessions.models import FINISHED_STATES, Job

    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(job_ids) and time.monotonic() < deadline:
        for job_id, state in Job.objects.filter(pk__in=[j for j in job_ids if j not in seen]).values_list(
            "pk", "state"
        ):
            if state in FINISHED_STATES:
                seen[job_id] = time.time()
        time.sleep(every)
    return seen


def first_line_time(job) -> float:
    from sessions.jobs import job_log

    for line in job_log(job)[0].splitlines():
        if line.startswith("entered "):
            return float(line.split()[1])
    raise RuntimeError(f"job {job.pk} did not log its start: {job.error_message}")


def bare_run(app_dir: Path, procedure: str, extra_env: dict | None = None) -> tuple[float, float]:
    """The same work by a bare subprocess: start Python, import the app, run the procedure."""
    code = (
        "import sys, time; t0=time.time(); from sessions.runtime.loader import load_app; from sessions.runtime.sdk import SolveContext;"
        f"app=load_app({str(app_dir)!r}); d=app.new_data(); app.run({procedure!r}, d, SolveContext(echo=True))"
    )
    started = time.time()
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(extra_env or {})},
        check=True,
    ).stdout
    ended = time.time()
    entered = next(float(line.split()[1]) for line in output.splitlines() if line.startswith("entered "))
    return entered - started, ended - started


def node_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / tick, idle / tick


def process_cpu(pid: int) -> float:
    """CPU seconds a process (all its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_trivial(admin, count: int, worker_pid: int) -> dict:
    from sessions.jobs import job_submit
    from sessions.models import Job

    to_running, end_to_end = [], []
    for _ in range(20):  # one at a time, on an idle node (a pause after each: the warm pool refills): latency
        time.sleep(IDLE_PAUSE)
        submitted = time.time()
        job = job_submit(user=admin, app_name="bench-trivial", procedure="solve")
        finished = wait_finished([job.pk])[job.pk]
        job.refresh_from_db()
        to_running.append(first_line_time(job) - submitted)
        end_to_end.append(finished - submitted)
    bare = [bare_run(TRIVIAL_APP, "solve") for _ in range(20)]
    started, cpu_before, worker_before = time.time(), node_cpu(), process_cpu(worker_pid)
    bench_before = process_cpu(os.getpid())
    ids = [job_submit(user=admin, app_name="bench-trivial", procedure="solve").pk for _ in range(count)]
    finished = wait_finished(ids, every=0.05)  # seldom: the bench's queries take the node's CPU too
    elapsed = max(finished.values()) - started
    busy, idle = (after - before for after, before in zip(node_cpu(), cpu_before, strict=True))
    worker_cpu, bench_cpu = process_cpu(worker_pid) - worker_before, process_cpu(os.getpid()) - bench_before
    failed = Job.objects.filter(pk__in=ids).exclude(state="succeeded").count()
    bare_started = time.time()
    for _ in range(count // 10):
        bare_run(TRIVIAL_APP, "solve")
    bare_rate = (count // 10) / (time.time() - bare_started)
    return {
        "submit_to_running": summary(to_running),
        "bare_start_to_running": summary([b[0] for b in bare]),
        "end_to_end": summary(end_to_end),
        "bare_end_to_end": summary([b[1] for b in bare]),
        "throughput_jobs_per_s": count / elapsed,
        "bare_throughput_per_s_one_at_a_time": bare_rate,
        # Where the machine's CPU went during the throughput run, per job: the solve worker
        # process, the bench's submissions (as a web tier's would be), and the rest (the fork
        # server and the jobs' own processes, the kernel); and how idle the machine stayed.
        "cpu_ms_per_job": {
            "machine": 1000 * busy / count,
            "worker": 1000 * worker_cpu / count,
            "submissions": 1000 * bench_cpu / count,
            "idle_share": idle / (busy + idle),
        },
        "jobs": count,
        "failed": failed,
    }


def bench_instances(admin) -> list[dict]:
    import highspy
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from sessions.cases import case_load
    from sessions.jobs import job_submit

    rows = []
    for model in sorted(INSTANCES.glob("*.mps")):
        path = f"apps/mps-solver/data/{model.name}"
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(model.read_bytes()))
        direct_times, platform_times, ends = [], [], []
        for _ in range(REPEATS):
            highs = highspy.Highs()
            # Logging on (to a file, not this table), as the platform logs every solve.
            highs.setOptionValue("log_to_console", False)
            highs.setOptionValue("log_file", os.devnull)
            highs.readModel(str(model))
            started = time.perf_counter()
            highs.run()
            direct_times.append(time.perf_counter() - started)
            submitted = time.time()
            job = job_submit(user=admin, app_name="mps-solver", procedure="solve", input_values={"model_file": path})
            ends.append(wait_finished([job.pk])[job.pk] - submitted)
            job.refresh_from_db()
            result = case_load(job.result_case).to_json() if job.result_case else {}
            if result.get("solve_seconds") is not None:
                platform_times.append(result["solve_seconds"])
        rows.append(
            {
                "instance": model.name,
                "direct_solve_s": min(direct_times),
                "platform_solve_s": min(platform_times) if platform_times else None,
                "platform_end_to_end_s": statistics.median(ends),
                "objective": result.get("objective"),
                "direct_objective": highs.getInfo().objective_function_value,
                "state": job.state,
            }
        )
    return rows


def bench_case_format(cells: int = 10_000_000) -> dict:
    """Write and load a case of ``cells`` numeric cells (one table over 10 000 x 1 000)."""
    import numpy as np

    from sessions.runtime.case import CaseData, case_to_bytes, read_case

    rows = 10_000
    values = np.round(np.random.default_rng(0).random(cells) * 1000, 2)
    case = CaseData(
        sets={"i": [f"i{k}" for k in range(rows)], "j": [f"j{k}" for k in range(cells // rows)]},
        values={"cost": values},
        index={"cost": ["i", "j"]},
        types={"cost": "float"},
    )
    started = time.perf_counter()
    blob = case_to_bytes(case)
    written = time.perf_counter() - started
    loads = []
    for _ in range(5):
        started = time.perf_counter()
        loaded = read_case(blob)
        loads.append(time.perf_counter() - started)
    assert np.array_equal(loaded.values["cost"], values)
    return {"cells": cells, "bytes": len(blob), "write_s": written, "load": summary(loads)}


def print_table(trivial: dict, instances: list[dict], case_format: dict) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:8.1f} ms"

    print(f"{'measure':34} {'platform median':>16} {'p95':>12} {'bare median':>14} {'overhead':>12}")
    for label, mine, bare in (
        ("submit -> solve procedure running", "submit_to_running", "bare_start_to_running"),
        ("end to end, trivial job", "end_to_end", "bare_end_to_end"),
    ):
        m, b = trivial[mine], trivial[bare]
        print(
            f"{label:34} {ms(m['median']):>16} {ms(m['p95']):>12} {ms(b['median']):>14} {ms(m['median'] - b['median']):>12}"
        )
    print(
        f"throughput: {trivial['throughput_jobs_per_s']:.1f} jobs/s for {trivial['jobs']} jobs ({trivial['failed']} failed); bare subprocesses one at a time: {trivial['bare_throughput_per_s_one_at_a_time']:.1f}/s"
    )
    cpu = trivial["cpu_ms_per_job"]
    print(
        f"CPU per job meanwhile: {cpu['machine']:.1f} ms on the machine, of which the solve worker {cpu['worker']:.1f} ms"
        f" and the submissions {cpu['submissions']:.1f} ms; the machine {cpu['idle_share']:.0%} idle"
    )
    load = case_format["load"]["median"]
    print(
        f"case format: {case_format['cells']:,} cells, {case_format['bytes'] / 1e6:.1f} MB, loaded in {ms(load).strip()} (median of 5)"
    )
    print()
    print(
        f"{'instance':14} {'direct solve':>14} {'platform solve':>16} {'overhead':>10} {'end to end':>12} {'objective':>16}"
    )
    for row in instances:
        platform = row["platform_solve_s"]
        overhead = (
            f"{(platform / row['direct_solve_s'] - 1) * 100:8.1f} %" if platform and row["direct_solve_s"] > 0 else "-"
        )
        print(
            f"{row['instance']:14} {ms(row['direct_solve_s']):>14} {ms(platform) if platform is not None else '-':>16} {overhead:>10} "
            f"{ms(row['platform_end_to_end_s']):>12} {row['objective'] if row['objective'] is not None else row['state']:>16}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=2)
    parser.add_argument("--no-instances", action="store_true", help="only the trivial jobs (no instance solves)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pro-bench-") as folder:
        setup_platform(Path(folder))
        admin = publish(TRIVIAL_APP)
        worker = start_worker(args.capacity)
        try:
            trivial = bench_trivial(admin, args.jobs, worker.pid)
            wanted = not args.no_instances and (ROOT / "examples" / "mps-solver").is_dir()
            instances = bench_instances(admin) if wanted else []
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    case_format = bench_case_format()
    print_table(trivial, instances, case_format)
    Path(args.out).write_text(
        json.dumps({"trivial": trivial, "instances": instances, "case_format": case_format}, indent=2)
    )
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
