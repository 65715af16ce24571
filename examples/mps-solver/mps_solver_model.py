"""Solve an LP or MIP given as an MPS file in storage with HiGHS."""

import highspy

from pro_sdk import App, Button, Field, attach_highs, has_solution, run_highs

app = App(
    "mps-solver",
    title="MPS solver",
    description="Solve an MPS model file from the app's storage folder with HiGHS.",
)
model_file = app.scalar(
    "model_file",
    type="str",
    default="apps/mps-solver/data/afiro.mps",
    title="Model file (storage path)",
    description="A storage path such as apps/mps-solver/data/afiro.mps",
)
status = app.output("status", type="str", title="Status")
objective = app.output("objective", title="Objective")
solve_seconds = app.output("solve_seconds", unit="s", title="Solve time")


@app.solve(title="Solve")
def solve(data, ctx):
    path = ctx.local_path(data["model_file"])
    data["objective"] = 0.0
    data["solve_seconds"] = 0.0
    h = highspy.Highs()
    # Attached before reading, so that HiGHS's reasons for refusing a file reach the log.
    attach_highs(h, ctx)
    if h.readModel(str(path)) == highspy.HighsStatus.kError:
        data["status"] = f"Cannot read {data['model_file']} as an MPS model"
        ctx.log(data["status"])
        return
    data["status"] = run_highs(h, ctx)
    data["solve_seconds"] = round(h.getRunTime(), 6)
    # Without a solution HiGHS's objective value means nothing (and may be infinite).
    if has_solution(h):
        data["objective"] = h.getInfo().objective_function_value
    ctx.log(f"{data['model_file']}: {data['status']}, objective {data['objective']}, {data['solve_seconds']} s")


app.page("Model", [Field(model_file), Button(solve), Field(status), Field(objective), Field(solve_seconds)])
