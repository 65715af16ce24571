"""A solve that looks for the jobs running beside it on the node, and says what it found.

Each job leaves a marker file in its working folder, /tmp and /dev/shm, waits so that its
neighbours run at the same time, then searches the whole file system for the others' markers,
tries to reach processes outside its own, and to undo its own walls. The report is the
``report`` output (JSON). Standard library only.
"""

import contextlib
import ctypes
import json
import os
import secrets
import threading
import time

from pro_sdk import App, Button, Field

app = App("walls", title="Walls between jobs")
seconds = app.scalar("seconds", default=2.0, title="How long to wait for the neighbours")
report = app.output("report", type="str", title="What the job found")

MARKER = "walls-marker-"
SKIP = ("/usr", "/sys", "/proc")  # the system's files, and /proc's own (see _through_proc)


def _markers() -> list[str]:
    found = []
    for top, folders, files in os.walk("/", onerror=lambda error: None):
        if top.startswith(SKIP):
            folders[:] = []
            continue
        found += [os.path.join(top, name) for name in files if name.startswith(MARKER)]
    return sorted(found)


def _through_proc() -> list[str]:
    """Markers in the working folders of the processes /proc shows, through their root."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() or entry == "self":
            for folder in (f"/proc/{entry}/root/pro/work", f"/proc/{entry}/cwd"):
                with contextlib.suppress(OSError):
                    found += [f"{folder}/{name}" for name in os.listdir(folder) if name.startswith(MARKER)]
    return found


def _signalable(own: set[int]) -> list[int]:
    reached = []
    for pid in range(1, 4096):
        if pid in own:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        reached.append(pid)
    return reached


def _status(field: str) -> str:
    with open("/proc/self/status") as handle:
        return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(field + ":")), "")


def _undo_walls() -> dict[str, str]:
    libc = ctypes.CDLL(None, use_errno=True)
    outcomes = {}
    for name, call in (
        ("unmount the working folder", lambda: libc.umount2(b"/pro/work", 2)),
        ("unmount /proc", lambda: libc.umount2(b"/proc", 2)),
        ("mount a new proc", lambda: libc.mount(b"proc", b"/tmp", b"proc", 0, None)),
        ("make a user namespace", lambda: libc.unshare(0x10000000)),
        ("ptrace the init", lambda: libc.ptrace(16, 1, None, None)),  # PTRACE_ATTACH
    ):
        result = call()
        outcomes[name] = "SUCCEEDED" if result == 0 else f"denied: {os.strerror(ctypes.get_errno())}"
    if outcomes["ptrace the init"] == "SUCCEEDED":  # let go of it (a sandbox's own init: its own)
        os.waitpid(1, 0x40000000)  # __WALL: its stop after the attach
        libc.ptrace(17, 1, None, None)  # PTRACE_DETACH
    return outcomes


@app.solve(title="Look for the neighbours")
def look(data, ctx):
    token = secrets.token_hex(4)
    mine = [f"/pro/work/{MARKER}{token}", f"/tmp/{MARKER}{token}", f"/dev/shm/{MARKER}{token}"]
    for path in mine:
        with open(path, "w") as handle:
            handle.write(token)
    with contextlib.suppress(OSError), open(f"/dev/{MARKER}{token}", "w") as handle:
        handle.write(token)  # where /dev is writable, a neighbour must not see it either
    time.sleep(data["seconds"])
    # Its own threads: Python's, and (where /proc numbers them as the job does) the solver's.
    own = {1, os.getpid(), *(thread.native_id for thread in threading.enumerate())}
    if _status("Pid") == str(os.getpid()):
        own |= {int(task) for task in os.listdir("/proc/self/task")}
    found = {
        "token": token,
        "others' markers": [path for path in _markers() if not path.endswith(token)],
        "own markers": [path for path in _markers() if path.endswith(token)],
        "others' markers through /proc": [path for path in _through_proc() if not path.endswith(token)],
        "signalable": _signalable(own),
        "pid": os.getpid(),
        "proc": sorted(os.listdir("/proc")),
        "working folder": sorted(os.listdir("/pro/work")),
        "capabilities": _status("CapEff"),
        "no new privileges": _status("NoNewPrivs"),
        "undo": _undo_walls(),
    }
    data["report"] = json.dumps(found)
    ctx.log("WALLS " + data["report"])


app.page("Main", [Field(seconds), Field(report), Button(look)])
