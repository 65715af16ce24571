"""The MPS solver reproduces the known optima of the public instances."""

import json
import shutil
from pathlib import Path

import pytest

from pro_sdk import SolveContext, load_app

app = load_app(Path(__file__).parents[1])
INSTANCES = Path(__file__).parents[2] / "instances"
OPTIMA = json.loads((INSTANCES / "optima.json").read_text())  # the known optima, shared by the tests


@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_known_optimum(tmp_path, name):
    folder = tmp_path / "apps" / "mps-solver" / "data"
    folder.mkdir(parents=True)
    shutil.copy(INSTANCES / name, folder / name)
    data = app.new_data()
    data["model_file"] = f"apps/mps-solver/data/{name}"
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    assert data["status"] == "Optimal"
    assert data["objective"] == pytest.approx(OPTIMA[name], rel=1e-6)
    assert data["solve_seconds"] >= 0


def test_missing_file(tmp_path):
    data = app.new_data()
    data["model_file"] = "apps/mps-solver/data/none.mps"
    with pytest.raises(FileNotFoundError, match=r"none\.mps"):
        app.run("solve", data, SolveContext(storage_root=tmp_path))


def test_not_an_mps_file(tmp_path):
    folder = tmp_path / "apps" / "mps-solver" / "data"
    folder.mkdir(parents=True)
    (folder / "junk.mps").write_text("this is not a model\n")
    data = app.new_data()
    data["model_file"] = "apps/mps-solver/data/junk.mps"
    app.run("solve", data, SolveContext(storage_root=tmp_path))
    assert data["status"].startswith("Cannot read")
