"""The solve process: runs one solve procedure of an app on an input case. No Django here.

Started by a worker as ``python -m sessions.runtime.solve_runner WORKDIR`` in a sandbox of its
own, or ahead of need with ``--pool`` (see :func:`main`). ``WORKDIR/job.json`` says what to run; the app is extracted in ``WORKDIR/app``;
the input case is ``WORKDIR/input.case``. It writes ``WORKDIR/result.case`` and
``WORKDIR/outcome.json``.

Channels with the supervising worker:
- stdout and stderr: the log (the app's prints, the solver's log, tracebacks);
- the file descriptor ``PRO_CONTROL_FD``: JSON lines to the worker (progress, file requests);
- stdin: JSON lines from the worker (answers to file requests);
- SIGUSR1: interrupt, i.e. stop the solver and keep the best solution found so far.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, TextIO

from . import netforward
from .warm import preload, wait_for_order, warm_imports

EXIT_OK = 0
EXIT_APP_ERROR = 1
EXIT_BAD_JOB = 2
EXIT_MEMORY = 3

# How long a log line or a progress message may wait for the ones after it: the log stays live
# (the worker itself stores it every 0.5 s) and a burst of lines costs one write, not one each.
# A write to the worker's pipe wakes its reader, and the solver's thread, which makes the write
# from HiGHS's callback, then often loses its CPU: with a flushed write per line of HiGHS's log
# and per progress message, the small MIPs of examples/instances spent a tenth to a fifth of
# their solve in those callbacks (the smallest LPs most of it), and were preempted 3 to 10 times
# as often as a direct run.
FLUSH_DELAY = 0.1
BATCH_CHARS = 64 * 1024  # pending text written at once, without waiting for FLUSH_DELAY


class _Batched:
    """Text for one stream, written in batches by the context's flusher thread (or at once when ``direct``)."""

    def __init__(self, stream: TextIO, wake: threading.Event):
        self.stream = stream
        self.wake = wake
        self.direct = False  # no flusher: after close(), in a forked child
        self.pending: list[str] = []
        self.size = 0
        # Re-entrant both, for an app's signal handler that logs or prints while its thread holds one.
        self.lock = threading.RLock()  # the pending list only: adding never waits for a write
        self.write_lock = threading.RLock()  # held while writing, so that what is written keeps its order
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self.fd = None

    def add(self, text: str) -> None:
        with self.lock:
            first = not self.pending
            self.pending.append(text)
            self.size += len(text)
            full = self.size >= BATCH_CHARS
        if full or self.direct:
            self.flush()
        elif first:
            self.wake.set()

    def flush(self, then: str = "") -> None:
        """Write what is pending, then ``then``."""
        with self.write_lock:
            with self.lock:
                text = "".join(self.pending) + then
                self.pending.clear()
                self.size = 0
            if not text:
                return
            if self.fd is None:
                self.stream.write(text)
                self.stream.flush()
                return
            self.stream.flush()  # what was written to the stream itself goes first
            # One write of the whole batch, resumed where a signal (SIGUSR1) cut it short: the
            # stream's own write would drop the rest of a partial write on an unbuffered pipe.
            data = memoryview(text.encode(self.stream.encoding or "utf-8", "backslashreplace"))
            while data:
                data = data[os.write(self.fd, data) :]


class _InOrder:
    """The solve's ``sys.stdout`` or ``sys.stderr``: writes the context's pending log lines before its own text.

    So an app's ``print()`` or a traceback never overtakes a log line that ``ctx.log`` holds back,
    and is still written at once. Everything else is the stream's own.
    """

    def __init__(self, stream: TextIO, log: _Batched):
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        with self._log.write_lock:
            self._log.flush()
            return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        self.write("".join(lines))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class ServerSolveContext:
    """The :class:`~sessions.runtime.sdk.SolveContext` of a job on a server.

    Its log lines (stdout) and progress messages (the control pipe) are written in batches by a
    thread, at most ``FLUSH_DELAY`` after they were made; :meth:`close` writes the last ones.
    """

    def __init__(self, workdir: Path, time_limit: float | None, control: TextIO):
        from .sdk import SolveContext

        self._base = SolveContext(time_limit=time_limit)
        self.workdir = workdir
        self.control = control
        self.time_limit = time_limit
        self._wake = threading.Event()
        self._closing = threading.Event()  # cuts the flusher's wait short: the end is not delayed
        self._closed = False
        self._log = _Batched(sys.stdout, self._wake)
        self._control = _Batched(control, self._wake)
        self._flusher = threading.Thread(target=self._flush_loop, name="solve-output", daemon=True)
        self._flusher.start()

    def log(self, line: str) -> None:
        self._log.add(f"{line}\n")

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

    def connection(self, name: str, *, engine: bool = False) -> Any:
        return self._base.connection(name, engine=engine)

    def local_path(self, storage_path: str) -> Path:
        """Ask the worker for a storage file; it checks the job owner's access and copies it here."""
        self._send({"type": "fetch", "path": storage_path}, now=True)
        answer = json.loads(sys.stdin.readline() or "{}")
        if not answer.get("ok"):
            raise FileNotFoundError(answer.get("error") or f"storage has no file {storage_path!r}")
        return Path(answer["local"])

    def _send(self, message: dict[str, Any], now: bool = False) -> None:
        line = json.dumps(message) + "\n"
        if now:
            self._control.flush(then=line)  # after the progress messages before it
        else:
            self._control.add(line)

    def flush(self) -> None:
        """Write the pending log lines and progress messages now."""
        self._log.flush()
        self._control.flush()

    def close(self) -> None:
        """Write what is pending and stop the flusher; later lines are written at once."""
        self._closed = True
        self._log.direct = self._control.direct = True
        self._closing.set()
        self._wake.set()
        if self._flusher.is_alive() and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)
        self.flush()

    def _flush_loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            if self._closed:
                break  # close() writes the rest
            if self._closing.wait(FLUSH_DELAY):  # the lines after the first one join it
                break  # close() writes the rest
            self._wake.clear()
            try:
                self.flush()
            except (OSError, ValueError):  # the worker is gone (a broken pipe): nobody reads any more
                return

    def ordered(self, stream: TextIO) -> TextIO:
        """``stream`` (the solve's stdout or stderr) made to write this context's pending log lines first."""
        return _InOrder(stream, self._log)  # type: ignore[return-value]  # a stand-in for the stream

    def forked(self) -> None:
        """In a forked child (multiprocessing): nothing pending, no flusher, every line written at once."""
        for channel in (self._log, self._control):
            channel.lock, channel.write_lock = threading.RLock(), threading.RLock()
            channel.pending, channel.size, channel.direct = [], 0, True


def _write_outcome(workdir: Path, **outcome: Any) -> None:
    (workdir / "outcome.json").write_text(json.dumps(outcome))


def run(workdir: Path) -> int:
    spec = json.loads((workdir / "job.json").read_text())
    control = os.fdopen(int(os.environ["PRO_CONTROL_FD"]), "w", buffering=1)
    ctx = ServerSolveContext(workdir, spec.get("time_limit"), control)
    sys.stdout, sys.stderr = ctx.ordered(sys.stdout), ctx.ordered(sys.stderr)
    os.register_at_fork(before=ctx.flush, after_in_child=ctx.forked)
    signal.signal(signal.SIGUSR1, lambda *_: ctx.request_stop())
    try:
        return _run_solve(workdir, spec, ctx)
    finally:
        ctx.close()  # the last log lines and progress, before any traceback and the exit


def _run_solve(workdir: Path, spec: dict[str, Any], ctx: ServerSolveContext) -> int:
    from .case import apply_case, case_from_data, read_case, write_case
    from .loader import load_app
    from .manifest import read_author_manifest, validate_manifest

    # ``app_dir``: a modeler's own app folder, solved locally by ``pro app run`` (its manifest.toml).
    app_dir = Path(spec.get("app_dir") or workdir / "app")
    if (app_dir / "manifest.json").exists():
        manifest = validate_manifest(json.loads((app_dir / "manifest.json").read_text()))
    else:
        manifest = validate_manifest(read_author_manifest(app_dir), require_interface=False)
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


def print_app_traceback(exc: BaseException, app_dir: Path) -> None:
    """The traceback of an app's failure as its modeler reads it: the app's files named from its
    own folder (``app/model.py``), the platform's frames above the app's left out."""
    runtime = str(Path(__file__).resolve().parent)
    shown = traceback.TracebackException.from_exception(exc)
    frames = [frame for frame in shown.stack if not frame.filename.startswith(runtime)]
    for frame in frames:
        if frame.filename.startswith(str(app_dir)):
            frame.filename = "app" + frame.filename[len(str(app_dir)) :]
    shown.stack = traceback.StackSummary.from_list(frames)
    print("".join(shown.format()), end="", file=sys.stderr)


def main() -> int:
    """``solve_runner WORKDIR``, or ``solve_runner --pool WORKDIR [--preload FILE]``: warm up in a
    pooled sandbox first, and run the job once the worker has filled WORKDIR and says GO."""
    args = sys.argv[1:]
    pooled = args[:1] == ["--pool"]
    workdir = Path(args[1] if pooled else args[0]).resolve()
    if pooled:
        warm_imports("sessions.runtime.case", "sessions.runtime.loader", "sessions.runtime.sdk")
        if "--preload" in args:
            preload(Path(args[args.index("--preload") + 1]))
        if wait_for_order().strip() != "GO":
            return EXIT_BAD_JOB  # the pool was emptied: no job for this sandbox
    return serve(workdir)


def serve(workdir: Path) -> int:
    """Run the job of a filled working folder; its exit code (``EXIT_*``)."""
    try:
        netforward.start_from_environment()
        return run(workdir)
    except MemoryError:
        _write_outcome(workdir, error="the solve ran out of memory")
        return EXIT_MEMORY
    except BaseException as exc:  # the app's own failure: report it verbatim, fail only this job
        print_app_traceback(exc, workdir / "app")
        sys.stderr.flush()
        _write_outcome(workdir, error=f"{type(exc).__name__}: {exc}")
        return EXIT_APP_ERROR


def exit_now(code: int) -> None:
    """End the process once its output is out, without the interpreter's teardown (a tenth of a
    trivial job's run with numpy and HiGHS loaded): the result and the outcome are written by then,
    and what the app left running is ended with its sandbox anyway. An app's atexit handlers do
    not run (docs/runtimes.md)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
