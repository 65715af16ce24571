"""Tests of the Pyomo blending model, with plain pytest and no server (skipped without Pyomo)."""

from pathlib import Path

import pytest

from pro_sdk import SolveContext, load_app

pytest.importorskip(
    "pyomo.environ",
    reason="a modeler's local test: needs Pyomo (pip install pyomo==6.10.1); the platform's suite solves this app "
    "in its sandbox in tests/test_runtimes.py",
)
app = load_app(Path(__file__).parents[1])


def test_default_data_costs_0_52():
    ctx = SolveContext()
    data = app.run("solve", app.new_data(), ctx)
    assert data["status"] == "Optimal"
    assert data["total_cost"] == pytest.approx(0.52, rel=1e-6)
    assert {i: v for i, v in data["amount"].items() if v} == pytest.approx({"Beef": 60, "Gel": 40})
    assert any("Solving report" in line for line in ctx.log_lines)  # HiGHS's log reached the context


def test_one_ingredient_is_all_chicken():
    data = app.new_data()
    data["max_ingredients"] = 1
    app.run("solve", data)
    assert data["total_cost"] == pytest.approx(1.3, rel=1e-6)
    assert data["amount"]["Chicken"] == pytest.approx(100)


def test_too_little_salt_is_infeasible():
    data = app.new_data()
    data.set_cell("max_pct", "Salt", 0.1)
    with pytest.raises(ValueError, match="no blend meets the nutrient limits"):
        app.run("solve", data)
    assert data["status"].startswith("Infeasible")
    assert data["total_cost"] == 0.0
