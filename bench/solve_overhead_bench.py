"""HiGHS's own run time inside a job beside a direct highspy run of the same model (issue 14, point 5).

    .venv/bin/python bench/solve_overhead_bench.py [--repeats 15] [--baseline HEAD] [--sandboxed-direct]
        [--all] [--extra some.mps ...] [--synthetic-lp] [--out bench/solve-overhead-results.json]

For every instance of ``examples/instances`` whose direct run takes over ``--min-ms`` (50 ms; the
best of three runs), it measures the time HiGHS reports for its own run (``h.getRunTime()``),
``--repeats`` times, interleaved (the order of the sides turns every repeat, so that the load of
the machine hits each side alike), and reports the medians and the ratio of each side to the
direct run:

- direct: a fresh Python process that reads the model and calls ``h.run()``, its log written to
  ``/dev/null`` (HiGHS formats its log in both runs). It runs in a session of its own, as the
  sandbox does: Linux's scheduler (autogroups) shares the CPU between sessions first, so a
  process in this script's session would compete with everything started from the same terminal
  while the sandbox does not, and the comparison would flatter the job.
- job: the platform's solve path without the rest of the platform. The ``mps-solver`` example is
  packed and extracted as a worker does, and ``sessions.runtime.solve_runner`` is started through
  ``sessions.launcher`` (the bubblewrap sandbox, its cgroup, the control pipe, stdin for file
  requests) and runs the app's real ``run_highs`` wiring: the log streamed over stdout, progress
  over the control pipe, the interrupt checks, the job's time limit. This script plays the
  worker: it reads the log and the control pipe in threads (decoding and parsing each line, as
  the worker does), answers the file request, and polls the sandbox's usage every 0.5 s. The
  job's ``solve_seconds`` output is ``h.getRunTime()`` inside the sandbox.
- job@REF (``--baseline REF``): the same job with the ``sessions/runtime`` and ``pro_sdk`` of a
  git revision (e.g. ``HEAD`` before a change), measured in the same run as the working tree's.
- sandboxed direct (``--sandboxed-direct``): the direct script started through the launcher: the
  sandbox's cost alone, without the job's plumbing.

It checks every objective against ``optima.json`` and writes JSON. ``--synthetic-lp`` adds two
generated LPs of about 0.1 s (not shared instances; see :func:`synthetic_lps`), ``--extra`` any
MPS files; both are measured whatever their time. The ratios are of medians; the JSON also has
every sample. On a machine that other work keeps busy, single runs vary by tens of percent: use
many repeats, and read the sides measured in the same run against each other.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "examples" / "instances"
APP_FOLDER = ROOT / "examples" / "mps-solver"
TIME_LIMIT = 3600.0  # a job's limit: HiGHS gets it as its time_limit option, as in any job
WATCH_TICK = 0.2  # the worker's tick: a wait for the process...
USAGE_EVERY = 0.5  # ...and, every FLUSH_EVERY, a look at the sandbox's usage

DIRECT = """
import json, sys, highspy
h = highspy.Highs()
h.setOptionValue("log_to_console", False)
h.setOptionValue("log_file", "/dev/null")
h.readModel(sys.argv[1])
h.run()
info = h.getInfo()
print(json.dumps({"seconds": h.getRunTime(), "status": h.modelStatusToString(h.getModelStatus()),
                  "objective": info.objective_function_value}))
"""


def setup(data_dir: Path) -> None:
    os.environ.update({"PRO_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "pro_portal.settings"})
    for name in ("DATABASE_URL", "REDIS_URL", "PRO_STORAGE_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()  # the launcher reads its settings; no database is used


def app_archive() -> bytes:
    """The mps-solver example as the package a worker extracts (unencrypted: no key is needed here)."""
    from sessions.runtime import package
    from sessions.runtime.loader import load_app
    from sessions.runtime.manifest import read_author_manifest, validate_manifest

    author = read_author_manifest(APP_FOLDER)
    app = load_app(APP_FOLDER, validate_manifest(author, require_interface=False))
    manifest = validate_manifest({**author, "interface": app.describe()})
    return package.build_archive(APP_FOLDER, manifest.to_dict())


def runtime_of(ref: str, folder: Path) -> Path:
    """A folder holding the ``sessions/runtime`` and ``pro_sdk`` of git revision ``ref`` (what a sandbox mounts)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "sessions/__init__.py", "sessions/runtime", "pro_sdk"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def direct_run(model: Path) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", DIRECT, str(model)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
        start_new_session=True,  # a scheduling group of its own, like the sandbox (see the docstring)
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def sandboxed_direct_run(model: Path) -> dict:
    """The direct script started through the launcher: the sandbox and its cgroup, none of the job's plumbing."""
    from sessions import launcher

    workdir = launcher.new_workdir("bench-direct")
    (workdir / "bench_direct.py").write_text(DIRECT)
    shutil.copyfile(model, workdir / model.name)
    spec = launcher.LaunchSpec(
        name=workdir.name,
        interpreter=sys.executable,
        module="bench_direct",  # found in the working folder, python -m's first path
        args=[f"{launcher.work_path(workdir)}/{model.name}"],
        workdir=workdir,
        memory_limit_mb=2048,
    )
    try:
        completed = launcher.run(spec, timeout=600)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the sandboxed direct run failed: {completed.stdout}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


class Job:
    """One solve through solve_runner in its sandbox, supervised as a worker does (without its database)."""

    def __init__(self, archive: bytes, model: Path):
        from sessions import launcher

        self.archive, self.model = archive, model
        self.storage_path = f"apps/mps-solver/data/{model.name}"
        self.workdir = launcher.new_workdir("bench-solve")
        self.lines: list[tuple[float, str]] = []
        self.points: list[dict] = []
        self.started = 0.0

    def _prepare(self) -> None:
        from sessions.runtime import package
        from sessions.runtime.case import CaseData, case_to_bytes

        package.extract_archive(self.archive, self.workdir / "app")
        case = CaseData(
            values={"model_file": self.storage_path}, types={"model_file": "str"}, kinds={"model_file": "parameter"}
        )
        (self.workdir / "input.case").write_bytes(case_to_bytes(case))
        (self.workdir / "job.json").write_text(json.dumps({"procedure": "solve", "time_limit": TIME_LIMIT, "job": 0}))

    def run(self) -> dict:
        from sessions import launcher
        from sessions.runtime.case import read_case

        self._prepare()
        control_read, control_write = os.pipe()
        spec = launcher.LaunchSpec(
            name=self.workdir.name,
            interpreter=sys.executable,  # the built-in runtime is the platform's own interpreter
            module="sessions.runtime.solve_runner",
            args=[launcher.work_path(self.workdir)],
            workdir=self.workdir,
            env={"PRO_CONTROL_FD": str(control_write)},
            memory_limit_mb=2048,
            pass_fds=(control_write,),
            stdin=True,
        )
        self.started = time.monotonic()
        try:
            self.process = launcher.launch(spec)
        finally:
            os.close(control_write)
        readers = [
            threading.Thread(target=self._read_log, daemon=True),
            threading.Thread(target=self._read_control, args=(control_read,), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            looked = time.monotonic()
            while True:
                try:
                    self.process.wait(timeout=WATCH_TICK)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - looked >= USAGE_EVERY:
                        looked = time.monotonic()
                        self.process.usage()
            for reader in readers:
                reader.join(timeout=5)
            if self.process.returncode != 0:
                raise RuntimeError(f"the job failed: {''.join(line for _, line in self.lines)[-2000:]}")
            result = read_case((self.workdir / "result.case").read_bytes()).values
            return {
                "seconds": float(result["solve_seconds"]),
                "status": result["status"],
                "objective": float(result["objective"]),
                "log_lines": len(self.lines),
                "progress_points": len(self.points),
            }
        finally:
            self.process.cleanup()

    def _read_log(self) -> None:
        for raw in iter(lambda: self.process.stdout.readline(64 * 1024), b""):
            self.lines.append((time.monotonic() - self.started, raw.decode("utf-8", "replace")))

    def _read_control(self, fd: int) -> None:
        from sessions import launcher

        with os.fdopen(fd, "r") as control:
            for line in control:
                message = json.loads(line)
                if message.get("type") == "progress":
                    self.points.append(message)
                elif message.get("type") == "fetch":
                    target = self.workdir / "files" / message["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.model, target)
                    answer = {"ok": True, "local": f"{launcher.work_path(self.workdir)}/files/{message['path']}"}
                    self.process.stdin.write((json.dumps(answer) + "\n").encode())
                    self.process.stdin.flush()


def job_runner(archive: bytes, runtime_root: Path | None) -> Callable[[Path], dict]:
    """A job run with the working tree's runtime, or with the one under ``runtime_root``."""

    def run(model: Path) -> dict:
        from django.test import override_settings

        if runtime_root is None:
            return Job(archive, model).run()
        with override_settings(BASE_DIR=runtime_root):  # what the sandbox mounts as /pro/lib
            return Job(archive, model).run()

    return run


def synthetic_lps(folder: Path) -> list[Path]:
    """Two generated LPs of about 0.1 s (not shared instances), written as MPS files in ``folder``.

    - a sparse random LP (5000 rows, 10000 columns, 2 nonzeros a column): some 6000 simplex
      iterations of about 15 us each, where a check that crosses into Python at every iteration
      (a few us) shows most;
    - a transport LP (120 sources, 200 sinks): some 500 iterations of about 150 us each.
    """
    import highspy
    import numpy as np

    rng = np.random.default_rng(3)
    inf = highspy.kHighsInf
    rows, cols, per_col = 5000, 10000, 2
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = cols, rows
    lp.col_cost_ = -rng.uniform(1, 10, cols)
    lp.col_lower_, lp.col_upper_ = np.zeros(cols), np.full(cols, inf)
    lp.row_lower_, lp.row_upper_ = np.full(rows, -inf), rng.uniform(10, 100, rows)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, cols * per_col + 1, per_col, dtype=np.int32)
    picks = [np.sort(rng.choice(rows, per_col, replace=False)) for _ in range(cols)]
    lp.a_matrix_.index_ = np.concatenate(picks).astype(np.int32)
    lp.a_matrix_.value_ = rng.uniform(1, 10, cols * per_col)
    sparse = highspy.Highs()
    sparse.setOptionValue("output_flag", False)
    sparse.passModel(lp)
    sparse_path = folder / "synthetic-sparse-lp-5000x10000.mps"
    sparse.writeModel(str(sparse_path))

    rng = np.random.default_rng(1)
    m, n = 120, 200
    supply, demand, cost = rng.uniform(50, 150, m), rng.uniform(20, 80, n), rng.uniform(1, 20, (m, n))
    demand *= supply.sum() * 0.9 / demand.sum()
    transport = highspy.Highs()
    transport.setOptionValue("output_flag", False)
    transport.addVars(m * n, np.zeros(m * n), np.full(m * n, inf))
    transport.changeColsCost(m * n, np.arange(m * n, dtype=np.int32), cost.ravel())
    for i in range(m):
        transport.addRow(-inf, supply[i], n, np.arange(i * n, (i + 1) * n, dtype=np.int32), np.ones(n))
    for j in range(n):
        transport.addRow(demand[j], inf, m, np.arange(j, m * n, n, dtype=np.int32), np.ones(m))
    transport_path = folder / f"synthetic-transport-{m}x{n}.mps"
    transport.writeModel(str(transport_path))
    return [sparse_path, transport_path]


def measure(models: list[Path], sides: dict[str, Callable[[Path], dict]], repeats: int) -> dict[str, dict]:
    runs: dict[str, dict[str, list[dict]]] = {m.name: {side: [] for side in sides} for m in models}
    names = list(sides)
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        if (repeat // len(names)) % 2:
            order.reverse()
        for model in models:
            for side in order:
                runs[model.name][side].append(sides[side](model))
        print(f"repeat {repeat + 1}/{repeats} done", flush=True)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--min-ms", type=float, default=50.0, help="measure the instances whose direct run is longer")
    parser.add_argument("--all", action="store_true", help="every instance, however short")
    parser.add_argument("--extra", nargs="*", default=[], help="more MPS files to measure")
    parser.add_argument("--synthetic-lp", action="store_true", help="add two generated LPs of about 0.1 s")
    parser.add_argument("--baseline", metavar="REF", help="also measure jobs with the runtime of this git revision")
    parser.add_argument("--sandboxed-direct", action="store_true", help="also measure the direct run in a sandbox")
    parser.add_argument("--out", default=str(ROOT / "bench" / "solve-overhead-results.json"))
    args = parser.parse_args()
    optima = json.loads((INSTANCES / "optima.json").read_text())
    with tempfile.TemporaryDirectory(prefix="pro-solve-bench-") as folder:
        setup(Path(folder))
        from sessions import launcher

        archive = app_archive()
        sides: dict[str, Callable[[Path], dict]] = {"direct": direct_run, "job": job_runner(archive, None)}
        if args.baseline:
            sides[f"job@{args.baseline}"] = job_runner(archive, runtime_of(args.baseline, Path(folder) / "baseline"))
        if args.sandboxed_direct:
            sides["sandboxed direct"] = sandboxed_direct_run
        models = sorted(INSTANCES.glob("*.mps")) + [Path(p).resolve() for p in args.extra]
        if args.synthetic_lp:
            models += synthetic_lps(Path(folder))
        chosen = []
        for model in models:  # which instances run long enough: the best of three direct runs (load only adds)
            probe = min(direct_run(model)["seconds"] for _ in range(3))
            keep = args.all or probe * 1000 > args.min_ms or model.parent != INSTANCES
            print(f"{model.name:32} direct {probe * 1000:8.1f} ms: {'measured' if keep else 'skipped'}", flush=True)
            if keep:
                chosen.append(model)
        runs = measure(chosen, sides, args.repeats)
        sandbox = launcher.mode()
    rows = []
    for model in chosen:
        known = optima.get(model.name)
        row: dict = {"instance": model.name, "shared": model.parent == INSTANCES, "sides": {}}
        for side, results in runs[model.name].items():
            median = statistics.median(r["seconds"] for r in results)
            row["sides"][side] = {
                "median_s": median,
                "min_s": min(r["seconds"] for r in results),
                "samples_s": [r["seconds"] for r in results],
                "statuses": sorted({r["status"] for r in results}),
                "objectives_match_optimum": known is None
                or all(abs(r["objective"] - known) <= 1e-6 * max(1.0, abs(known)) for r in results),
            }
            if "log_lines" in results[0]:
                row["sides"][side]["log_lines"] = statistics.median(r["log_lines"] for r in results)
                row["sides"][side]["progress_points"] = statistics.median(r["progress_points"] for r in results)
        direct = row["sides"]["direct"]["median_s"]
        row["ratios"] = {side: values["median_s"] / direct for side, values in row["sides"].items() if side != "direct"}
        rows.append(row)
    print(f"\nsandbox: {sandbox}; medians of {args.repeats} interleaved runs of h.getRunTime(); ratio = side / direct")
    others = [side for side in sides if side != "direct"]
    print(f"{'instance':32} {'direct':>9}" + "".join(f" {side:>16} {'ratio':>7}" for side in others) + "  optima")
    for row in rows:
        line = f"{row['instance']:32} {row['sides']['direct']['median_s'] * 1000:6.1f} ms"
        for side in others:
            line += f" {row['sides'][side]['median_s'] * 1000:13.1f} ms {row['ratios'][side]:6.3f}x"
        line += "  " + ("ok" if all(s["objectives_match_optimum"] for s in row["sides"].values()) else "MISMATCH")
        print(line)
    result = {
        "what": "h.getRunTime() of the same model: in a job (sandbox, solve_runner, run_highs) beside a direct highspy run",
        "sandbox": sandbox,
        "repeats": args.repeats,
        "min_ms": args.min_ms,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "baseline": args.baseline,
        "instances": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
