"""``Client.solve``: solve a model built in the caller's own code on the platform.

The model (a ``highspy.Highs`` object, or an ``.mps``/``.lp`` file) goes up as a file into the
caller's private storage folder (``users/<you>/remote-solve/``): the one folder every user may
write, which only they (and admins) read; an app's shared folder takes files from its
collaborators only, and a case carries identifier values, not files. The ``mps-solver`` app
solves it as a job (the job's owner reads their own folder), its log comes back line by line,
and the file is deleted once the job has ended.

The solution comes back by column name (the ``columns`` set and ``col_value`` output of
``mps-solver`` 1.1 and later) and, for a ``highspy.Highs`` model, also in the model's own column
order: HiGHS writes a generated name (``c_ekk0``...) for an unnamed column, and renames every
column when names repeat or hold spaces, so the written file's names are kept to map the values
back by index.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # client.py imports this module: only the type names here
    from .client import Client, Job

MODEL_SUFFIXES = (".mps", ".lp", ".mps.gz", ".lp.gz")  # what HiGHS's readModel reads
UPLOAD_FOLDER = "remote-solve"
Log = Callable[[str], Any]


class SolveError(RuntimeError):
    """The solve job failed or was cancelled; ``job`` says more (its log, ``job.info``)."""

    def __init__(self, job: Job, message: str):
        super().__init__(message)
        self.job = job


@dataclass(repr=False)
class SolveResult:
    """What a remote solve found. Without a solution (infeasible, a model that cannot be read,
    a MIP stopped before its first incumbent) ``status`` says why and the values are empty."""

    status: str  # HiGHS's model status: "Optimal", "Infeasible", "Time limit reached", ...
    objective: float
    solve_seconds: float  # the solver's own time, on the platform
    values: dict[str, float]  # column name -> value
    col_values: list[float]  # in column order: the highspy model's own, or the file's as HiGHS read it
    job: Job
    duals: dict[str, float] = field(default_factory=dict)  # row name -> dual value (an LP's; empty otherwise)
    row_duals: list[float] = field(default_factory=list)  # in row order, as col_values
    mip_gap: float = 0.0  # a MIP's relative gap between its solution and its bound

    def value(self, column: str | int | Any) -> float:
        """A column's value by name, by index, or by the ``highspy`` variable itself."""
        if isinstance(column, str):
            return self.values[column]
        return self.col_values[getattr(column, "index", column)]  # a highspy variable knows its index

    def __repr__(self) -> str:
        return (
            f"<SolveResult {self.status} objective={self.objective:.10g} columns={len(self.values)} "
            f"solve_seconds={self.solve_seconds:g} job={self.job.id}>"
        )


@dataclass
class Names:
    """A highspy model's columns (or rows) in order: the names in the file written, and the names
    the result uses (the caller's own where usable)."""

    written: list[str]
    keys: list[str]

    def map(self, solved: dict[str, float]) -> tuple[dict[str, float], list[float]]:
        """The solved values by the caller's names, and in the model's order."""
        ordered = [solved[name] for name in self.written]
        return dict(zip(self.keys, ordered, strict=True)), ordered


@dataclass
class ModelFile:
    """The file to upload and, for a highspy model, the names of its columns and rows."""

    path: Path
    columns: Names | None = None
    rows: Names | None = None


def solve(
    client: Client,
    model: Any,
    *,
    log: Log | None,
    time_limit: float | None,
    app: str,
    version: str | None,
    folder: str | None,
) -> SolveResult:
    with tempfile.TemporaryDirectory(prefix="pro-solve-") as workdir:
        prepared = model_file(model, Path(workdir))
        target = f"{(folder or client.own_folder() + '/' + UPLOAD_FOLDER).strip('/')}/{upload_name(prepared.path)}"
        stored = client.storage_put(prepared.path, target)["path"]
    job = None
    try:
        job = client.submit(app, "solve", input={"model_file": stored}, version=version, time_limit=time_limit)
        if log is not None:
            for line in job.logs(follow=True):
                log(line)
        ended = job.wait()
    except KeyboardInterrupt:
        # Stopping the call (Ctrl-C, a notebook's interrupt) stops the solve: nobody collects it.
        if job is not None:
            _cancel_quietly(job)
        raise
    finally:
        # While the job may still read the file (the caller stopped waiting), it stays.
        if job is None or job.state in ("succeeded", "failed", "cancelled"):
            _delete_quietly(client, stored)
    if ended["state"] != "succeeded":
        reason = ended.get("error_message") or ended.get("solver_status") or "see its log"
        raise SolveError(job, f"job {job.id} {ended['state']}: {reason}")
    return _result(job, app, prepared)


def model_file(model: Any, workdir: Path) -> ModelFile:
    """A model file of ``model``: the file itself for a path, an MPS file written into ``workdir``
    (gzipped: it is text that compresses tenfold) for a ``highspy.Highs`` model."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.name.lower().endswith(MODEL_SUFFIXES):
            raise ValueError(f"{path} is not a model file: its name must end in {', '.join(MODEL_SUFFIXES)}")
        if not path.is_file():
            raise FileNotFoundError(f"there is no model file {path}")
        return ModelFile(path)
    wrong = TypeError(f"the model must be a highspy.Highs object or an .mps or .lp file's path, not {model!r}")
    try:
        import highspy  # only for a highspy model: the client works without it
    except ImportError:
        raise wrong from None  # without highspy, nothing is a highspy model
    if not isinstance(model, highspy.Highs):
        raise wrong
    # A copy writes the file: HiGHS names the unnamed columns of the object it writes, and the
    # caller's model stays as it was.
    copy = highspy.Highs()
    copy.setOptionValue("output_flag", False)
    copy.passModel(model.getModel())
    path = workdir / f"{_safe_stem(model.getLp().model_name_) or 'model'}.mps"
    if copy.writeModel(str(path)) == highspy.HighsStatus.kError:
        raise ValueError("HiGHS could not write the model as an MPS file")
    packed = path.with_name(path.name + ".gz")
    with open(path, "rb") as source, gzip.open(packed, "wb", compresslevel=6) as sink:
        shutil.copyfileobj(source, sink, 1024 * 1024)
    own, written = model.getLp(), copy.getLp()
    return ModelFile(packed, _names(own.col_names_, written.col_names_), _names(own.row_names_, written.row_names_))


def _names(own: list[str], written: list[str]) -> Names:
    """The caller's own names where they have a usable one (set, and used once), the written name
    otherwise; the written names alone if that would name two alike."""
    own, written = list(own), list(written)
    if len(own) != len(written):
        return Names(written, written)
    counts = Counter(own)
    keys = [mine if mine and counts[mine] == 1 else theirs for mine, theirs in zip(own, written, strict=True)]
    return Names(written, keys if len(set(keys)) == len(keys) else written)


def _safe_stem(name: str) -> str:
    """A file name's stem that storage takes as it is (no spaces, slashes, leading dot)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:60]


def upload_name(path: Path) -> str:
    """The stored file's name: the model's, made unique so that two solves at once never share one."""
    suffix = next(s for s in sorted(MODEL_SUFFIXES, key=len, reverse=True) if path.name.lower().endswith(s))
    stem = _safe_stem(path.name[: -len(suffix)]) or "model"
    return f"{stem}-{secrets.token_hex(4)}{suffix}"


def _delete_quietly(client: Client, path: str) -> None:
    from .client import PlatformError

    # A leftover in the caller's own folder is not worth failing a solve that went well.
    with contextlib.suppress(PlatformError, OSError):
        client.storage_delete(path)


def _cancel_quietly(job: Job) -> None:
    from .client import PlatformError

    # Already ended, or the platform out of reach: the interrupt goes on to the caller regardless.
    with contextlib.suppress(PlatformError, OSError):
        job.cancel()


def _result(job: Job, app: str, prepared: ModelFile) -> SolveResult:
    values = job.result()
    if "columns" not in values or "col_value" not in values:
        version = job.info.get("version", "")
        raise SolveError(job, f"app {app!r} {version} does not report column values: mps-solver 1.1.0 or later does")
    solved = {str(name): float(value) for name, value in values["col_value"]}
    duals = {str(name): float(value) for name, value in values.get("row_dual") or []}
    by_name, col_values = solved, list(solved.values())
    by_row, row_duals = duals, list(duals.values())
    try:
        if prepared.columns is not None and solved:
            by_name, col_values = prepared.columns.map(solved)
        if prepared.rows is not None and duals:
            by_row, row_duals = prepared.rows.map(duals)
    except KeyError as missing:
        raise SolveError(job, f"the solution has no value for {missing} of the model written") from None
    return SolveResult(
        status=values.get("status", ""),
        objective=values.get("objective", 0.0),
        solve_seconds=values.get("solve_seconds", 0.0),
        values=by_name,
        col_values=col_values,
        job=job,
        duals=by_row,
        row_duals=row_duals,
        mip_gap=values.get("mip_gap", 0.0),
    )
