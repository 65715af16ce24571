"""What a job's solve path must still do now that it costs HiGHS next to nothing (issue 14, point 5).

During ``run_highs`` HiGHS's interrupt checks are periodic (a ticker thread) instead of at every
iteration, MIP progress reaches the context a few times a second, and the solve runner writes its
log and progress in batches. These tests check behaviour, never timing: a stop still stops an LP
and a MIP (the MIP keeping its incumbent), log and progress still arrive while a long solve runs,
the last progress is the final state, and the output keeps its order. Their timings are in
``bench/solve_overhead_bench.py``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import select
import textwrap
from pathlib import Path

import highspy
import pytest

from sessions import jobs
from sessions.models import Job, JobState
from sessions.runtime import highs
from sessions.runtime.sdk import SolveContext
from sessions.runtime.solve_runner import ServerSolveContext
from tests.helpers import publish_folder, wait_for, wait_until

INSTANCES = Path(__file__).parents[1] / "examples" / "instances"
OPTIMA = json.loads((INSTANCES / "optima.json").read_text())

# Models that HiGHS takes far longer to solve than any of these tests waits (minutes), built in
# well under a second: a facility location MIP with a first incumbent early, and a random LP.
MODELS = """
import highspy
import numpy as np


def facility_location(facilities=60, customers=240, seed=7):
    rng = np.random.default_rng(seed)
    fixed, capacity = rng.uniform(80, 160, facilities), rng.uniform(60, 140, facilities)
    demand, cost = rng.uniform(5, 25, customers), rng.uniform(0.5, 9, (facilities, customers))
    h, inf, n = highspy.Highs(), highspy.kHighsInf, facilities
    h.addVars(n, np.zeros(n), np.ones(n))  # open[f], then flow[f, c] at n + f * customers + c
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.full(n, highspy.HighsVarType.kInteger))
    h.addVars(n * customers, np.zeros(n * customers), np.full(n * customers, inf))
    everything = np.arange(n + n * customers, dtype=np.int32)
    h.changeColsCost(len(everything), everything, np.concatenate([fixed, cost.ravel()]))
    for c in range(customers):
        h.addRow(demand[c], demand[c], n, (n + np.arange(n) * customers + c).astype(np.int32), np.ones(n))
        for f in range(n):
            h.addRow(-inf, 0.0, 2, np.array([n + f * customers + c, f], dtype=np.int32), np.array([1.0, -demand[c]]))
    for f in range(n):
        flows = np.concatenate([n + f * customers + np.arange(customers), [f]]).astype(np.int32)
        h.addRow(-inf, 0.0, customers + 1, flows, np.concatenate([np.ones(customers), [-capacity[f]]]))
    return h


def random_lp(rows=20000, cols=40000, per_row=8, seed=3):
    rng = np.random.default_rng(seed)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = cols, rows
    lp.col_cost_ = -rng.uniform(1, 10, cols)
    lp.col_lower_, lp.col_upper_ = np.zeros(cols), np.full(cols, 10.0)
    lp.row_lower_, lp.row_upper_ = np.full(rows, -highspy.kHighsInf), rng.uniform(10, 100, rows)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.arange(0, rows * per_row + 1, per_row, dtype=np.int32)
    lp.a_matrix_.index_ = np.concatenate([np.sort(rng.choice(cols, per_row, replace=False)) for _ in range(rows)]).astype(np.int32)
    lp.a_matrix_.value_ = rng.uniform(1, 10, rows * per_row)
    h = highspy.Highs()
    h.passModel(lp)
    return h
"""

APP = '''
"""Long HiGHS solves through run_highs, and output that must keep its order."""

from pro_sdk import App, Button, Field, has_solution, run_highs

from solve_path_models import facility_location, random_lp

app = App("solve-path", title="Solve path")
status = app.output("status", type="str")
objective = app.output("objective")


def solve_with_highs(data, ctx, h):
    data["status"] = run_highs(h, ctx)
    if has_solution(h):
        data["objective"] = h.getInfo().objective_function_value
    ctx.log(f"done: {data['status']}, objective {data['objective']}")


@app.solve(title="MIP")
def mip(data, ctx):
    solve_with_highs(data, ctx, facility_location())


@app.solve(title="LP")
def lp(data, ctx):
    solve_with_highs(data, ctx, random_lp())


@app.solve(title="Ordered")
def ordered(data, ctx):
    for n in range(40):
        ctx.log(f"context line {n}")
        print(f"printed line {n}")
    ctx.log("last context line")
    raise ValueError("the end of the ordered output")


app.page("Solve", [Button(mip), Button(lp), Button(ordered), Field(status), Field(objective)])
'''


def models(folder: Path):
    """The app's model builders, imported here from a copy in ``folder``."""
    path = folder / "solve_path_models.py"
    path.write_text(textwrap.dedent(MODELS))
    spec = importlib.util.spec_from_file_location("solve_path_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- run_highs, in this process


class StopAfterFirstIteration(SolveContext):
    """Asks to stop once the simplex has logged its first iteration, from the solver's own callback."""

    def log(self, line: str) -> None:
        super().log(line)
        if re.match(r"^\s+0\s+\S+", line) and any("Iteration" in seen for seen in self.log_lines):
            self.request_stop()


def test_a_stop_reaches_a_running_lp(tmp_path):
    h = models(tmp_path).random_lp()
    ctx = StopAfterFirstIteration()
    assert highs.run(h, ctx) == "Interrupted by user"
    assert any("Iteration" in line for line in ctx.log_lines)
    # Outside run_highs the link checks at every iteration again, for who calls h.run() directly.
    h.clearSolver()
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kInterrupt
    assert h.getInfo().simplex_iteration_count <= 1


def test_an_apps_own_interrupt_handler_still_sees_every_iteration():
    h = highspy.Highs()
    calls = []
    h.cbSimplexInterrupt.subscribe(lambda event: calls.append(event.data_out.simplex_iteration_count))
    ctx = SolveContext()
    highs.attach(h, ctx)
    h.readModel(str(INSTANCES / "adlittle.mps"))
    assert highs.run(h, ctx) == "Optimal"
    assert len(calls) >= h.getInfo().simplex_iteration_count > 0


@pytest.mark.parametrize("name", ["egout.mps", "flugpl.mps", "p01.mps"])
def test_the_last_progress_report_is_the_final_state(name):
    h = highspy.Highs()
    ctx = SolveContext()
    highs.attach(h, ctx)
    h.readModel(str(INSTANCES / name))
    assert highs.run(h, ctx) == "Optimal"
    objectives = [p["objective"] for p in ctx.progress_points if p["objective"] is not None]
    assert objectives == sorted(objectives, reverse=True)  # a minimisation's incumbents only get better
    last = ctx.progress_points[-1]
    assert last["objective"] == pytest.approx(OPTIMA[name], rel=1e-6)
    assert last["fraction"] == pytest.approx(1.0)
    assert last["bound"] <= last["objective"] + 1e-6


# ---------------------------------------------------------------- the solve runner's context, on pipes


def read_available(fd: int, until: str, timeout: float = 10) -> str:
    """What the pipe ``fd`` carries, until ``until`` is in it (or ``timeout`` passes)."""
    text = ""
    while until not in text:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        text += os.read(fd, 65536).decode()
    return text


@pytest.fixture
def piped(monkeypatch):
    """A ServerSolveContext whose stdout and control channel are pipes, as in a sandbox: (ctx, stdout, control)."""
    out_read, out_write = os.pipe()
    control_read, control_write = os.pipe()
    stdout = io.TextIOWrapper(io.FileIO(out_write, "w"), encoding="utf-8", write_through=True)
    monkeypatch.setattr("sys.stdout", stdout)
    control = os.fdopen(control_write, "w", buffering=1)
    ctx = ServerSolveContext(Path("/nonexistent"), 60.0, control)
    yield ctx, stdout, out_read, control_read
    ctx.close()
    for stream in (stdout, control):
        stream.close()
    for fd in (out_read, control_read):
        os.close(fd)


def test_log_lines_arrive_without_a_flush_and_keep_their_order_with_prints(piped):
    ctx, stdout, out_read, _ = piped
    ctx.log("first held line")
    assert read_available(out_read, "first held line\n") == "first held line\n"  # live: the flusher wrote it
    ordered = ctx.ordered(stdout)
    ctx.log("second held line")
    print("a print", file=ordered)
    ctx.log("third held line")
    assert read_available(out_read, "third held line\n") == "second held line\na print\nthird held line\n"


def test_progress_arrives_and_a_file_request_comes_after_it(piped, monkeypatch):
    ctx, _, _, control_read = piped
    ctx.progress(0.1, "nodes 1", objective=10.0, bound=1.0)
    first = read_available(control_read, "\n")
    assert json.loads(first) == {
        "type": "progress",
        "fraction": 0.1,
        "message": "nodes 1",
        "objective": 10.0,
        "bound": 1.0,
    }
    for n in range(3):
        ctx.progress(None, f"step {n}", objective=float(n))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"ok": True, "local": "/pro/work/files/x"}) + "\n"))
    assert ctx.local_path("apps/x/data/x") == Path("/pro/work/files/x")
    messages = [json.loads(line) for line in read_available(control_read, '"fetch"').splitlines()]
    assert [m.get("message") or m["type"] for m in messages] == ["step 0", "step 1", "step 2", "fetch"]


def test_close_writes_what_is_pending(piped):
    ctx, _, out_read, control_read = piped
    ctx.log("pending line")
    ctx.progress(1.0, "done", objective=3.0, bound=3.0)
    ctx.close()
    assert "pending line\n" in read_available(out_read, "pending line\n")
    assert json.loads(read_available(control_read, "\n"))["message"] == "done"


# ---------------------------------------------------------------- jobs through the real queue


@pytest.fixture
def solve_path(alice, runtime, platform_public_key, tmp_path):
    folder = tmp_path / "solve-path"
    folder.mkdir()
    (folder / "manifest.toml").write_text(
        'name = "solve-path"\nversion = "1.0.0"\nruntime = "py311-highs"\nentry_point = "solve_path_model:app"\n'
        'title = "Solve path"\n'
    )
    (folder / "solve_path_models.py").write_text(textwrap.dedent(MODELS))
    (folder / "solve_path_model.py").write_text(textwrap.dedent(APP))
    version = publish_folder(alice, folder, platform_public_key)
    assert version.verification_state == "verified", version.verification_error
    return version


def submit(client, procedure: str) -> Job:
    response = client.post("/api/v1/jobs", {"app": "solve-path", "procedure": procedure}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def log_of(job: Job) -> str:
    return jobs.job_log(Job.objects.get(pk=job.pk))[0]


@pytest.mark.django_db(transaction=True)
def test_a_long_mip_shows_its_log_and_progress_live_and_keeps_its_incumbent(api, alice, solve_path, worker):
    client = api(alice)
    job = submit(client, "mip")

    def live() -> bool:
        current = Job.objects.get(pk=job.pk)
        assert current.state in (JobState.QUEUED, JobState.RUNNING), log_of(job)
        has_incumbent = any(p.get("objective") is not None for p in current.progress_points)
        return has_incumbent and "B&B Tree" in log_of(job)  # the header of HiGHS's branch-and-bound table

    wait_until(live, timeout=60, message="no live log or incumbent while the MIP runs")
    assert client.post(f"/api/v1/jobs/{job.pk}/interrupt").status_code == 200
    wait_for(job, JobState.SUCCEEDED, timeout=60)
    assert job.solver_status == "Interrupted by user (interrupted)"
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]
    assert result["status"] == "Interrupted by user" and result["objective"] > 0
    # The last progress point is HiGHS's last state: the incumbent returned, and a bound below it.
    last = job.progress_points[-1]
    assert last["objective"] == pytest.approx(result["objective"], rel=1e-9)
    assert last["bound"] < result["objective"]
    assert f"done: Interrupted by user, objective {result['objective']}" in log_of(job)


@pytest.mark.django_db(transaction=True)
def test_an_interrupt_stops_a_long_lp(api, alice, solve_path, worker):
    client = api(alice)
    job = submit(client, "lp")

    def iterating() -> bool:
        assert Job.objects.get(pk=job.pk).state in (JobState.QUEUED, JobState.RUNNING), log_of(job)
        return re.search(r"Iteration +Objective", log_of(job)) is not None

    wait_until(iterating, timeout=60, message="the simplex log did not arrive while the LP runs")
    assert client.post(f"/api/v1/jobs/{job.pk}/interrupt").status_code == 200
    wait_for(job, JobState.SUCCEEDED, timeout=60)
    assert job.solver_status == "Interrupted by user (interrupted)"
    assert "done: Interrupted by user" in log_of(job)


@pytest.mark.django_db(transaction=True)
def test_log_lines_prints_and_the_traceback_keep_their_order(api, alice, solve_path, worker):
    job = submit(api(alice), "ordered")
    wait_for(job, JobState.FAILED)
    assert job.error_message == "ValueError: the end of the ordered output"
    lines = [line for line in log_of(job).splitlines() if not line.startswith("---")]
    expected = [line for n in range(40) for line in (f"context line {n}", f"printed line {n}")]
    assert lines[: len(expected) + 2] == [*expected, "last context line", "Traceback (most recent call last):"]
