"""The transportation problem (Dantzig 1963, as in GAMS' trnsport): ship at the least cost.

Cases of a product go from plants (with a supply) to markets (with a demand); each plant and
market pair has a unit shipping cost. The optimal plan of the default data costs 153.675
thousand dollars.
"""

import highspy

from pro_sdk import App, Button, Chart, Field, Table, run_highs

PLANTS = ["Seattle", "San-Diego"]
MARKETS = ["New-York", "Chicago", "Topeka"]
DISTANCE = {  # thousands of miles
    ("Seattle", "New-York"): 2.5,
    ("Seattle", "Chicago"): 1.7,
    ("Seattle", "Topeka"): 1.8,
    ("San-Diego", "New-York"): 2.5,
    ("San-Diego", "Chicago"): 1.8,
    ("San-Diego", "Topeka"): 1.4,
}
FREIGHT = 90  # dollars per case per thousand miles

app = App("transport", title="Transport")
plants = app.set("plants", default=PLANTS, title="Plants")
markets = app.set("markets", default=MARKETS, title="Markets")
supply = app.parameter(
    "supply",
    index=[plants],
    default=0.0,
    minimum=0,
    unit="cases",
    title="Supply",
    data={"Seattle": 350, "San-Diego": 600},
)
demand = app.parameter(
    "demand",
    index=[markets],
    default=0.0,
    minimum=0,
    unit="cases",
    title="Demand",
    data={"New-York": 325, "Chicago": 300, "Topeka": 275},
)
cost = app.parameter(
    "cost",
    index=[plants, markets],
    default=0.0,
    minimum=0,
    unit="k$/case",
    title="Unit shipping cost",
    data={key: FREIGHT * miles / 1000 for key, miles in DISTANCE.items()},
)
shipments = app.output("shipments", index=[plants, markets], unit="cases", title="Shipments")
total_cost = app.output("total_cost", unit="k$", title="Total cost")
status = app.output("status", type="str", title="Solver status")
balance = app.output("balance", unit="cases", title="Supply minus demand")


@app.procedure(title="Check balance")
def check_balance(data):
    """Solver-less: total supply minus total demand (negative means infeasible)."""
    data["balance"] = sum(data["supply"].values()) - sum(data["demand"].values())


def _no_plan(data, ctx, reason: str) -> None:
    data["status"] = reason
    data["shipments"] = {}
    data["total_cost"] = 0.0
    ctx.log(f"No shipping plan: {reason}")


@app.solve(title="Solve", time_limit=60)
def solve(data, ctx):
    check_balance(data)
    if data["balance"] < 0:
        # Say why in the modeler's terms rather than let the solver answer a bare "Infeasible".
        _no_plan(data, ctx, f"Infeasible: total demand exceeds total supply by {-data['balance']:g} cases")
        return
    h = highspy.Highs()
    x = {}
    for key, unit_cost in data["cost"].items():
        x[key] = h.addVariable(lb=0, obj=unit_cost, name=f"ship_{key[0]}_{key[1]}")
    # With no markets (or no plants) a row has no terms: a sum of nothing is not a constraint,
    # and HiGHS calls the resulting model without columns "Empty": nothing to ship is optimal.
    if data["markets"]:
        for plant in data["plants"]:
            shipped = sum(x[plant, market] for market in data["markets"])
            h.addConstr(shipped <= data["supply"][plant], name=f"supply_{plant}")
    if data["plants"]:
        for market in data["markets"]:
            received = sum(x[plant, market] for plant in data["plants"])
            h.addConstr(received >= data["demand"][market], name=f"demand_{market}")
    solver_status = run_highs(h, ctx)
    if solver_status not in ("Optimal", "Empty"):
        _no_plan(data, ctx, solver_status)
        return
    data["status"] = "Optimal"
    values = h.getSolution().col_value
    data["shipments"] = {key: round(values[var.index], 6) for key, var in x.items()}
    data["total_cost"] = round(h.getInfo().objective_function_value, 6)
    ctx.log(f"Total cost {data['total_cost']} k$")


app.page("Data", [Table(supply), Table(demand), Table(cost), Button(check_balance), Field(balance), Button(solve)])
app.page("Results", [Field(status), Field(total_cost), Table(shipments), Chart(shipments, kind="bar")])
