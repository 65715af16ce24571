"""Tests of the facility location model, with plain pytest and no server."""

import itertools
import random
from pathlib import Path

import highspy
import pytest

from pro_sdk import SolveContext, load_app

app = load_app(Path(__file__).parents[1])

OPTIMUM = 856.71  # k€: open Amsterdam, Milan and Warsaw


def test_default_data_optimum():
    data = app.run("solve")
    assert data["status"] == "Optimal"
    assert data["total_cost"] == pytest.approx(OPTIMUM, rel=1e-6)
    assert data["open"] == {"Amsterdam": 1, "Berlin": 0, "Lyon": 0, "Milan": 1, "Warsaw": 1}
    for customer, need in data["demand"].items():
        assert sum(data["flow"][f, customer] for f in data["facilities"]) == pytest.approx(need)
    for facility in data["facilities"]:
        shipped = sum(data["flow"][facility, c] for c in data["customers"])
        assert shipped <= data["capacity"][facility] * data["open"][facility] + 1e-4  # flows are rounded


def best_plan_by_enumeration(data) -> float:
    """The optimum found another way: a transport LP for every set of open warehouses."""
    best = float("inf")
    for size in range(1, len(data["facilities"]) + 1):
        for opened in itertools.combinations(data["facilities"], size):
            h = highspy.Highs()
            h.silent()
            x = {(f, c): h.addVariable(obj=data["unit_cost"][f, c]) for f in opened for c in data["customers"]}
            for c in data["customers"]:
                h.addConstr(sum(x[f, c] for f in opened) == data["demand"][c])
            for f in opened:
                h.addConstr(sum(x[f, c] for c in data["customers"]) <= data["capacity"][f])
            h.run()
            if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
                fixed = sum(data["fixed_cost"][f] for f in opened)
                best = min(best, fixed + h.getInfo().objective_function_value)
    return best


def test_optimum_agrees_with_enumeration():
    assert best_plan_by_enumeration(app.new_data()) == pytest.approx(OPTIMUM, rel=1e-6)


def test_closed_warehouses_ship_nothing():
    data = app.run("solve")
    for (facility, _), amount in data["flow"].items():
        if not data["open"][facility]:
            assert amount == 0


def test_cheaper_warehouse_is_opened():
    data = app.new_data()
    data.set_cell("fixed_cost", "Berlin", 0)
    app.run("solve", data)
    assert data["open"]["Berlin"] == 1
    assert data["total_cost"] < OPTIMUM


def test_too_little_capacity_is_reported():
    data = app.run("solve")  # a plan first, so that we see the infeasible solve clears it
    data["capacity"] = {f: 20 for f in data["facilities"]}
    app.run("solve", data)
    assert data["status"] == "Infeasible: total demand exceeds total capacity by 114 t"
    assert data["total_cost"] == 0.0
    assert set(data["open"].values()) == {0}


class StopAtFirstIncumbent(SolveContext):
    """Interrupts the solve as soon as a first feasible plan is reported."""

    def should_stop(self) -> bool:
        return any(p["objective"] is not None for p in self.progress_points) or super().should_stop()


def hard_instance():
    """A larger instance (40 warehouses, 160 customers) that takes HiGHS a while to prove."""
    rng = random.Random(7)
    data = app.new_data()
    facilities = [f"F{i}" for i in range(40)]
    customers = [f"K{j}" for j in range(160)]
    data["facilities"], data["customers"] = facilities, customers
    data["fixed_cost"] = {f: rng.uniform(80, 160) for f in facilities}
    data["capacity"] = {f: rng.uniform(60, 140) for f in facilities}
    data["demand"] = {c: rng.uniform(5, 25) for c in customers}
    data["unit_cost"] = {(f, c): rng.uniform(0.5, 9) for f in facilities for c in customers}
    return data


def test_interrupt_returns_the_incumbent():
    data = hard_instance()
    ctx = StopAtFirstIncumbent()
    app.run("solve", data, ctx)
    assert data["status"] == "Interrupted by user"
    first = next(p for p in ctx.progress_points if p["objective"] is not None)
    # The plan returned is a feasible one, no worse than the first incumbent and not proven optimal.
    assert 0 < data["total_cost"] <= first["objective"] + 1e-6
    assert ctx.progress_points[-1]["bound"] < data["total_cost"]
    assert sum(data["open"].values()) >= 1
    served = sum(data["flow"].values())
    assert served == pytest.approx(sum(data["demand"].values()), rel=1e-6)
    for facility in data["facilities"]:
        shipped = sum(data["flow"][facility, c] for c in data["customers"])
        assert shipped <= data["capacity"][facility] * data["open"][facility] + 1e-4  # flows are rounded


def test_time_limit_returns_the_incumbent():
    data = hard_instance()
    ctx = SolveContext(time_limit=2)  # a first plan comes in under 0.5 s, the proof takes about 10 s
    app.run("solve", data, ctx)
    assert data["status"] == "Time limit reached"
    assert data["total_cost"] > 0
    assert sum(data["flow"].values()) == pytest.approx(sum(data["demand"].values()), rel=1e-6)
