"""Failover timings over several runs, on this machine (not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/failover_bench.py [--runs 5]

It runs the multi-process failover tests (``tests/test_cluster_failover.py``: real nodes as
process groups, heartbeat 1 s) ``--runs`` times; each run records its timings, measured from
the SIGKILL:

- kill → requeue: until the killed node's running job is back in the queue (or claimed again);
- kill → restart: until the job's second attempt has started its solve on the other node;
- kill → completion: until the job has succeeded (its solve takes 12 s from its start);
- kill → new master: until another node holds the master lease.

It prints a table (median, min, max over the runs, in seconds and in heartbeat intervals) and
writes JSON next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_cluster_failover.py::test_a_job_whose_node_is_killed_mid_solve_completes_on_another_node"
MASTER = "tests/test_cluster_failover.py::test_a_new_master_takes_over_when_the_master_is_killed"
FIGURES = ["kill_to_requeue", "kill_to_restart", "kill_to_completion", "kill_to_new_master"]


def timings_file() -> Path:
    return ROOT / "var" / "test" / "test-artifacts" / "failover-timings.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if "postgres" not in os.environ.get("DATABASE_URL", ""):
        print("Set DATABASE_URL to a PostgreSQL server: the nodes of a cluster share it.", file=sys.stderr)
        return 2
    timings = timings_file()
    timings.unlink(missing_ok=True)
    pytest = [str(Path(sys.executable).with_name("pytest")), "-q", "-p", "no:cacheprovider", TESTS, MASTER]
    for run in range(1, args.runs + 1):
        done = subprocess.run(pytest, cwd=ROOT, capture_output=True, text=True)
        print(f"run {run}: {done.stdout.strip().splitlines()[-1]}")
        if done.returncode != 0:
            print(done.stdout[-5000:], file=sys.stderr)
            return 1
    rows = [json.loads(line) for line in timings.read_text().splitlines()]
    heartbeat = rows[0]["heartbeat"]
    results = {}
    print(f"\nheartbeat {heartbeat:g} s, {args.runs} runs\n")
    print("| from the SIGKILL to | median s | min s | max s | median, in intervals |")
    print("| --- | --- | --- | --- | --- |")
    for figure in FIGURES:
        values = [row[figure] for row in rows if figure in row]
        results[figure] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }
        r = results[figure]
        label = figure.removeprefix("kill_to_").replace("_", " ")
        print(f"| {label} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {r['median'] / heartbeat:.1f} |")
    out = ROOT / "bench" / "failover_results.json"
    out.write_text(json.dumps({"heartbeat": heartbeat, "runs": args.runs, "results": results}, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
