"""What an app's sandbox may reach: nothing by default, then exactly what an admin grants.

Real sandboxes (bubblewrap), real relays, a real echo server on the node's loopback and, for
outbound network, a real remote host: a network namespace of the test's own with an echo
server behind a veth pair (198.18.0.0/15, the benchmarking range, nothing else is touched).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from apps.accounts.models import SecurityEvent
from sessions import launcher
from sessions.models import JobState
from sessions.network import NetworkGrant
from tests.helpers import publish_as, wait_for

NETPROBE = Path(__file__).parent / "apps" / "netprobe"


def _echo(listener: socket.socket) -> None:
    def answer(connection: socket.socket) -> None:
        with connection:
            data = connection.recv(100)
            connection.sendall(b"echo " + data)

    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=answer, args=(connection,), daemon=True).start()


@pytest.fixture
def echo_port():
    """An echo server on the node's loopback: a stand-in for a service of the node."""
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_echo, args=(listener,), daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


ECHO_SERVER = "import socket;s=socket.create_server(('198.18.0.2',7007));\nwhile True:\n c,_=s.accept();c.sendall(b'remote '+c.recv(100));c.close()"


@pytest.fixture
def remote_host():
    """A host of the test's own: 198.18.0.2:7007 answers, in a network namespace behind a veth pair."""
    name = f"pro-test-{os.getpid()}"
    host_side = f"prh{os.getpid() % 100000}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_side, "type", "veth", "peer", "name", "remote0", "netns", name],
        ["ip", "addr", "add", "198.18.0.1/30", "dev", host_side],
        ["ip", "link", "set", host_side, "up"],
        ["ip", "-n", name, "addr", "add", "198.18.0.2/30", "dev", "remote0"],
        ["ip", "-n", name, "link", "set", "remote0", "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        pytest.skip(f"this machine cannot make a test host in a network namespace: {exc}")
    server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", ECHO_SERVER])
    try:
        yield "198.18.0.2", 7007
    finally:
        server.kill()
        server.wait()
        subprocess.run(["ip", "link", "delete", host_side], capture_output=True)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


PROBE = """
import json, os, socket, urllib.request
from sessions.runtime import netforward
netforward.start_from_environment()

def reach(host, port):
    try:
        with socket.create_connection((host, port), timeout=3) as c:
            c.sendall(b"ping")
            return "answered " + c.recv(100).decode()
    except OSError as exc:
        return "refused " + type(exc).__name__

def through_proxy(host, port):
    proxy = os.environ.get("HTTPS_PROXY")
    if not proxy:
        return "no proxy"
    with socket.create_connection(("127.0.0.1", 3128), timeout=5) as c:
        c.sendall(f"CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n".encode())
        head = c.recv(1000).decode()
        if not head.startswith("HTTP/1.1 200"):
            return head.splitlines()[0] + " " + head.split("\\r\\n\\r\\n", 1)[-1].strip()
        c.sendall(b"ping")
        return "tunnel " + c.recv(100).decode()

checks = json.loads(os.environ["CHECKS"])
seen = {"interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])}
for name, (how, host, port) in checks.items():
    seen[name] = reach(host, port) if how == "direct" else through_proxy(host, port)
print(json.dumps(seen))
"""


def sandbox_sees(grant: NetworkGrant, checks: dict[str, tuple[str, str, int]]) -> dict[str, str]:
    workdir = launcher.new_workdir("nettest")
    (workdir / "app").mkdir()
    (workdir / "app" / "probe.py").write_text(textwrap.dedent(PROBE))
    spec = launcher.LaunchSpec(
        name=workdir.name,
        interpreter=sys.executable,
        module="probe",
        workdir=workdir,
        env={
            "PYTHONPATH": f"{launcher.bwrap.INSIDE_LIB}:{launcher.work_path(workdir)}/app",
            "CHECKS": json.dumps(checks),
        },
        network=grant,
    )
    try:
        completed = launcher.run(spec, timeout=60)
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_without_a_grant_a_sandbox_reaches_nothing(echo_port):
    seen = sandbox_sees(
        NetworkGrant(),
        {
            "node service": ("direct", "127.0.0.1", echo_port),
            "postgres": ("direct", "127.0.0.1", 5432),
            "redis": ("direct", "127.0.0.1", 6379),
            "proxy": ("proxy", "127.0.0.1", echo_port),
        },
    )
    assert seen["interfaces"] == ["lo"]
    assert seen["node service"].startswith("refused")
    assert seen["postgres"].startswith("refused") and seen["redis"].startswith("refused")
    assert seen["proxy"] == "no proxy"


def test_a_named_service_of_the_node_is_reached_and_nothing_beside_it(echo_port):
    seen = sandbox_sees(
        NetworkGrant(targets=(("127.0.0.1", echo_port),)),
        {"named": ("direct", "127.0.0.1", echo_port), "postgres": ("direct", "127.0.0.1", 5432)},
    )
    assert seen["named"] == "answered echo ping"
    assert seen["postgres"].startswith("refused")


def test_outbound_network_reaches_other_hosts_but_never_the_node(echo_port, remote_host):
    remote, port = remote_host
    seen = sandbox_sees(
        NetworkGrant(outbound=True),
        {
            "remote": ("proxy", remote, port),
            "node loopback": ("proxy", "127.0.0.1", echo_port),
            "localhost": ("proxy", "localhost", echo_port),
            "node's own address": ("proxy", "198.18.0.1", echo_port),
            "cloud metadata": ("proxy", "169.254.169.254", 80),
            "postgres": ("proxy", "127.0.0.1", 5432),
            "direct": ("direct", remote, port),
        },
    )
    assert seen["remote"] == "tunnel remote ping"
    for refused in ("node loopback", "localhost", "node's own address", "cloud metadata", "postgres"):
        assert seen[refused].startswith("HTTP/1.1 403"), (refused, seen[refused])
    assert "this node" in seen["node's own address"]
    assert seen["direct"].startswith("refused")  # only through the proxy


def test_a_named_host_elsewhere_is_reached_where_the_app_is_told(remote_host):
    remote, port = remote_host
    seen = sandbox_sees(
        NetworkGrant(targets=((remote, port),)),
        {"alias": ("direct", "127.0.1.1", port), "itself": ("direct", remote, port)},
    )
    assert seen["alias"] == "answered remote ping"
    assert seen["itself"].startswith("refused")


# ---------------------------------------------------------------- granting, through the API


@pytest.fixture
def netprobe(alice, runtime, platform_public_key):
    from sessions.runtime import package

    blob, _ = package.pack_folder(NETPROBE, platform_public_key)
    return publish_as(alice, blob)


@pytest.mark.django_db(transaction=True)
def test_only_admins_grant_network_and_the_app_shows_it(api, alice, admin_user, netprobe, echo_port):
    grant = {"network": {"outbound": False, "targets": [f"127.0.0.1:{echo_port}"]}}
    refused = api(alice).patch("/api/v1/apps/netprobe", grant, format="json")
    assert refused.status_code == 403 and "Only admins" in refused.json()["error"]["message"]
    for bad in (["nohost"], ["db:0"], ["db:70000"], ["bad host:80"], ["x" * 300 + ":1"]):
        answer = api(admin_user).patch(
            "/api/v1/apps/netprobe", {"network": {"outbound": False, "targets": bad}}, format="json"
        )
        assert answer.status_code == 400, bad
    netprobe.app.refresh_from_db()
    assert netprobe.app.network_targets == []
    granted = api(admin_user).patch("/api/v1/apps/netprobe", grant, format="json")
    assert granted.status_code == 200
    assert granted.json()["network"] == {"outbound": False, "targets": [f"127.0.0.1:{echo_port}"]}
    assert api(alice).get("/api/v1/apps/netprobe").json()["network"]["targets"] == [f"127.0.0.1:{echo_port}"]
    assert SecurityEvent.objects.filter(kind="app.network", actor="root").exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_of_a_granted_app_reaches_its_target_and_an_ungranted_one_does_not(
    api,
    alice,
    admin_user,
    netprobe,
    echo_port,
    worker,
):
    def probe() -> dict:
        body = {"app": "netprobe", "procedure": "probe", "input": {"target": f"127.0.0.1:{echo_port}"}}
        response = api(alice).post("/api/v1/jobs", body, format="json")
        assert response.status_code == 201, response.content
        from sessions.models import Job

        job = wait_for(Job.objects.get(pk=response.json()["id"]), JobState.SUCCEEDED, JobState.FAILED)
        assert job.state == JobState.SUCCEEDED, job.error_message
        return json.loads(api(alice).get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]["report"])

    assert probe()["result"].startswith("refused")
    grant = {"network": {"outbound": False, "targets": [f"127.0.0.1:{echo_port}"]}}
    assert api(admin_user).patch("/api/v1/apps/netprobe", grant, format="json").status_code == 200
    assert probe()["result"] == "answered echo ping"


@pytest.mark.django_db
def test_the_app_page_says_what_the_app_may_reach(alice, admin_user, netprobe):
    from apps.catalog.services import app_set_network
    from tests.helpers import browser

    page = browser(alice).get("/apps/netprobe/").content.decode()
    assert "Network: none" in page
    app_set_network(user=admin_user, app=netprobe.app, outbound=True, targets=["db.example.com:3306"])
    page = browser(alice).get("/apps/netprobe/").content.decode()
    assert "db.example.com:3306" in page and "other hosts through a proxy" in page
