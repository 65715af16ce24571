"""Solve an MPS model file from storage with HiGHS."""

import highspy

from pro_sdk import App, Button, Field, run_highs

app = App("mps-solver", title="MPS solver")
model_file = app.scalar(
    "model_file", type="str", default="apps/mps-solver/data/afiro.mps", title="Model file (storage path)"
)
status = app.output("status", type="str", title="Status")
objective = app.output("objective", title="Objective")
solve_seconds = app.output("solve_seconds", unit="s", title="Solve time")


@app.solve(title="Solve")
def solve(data, ctx):
    path = ctx.local_path(data["model_file"])
    h = highspy.Highs()
    read = h.readModel(str(path))
    if read == highspy.HighsStatus.kError:
        data["status"] = f"Cannot read {data['model_file']} as an MPS model"
        ctx.log(data["status"])
        return
    data["status"] = run_highs(h, ctx)
    data["objective"] = h.getInfo().objective_function_value
    data["solve_seconds"] = round(h.getRunTime(), 6)
    ctx.log(f"{data['model_file']}: {data['status']}, objective {data['objective']}, {data['solve_seconds']} s")


app.page("Model", [Field(model_file), Button(solve), Field(status), Field(objective), Field(solve_seconds)])
