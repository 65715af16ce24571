"""Tests of the transport model, with plain pytest and no server."""

from pathlib import Path

import pytest

from pro_sdk import DataError, SolveContext, load_app

app = load_app(Path(__file__).parents[1])


def test_default_data_costs_153_675(capfd):
    ctx = SolveContext()
    data = app.run("solve", app.new_data(), ctx)
    assert data["status"] == "Optimal"
    assert data["total_cost"] == pytest.approx(153.675, rel=1e-6)
    shipped = data["shipments"]
    assert sum(shipped.values()) == pytest.approx(900)
    assert shipped["San-Diego", "Topeka"] == pytest.approx(275)
    for plant in data["plants"]:
        assert sum(shipped[plant, m] for m in data["markets"]) <= data["supply"][plant] + 1e-9
    for market in data["markets"]:
        assert sum(shipped[p, market] for p in data["plants"]) == pytest.approx(data["demand"][market])
    # The solver's log reaches the context, and only the context.
    assert any("Optimal" in line for line in ctx.log_lines)
    assert "Model status" not in capfd.readouterr().out


def test_more_demand_costs_more():
    data = app.new_data()
    data.set_cell("demand", "Chicago", 350)
    app.run("solve", data)
    # Seattle has 50 cases to spare and ships them to Chicago at 0.153 k$ a case.
    assert data["total_cost"] == pytest.approx(153.675 + 50 * 0.153, rel=1e-6)
    assert data["shipments"]["Seattle", "Chicago"] == pytest.approx(350)


def test_demand_over_supply_is_infeasible():
    data = app.run("solve")  # a plan first, so that we see the infeasible solve clears it
    data.set_cell("demand", "New-York", 2000)
    ctx = SolveContext()
    app.run("solve", data, ctx)
    assert data["status"] == "Infeasible: total demand exceeds total supply by 1625 cases"
    assert data["balance"] == pytest.approx(950 - 2575)
    assert data["total_cost"] == 0.0
    assert set(data["shipments"].values()) == {0.0}
    assert any("No shipping plan" in line for line in ctx.log_lines)


def test_no_markets_means_nothing_to_ship():
    data = app.new_data()
    data["markets"] = []
    app.run("solve", data)
    assert data["status"] == "Optimal"
    assert data["total_cost"] == 0.0 and data["shipments"] == {}


def test_bad_values_are_refused():
    data = app.new_data()
    with pytest.raises(DataError, match="expected a number"):
        data.set_cell("supply", "Seattle", "plenty")
    with pytest.raises(DataError, match="at least 0"):
        data.set_cell("cost", ("Seattle", "Topeka"), -1)
    assert data["supply"]["Seattle"] == 350


def test_check_balance_runs_without_solver():
    assert app.run("check_balance")["balance"] == pytest.approx(50)
