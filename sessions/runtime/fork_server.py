"""A solve sandbox that forks one walled-off process per job, warm. No Django here.

A job started cold pays for a sandbox, an interpreter and the imports of numpy and HiGHS: a
tenth of a second of CPU or more before the app's first line. This server pays that once: it
imports what every job imports, then forks one child per job the worker asks for, so that a job
costs a fork and the app's own import.

Each job's processes are walled off from the server and from each other, as a cold sandbox's
are. The child makes new user, mount, PID, network and IPC namespaces, and then:

- mounts its own folder (``jobs/NAME`` of the server's working folder, filled by the worker)
  over ``/pro/work``, and its ``app`` read-only: the other jobs' folders are out of reach;
- mounts a fresh ``/tmp`` (with what the server's sandbox mounted below it: a runtime
  installed under /tmp) and a ``/dev`` of its own (the devices bubblewrap gives, a new
  ``/dev/pts`` and ``/dev/shm``);
- replaces ``/proc`` with a read-only one holding a few node-wide files and the job's own
  process as ``self``: another job's processes cannot even be named (the server's sandbox
  ``/proc`` cannot be mounted afresh in a nested namespace, see docs/security.md);
- drops every capability (what it held in its new user namespace to make the mounts) and
  gains none by exec (no new privileges), so none of this can be undone; a system call filter
  then refuses new namespaces and the kernel's keyrings (the server's sandbox had to be
  allowed namespaces; a cold sandbox is refused them by bubblewrap);
- its init process and the child above it leave the server's working folder and cannot be
  ptraced by the app;
- closes every descriptor but the job's stdin, stdout/stderr and control channel.

Only jobs that import nothing but the runtime's own packages are forked here (the worker's
choice): what the server imported ahead is then the runtime's code, which an admin installed,
never a publisher's.

The worker talks to the server over a Unix ``SOCK_SEQPACKET`` socket (``PRO_FORK_FD``): a
request is a JSON message ``{"name": ...}`` with the job's stdin, stdout and control descriptors
attached; the answers are ``{"name", "pid"}`` (the job's init, as this sandbox numbers it: the
worker then moves the job into its own cgroup before it says GO on stdin),
``{"name", "error"}`` and ``{"name", "exit"}`` (128 + N when signal N ended it).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import NoReturn

from . import namespaces
from .warm import READY, warm_imports

FORK_FD = "PRO_FORK_FD"
TMP_BYTES = "PRO_FORK_TMP_BYTES"  # the size of each job's /tmp and /dev/shm
WORK = "/pro/work"  # as sessions.launcher.bwrap.INSIDE_WORK
JOBS = "jobs"  # in the server's working folder: one folder per job
PROC_FILES = ("cpuinfo", "meminfo", "stat", "loadavg", "uptime", "version", "filesystems")
PROC_LINKS = ("mounts", "net")  # as /proc has them: the app's own
APP_PID = 2  # the app's pid in its namespace: its init forks it first
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
EXIT_SETUP = 125  # the job's walls could not be built: no app code ran
HIGH_FD = 100  # received descriptors are moved up here before they take 0-3


def exit_code(status: int) -> int:
    """A wait status as a shell (and bubblewrap) reports it: the code, or 128 + the signal."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _send(channel: socket.socket, **message: object) -> None:
    with contextlib.suppress(OSError):  # the worker is gone; this sandbox dies with it
        channel.send(json.dumps(message).encode())


def _job_folder(name: object) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a job folder name: {name!r}")
    return f"{WORK}/{JOBS}/{name}"


def _wall_off(folder: str, app_pid: int, tmp_bytes: int) -> None:
    """The job's mounts (see the module's docstring), made in its new mount namespace."""
    namespaces.make_mounts_private()
    namespaces.bind(folder, WORK)
    if os.path.isdir(f"{WORK}/app"):
        namespaces.bind(f"{WORK}/app", f"{WORK}/app", read_only=True)
    _new_tmp(tmp_bytes)
    _new_dev(tmp_bytes)
    _new_proc(app_pid)


def _mount_points_under(folder: str) -> list[str]:
    """The outermost mount points below ``folder`` in this mount namespace."""
    points: list[str] = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = re.sub(r"\\([0-7]{3})", lambda code: chr(int(code[1], 8)), line.split()[4])  # "\040": a space
            if point.startswith(folder + "/") and not any(point.startswith(p + "/") for p in points):
                points = [p for p in points if not p.startswith(point + "/")] + [point]
    return points


def _new_tmp(tmp_bytes: int) -> None:
    """A /tmp of the job's own, showing what the server's sandbox mounted below /tmp (a runtime
    installed under /tmp, as in a checkout there): a bare tmpfs would hide it."""
    tmp = "/tmp"  # noqa: S108 - the job's own, made here
    kept = _mount_points_under(tmp)
    staging = "/dev/shm"  # noqa: S108 - the server's, covered for the moment (the job gets its own /dev)
    namespaces.tmpfs(staging, tmp_bytes)
    for point in kept:
        target = staging + point[len(tmp) :]
        if os.path.isdir(point):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        namespaces.mount(point, target, None, namespaces.MS_BIND | namespaces.MS_REC)
    namespaces.move(staging, tmp)


def _new_dev(tmp_bytes: int) -> None:
    """A /dev of the job's own, as bubblewrap makes one: the server's is one writable folder."""
    staging = "/tmp/.dev"  # noqa: S108 - built where the server's /dev can still be bound from
    os.mkdir(staging)
    namespaces.tmpfs(staging, 64 * 1024, mode="0755")
    for name in DEVICES:
        open(f"{staging}/{name}", "w").close()
        namespaces.bind(f"/dev/{name}", f"{staging}/{name}")
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{staging}/{name}")
    for name in ("shm", "pts"):
        os.mkdir(f"{staging}/{name}")
    namespaces.tmpfs(f"{staging}/shm", tmp_bytes)
    namespaces.mount(
        "devpts",
        f"{staging}/pts",
        "devpts",
        namespaces.MS_NOSUID | namespaces.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=620",
    )
    flags = namespaces.MS_REMOUNT | namespaces.MS_RDONLY | namespaces.MS_NOSUID
    namespaces.mount(None, staging, None, flags)
    namespaces.move(staging, "/dev")
    os.rmdir(staging)


def _new_proc(app_pid: int) -> None:
    """A read-only /proc: a few node-wide files and the job's app process as "self"."""
    staging = "/tmp/.proc"  # noqa: S108
    os.mkdir(staging)
    namespaces.tmpfs(staging, 1024 * 1024, mode="0555")
    for name in PROC_FILES:
        if os.path.exists(f"/proc/{name}"):
            open(f"{staging}/{name}", "w").close()
            namespaces.bind(f"/proc/{name}", f"{staging}/{name}", read_only=True)
    for name in ("self", str(APP_PID)):
        os.mkdir(f"{staging}/{name}")
        namespaces.bind(f"/proc/{app_pid}", f"{staging}/{name}", read_only=True)
    for name in PROC_LINKS:
        os.symlink(f"self/{name}", f"{staging}/{name}")
    flags = namespaces.MS_REMOUNT | namespaces.MS_RDONLY | namespaces.MS_NOSUID | namespaces.MS_NODEV
    namespaces.mount(None, staging, None, flags)
    namespaces.move(staging, "/proc")
    os.rmdir(staging)


def _app(ready: int, fds: list[int]) -> NoReturn:
    """The job's app process: once the walls stand, the job's descriptors as 0-3, then the
    solve runner's order."""
    code = EXIT_SETUP
    try:
        namespaces.die_with_parent(signal.SIGKILL)
        if os.read(ready, 1) != b"1":
            os._exit(EXIT_SETUP)
        namespaces.drop_capabilities()
        namespaces.forbid_namespaces()
        os.setsid()
        high = [os.dup2(fd, HIGH_FD + number) for number, fd in enumerate(fds)]
        for target, fd in zip((0, 1, 2, 3), (high[0], high[1], high[1], high[2]), strict=True):
            os.dup2(fd, target)
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))
        os.environ["PRO_CONTROL_FD"] = "3"
        os.chdir(WORK)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from . import solve_runner

        if sys.stdin.readline().strip() != "GO":
            os._exit(solve_runner.EXIT_BAD_JOB)  # the pool was emptied: no job for this one
        solve_runner.exit_now(solve_runner.serve(Path(WORK)))
    except BaseException as exc:
        print(f"START FAILED: {exc}", file=sys.stderr, flush=True)
    os._exit(code)


def _init(ready: int, fds: list[int]) -> NoReturn:
    """Pid 1 of the job's namespace: forks the app, reaps, ends with the app's code."""
    code = EXIT_SETUP
    try:
        namespaces.die_with_parent(signal.SIGKILL)
        # Its working folder was the server's, which holds every job's folder: nothing of it is
        # kept, and the app (same user, and able to name it as pid 1) may not ptrace it.
        os.chdir("/")
        namespaces.undumpable()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        app = os.fork()
        if app == 0:
            _app(ready, fds)
        namespaces.drop_capabilities()
        os.closerange(0, os.sysconf("SC_OPEN_MAX"))
        while True:  # reap the orphans the app leaves, until the app itself ends
            pid, status = os.wait()
            if pid == app:
                code = exit_code(status)
                break
    except BaseException:  # noqa: S110 - nothing to report to: the worker sees the exit code
        pass
    os._exit(code)


def _app_pid(init_pid: int) -> int:
    """The app's pid (as the server's sandbox numbers it): the init's one child, once forked."""
    for _ in range(10000):
        with open(f"/proc/{init_pid}/task/{init_pid}/children") as handle:
            found = handle.read().split()
        if found:
            return int(found[0])
        time.sleep(0.0002)
    raise OSError(f"the job's init {init_pid} started no app")


def _child(request: dict, fds: list[int], channel: socket.socket, tmp_bytes: int) -> NoReturn:
    """The forked child: makes the job's namespaces, its init, its walls; reports; waits."""
    name = request.get("name")
    code = EXIT_SETUP
    try:
        namespaces.die_with_parent(signal.SIGKILL)
        os.chdir("/")
        namespaces.undumpable()
        folder = _job_folder(name)
        uid, gid = os.getuid(), os.getgid()
        flags = namespaces.CLONE_NEWUSER | namespaces.CLONE_NEWNS | namespaces.CLONE_NEWPID
        namespaces.unshare(flags | namespaces.CLONE_NEWNET | namespaces.CLONE_NEWIPC)
        namespaces.map_own_ids(uid, gid)
        ready_read, ready_write = os.pipe()
        init = os.fork()
        if init == 0:
            channel.close()
            os.close(ready_write)
            _init(ready_read, fds)
        os.close(ready_read)
        for fd in fds:
            os.close(fd)
        _wall_off(folder, _app_pid(init), tmp_bytes)
        namespaces.drop_capabilities()
        os.write(ready_write, b"1")
        os.close(ready_write)
        _send(channel, name=name, pid=init)
        channel.close()
        code = exit_code(os.waitpid(init, 0)[1])
    except BaseException as exc:
        _send(channel, name=name, error=str(exc))
    os._exit(code)


def _reap(children: dict[int, str], channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        name = children.pop(pid, None)
        if name is not None:
            _send(channel, name=name, exit=exit_code(status))


def serve(channel: socket.socket, tmp_bytes: int) -> None:
    """Fork a job per request until the worker closes the channel."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, str] = {}
    while True:
        readable = select.select([channel.fileno(), wake_read], [], [])[0]
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(children, channel)
        if channel.fileno() not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(channel, 65536, 3)
        except ConnectionError:
            message, fds = b"", []
        if not message:
            return  # the worker closed the channel: its jobs die with this sandbox
        try:
            request = json.loads(message)
            if not isinstance(request, dict):
                raise ValueError("not an object")
            pid = os.fork() if len(fds) == 3 else -1
        except (ValueError, OSError) as exc:
            _send(channel, name=None, error=f"bad request: {exc}")
            pid = -1
        if pid == 0:
            children.clear()  # the other jobs' names stay out of this one's memory
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_read)
            os.close(wake_write)
            _child(request, fds, channel, tmp_bytes)
        if pid > 0:
            children[pid] = request.get("name")
        for fd in fds:
            os.close(fd)


def main() -> int:
    channel = socket.socket(fileno=int(os.environ.pop(FORK_FD)))
    tmp_bytes = int(os.environ.pop(TMP_BYTES, str(64 * 1024 * 1024)))
    warm_imports("sessions.runtime.case", "sessions.runtime.loader", "sessions.runtime.sdk")
    from . import solve_runner  # noqa: F401 - imported once here, not by each job

    # What is imported stays out of the collector's sight: a job's first collection would
    # otherwise write to every page of it, and copy them all from the server.
    gc.collect()
    gc.freeze()
    print(READY, flush=True)
    serve(channel, tmp_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
