"""Pet-food blending (the "Whiskas" problem of the PuLP tutorial) as a Pyomo model, solved with HiGHS.

min  sum_i cost_i amount_i / 1000                          ($ per can; cost in $/kg, amount in g)
s.t. sum_i amount_i = can_size
     min_pct_n can_size <= sum_i content_in amount_i <= max_pct_n can_size    (both sides / 100)
     amount_i <= can_size used_i,  sum_i used_i <= max_ingredients           (used_i binary: a MIP)

The default data's optimum is 0.52 $ a can: 60 g of beef and 40 g of gel.
"""

import io
import logging

import pyomo.environ as pyo

from pro_sdk import App, Button, Chart, Field, Table

INGREDIENTS = ["Chicken", "Beef", "Mutton", "Rice", "Wheat", "Gel"]
NUTRIENTS = ["Protein", "Fat", "Fibre", "Salt"]
COST = {"Chicken": 13, "Beef": 8, "Mutton": 10, "Rice": 2, "Wheat": 5, "Gel": 1}
CONTENT = {  # percent by weight, per ingredient: protein, fat, fibre, salt
    "Chicken": (10, 8, 0.1, 0.2),
    "Beef": (20, 10, 0.5, 0.5),
    "Mutton": (15, 11, 0.3, 0.7),
    "Rice": (0, 1, 10, 0.2),
    "Wheat": (4, 1, 15, 0.8),
    "Gel": (0, 0, 0, 0),
}

app = App("pyomo-blending", title="Pet-food blending (Pyomo)")
ingredients = app.set("ingredients", default=INGREDIENTS, title="Ingredients")
nutrients = app.set("nutrients", default=NUTRIENTS, title="Nutrients")
cost = app.parameter("cost", index=[ingredients], minimum=0, unit="$/kg", title="Cost", data=COST)
content = app.parameter(
    "content",
    index=[ingredients, nutrients],
    minimum=0,
    maximum=100,
    unit="%",
    title="Nutrient content",
    data={(i, n): v for i, values in CONTENT.items() for n, v in zip(NUTRIENTS, values, strict=True)},
)
min_pct = app.parameter(
    "min_pct", index=[nutrients], minimum=0, maximum=100, unit="%", title="At least", data={"Protein": 8, "Fat": 6}
)
max_pct = app.parameter(
    "max_pct",
    index=[nutrients],
    default=100.0,
    minimum=0,
    maximum=100,
    unit="%",
    title="At most",
    data={"Fibre": 2, "Salt": 0.4},
)
can_size = app.scalar("can_size", default=100.0, minimum=0, unit="g", title="Weight of a can")
max_ingredients = app.scalar("max_ingredients", type="int", default=6, minimum=1, title="Most ingredients in a can")
amount = app.output("amount", index=[ingredients], unit="g", title="Amount per can")
total_cost = app.output("total_cost", unit="$", title="Cost of a can")
status = app.output("status", type="str", title="Solver status")


def build_model(data) -> pyo.ConcreteModel:
    size = data["can_size"]
    m = pyo.ConcreteModel("blending")
    m.I = pyo.Set(initialize=data["ingredients"])
    m.N = pyo.Set(initialize=data["nutrients"])
    m.amount = pyo.Var(m.I, domain=pyo.NonNegativeReals)
    m.used = pyo.Var(m.I, domain=pyo.Binary)
    m.cost = pyo.Objective(expr=sum(data["cost"][i] / 1000 * m.amount[i] for i in m.I))
    m.fill = pyo.Constraint(expr=sum(m.amount[i] for i in m.I) == size)
    m.nutrient = pyo.Constraint(
        m.N,
        rule=lambda m, n: pyo.inequality(
            data["min_pct"][n] * size / 100,
            sum(data["content"][i, n] / 100 * m.amount[i] for i in m.I),
            data["max_pct"][n] * size / 100,
        ),
    )
    m.only_used = pyo.Constraint(m.I, rule=lambda m, i: m.amount[i] <= size * m.used[i])
    m.few = pyo.Constraint(expr=sum(m.used[i] for i in m.I) <= data["max_ingredients"])
    return m


@app.solve(title="Solve", time_limit=60)
def solve(data, ctx):
    data["amount"], data["total_cost"] = {}, 0.0
    if not data["ingredients"]:
        data["status"] = "Infeasible: there are no ingredients"
        raise ValueError(f"{data['status']} to fill a can with")
    m = build_model(data)
    opt = pyo.SolverFactory("appsi_highs")
    # Pyomo passes what HiGHS prints to a logger: keep it, and give it to ctx.log after the solve
    # (while HiGHS runs Pyomo holds stdout, where a server's ctx.log writes).
    output, lines = logging.getLogger("pyomo_blending.highs"), io.StringIO()
    output.setLevel(logging.INFO)
    output.propagate = False
    output.addHandler(handler := logging.StreamHandler(lines))
    opt.config.solver_output_logger = output
    limit = ctx.remaining_time()  # None: no limit; never 0, which would stop HiGHS before it starts
    try:
        results = opt.solve(m, load_solutions=False, timelimit=None if limit is None else max(0.01, limit))
    finally:
        output.removeHandler(handler)
    for line in lines.getvalue().splitlines():
        ctx.log(line)
    termination = results.solver.termination_condition
    ctx.log(f"Pyomo: termination {termination}, best cost {results.problem.upper_bound}")
    # The amounts are bounded (they fill one can), so "infeasible or unbounded" is infeasible.
    if termination in (pyo.TerminationCondition.infeasible, pyo.TerminationCondition.infeasibleOrUnbounded):
        data["status"] = "Infeasible: no blend meets the nutrient limits"
        raise ValueError(
            f"{data['status']} with at most {data['max_ingredients']} ingredient(s): "
            "relax a limit, allow more ingredients or add one"
        )
    if results.problem.upper_bound is None:  # no blend found (time limit, error): nothing to report
        data["status"] = f"No blend: {termination}"
        return
    opt.load_vars()  # the best blend found, optimal or not
    optimal = termination == pyo.TerminationCondition.optimal
    data["status"] = "Optimal" if optimal else f"Best blend found ({termination})"
    data["amount"] = {i: round(pyo.value(m.amount[i]), 6) for i in m.I}
    data["total_cost"] = round(pyo.value(m.cost), 6)
    ctx.progress(1.0, data["status"], objective=data["total_cost"])
    ctx.log(f"A can costs {data['total_cost']} $: " + ", ".join(f"{v:g} g {i}" for i, v in data["amount"].items() if v))


inputs = [Table(cost), Table(content), Table(min_pct), Table(max_pct), Field(can_size), Field(max_ingredients)]
app.page("Data", [*inputs, Button(solve)])
app.page("Results", [Field(status), Field(total_cost), Table(amount), Chart(amount, kind="bar")])
