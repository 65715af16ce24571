"""The smallest real solve: one variable, one bound, HiGHS. Logs when it is entered."""

import time

import highspy

from pro_sdk import App, Button, Field

app = App("bench-trivial", title="Trivial solve")
value = app.output("value")


@app.solve(title="Solve")
def solve(data, ctx):
    ctx.log(f"entered {time.time():.6f}")
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVariable(0, 1, -1.0)
    h.run()
    data["value"] = -h.getInfo().objective_function_value


app.page("Main", [Field(value), Button(solve)])
