"""The sandbox's own cost: a process started through the launcher, sandboxed or not (not a test).

    .venv/bin/python bench/sandbox_bench.py [--runs 40] [--out bench/sandbox_results.json]

Each run starts the runtime's Python on a module that exits at once and waits for its end,
three ways, interleaved so that the machine's state favours none:

- bare: ``subprocess.run`` of the interpreter (what a supervisor cost before the launcher);
- launcher, PRO_SANDBOX=off: the launcher's bookkeeping without a sandbox;
- launcher, bubblewrap: namespaces, mounts, the cgroup, the whole contract.

It also times a start that imports what every solve imports (the SDK, numpy, highspy), where
the sandbox's share of a real job's start shows. For the whole path (submit to the solve
running, a session's launch), run bench/jobs_bench.py and bench/sessions_bench.py with and
without PRO_SANDBOX=off.
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
EMPTY = "pass"
SOLVER_IMPORTS = "import numpy, highspy, pro_sdk"


def setup(data_dir: Path) -> None:
    os.environ.update({"PRO_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "pro_portal.settings"})
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def bare(code: str, workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=workdir, env={"PYTHONPATH": str(ROOT)}, check=True)
    return time.perf_counter() - started


def through_launcher(code: str, workdir: Path, sandbox: str) -> float:
    from django.conf import settings

    from sessions import launcher

    settings.PRO_SANDBOX = sandbox
    folder = launcher.new_workdir("bench")
    (folder / "app").mkdir()
    (folder / "app" / "probe.py").write_text(code + "\n")
    spec = launcher.LaunchSpec(
        name=folder.name,
        interpreter=sys.executable,
        module="probe",
        workdir=folder,
        env={
            "PYTHONPATH": f"{launcher.bwrap.INSIDE_LIB if sandbox != 'off' else ROOT}:{launcher.work_path(folder)}/app"
        },
        memory_limit_mb=1024,
    )
    started = time.perf_counter()
    completed = launcher.run(spec, timeout=60)
    elapsed = time.perf_counter() - started
    assert completed.returncode == 0, completed.stdout + completed.stderr
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    return elapsed


def measure(runs: int, workdir: Path) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {}
    for label, code in (("empty", EMPTY), ("solver imports", SOLVER_IMPORTS)):
        times: dict[str, list[float]] = {"bare": [], "launcher off": [], "launcher bubblewrap": []}
        for _ in range(runs):
            times["bare"].append(bare(code, workdir))
            times["launcher off"].append(through_launcher(code, workdir, "off"))
            times["launcher bubblewrap"].append(through_launcher(code, workdir, "bubblewrap"))
        results[label] = times
    return {
        label: {way: round(statistics.median(values) * 1000, 1) for way, values in times.items()}
        for label, times in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "bench" / "sandbox_results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as folder:
        setup(Path(folder))
        from sessions.launcher.cgroups import limits_available

        medians = measure(args.runs, Path(folder))
        hard_limits = limits_available()
    print(f"median start-to-end of a process, ms ({args.runs} runs each; cgroup limits: {hard_limits})")
    print(f"{'':16} {'bare':>8} {'off':>8} {'bwrap':>8} {'sandbox cost':>13}")
    for label, row in medians.items():
        cost = row["launcher bubblewrap"] - row["launcher off"]
        print(
            f"{label:16} {row['bare']:8.1f} {row['launcher off']:8.1f} {row['launcher bubblewrap']:8.1f} {cost:+13.1f}"
        )
    Path(args.out).write_text(json.dumps({"median_ms": medians, "cgroup_limits": hard_limits}, indent=2) + "\n")


if __name__ == "__main__":
    main()
