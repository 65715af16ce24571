"""Capacitated facility location: open warehouses (fixed cost) and serve customers (per unit).

min  sum_f fixed_f open_f + sum_fc cost_fc flow_fc
s.t. sum_f flow_fc = demand_c                 every customer is served
     sum_c flow_fc <= capacity_f open_f       only open warehouses ship
     flow_fc <= demand_c open_f               (a stronger form of the same)
"""

import highspy

from pro_sdk import App, Button, Chart, Field, Table, has_solution, run_highs

FACILITIES = ["Amsterdam", "Berlin", "Lyon", "Milan", "Warsaw"]
CUSTOMERS = [f"C{n:02d}" for n in range(1, 11)]
# Deterministic data: positions on a grid, costs from distances.
FACILITY_XY = {"Amsterdam": (2, 8), "Berlin": (7, 8), "Lyon": (2, 2), "Milan": (5, 1), "Warsaw": (10, 7)}
CUSTOMER_XY = {c: ((3 * n) % 11, (7 * n) % 10) for n, c in enumerate(CUSTOMERS, start=1)}


def _distance(f: str, c: str) -> float:
    (fx, fy), (cx, cy) = FACILITY_XY[f], CUSTOMER_XY[c]
    return round(((fx - cx) ** 2 + (fy - cy) ** 2) ** 0.5, 2)


app = App("facility-location", title="Facility location")
facilities = app.set("facilities", default=FACILITIES, title="Warehouses")
customers = app.set("customers", default=CUSTOMERS, title="Customers")
fixed_cost = app.parameter(
    "fixed_cost",
    index=[facilities],
    minimum=0,
    unit="k€",
    title="Fixed cost of opening",
    data={"Amsterdam": 120, "Berlin": 150, "Lyon": 100, "Milan": 130, "Warsaw": 90},
)
capacity = app.parameter(
    "capacity",
    index=[facilities],
    minimum=0,
    unit="t",
    title="Capacity",
    data={"Amsterdam": 90, "Berlin": 110, "Lyon": 80, "Milan": 100, "Warsaw": 70},
)
demand = app.parameter(
    "demand",
    index=[customers],
    minimum=0,
    unit="t",
    title="Demand",
    data={c: 10 + (5 * n) % 23 for n, c in enumerate(CUSTOMERS, 1)},
)
unit_cost = app.parameter(
    "unit_cost",
    index=[facilities, customers],
    minimum=0,
    unit="k€/t",
    title="Transport cost",
    data={(f, c): _distance(f, c) for f in FACILITIES for c in CUSTOMERS},
)
is_open = app.output("open", index=[facilities], type="int", title="Open (1) or closed (0)")
flow = app.output("flow", index=[facilities, customers], unit="t", title="Deliveries")
total_cost = app.output("total_cost", unit="k€", title="Total cost")
status = app.output("status", type="str", title="Solver status")


def _no_plan(data, ctx, reason: str) -> None:
    data["status"] = reason
    data["open"] = {}
    data["flow"] = {}
    data["total_cost"] = 0.0
    ctx.log(f"No plan: {reason}")


@app.solve(title="Solve", time_limit=120)
def solve(data, ctx):
    missing = sum(data["demand"].values()) - sum(data["capacity"].values())
    if missing > 0:
        # With every warehouse open the model is a transport problem: feasible iff capacity covers demand.
        _no_plan(data, ctx, f"Infeasible: total demand exceeds total capacity by {missing:g} t")
        return
    h = highspy.Highs()
    y = {f: h.addBinary(obj=data["fixed_cost"][f], name=f"open_{f}") for f in data["facilities"]}
    x = {
        (f, c): h.addVariable(lb=0, obj=data["unit_cost"][f, c], name=f"flow_{f}_{c}")
        for f in data["facilities"]
        for c in data["customers"]
    }
    # Without warehouses the demand rows would have no terms (and every demand is 0, as checked above).
    if data["facilities"]:
        for c in data["customers"]:
            h.addConstr(sum(x[f, c] for f in data["facilities"]) == data["demand"][c])
            for f in data["facilities"]:
                h.addConstr(x[f, c] <= data["demand"][c] * y[f])
    for f in data["facilities"]:
        h.addConstr(sum(x[f, c] for c in data["customers"]) <= data["capacity"][f] * y[f])
    solver_status = run_highs(h, ctx)
    # An interrupted or timed-out MIP still has its best plan so far: report it, with the status.
    if not has_solution(h) and solver_status != "Empty":
        _no_plan(data, ctx, solver_status)
        return
    data["status"] = "Optimal" if solver_status == "Empty" else solver_status
    values = h.getSolution().col_value  # one copy: h.val() per variable is slow on large instances
    data["open"] = {f: round(values[var.index]) for f, var in y.items()}
    data["flow"] = {key: round(values[var.index], 6) for key, var in x.items()}
    data["total_cost"] = round(h.getInfo().objective_function_value, 6)
    ctx.log(f"Open: {', '.join(f for f, v in data['open'].items() if v)}; total cost {data['total_cost']} k€")


app.page("Data", [Table(fixed_cost), Table(capacity), Table(demand), Table(unit_cost), Button(solve)])
app.page("Results", [Field(status), Field(total_cost), Table(is_open), Chart(flow, kind="bar"), Table(flow)])
