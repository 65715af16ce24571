"""``pro app run FOLDER``: an app's WebUI served on this machine by the real ``pro`` executable,
clicked in a real Chromium, with local solves and with solves delegated to a live platform."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import CLIENT_ENV, EXAMPLES, PRO, publish_as, wait_until

pytestmark = [pytest.mark.live]

SERVING = re.compile(r"Serving .* at (http://127\.0\.0\.1:(\d+)/\?token=(\S+))")


class LocalRun:
    """One ``pro app run`` process and the address (with its token) it printed."""

    def __init__(self, process: subprocess.Popen, address: str, port: int, token: str, cases: Path):
        self.process, self.address, self.port, self.token, self.cases = process, address, port, token, cases
        self.base = f"http://127.0.0.1:{port}"


def start_local_run(folder: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> LocalRun:
    cases = tmp_path / "cases"
    clean = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    command = [str(PRO), "app", "run", str(folder), "--no-browser", "--cases", str(cases), *args]
    process = subprocess.Popen(
        command,
        env={**clean, "PRO_CONFIG_DIR": str(tmp_path / "config"), **(env or {})},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        found = SERVING.search(line)
        if found:
            return LocalRun(process, found.group(1), int(found.group(2)), found.group(3), cases)
    raise AssertionError(f"pro app run ended without serving:\n{''.join(seen)}")


def stop(run: LocalRun) -> None:
    run.process.terminate()
    run.process.wait(timeout=10)


@pytest.fixture
def transport_folder(tmp_path) -> Path:
    """A copy of the transport example the test may edit."""
    return Path(shutil.copytree(EXAMPLES / "transport", tmp_path / "transport"))


@pytest.fixture
def local_transport(transport_folder, tmp_path) -> Iterator[LocalRun]:
    run = start_local_run(transport_folder, tmp_path)
    yield run
    stop(run)


def wait_status(page, pattern: str) -> str:
    status = page.locator("#status")
    wait_until(lambda: re.search(pattern, status.inner_text()), timeout=60, message=f"status never matched {pattern}")
    return status.inner_text()


def total_cost(page) -> float:
    page.get_by_role("tab", name="Results").click()
    return float(page.get_by_label("Total cost", exact=True).inner_text())


@pytest.mark.browser
def test_a_local_session_solves_here_saves_cases_and_reloads_changed_code(
    local_transport, transport_folder, browser_page
):
    page, errors = browser_page
    page.goto(local_transport.address)
    page.wait_for_selector("#page input.webui-cell")
    assert page.url == f"{local_transport.base}/"  # the token became a cookie, out of the address bar
    assert "on this machine" in page.locator("#local-solves").inner_text()

    page.get_by_role("button", name="Check balance").click()
    wait_status(page, "Check balance done")
    page.get_by_role("button", name="Solve").click()
    wait_status(page, r"Job 1 succeeded: results loaded")
    assert total_cost(page) == pytest.approx(153.675)
    assert "solved on this machine" in page.locator("pre[data-log='1']").inner_text()
    assert "HiGHS" in page.locator("pre[data-log='1']").inner_text()

    page.get_by_role("button", name="Cases").click()
    page.fill("#save-case input[name=name]", "baseline")
    page.click("#save-case button")
    page.wait_for_selector("#case-list tr[data-case='baseline.case']")
    assert (local_transport.cases / "baseline.case").is_file()
    assert "local" in page.locator("#case-list tr[data-case='baseline.case']").inner_text()
    page.keyboard.press("Escape")

    page.get_by_role("tab", name="Data").click()
    cell = page.get_by_label("demand Chicago")
    cell.fill("200")
    cell.press("Tab")
    wait_until(lambda: "200" in page.get_by_label("demand Chicago").input_value(), timeout=10)
    page.get_by_role("button", name="Cases").click()
    page.locator("#case-list tr", has_text="baseline").get_by_role("button", name="Load").click()
    wait_status(page, "Loaded case baseline")
    assert page.get_by_label("demand Chicago").input_value() != "200"
    page.keyboard.press("Escape")

    # The modeler changes the app: a reload shows the change, the user's edits kept where they fit.
    cell = page.get_by_label("demand Chicago")
    cell.fill("250")
    cell.press("Tab")
    wait_until(lambda: page.get_by_label("demand Chicago").input_value() == "250", timeout=10)
    model = transport_folder / "transport_model.py"
    model.write_text(model.read_text().replace('title="Transport"', 'title="Transport, edited"'))
    page.reload()
    page.wait_for_selector("#page input.webui-cell")
    assert "Transport, edited" in page.locator("#app-title").inner_text()
    assert page.get_by_label("demand Chicago").input_value() == "250"
    assert not errors


@pytest.mark.browser
def test_interrupt_and_cancel_of_local_solves(tmp_path, browser_page):
    lab = Path(shutil.copytree(Path(__file__).parent / "apps" / "lab", tmp_path / "lab"))
    run = start_local_run(lab, tmp_path)
    page, errors = browser_page
    try:
        page.goto(run.address)
        page.wait_for_selector("#page input")
        page.get_by_label("How long the slow solve works").fill("60")
        page.get_by_label("How long the slow solve works").press("Tab")
        page.get_by_role("button", name="Slow").click()
        page.wait_for_selector("[data-job='1'] .badge.state-running")
        wait_until(lambda: "step " in page.locator("pre[data-log='1']").inner_text(), timeout=30)
        page.locator("[data-job='1']").get_by_role("button", name="Interrupt").click()
        wait_status(page, r"Job 1 succeeded: results loaded")
        page.get_by_role("button", name="Slow").click()
        page.wait_for_selector("[data-job='2'] .badge.state-running")
        page.locator("[data-job='2']").get_by_role("button", name="Cancel").click()
        wait_status(page, r"Job 2 cancelled")
        assert not errors
    finally:
        stop(run)


def test_only_its_own_page_with_the_token_reaches_the_session(local_transport):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    base, token = local_transport.base, local_transport.token
    assert requests.get(f"{base}/", timeout=10).status_code == 403  # no token: another user of the machine
    assert requests.get(f"{base}/?token=wrong", timeout=10).status_code == 403
    entered = requests.get(local_transport.address, timeout=10, allow_redirects=False)
    assert entered.status_code == 302 and "HttpOnly" in entered.headers["Set-Cookie"]
    cookie = {"pro_local_token": token}
    assert "webui.js" in requests.get(f"{base}/", cookies=cookie, timeout=10).text
    # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends its own Host.
    rebound = requests.get(
        f"{base}/", cookies=cookie, headers={"Host": f"evil.example:{local_transport.port}"}, timeout=10
    )
    assert rebound.status_code == 403
    assert requests.get(f"{base}/static/../../pro_cli/main.py", cookies=cookie, timeout=10).status_code == 404
    assert requests.get(f"{base}/static/js/webui.js", cookies=cookie, timeout=10).status_code == 200
    headers = {"Cookie": f"pro_local_token={token}"}
    with pytest.raises(InvalidStatus) as foreign:  # another web site open in the same browser
        connect(
            f"ws://127.0.0.1:{local_transport.port}/ws", additional_headers={**headers, "Origin": "http://evil.example"}
        )
    assert foreign.value.response.status_code == 403
    own = {**headers, "Origin": f"http://127.0.0.1:{local_transport.port}"}
    with connect(f"ws://127.0.0.1:{local_transport.port}/ws", additional_headers=own) as socket:
        assert '"type": "state"' in socket.recv(timeout=10)


def test_what_cannot_run_says_why(tmp_path):
    def refused(*args: str) -> str:
        done = subprocess.run(
            [str(PRO), "app", "run", *args, "--no-browser"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        return done.stderr

    assert "has no manifest.toml" in refused(str(tmp_path))
    broken = Path(shutil.copytree(EXAMPLES / "transport", tmp_path / "broken"))
    (broken / "transport_model.py").write_text("import nowhere_to_be_found\n")
    assert "ModuleNotFoundError" in refused(str(broken))
    assert "--solve remote needs --remote" in refused(str(EXAMPLES / "transport"), "--solve", "remote")
    assert "needs an API key" in refused(str(EXAMPLES / "transport"), "--remote", "http://127.0.0.1:9")


# ---------------------------------------------------------------- with a platform


@pytest.fixture
def carol_key(live_node, alice, carol, runtime, platform_public_key) -> str:
    from apps.accounts.api_keys import api_key_create
    from sessions.runtime import package

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    publish_as(alice, blob).app.grants.create(user=carol, level="viewer")
    raw, _ = api_key_create(user=carol, name="local runner")
    return raw


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
def test_a_delegated_solve_runs_as_a_platform_job_and_cases_travel(
    live_node, carol_key, transport_folder, tmp_path, browser_page
):
    api = requests.Session()  # Playwright's event loop forbids the ORM in this thread: the API tells
    api.headers["Authorization"] = f"Bearer {carol_key}"
    run = start_local_run(transport_folder, tmp_path, "--remote", live_node.url, "--api-key", carol_key)
    page, errors = browser_page
    try:
        page.goto(run.address)
        page.wait_for_selector("#page input.webui-cell")
        assert live_node.url in page.locator("#local-solves").inner_text()
        clicked = time.monotonic()
        page.get_by_role("button", name="Solve").click()
        status = wait_status(page, r"Job \d+ succeeded: results loaded")
        print(f"delegated solve, click to results: {time.monotonic() - clicked:.2f} s")
        assert total_cost(page) == pytest.approx(153.675)
        job_id = re.search(r"Job (\d+)", status).group(1)
        job = api.get(f"{live_node.url}/api/v1/jobs/{job_id}", timeout=10).json()
        assert job["owner"] == "carol" and job["app"] == "transport" and job["state"] == "succeeded"

        page.get_by_role("button", name="Cases").click()
        page.fill("#save-case input[name=name]", "mine")
        page.click("#save-case button")
        row = page.locator("#case-list tr[data-case='mine.case']")
        row.get_by_role("button", name="Push to platform").click()
        wait_status(page, "Pushed case mine to the platform")
        cases = api.get(f"{live_node.url}/api/v1/cases", params={"app": "transport", "kind": "saved"}, timeout=10)
        pushed = next(case for case in cases.json() if case["name"] == "mine")
        platform_row = page.locator(f"#case-list tr[data-case='platform:{pushed['id']}']")
        platform_row.wait_for()
        (run.cases / "mine.case").unlink()
        platform_row.get_by_role("button", name="Keep a local copy").click()
        wait_status(page, "Kept a local copy of case mine")
        assert (run.cases / "mine.case").is_file()
        assert not errors
    finally:
        stop(run)


@pytest.mark.django_db(transaction=True)
def test_a_platform_that_does_not_know_the_app_is_named(live_node, carol, tmp_path):
    from apps.accounts.api_keys import api_key_create

    raw, _ = api_key_create(user=carol, name="local runner")
    done = subprocess.run(
        [
            str(PRO),
            "app",
            "run",
            str(EXAMPLES / "transport"),
            "--no-browser",
            "--remote",
            live_node.url,
            "--api-key",
            raw,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "app 'transport'" in done.stderr and "Traceback" not in done.stderr
