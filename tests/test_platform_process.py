"""``make run`` for real: migrate, bootstrap and ``run_platform`` in a fresh data folder on embedded SQLite.

Nothing here shares the test database: each test gets a data folder of its own, with the
settings a first-time user gets (no DATABASE_URL, REDIS_URL or PRO_STORAGE_URL).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_until
from tests.live import free_port, healthy, stop_group

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[1]
MANAGE = [sys.executable, str(ROOT / "manage.py")]
# How each child of run_platform shows in its command line (the web server: uvicorn, one process
# per core, each started as pro_portal.web_process).
CHILDREN = {
    "web": re.compile(r" -m pro_portal\.web_process "),
    "workers": re.compile(r"manage\.py qcluster\b"),
    "agent": re.compile(r"manage\.py node_agent\b"),
    "solves": re.compile(r"manage\.py solve_worker\b"),
    "sessions": re.compile(r"manage\.py session_manager\b"),
}


# ---------------------------------------------------------------- processes, read from /proc


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    start: int  # clock ticks after boot: with the pid, it names one process even if the pid is reused
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name in parentheses may hold spaces
    return Proc(pid=pid, ppid=int(fields[1]), state=fields[0], start=int(fields[19]), cmdline=cmdline)


def descendants(pid: int) -> list[Proc]:
    processes = [p for p in (read_proc(int(d.name)) for d in Path("/proc").iterdir() if d.name.isdigit()) if p]
    children: dict[int, list[Proc]] = {}
    for proc in processes:
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def still_there(proc: Proc) -> bool:
    """Whether the process exists: running, stopped or a zombie nobody has reaped yet."""
    now = read_proc(proc.pid)
    return now is not None and now.start == proc.start


# ---------------------------------------------------------------- a fresh platform


@dataclass
class FreshPlatform:
    data_dir: Path
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.data_dir / "db.sqlite3"

    def manage(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        completed = subprocess.run(
            [*MANAGE, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert completed.returncode == 0, f"manage.py {' '.join(args)}:\n{completed.stdout}\n{completed.stderr}"
        return completed

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.database) as db:
            return db.execute(sql, params).fetchall()


@pytest.fixture
def fresh(tmp_path) -> FreshPlatform:
    """Settings as on a first start: embedded defaults, a new data folder, a free port, no admin password."""
    data_dir = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRO_")}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "pro_portal.settings",
            "PRO_DATA_DIR": str(data_dir),
            "PRO_HTTP_PORT": str(port),
            "PRO_NODE_NAME": f"fresh-node-{port}",
            # The sample apps' requirements from the tests' local wheels, not the package index.
            "PRO_PACKAGE_INDEX_URL": "",
            "PRO_FIND_LINKS": str(ROOT / "var" / "test-wheelhouse"),
        }
    )
    return FreshPlatform(data_dir=data_dir, port=port, env=env)


class RunningPlatform:
    """``manage.py run_platform`` in a session of its own, its output in a file."""

    def __init__(self, platform: FreshPlatform, log: Path):
        self.log_path = log
        with open(log, "wb") as sink:
            self.process = subprocess.Popen(
                [*MANAGE, "run_platform"],
                cwd=ROOT,
                env=platform.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, url: str, timeout: float = 60) -> None:
        up = wait_until(lambda: self.process.poll() is not None or healthy(url), timeout, interval=0.1)
        assert up and self.process.poll() is None, f"the platform did not come up at {url}:\n{self.log()[-5000:]}"

    def children(self) -> dict[str, Proc]:
        """The platform's own children, by role, once every one of them is running."""

        def find():
            procs = descendants(self.process.pid)
            found = {
                role: next((p for p in procs if p.ppid == self.process.pid and marker.search(p.cmdline)), None)
                for role, marker in CHILDREN.items()
            }
            return found if all(found.values()) else None

        found = wait_until(find, 30, interval=0.1)
        assert found, f"not all of {sorted(CHILDREN)} run under run_platform: {descendants(self.process.pid)}"
        return found

    def stop(self, sig: signal.Signals, *, group: bool = False) -> tuple[int, list[Proc]]:
        """Signal run_platform (with ``group``, its whole process group, as Ctrl-C in a terminal does).

        Wait for it to exit; return its exit code and the descendants it had just before the signal.
        """
        before = descendants(self.process.pid)
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run_platform did not stop within 15s of {sig.name}:\n{self.log()[-5000:]}") from None
        return code, before

    def cleanup(self) -> None:
        stop_group(self.process, timeout=5)


@pytest.fixture
def start_platform(tmp_path):
    started: list[RunningPlatform] = []

    def start(platform: FreshPlatform) -> RunningPlatform:
        running = RunningPlatform(platform, tmp_path / f"run_platform-{len(started)}.log")
        started.append(running)
        return running

    yield start
    for running in started:
        running.cleanup()


def sample_apps() -> set[str]:
    """The names of the sample apps: every folder of examples/ with a manifest."""
    return {
        tomllib.loads(manifest.read_text())["name"]
        for manifest in (ROOT / "examples").glob("*/manifest.toml")
        if manifest.is_file()
    }


def counts(platform: FreshPlatform) -> dict[str, int]:
    tables = ["auth_user", "auth_group", "catalog_app", "catalog_appversion", "catalog_appgrant", "catalog_runtime"]
    return {table: platform.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in tables}  # noqa: S608


def assert_all_gone(procs: list[Proc], log: str) -> None:
    # Orphans are reaped by init, which may take a moment: poll until none is left.
    wait_until(lambda: not any(still_there(p) for p in procs), 5)
    left = [p for p in procs if still_there(p)]
    assert not left, f"still there after run_platform stopped: {left}\n{log[-5000:]}"


# ---------------------------------------------------------------- tests


def test_make_run_on_a_fresh_data_folder(fresh, start_platform):
    expected_apps = sample_apps()
    assert expected_apps, "examples/ holds no app with a manifest.toml"

    fresh.manage("migrate", "--noinput")
    fresh.manage("collectstatic", "--noinput", "--verbosity", "0")

    # First bootstrap: a generated admin password, shown once and kept in a private file.
    first = fresh.manage("pro_bootstrap").stdout
    shown = re.findall(r"Created the first admin: user 'admin', password (\S+) \(also in (.+)\)", first)
    assert len(shown) == 1, first
    password, path = shown[0]
    assert first.count(password) == 1
    password_file = fresh.data_dir / "admin-password.txt"
    assert Path(path) == password_file
    assert password_file.read_text() == password + "\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    for name in expected_apps:
        assert re.search(rf"^Published sample app {re.escape(name)} \S+ \(verified\)$", first, re.MULTILINE), first
    after_first = counts(fresh)
    assert after_first["catalog_app"] == len(expected_apps)
    assert after_first["auth_user"] == 1

    # Second bootstrap: nothing new, no password.
    second = fresh.manage("pro_bootstrap").stdout
    assert "password" not in second.lower()
    assert password not in second
    assert "Published" not in second
    assert counts(fresh) == after_first
    assert password_file.read_text() == password + "\n"

    platform = start_platform(fresh)
    platform.wait_healthy(fresh.url)
    assert f"Platform up at {fresh.url}/" in platform.log()

    # The admin logs in with the generated password and sees the sample apps.
    answer = requests.post(
        f"{fresh.url}/api/v1/auth/tickets", json={"username": "admin", "password": password}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    ticket = answer.json()["ticket"]
    apps = requests.get(f"{fresh.url}/api/v1/apps", headers={"Authorization": f"Bearer {ticket}"}, timeout=10)
    assert apps.status_code == 200, apps.text
    assert {app["name"] for app in apps.json()} == expected_apps
    assert all(app["latest_version"] for app in apps.json())

    children = platform.children()
    # The node agent registered this node, as up, speaking through its own process.
    node = wait_until(lambda: fresh.query("SELECT name, state, pid FROM cluster_node WHERE state = 'up'"), 30)
    assert node == [(fresh.env["PRO_NODE_NAME"], "up", children["agent"].pid)], platform.log()[-3000:]

    code, before = platform.stop(signal.SIGINT)
    assert code == 0, platform.log()[-5000:]
    assert {p.pid for p in children.values()} <= {p.pid for p in before}
    assert_all_gone(before, platform.log())
    assert "Platform stopped." in platform.log()
    assert fresh.query("SELECT state FROM cluster_node") == [("stopped",)]
    assert not healthy(fresh.url)


def test_http_port_moves_the_web_server(fresh, start_platform):
    fresh.manage("migrate", "--noinput")
    other_port = free_port()
    fresh.env["PRO_HTTP_PORT"] = str(other_port)

    platform = start_platform(fresh)
    platform.wait_healthy(f"http://127.0.0.1:{other_port}")
    web = platform.children()["web"]
    assert re.search(rf" --port {other_port}\b", web.cmdline), web.cmdline
    assert f"Platform up at http://127.0.0.1:{other_port}/" in platform.log()
    answer = requests.get(f"http://127.0.0.1:{other_port}/healthz", timeout=5).json()
    assert answer == {"status": "ok", "node": fresh.env["PRO_NODE_NAME"]}
    assert not healthy(fresh.url)  # the port first chosen for it stays free

    # Ctrl-C in a terminal: SIGINT reaches run_platform and every child at once.
    code, before = platform.stop(signal.SIGINT, group=True)
    assert code == 0, platform.log()[-5000:]
    assert_all_gone(before, platform.log())
    assert "Platform stopped." in platform.log()


def test_a_child_that_dies_is_restarted_and_counted(fresh, start_platform):
    fresh.manage("migrate", "--noinput")
    platform = start_platform(fresh)
    platform.wait_healthy(fresh.url)
    children = platform.children()
    assert wait_until(lambda: fresh.query("SELECT restarts FROM cluster_node WHERE state = 'up'"), 30) == [(0,)]

    victim = children["solves"]
    os.kill(victim.pid, signal.SIGKILL)
    # The same command comes back under run_platform as a new process; the other children were left alone.
    again = wait_until(lambda: (found := platform.children())["solves"].pid != victim.pid and found, 30)
    assert again, platform.log()[-5000:]
    assert platform.process.poll() is None, platform.log()[-5000:]
    assert again["solves"].cmdline == victim.cmdline
    assert {role: p.pid for role, p in again.items() if role != "solves"} == {
        role: p.pid for role, p in children.items() if role != "solves"
    }
    log = platform.log()
    assert "solves stopped unexpectedly (killed by SIGKILL); restarting it in 1s." in log, log[-5000:]
    assert f"solves restarted (pid {again['solves'].pid})." in log

    row = "SELECT restarts, last_restart_child, last_restart_reason, last_restart_at IS NOT NULL FROM cluster_node"
    assert wait_until(lambda: fresh.query(row) == [(1, "solves", "killed by SIGKILL", 1)], 10), fresh.query(row)
    assert healthy(fresh.url)

    code, before = platform.stop(signal.SIGINT, group=True)
    assert code == 0, platform.log()[-5000:]
    assert again["solves"].pid in {p.pid for p in before}
    assert_all_gone([*before, victim], platform.log())
    assert "Platform stopped." in platform.log()
    assert "stopped unexpectedly" not in platform.log().split("solves restarted")[1]  # Ctrl-C restarts nothing


def test_a_port_in_use_stops_the_start_before_any_child(fresh):
    """The web processes share their port (SO_REUSEPORT): one held by another server is refused."""
    import socket

    fresh.manage("migrate", "--noinput")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        fresh.env["PRO_HTTP_PORT"] = str(taken.getsockname()[1])
        started = subprocess.run(
            [*MANAGE, "run_platform"], cwd=ROOT, env=fresh.env, capture_output=True, text=True, timeout=120
        )
    assert started.returncode != 0
    assert "is the platform running already?" in started.stderr
    assert "Platform up" not in started.stdout


def test_a_web_process_that_dies_is_restarted_and_the_others_serve_meanwhile(fresh, start_platform):
    fresh.manage("migrate", "--noinput")
    fresh.env["PRO_WEB_WORKERS"] = "2"
    platform = start_platform(fresh)
    platform.wait_healthy(fresh.url)
    webs = [p for p in descendants(platform.process.pid) if CHILDREN["web"].search(p.cmdline)]
    assert len(webs) == 2, webs
    os.kill(webs[0].pid, signal.SIGKILL)
    gone = wait_until(lambda: (read_proc(webs[0].pid) or webs[0]).state in "ZX" or read_proc(webs[0].pid) is None, 10)
    assert gone
    # Its socket went with it (a connection it had not taken yet was reset): every new one reaches the other.
    assert all(requests.get(f"{fresh.url}/healthz", timeout=5).status_code == 200 for _ in range(20))
    restarted = wait_until(
        lambda: len([p for p in descendants(platform.process.pid) if CHILDREN["web"].search(p.cmdline)]) == 2, 30
    )
    assert restarted, platform.log()
    assert "restarted" in platform.log()
