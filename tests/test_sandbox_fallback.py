"""Where no sandbox can be made, no app code runs, unless an admin says PRO_SANDBOX=off (loudly)."""

from __future__ import annotations

import sys
import threading

import pytest

from sessions import launcher
from sessions.launcher import bwrap
from sessions.session_manager import SessionManager
from sessions.supervisor import SolveWorker


@pytest.fixture
def no_bubblewrap(monkeypatch):
    """This node as one without bwrap on its PATH (the real look-up, on a PATH that lacks it)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    bwrap.problem.cache_clear()
    yield
    bwrap.problem.cache_clear()


def test_without_bubblewrap_the_node_refuses_to_run_app_code_and_says_what_to_do(no_bubblewrap, tmp_path):
    with pytest.raises(launcher.SandboxUnavailable) as refused:
        launcher.mode()
    message = str(refused.value)
    assert "bubblewrap (bwrap) is not installed" in message
    assert "apt-get install bubblewrap" in message and "PRO_SANDBOX=off" in message
    spec = launcher.LaunchSpec(name="refused", interpreter=sys.executable, module="json.tool", workdir=tmp_path)
    with pytest.raises(launcher.SandboxUnavailable):
        launcher.launch(spec)
    assert launcher.describe()["sandbox"] == "unavailable"


@pytest.mark.django_db
def test_the_workers_stop_at_start_rather_than_run_apps_unconfined(no_bubblewrap):
    for worker in (SolveWorker("fallback-node", 1), SessionManager("fallback-node", pool_size=0)):
        with pytest.raises(launcher.SandboxUnavailable):
            worker.run(threading.Event())


def test_pro_sandbox_off_runs_unconfined_and_says_so(no_bubblewrap, settings, tmp_path, caplog):
    settings.PRO_SANDBOX = "off"
    assert launcher.mode() == "off" and launcher.describe()["sandbox"] == "off"
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "probe.py").write_text("import os; print(os.getuid(), os.path.exists('/proc/1/environ'))\n")
    spec = launcher.LaunchSpec(
        name="loose", interpreter=sys.executable, module="probe", workdir=folder, env={"PYTHONPATH": str(folder)}
    )
    completed = launcher.run(spec, timeout=30)
    assert completed.returncode == 0 and completed.stdout.split() == ["0", "True"]  # the platform's own rights
    assert "runs UNCONFINED" in caplog.text
