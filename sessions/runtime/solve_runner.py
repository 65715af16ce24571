"""The solve process: runs one solve procedure of an app on an input case. No Django here.

Started by a worker as ``python -m sessions.runtime.solve_runner WORKDIR`` in a process group
of its own. ``WORKDIR/job.json`` says what to run; the app is extracted in ``WORKDIR/app``;
the input case is ``WORKDIR/input.case``. It writes ``WORKDIR/result.case`` and
``WORKDIR/outcome.json``.

Channels with the supervising worker:
- stdout and stderr: the log (the app's prints, the solver's log, tracebacks);
- the file descriptor ``PRO_CONTROL_FD``: JSON lines to the worker (progress, file requests);
- stdin: JSON lines from the worker (answers to file requests);
- SIGUSR1: interrupt, i.e. stop the solver and keep the best solution found so far.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from . import netforward

EXIT_OK = 0
EXIT_APP_ERROR = 1
EXIT_BAD_JOB = 2
EXIT_MEMORY = 3


class ServerSolveContext:
    """The :class:`~sessions.runtime.sdk.SolveContext` of a job on a server."""

    def __init__(self, workdir: Path, time_limit: float | None, control: TextIO):
        from .sdk import SolveContext

        self._base = SolveContext(time_limit=time_limit)
        self.workdir = workdir
        self.control = control
        self.time_limit = time_limit

    def log(self, line: str) -> None:
        print(line, flush=True)

    def progress(
        self,
        fraction: float | None = None,
        message: str = "",
        objective: float | None = None,
        bound: float | None = None,
    ) -> None:
        self._send(
            {"type": "progress", "fraction": fraction, "message": message, "objective": objective, "bound": bound}
        )

    def request_stop(self) -> None:
        self._base.request_stop()

    def should_stop(self) -> bool:
        return self._base.should_stop()

    def remaining_time(self) -> float | None:
        return self._base.remaining_time()

    def local_path(self, storage_path: str) -> Path:
        """Ask the worker for a storage file; it checks the job owner's access and copies it here."""
        self._send({"type": "fetch", "path": storage_path})
        answer = json.loads(sys.stdin.readline() or "{}")
        if not answer.get("ok"):
            raise FileNotFoundError(answer.get("error") or f"storage has no file {storage_path!r}")
        return Path(answer["local"])

    def _send(self, message: dict[str, Any]) -> None:
        self.control.write(json.dumps(message) + "\n")
        self.control.flush()


def _write_outcome(workdir: Path, **outcome: Any) -> None:
    (workdir / "outcome.json").write_text(json.dumps(outcome))


def run(workdir: Path) -> int:
    from .case import apply_case, case_from_data, read_case, write_case
    from .loader import load_app
    from .manifest import validate_manifest

    spec = json.loads((workdir / "job.json").read_text())
    control = os.fdopen(int(os.environ["PRO_CONTROL_FD"]), "w", buffering=1)
    ctx = ServerSolveContext(workdir, spec.get("time_limit"), control)
    signal.signal(signal.SIGUSR1, lambda *_: ctx.request_stop())
    app_dir = workdir / "app"
    manifest = validate_manifest(json.loads((app_dir / "manifest.json").read_text()))
    app = load_app(app_dir, manifest)
    procedure = app.procedures.get(spec["procedure"])
    if procedure is None or not procedure.is_solve:
        _write_outcome(workdir, error=f"the app has no solve procedure {spec['procedure']!r}")
        return EXIT_BAD_JOB
    data = app.new_data()
    input_path = workdir / "input.case"
    if input_path.exists():
        apply_case(data, read_case(input_path.read_bytes()))
    procedure.function(data, ctx)
    with open(workdir / "result.case.tmp", "wb") as sink:
        write_case(sink, case_from_data(data, meta={"app": app.name, "procedure": procedure.name}))
    os.replace(workdir / "result.case.tmp", workdir / "result.case")
    status = ""
    for name in ("status", "solver_status"):
        if name in app.identifiers and isinstance(data[name], str):
            status = data[name]
            break
    _write_outcome(workdir, status=status, interrupted=ctx.should_stop())
    return EXIT_OK


def main() -> int:
    workdir = Path(sys.argv[1]).resolve()
    try:
        netforward.start_from_environment()
        return run(workdir)
    except MemoryError:
        _write_outcome(workdir, error="the solve ran out of memory")
        return EXIT_MEMORY
    except BaseException as exc:  # the app's own failure: report it verbatim, fail only this job
        traceback.print_exc()
        sys.stderr.flush()
        _write_outcome(workdir, error=f"{type(exc).__name__}: {exc}")
        return EXIT_APP_ERROR


if __name__ == "__main__":
    sys.exit(main())
