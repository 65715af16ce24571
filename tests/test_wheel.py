"""The client side installed on its own: the wheel that ``make dist`` builds, installed with pip
into a fresh virtual environment, runs ``pro``, the Python client and the app SDK without Django,
and submits a job to a real node.

Everything in that environment runs from a folder outside the checkout, with no ``PYTHONPATH``, so
that only what the wheel installed can be imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import EXAMPLES, LAB, ROOT, publish_folder

pytestmark = pytest.mark.slow  # builds a wheel and installs it with its dependencies (about 130 MB)

INSTALL_TIMEOUT = 600  # seconds: from pip's cache it takes seconds, from the package index longer
SERVING = re.compile(r"Serving .* at http://127\.0\.0\.1:(\d+)/\?token=(\S+)")


@dataclass
class Installed:
    wheel: Path
    venv: Path
    home: Path  # the working folder of every command: outside the checkout

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment without what would reach the checkout or a platform."""
        kept = {
            name: value
            for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")
            and not name.startswith("PRO_")
        }
        path = f"{self.venv / 'bin'}{os.pathsep}{kept.get('PATH', '')}"
        return {**kept, "PATH": path, "VIRTUAL_ENV": str(self.venv), "PRO_CONFIG_DIR": str(self.home), **extra}

    def run(self, program: str, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(self.venv / "bin" / program), *args],
            cwd=self.home,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert completed.returncode == 0, f"{program} {' '.join(args)}:\n{completed.stdout}\n{completed.stderr}"
        return completed

    def python(self, code: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run("python", "-c", code, ok=ok, **env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """``make dist``'s build (the source archive, then the wheel from it), pip-installed into a new
    virtual environment with the dependencies pyproject.toml declares and nothing else."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = dist.glob("*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    home = base / "home"
    home.mkdir()
    client = Installed(wheel, venv, home)
    client.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel))
    return client


def test_the_wheel_holds_the_client_side_and_the_webui_files(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    for name in (
        "pro_cli/main.py",
        "pro_sdk/client.py",
        "sessions/__init__.py",
        "sessions/runtime/session_server.py",
        "sessions/runtime/solve_runner.py",
        "pro_cli/webui_static/js/webui.js",
        "pro_cli/webui_static/css/webui.css",
        "pro_cli/webui_static/vendor/chartjs/chart.umd.min.js",
        "pro_cli/webui_static/favicon.svg",
        "pro_cli/webui_static/webui/shell.html",
    ):
        assert name in names, name
    # Of the server side nothing: no Django app, no settings, no module of sessions/ but its __init__.
    assert not [name for name in names if name.startswith(("apps/", "pro_portal/", "tests/", "examples/"))]
    assert {name for name in names if name.startswith("sessions/")} - {"sessions/__init__.py"} == {
        name for name in names if name.startswith("sessions/runtime/")
    }
    assert requires and not [line for line in requires if "django" in line.lower() or "channels" in line]


def test_pro_the_client_and_the_sdk_run_without_django(installed):
    assert "submit and follow solve jobs" in installed.run("pro", "--help").stdout
    assert installed.run("pro", "--version").stdout.strip()
    no_django = installed.python("import django", ok=False)
    assert no_django.returncode == 1 and "No module named 'django'" in no_django.stderr
    installed.run("python", "-m", "pip", "check")  # every declared dependency installed and consistent

    # Imported from the environment, not from the checkout; the WebUI's files beside pro_cli.
    found = installed.python(
        "import json, pathlib, pro_cli, pro_sdk, sessions.runtime.session_server, sessions.runtime.solve_runner\n"
        "from pro_sdk.client import Client\n"
        "static = pathlib.Path(pro_cli.__file__).parent / 'webui_static'\n"
        "print(json.dumps({'files': [pro_cli.__file__, pro_sdk.__file__, sessions.runtime.session_server.__file__],"
        " 'webui': (static / 'js' / 'webui.js').is_file() and (static / 'css' / 'webui.css').is_file()}))"
    )
    answer = json.loads(found.stdout)
    assert answer["webui"]
    for file in answer["files"]:
        assert Path(file).is_relative_to(installed.venv) and not Path(file).is_relative_to(ROOT), file

    # A modeler's local solve: the sample app, with the SDK and HiGHS the wheel brought.
    solved = installed.python(
        "from pro_sdk import SolveContext, load_app\n"
        f"app = load_app({str(EXAMPLES / 'transport')!r})\n"
        "data = app.run('solve', app.new_data(), SolveContext())\n"
        "print(data['status'], round(data['total_cost'], 3))"
    )
    assert solved.stdout.splitlines()[-1] == "Optimal 153.675"


def test_pro_app_run_serves_the_webui_from_the_wheel(installed, tmp_path):
    """The local runner of the installed wheel: its page and the WebUI's files, found beside pro_cli."""
    folder = shutil.copytree(EXAMPLES / "transport", tmp_path / "transport")
    command = [str(installed.venv / "bin" / "pro"), "app", "run", str(folder), "--no-browser"]
    command += ["--cases", str(tmp_path / "cases")]
    process = subprocess.Popen(
        command, cwd=installed.home, env=installed.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if found := SERVING.search(line):
                break
        else:
            raise AssertionError("pro app run ended without serving:\n" + "".join(seen))
        base, cookies = f"http://127.0.0.1:{found.group(1)}", {"pro_local_token": found.group(2)}
        page = requests.get(f"{base}/", cookies=cookies, timeout=10)
        assert page.status_code == 200 and 'id="page-tabs"' in page.text  # static/webui/shell.html, included
        for path in ("js/webui.js", "css/webui.css", "vendor/chartjs/chart.umd.min.js", "favicon.svg"):
            served = requests.get(f"{base}/static/{path}", cookies=cookies, timeout=10)
            assert served.status_code == 200 and served.content == (ROOT / "static" / path).read_bytes(), path
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_submit_with_the_installed_pro_and_client(installed, live_node, alice, runtime, platform_public_key):
    from apps.accounts.api_keys import api_key_create

    publish_folder(alice, LAB, platform_public_key)
    raw, _ = api_key_create(user=alice, name="wheel test")
    platform = {"PRO_URL": live_node.url, "PRO_API_KEY": raw}

    done = installed.run("pro", "job", "submit", "lab", "solve", "--set", "cap=6.5", "--wait", **platform)
    assert "objective 6.5" in done.stdout and "succeeded" in done.stdout

    submitted = installed.python(
        "from pro_sdk.client import Client\n"
        "job = Client.from_env().submit('lab', 'solve', input={'cap': 2.5})\n"
        "print(job.wait(timeout=120)['state'], job.result()['objective'])",
        **platform,
    )
    assert submitted.stdout.split() == ["succeeded", "2.5"]
