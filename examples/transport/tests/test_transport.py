"""Tests of the transport model, with plain pytest and no server."""

from pathlib import Path

import pytest

from pro_sdk import DataError, SolveContext, load_app

app = load_app(Path(__file__).parents[1])


def test_default_data_costs_153_675():
    data = app.run("solve")
    assert data["status"] == "Optimal"
    assert data["total_cost"] == pytest.approx(153.675, rel=1e-6)
    shipped = data["shipments"]
    assert sum(shipped.values()) == pytest.approx(900)
    assert shipped["San-Diego", "Topeka"] == pytest.approx(275)


def test_more_demand_costs_more():
    data = app.new_data()
    data.set_cell("demand", "Chicago", 350)
    app.run("solve", data)
    assert data["total_cost"] > 153.675


def test_demand_over_supply_is_infeasible():
    data = app.new_data()
    data.set_cell("demand", "New-York", 2000)
    ctx = SolveContext()
    app.run("solve", data, ctx)
    assert data["status"] == "Infeasible"
    assert data["balance"] == pytest.approx(950 - 2575)
    assert data["total_cost"] == 0.0


def test_bad_values_are_refused():
    data = app.new_data()
    with pytest.raises(DataError, match="expected a number"):
        data.set_cell("supply", "Seattle", "plenty")
    with pytest.raises(DataError, match="at least 0"):
        data.set_cell("cost", ("Seattle", "Topeka"), -1)
    assert data["supply"]["Seattle"] == 350


def test_check_balance_runs_without_solver():
    assert app.run("check_balance")["balance"] == pytest.approx(50)
