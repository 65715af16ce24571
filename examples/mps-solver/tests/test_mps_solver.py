"""The MPS solver reproduces the known optima of the public instances and reports the solution:
column values, row duals of an LP, the MIP gap; it reads LP files too."""

import gzip
import json
import re
import shutil
from pathlib import Path

import highspy
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


def storage_with(root: Path, name: str, content: str | bytes | None = None) -> str:
    """Put a model file where the app reads it; return its storage path."""
    folder = root / "apps" / "mps-solver" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if content is None:
        shutil.copy(INSTANCES / name, folder / name)
    elif isinstance(content, bytes):
        (folder / name).write_bytes(content)
    else:
        (folder / name).write_text(content)
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


def local_solve(path: Path) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(path))
    h.run()
    return h


@pytest.mark.parametrize("name", ["afiro.mps", "p01.mps"])
def test_column_values_by_name(tmp_path, name):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, name)
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    h = local_solve(INSTANCES / name)
    names = list(h.getLp().col_names_)
    assert data["columns"] == names
    assert list(data["col_value"].values()) == pytest.approx(list(h.getSolution().col_value), abs=1e-6)
    lp = h.getLp()
    cost = sum(c * x for c, x in zip(lp.col_cost_, data["col_value"].values(), strict=True)) + lp.offset_
    assert cost == pytest.approx(OPTIMA[name], rel=1e-6)


def test_lp_has_row_duals_and_no_gap(tmp_path):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, "afiro.mps")
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    h = local_solve(INSTANCES / "afiro.mps")
    assert data["rows"] == list(h.getLp().row_names_)
    assert list(data["row_dual"].values()) == pytest.approx(list(h.getSolution().row_dual), abs=1e-6)
    assert data["mip_gap"] == 0.0


def test_mip_has_a_gap_and_no_duals(tmp_path):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, "flugpl.mps")
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    assert data["status"] == "Optimal"
    assert data["rows"] == [] and data["row_dual"] == {}
    assert 0.0 <= data["mip_gap"] <= 1e-4  # HiGHS's default relative gap tolerance
    assert all(value == pytest.approx(round(value)) for value in data["col_value"].values())


def test_lp_and_gzipped_files_are_read(tmp_path):
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(INSTANCES / "afiro.mps"))
    h.writeModel(str(tmp_path / "afiro.lp"))
    for name in ("afiro.lp", "afiro.mps.gz"):
        if name.endswith(".gz"):
            (tmp_path / name).write_bytes(gzip.compress((INSTANCES / "afiro.mps").read_bytes()))
        data = app.new_data()
        data["model_file"] = storage_with(tmp_path, name, (tmp_path / name).read_bytes())
        app.run("solve", data, SolveContext(storage_root=tmp_path))
        assert data["status"] == "Optimal", name
        assert data["objective"] == pytest.approx(OPTIMA["afiro.mps"], rel=1e-6), name
        assert sorted(data["columns"]) == sorted(h.getLp().col_names_), name


def test_a_second_solve_leaves_no_values_of_the_first(tmp_path):
    data = app.new_data()
    data["model_file"] = storage_with(tmp_path, "afiro.mps")
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    data["model_file"] = storage_with(tmp_path, "noway.mps", INFEASIBLE_MPS)
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    assert data["status"] == "Infeasible"
    assert data["columns"] == [] and data["col_value"] == {} and data["rows"] == []


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
    assert data["columns"] == [] and data["col_value"] == {}


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
    assert data["status"] == "Cannot read apps/mps-solver/data/junk.mps as an MPS or LP model"
    assert any("Parser error" in line for line in ctx.log_lines)
