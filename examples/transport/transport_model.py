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


@app.solve(title="Solve", time_limit=60)
def solve(data, ctx):
    h = highspy.Highs()
    x = {}
    for key, unit_cost in data["cost"].items():
        x[key] = h.addVariable(lb=0, obj=unit_cost, name=f"ship_{key[0]}_{key[1]}")
    for plant in data["plants"]:
        h.addConstr(
            sum(x[plant, market] for market in data["markets"]) <= data["supply"][plant], name=f"supply_{plant}"
        )
    for market in data["markets"]:
        h.addConstr(
            sum(x[plant, market] for plant in data["plants"]) >= data["demand"][market], name=f"demand_{market}"
        )
    data["status"] = run_highs(h, ctx)
    check_balance(data)
    if data["status"] != "Optimal":
        data["shipments"] = {}
        data["total_cost"] = 0.0
        ctx.log(f"No shipping plan: {data['status']}")
        return
    values = h.getSolution().col_value
    columns = list(x)
    data["shipments"] = {key: round(values[i], 6) for i, key in enumerate(columns)}
    data["total_cost"] = round(h.getInfo().objective_function_value, 6)
    ctx.log(f"Total cost {data['total_cost']} k$")


app.page("Data", [Table(supply), Table(demand), Table(cost), Button(check_balance), Field(balance), Button(solve)])
app.page("Results", [Field(status), Field(total_cost), Table(shipments), Chart(shipments, kind="bar")])
