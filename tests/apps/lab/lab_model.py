"""An app whose solve procedures misbehave on purpose: the job queue's test bench."""

import os
import subprocess
import time

import highspy

from pro_sdk import App, Button, Field

app = App("lab", title="Solve lab")
cap = app.scalar("cap", default=4.0, title="Upper bound of x")
seconds = app.scalar("seconds", default=0.0, title="How long the slow solve works")
objective = app.output("objective")
status = app.output("status", type="str")
steps = app.output("steps", type="int")


@app.solve(title="Solve")
def solve(data, ctx):
    """max x s.t. x <= cap, with HiGHS."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVariable(0, data["cap"], -1.0)
    h.run()
    data["objective"] = -h.getInfo().objective_function_value
    data["status"] = h.modelStatusToString(h.getModelStatus())
    ctx.log(f"objective {data['objective']}")


@app.solve(title="Slow")
def slow(data, ctx):
    """Improve an incumbent step by step until interrupted or out of steps."""
    deadline = time.monotonic() + data["seconds"]
    count = 0
    while time.monotonic() < deadline and not ctx.should_stop():
        count += 1
        data["steps"] = count
        data["objective"] = float(count)
        ctx.progress(None, f"step {count}", objective=float(count), bound=float(count) * 2)
        ctx.log(f"step {count}")
        time.sleep(0.05)
    data["status"] = "Interrupted" if ctx.should_stop() else "Finished"


@app.solve(title="Steady")
def steady(data, ctx):
    """Solve the egout MIP (optimum 568.1007) with HiGHS again and again for ``seconds``: a real solve
    that lasts as long as a test needs, to kill its node in the middle of it."""
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "egout.mps")
    deadline = time.monotonic() + data["seconds"]
    rounds = 0
    while True:
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.readModel(model)
        h.run()
        rounds += 1
        data["objective"] = h.getInfo().objective_function_value
        data["status"] = h.modelStatusToString(h.getModelStatus())
        data["steps"] = rounds
        ctx.log(f"round {rounds}: {data['status']}, objective {data['objective']:.4f}")
        ctx.progress(None, f"round {rounds}", objective=data["objective"], bound=data["objective"])
        if time.monotonic() >= deadline or ctx.should_stop():
            break
        time.sleep(0.1)


@app.solve(title="Hog memory")
def hog(data, ctx):
    blocks = []
    while True:
        blocks.append(bytearray(50 * 1024 * 1024))
        time.sleep(0.05)


@app.solve(title="Crash")
def crash(data, ctx):
    raise ValueError("row 3 of the demand table is negative")


@app.solve(title="Stubborn")
def stubborn(data, ctx):
    """Starts a child of its own and ignores interrupts: only a process-group kill stops it."""
    child = subprocess.Popen(["sleep", "600"])
    with open(os.path.join(os.getcwd(), "child.pid"), "w") as handle:
        handle.write(str(child.pid))
    ctx.log(f"child {child.pid} started")
    while True:
        time.sleep(0.1)


@app.procedure(title="Reset")
def reset(data):
    data["cap"] = 4.0


app.page(
    "Lab", [Field(cap), Field(seconds), Field(objective), Field(status), Button(solve), Button(slow), Button(reset)]
)
