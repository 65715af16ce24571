"""A hostile publisher's app: it tries to reach what its sandbox must hide, and says what it got.

The tests copy this folder, write the host's real paths and addresses into ``targets.json``
and publish the copy. The same probes run at import (during verification, and in every solve
and session), in a solve job and in a data-session procedure; the outcome comes back in the
``report`` output (JSON: ``{"attempts": {...}, "facts": {...}}``) and in the job log. At import
the app can only speak by failing: it raises with its report when an attempt succeeded (or
when ``targets.json`` asks it to report anyway), so a verified version proves nothing leaked.
"""

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hostile_probes import attempt, facts, probe, succeeded

from pro_sdk import App, Button, Field

TARGETS_FILE = Path(__file__).with_name("targets.json")
TARGETS = json.loads(TARGETS_FILE.read_text()) if TARGETS_FILE.is_file() else {}

# The tests set HOSTILE_PACKING while they pack the folder: packing imports the app outside any sandbox.
if TARGETS and not os.environ.get("HOSTILE_PACKING"):
    at_import = probe(TARGETS)
    if TARGETS.get("report_at_import") or succeeded(at_import):
        raise RuntimeError("HOSTILE REPORT " + json.dumps({"attempts": at_import, "facts": facts()}))

app = App("hostile", title="Hostile app")
report = app.output("report", type="str", title="What the app got")
step_mb = app.scalar("step_mb", type="int", default=5, title="MB the memory hog takes at a time")


def _report(attempts: dict[str, str]) -> str:
    return json.dumps({"attempts": attempts, "facts": facts()})


# ---------------------------------------------------------------- in a data session


def _session_api_client():
    """The session's own API client (and its ticket), found in memory as any code could."""
    return next(o for o in gc.get_objects() if type(o).__name__ == "ApiClient")


def _read_storage_through_the_api(path: str) -> str:
    data = _session_api_client().get_bytes(f"storage/{path}")
    return f"SUCCEEDED: read {len(data)} bytes: {data[:40]!r}"


@app.procedure(title="Probe from the session")
def inspect(data):
    attempts = probe(TARGETS)
    if "other_user_storage_path" in TARGETS:
        path = TARGETS["other_user_storage_path"]
        attempts["read another user's file with the session's ticket"] = attempt(_read_storage_through_the_api, path)
    data["report"] = _report(attempts)


# ---------------------------------------------------------------- in a solve job


def _leave_children() -> None:
    """A ``setsid`` child and a double-forked grandchild: both leave the solve's process group."""
    subprocess.Popen(["sleep", "600"], start_new_session=True)
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "600"])  # noqa: S606 - hostile on purpose
        os._exit(0)
    os.waitpid(first, 0)


@app.solve(title="Probe from a solve")
def inspect_solve(data, ctx):
    attempts = probe(TARGETS)
    if "other_user_storage_path" in TARGETS:
        path = TARGETS["other_user_storage_path"]
        attempts["fetch another user's file through the worker"] = attempt(ctx.local_path, path)
    data["report"] = _report(attempts)
    ctx.log("HOSTILE REPORT " + data["report"])
    _leave_children()
    ctx.log("left two sleep children behind")
    time.sleep(1.5)  # long enough for the tests to see the children on the host


@app.solve(title="Flood the log")
def flood(data, ctx):
    """150 MB of log, as fast as the pipe takes it."""
    chunk = ("x" * 1023 + "\n") * 1024
    for _ in range(150):
        sys.stdout.write(chunk)
    sys.stdout.flush()
    data["report"] = "flooded"


@app.solve(title="Fork bomb")
def fork_bomb(data, ctx):
    """Every process forks for ever, the children too."""
    while True:
        with contextlib.suppress(OSError):  # BlockingIOError when the sandbox is full: keep trying
            os.fork()


HOG = """
import sys, time
step = int(sys.argv[1]) * 1024 * 1024
blocks = []
while len(blocks) * step < 600 * 1024 * 1024:  # 600 MB in all, each byte touched
    blocks.append(b"\\x01" * step)
    time.sleep(0.05)
time.sleep(600)
"""


@app.solve(title="Hog memory in a child")
def hog(data, ctx):
    """The solve process stays small; a child it starts takes 600 MB, ``step_mb`` at a time."""
    child = subprocess.Popen([sys.executable, "-c", HOG, str(data["step_mb"])])
    ctx.log(f"child {child.pid} started")
    child.wait()
    raise RuntimeError(f"the child ended with code {child.returncode}")


@app.solve(title="Forked workers")
def forked_workers(data, ctx):
    """Not hostile: 150 MB of data, then four forked workers that share it (150 MB in all)."""
    table = b"\x01" * (150 * 1024 * 1024)
    workers = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            time.sleep(3)  # a worker reading ``table``
            os._exit(0)
        workers.append(pid)
    for pid in workers:
        os.waitpid(pid, 0)
    data["report"] = f"{len(table) >> 20} MB shared by {len(workers)} workers"


app.page("Hostile", [Field(report), Button(inspect), Button(inspect_solve)])


# ---------------------------------------------------------------- links left for the host


@app.solve(title="Swap the result for a link")
def swap_result(data, ctx):
    """At exit, after the runner wrote result.case: replace it by a link to a host secret (the
    runner ends with os._exit, past atexit: the app takes that over too)."""
    import atexit

    def swap() -> None:
        if not os.path.islink("result.case"):
            os.remove("result.case")
            os.symlink(TARGETS["read"]["secret key"], "result.case")
            os.remove("outcome.json")
            os.mkfifo("outcome.json")  # whoever opens it to read waits for a writer that never comes

    exit_now = os._exit

    def swap_then_exit(code: int) -> None:
        swap()
        exit_now(code)

    atexit.register(swap)
    os._exit = swap_then_exit
    data["report"] = "the result will be a link"


@app.solve(title="Plant a link where the worker writes")
def plant_link(data, ctx):
    """Make the worker's copy of a storage file land on a host file (through a link in files/)."""
    path = TARGETS["own_storage_path"]
    local = Path("files") / path
    local.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(TARGETS["host_victim"], local)
    try:
        ctx.local_path(path)
        data["report"] = "SUCCEEDED: the worker wrote through the link"
    except FileNotFoundError as exc:
        data["report"] = f"denied: {exc}"
