"""Solve an LP or MIP given as an MPS or LP file in storage with HiGHS.

Besides the status, objective and solve time, the solve reports the value of every column and,
when HiGHS has them (an LP solved to a basis or an interior point), the dual value of every row,
by their names in the file. The sets ``columns`` and ``rows`` are filled by the solve: the
model's names are only known once the file is read. ``pro_sdk.client.Client.solve`` relies on
``columns`` and ``col_value`` to map a solution back to the caller's own model.
"""

import math

import highspy

from pro_sdk import App, Button, Field, Table, attach_highs, has_solution, run_highs

# HiGHS's value of dual_solution_status when the row duals are those of a feasible dual point.
DUALS_FEASIBLE = 2

app = App(
    "mps-solver",
    title="MPS solver",
    description="Solve an MPS or LP model file from storage with HiGHS.",
)
model_file = app.scalar(
    "model_file",
    type="str",
    default="apps/mps-solver/data/afiro.mps",
    title="Model file (storage path)",
    description="A storage path such as apps/mps-solver/data/afiro.mps: an .mps or .lp file (also gzipped: .mps.gz)",
)
columns = app.set("columns", title="Columns", description="The model's columns (variables), filled by the solve")
rows = app.set("rows", title="Rows", description="The model's rows (constraints), filled when their duals are known")
status = app.output("status", type="str", title="Status")
objective = app.output("objective", title="Objective")
solve_seconds = app.output("solve_seconds", unit="s", title="Solve time")
mip_gap = app.output(
    "mip_gap",
    title="MIP gap",
    description="For a MIP with a solution, HiGHS's relative gap between it and the best bound; 0 otherwise",
)
col_value = app.output("col_value", index=[columns], title="Column values")
row_dual = app.output("row_dual", index=[rows], title="Row duals")


@app.solve(title="Solve")
def solve(data, ctx):
    path = ctx.local_path(data["model_file"])
    data["objective"] = 0.0
    data["solve_seconds"] = 0.0
    data["mip_gap"] = 0.0
    data["columns"] = []  # a solution of an earlier model must not stay next to this one's status
    data["rows"] = []
    h = highspy.Highs()
    # Attached before reading, so that HiGHS's reasons for refusing a file reach the log.
    attach_highs(h, ctx)
    if h.readModel(str(path)) == highspy.HighsStatus.kError:
        data["status"] = f"Cannot read {data['model_file']} as an MPS or LP model"
        ctx.log(data["status"])
        return
    data["status"] = run_highs(h, ctx)
    data["solve_seconds"] = round(h.getRunTime(), 6)
    # Without a solution HiGHS's objective value and column values mean nothing (and may be infinite).
    if has_solution(h):
        report_solution(data, h)
    ctx.log(f"{data['model_file']}: {data['status']}, objective {data['objective']}, {data['solve_seconds']} s")


def report_solution(data, h: highspy.Highs) -> None:
    """The objective, the column values and, when HiGHS has them, the row duals and the MIP gap."""
    info, lp, solution = h.getInfo(), h.getLp(), h.getSolution()
    data["objective"] = info.objective_function_value
    data["columns"] = unique_names(lp.col_names_, h.getNumCol(), "c")
    data["col_value"] = dict(zip(data["columns"], solution.col_value, strict=True))
    # A MIP has no duals, nor has an LP stopped before its dual was feasible.
    if info.dual_solution_status == DUALS_FEASIBLE:
        data["rows"] = unique_names(lp.row_names_, h.getNumRow(), "r")
        data["row_dual"] = dict(zip(data["rows"], solution.row_dual, strict=True))
    if info.mip_node_count >= 0:  # HiGHS ran its MIP solver (it counts -1 nodes for an LP)
        data["mip_gap"] = info.mip_gap if math.isfinite(info.mip_gap) else 0.0


def unique_names(names: list[str], count: int, prefix: str) -> list[str]:
    """The model's names of its columns or rows, in order. A model read from a file names them
    all, uniquely; ``c<i>`` or ``r<i>`` stand in otherwise, since a set needs unique elements."""
    names = [name or f"{prefix}{i}" for i, name in enumerate(names)]
    if len(names) != count or len(set(names)) != count:
        names = [f"{prefix}{i}" for i in range(count)]
    return names


app.page(
    "Model",
    [
        Field(model_file),
        Button(solve),
        Field(status),
        Field(objective),
        Field(solve_seconds),
        Field(mip_gap),
        Table(col_value),
    ],
)
app.page("Duals", [Table(row_dual)])
