"""Tests of the facility location model, with plain pytest and no server."""

import random
from pathlib import Path

import pytest

from pro_sdk import SolveContext, load_app

app = load_app(Path(__file__).parents[1])


def test_default_data_optimum():
    data = app.run("solve")
    assert data["status"] == "Optimal"
    assert data["total_cost"] == pytest.approx(856.71, rel=1e-6)
    assert data["open"] == {"Amsterdam": 1, "Berlin": 0, "Lyon": 0, "Milan": 1, "Warsaw": 1}
    for customer, need in data["demand"].items():
        assert sum(data["flow"][f, customer] for f in data["facilities"]) == pytest.approx(need)


def test_closed_warehouses_ship_nothing():
    data = app.run("solve")
    for (facility, _), amount in data["flow"].items():
        if not data["open"][facility]:
            assert amount == 0


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
    assert data["total_cost"] > 0
    assert sum(data["open"].values()) >= 1
    served = sum(data["flow"].values())
    assert served == pytest.approx(sum(data["demand"].values()), rel=1e-6)
    assert ctx.progress_points[-1]["bound"] <= data["total_cost"] + 1e-6
