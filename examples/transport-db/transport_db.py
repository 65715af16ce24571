"""The transportation problem on a company database, through a managed connection.

The platform keeps the database's address and password: an admin defines the connection
``transport-db`` and grants it to this app (see README.md). The app reads its plants, markets and
lane costs from it, solves, and writes the plan back (tables in ``schema.sql``): in a data
session with the buttons, or unattended as a scheduled task of "Load, solve and write back".
"""

from datetime import UTC, datetime

import highspy

from pro_sdk import App, Button, DataError, Field, Table, connection, run_highs

CONNECTION = "transport-db"

app = App("transport-db", title="Transport (company database)")
plants = app.set("plants", title="Plants")
markets = app.set("markets", title="Markets")
supply = app.parameter("supply", index=[plants], default=0.0, minimum=0, unit="cases", title="Supply")
demand = app.parameter("demand", index=[markets], default=0.0, minimum=0, unit="cases", title="Demand")
cost = app.parameter("cost", index=[plants, markets], default=0.0, minimum=0, unit="k$/case", title="Unit cost")
source = app.output("source", type="str", title="Data")
shipments = app.output("shipments", index=[plants, markets], unit="cases", title="Shipments")
total_cost = app.output("total_cost", unit="k$", title="Total cost")
status = app.output("status", type="str", title="Solver status")
written = app.output("written", type="str", title="Written back")


@app.procedure(title="Load from the database")
def load(data):
    """Replace the session's data with the database's plants, markets and lanes."""
    with connection(CONNECTION) as db, db.cursor() as cursor:
        cursor.execute("SELECT name, supply FROM plants ORDER BY name")
        supplies = dict(cursor.fetchall())
        cursor.execute("SELECT name, demand FROM markets ORDER BY name")
        demands = dict(cursor.fetchall())
        cursor.execute("SELECT plant, market, unit_cost FROM lanes")
        lanes = {(plant, market): unit_cost for plant, market, unit_cost in cursor.fetchall()}
    for market, wanted in demands.items():
        if wanted > 0 and not any(lane[1] == market for lane in lanes if lane[0] in supplies):
            raise DataError("demand", f"no lane of the lanes table reaches {market}", market)
    data["plants"], data["markets"] = list(supplies), list(demands)
    data["supply"], data["demand"] = supplies, demands
    data["cost"] = {key: value for key, value in lanes.items() if key[0] in supplies and key[1] in demands}
    data["source"] = f"{len(supplies)} plants, {len(demands)} markets and {len(lanes)} lanes from {CONNECTION}"


def _optimise(data, ctx) -> bool:
    h = highspy.Highs()
    x = {key: h.addVariable(lb=0, obj=unit_cost) for key, unit_cost in data["cost"].items()}
    for plant in data["plants"]:
        lanes = [x[plant, market] for market in data["markets"] if (plant, market) in x]
        if lanes:
            h.addConstr(sum(lanes) <= data["supply"][plant])
    for market in data["markets"]:
        lanes = [x[plant, market] for plant in data["plants"] if (plant, market) in x]
        if lanes:
            h.addConstr(sum(lanes) >= data["demand"][market])
    data["status"] = run_highs(h, ctx)
    if data["status"] != "Optimal":
        data["shipments"], data["total_cost"] = {}, 0.0
        return False
    values = h.getSolution().col_value
    data["shipments"] = {key: round(values[var.index], 6) for key, var in x.items()}
    data["total_cost"] = round(h.getInfo().objective_function_value, 6)
    return True


def _write_back(data, ctx) -> None:
    """The plan replaces the previous one in one transaction, with a line in plan_runs."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = [(plant, market, cases) for (plant, market), cases in data["shipments"].items() if cases > 0]
    with connection(CONNECTION) as db:
        with db.cursor() as cursor:
            cursor.execute("DELETE FROM shipments")
            cursor.executemany("INSERT INTO shipments (plant, market, cases) VALUES (%s, %s, %s)", rows)
            cursor.execute(
                "INSERT INTO plan_runs (planned_at, status, total_cost) VALUES (%s, %s, %s)",
                (now, data["status"], data["total_cost"]),
            )
        db.commit()
    data["written"] = f"{len(rows)} shipments written to {CONNECTION} at {now}"
    ctx.log(data["written"])


@app.solve(title="Solve and write the plan back", time_limit=60)
def solve(data, ctx):
    if _optimise(data, ctx):
        _write_back(data, ctx)
    else:
        ctx.log(f"No plan written: the solver says {data['status']}")


@app.solve(title="Load, solve and write back", time_limit=60)
def refresh(data, ctx):
    """What a schedule runs: the database's data in, the plan out, no one at the screen."""
    load(data)
    ctx.log(data["source"])
    solve(data, ctx)


app.page("Data", [Button(load), Field(source), Table(supply), Table(demand), Table(cost), Button(solve)])
app.page("Plan", [Field(status), Field(total_cost), Field(written), Table(shipments)])
