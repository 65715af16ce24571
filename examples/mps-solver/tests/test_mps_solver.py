"""The MPS solver reproduces the known optima of the public instances."""

import json
import re
import shutil
from pathlib import Path

import pytest

from pro_sdk import SolveContext, load_app

app = load_app(Path(__file__).parents[1])
INSTANCES = Path(__file__).parents[2] / "instances"
OPTIMA = json.loads((INSTANCES / "optima.json").read_text())  # the known optima, shared by the tests
STATUS_LINE = re.compile(r"^\s*(Model status\s*:|Status)\s+Optimal$")

# x >= 2 and x <= 1 at once.
INFEASIBLE_MPS = """NAME          NOWAY
ROWS
 N COST
 G LOW
 L HIGH
COLUMNS
    X         COST           1.0        LOW            1.0
    X         HIGH           1.0
RHS
    RHS       LOW            2.0        HIGH           1.0
ENDATA
"""


def storage_with(root: Path, name: str, text: str | None = None) -> str:
    """Put a model file where the app reads it; return its storage path."""
    folder = root / "apps" / "mps-solver" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copy(INSTANCES / name, folder / name)
    else:
        (folder / name).write_text(text)
    return f"apps/mps-solver/data/{name}"


def test_every_instance_has_a_known_optimum():
    assert sorted(OPTIMA) == sorted(p.name for p in INSTANCES.glob("*.mps"))
    assert len(OPTIMA) == 7


@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_known_optimum(tmp_path, name):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, name)
    ctx = SolveContext(storage_root=tmp_path)
    app.run("solve", data, ctx)
    assert data["status"] == "Optimal"
    assert data["objective"] == pytest.approx(OPTIMA[name], rel=1e-6)
    assert data["solve_seconds"] > 0
    # HiGHS's own report reaches the log: "Model status : Optimal" for an LP, "Status  Optimal" for a MIP.
    assert any(STATUS_LINE.match(line) for line in ctx.log_lines)


def test_mip_reports_progress(tmp_path):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, "egout.mps")
    ctx = SolveContext(storage_root=tmp_path)
    app.run("solve", data, ctx)
    objectives = [p["objective"] for p in ctx.progress_points if p["objective"] is not None]
    assert objectives[-1] == pytest.approx(OPTIMA["egout.mps"], rel=1e-6)
    assert ctx.progress_points[-1]["fraction"] == pytest.approx(1.0)
    # Incumbents of a minimisation only get better.
    assert objectives == sorted(objectives, reverse=True)


def test_infeasible_model(tmp_path):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, "noway.mps", INFEASIBLE_MPS)
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    assert data["status"] == "Infeasible"
    assert data["objective"] == 0.0


def test_missing_file(tmp_path):
    data = app.new_data()
    data["model_file"] = "apps/mps-solver/data/none.mps"
    with pytest.raises(FileNotFoundError, match=r"none\.mps"):
        app.run("solve", data, SolveContext(storage_root=tmp_path))


def test_path_outside_storage_is_refused(tmp_path):
    (tmp_path / "secret.mps").write_text(INFEASIBLE_MPS)
    data = app.new_data()
    data["model_file"] = "apps/../../secret.mps"
    with pytest.raises(PermissionError, match="escapes"):
        app.run("solve", data, SolveContext(storage_root=tmp_path / "root"))


def test_not_an_mps_file(tmp_path):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, "junk.mps", "this is not a model\n")
    ctx = SolveContext(storage_root=tmp_path)
    app.run("solve", data, ctx)
    assert data["status"] == "Cannot read apps/mps-solver/data/junk.mps as an MPS model"
    assert any("Parser error" in line for line in ctx.log_lines)
