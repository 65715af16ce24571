"""``pro``: the platform's command-line tool, a thin client of the REST API.

    pro login --url http://127.0.0.1:8000
    pro app pack examples/transport               # imports the app in a process of its own, checks it
    pro app publish transport-1.0.0.proapp        # uploads it, waits for the platform's verification
    pro storage put model.mps apps/mps-solver/data/model.mps
    pro runtime build --name py311-or --version 1.0 --lock lock.txt --key runtimes.pem

The server and ticket come from ``pro login`` (kept in ``~/.config/pro/config.json``) or from
``PRO_URL`` and ``PRO_TICKET``; a remembered ticket is renewed while it is in use, up to its
maximum age. Unattended scripts use an API key (``pro key create``) in ``PRO_API_KEY``, or set
``PRO_USERNAME`` and ``PRO_PASSWORD`` to fetch a fresh ticket whenever needed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from sessions.runtime.api_errors import parse_error
from sessions.runtime.version import __version__

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

CHUNK = 1024 * 1024
TIMEOUT = (10, 600)
RENEW_WITHIN = timedelta(minutes=5)  # a remembered ticket this close to its expiry is renewed first


class CliError(Exception):
    pass


# ---------------------------------------------------------------- configuration and HTTP


def config_path() -> Path:
    base = os.environ.get("PRO_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config", "pro"
    )
    return Path(base) / "config.json"


def load_config() -> dict[str, Any]:
    path = config_path()
    try:
        config = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path} ({exc}): remove it and run 'pro login' again") from None
    if not isinstance(config, dict):
        raise CliError(f"{path} is not a configuration of pro: remove it and run 'pro login' again")
    if os.environ.get("PRO_URL"):
        config["url"] = os.environ["PRO_URL"]
    if os.environ.get("PRO_TICKET"):
        config["ticket"] = os.environ["PRO_TICKET"]
        config.pop("expires_at", None)
    if os.environ.get("PRO_API_KEY"):
        config["ticket"] = os.environ["PRO_API_KEY"]
        config.pop("expires_at", None)
    return config


def save_config(config: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=2))


def send(url: str, call: Callable[[], requests.Response]) -> requests.Response:
    """Make one HTTP request; a failure to get an answer from ``url`` becomes a one-line :class:`CliError`."""
    try:
        return call()
    except requests.ConnectionError:
        raise CliError(f"cannot reach {url}") from None
    except requests.Timeout:
        raise CliError(f"{url} did not answer within {TIMEOUT[1]} s") from None
    except requests.RequestException as exc:  # e.g. a URL without http:// or https://
        raise CliError(f"cannot send a request to {url}: {exc}") from None


def _error_message(response: requests.Response) -> str:
    error = parse_error(response.content)
    if error is None:
        return f"HTTP {response.status_code} {response.reason}"
    return f"{error.message or response.reason} ({error.code or response.status_code})"


class Client:
    def __init__(self, config: dict[str, Any]):
        if not config.get("url"):
            raise CliError("no server: run 'pro login --url URL' or set PRO_URL")
        self.config = config
        self.url = config["url"].rstrip("/")
        self.http = requests.Session()

    def _auth(self) -> dict[str, str]:
        if not self.config.get("ticket"):
            self.relogin()
        self._renew_if_due()
        return {"Authorization": f"Bearer {self.config['ticket']}"}

    def _renew_if_due(self) -> None:
        """Renew a remembered ticket near its expiry, so that a working session does not end."""
        expires = self.config.get("expires_at")
        if not expires:
            return
        if datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.now(UTC) > RENEW_WITHIN:
            return
        response = send(
            self.url,
            lambda: self.http.post(
                f"{self.url}/api/v1/auth/tickets/current/renew",
                headers={"Authorization": f"Bearer {self.config['ticket']}"},
                timeout=TIMEOUT,
            ),
        )
        if response.status_code == 200:
            self.config["expires_at"] = response.json()["expires_at"]
            if config_path().is_file() and load_config().get("ticket") == self.config["ticket"]:
                save_config(self.config)

    def relogin(self) -> None:
        username, password = os.environ.get("PRO_USERNAME"), os.environ.get("PRO_PASSWORD")
        if not (username and password):
            raise CliError("not logged in, or the ticket expired: run 'pro login'")
        self.config["ticket"] = issue_ticket(self.url, username, password)["ticket"]

    def request(
        self, method: str, path: str, *, auth: bool = True, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any
    ) -> requests.Response:
        url = f"{self.url}/api/v1/{path.lstrip('/')}"
        for attempt in (1, 2):
            headers = {**kwargs.pop("headers", {}), **(self._auth() if auth else {})}
            response = send(
                self.url, partial(self.http.request, method, url, headers=headers, timeout=TIMEOUT, **kwargs)
            )
            if response.status_code == 401 and auth and attempt == 1 and os.environ.get("PRO_PASSWORD"):
                self.config.pop("ticket", None)
                continue
            break
        if response.status_code not in ok:
            raise CliError(_error_message(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise CliError(f"{self.url} did not answer in the platform's JSON: is it the platform's address?") from None


class CodeNeeded(CliError):
    """The account logs in with two factors and no code was given."""


def issue_ticket(url: str, username: str, password: str, otp: str = "") -> dict[str, Any]:
    body = {"username": username, "password": password} | ({"otp": otp} if otp else {})
    response = send(url, lambda: requests.post(f"{url.rstrip('/')}/api/v1/auth/tickets", json=body, timeout=TIMEOUT))
    if response.status_code != 201:
        error = parse_error(response.content)
        if error is not None and error.code == "otp_required" and not otp:
            raise CodeNeeded(_error_message(response))
        raise CliError(_error_message(response))
    try:
        return response.json()
    except ValueError:
        raise CliError(f"{url} did not answer in the platform's JSON: is it the platform's address?") from None


def local_file(name: str) -> Path:
    """A file to upload, or a clear error before anything is sent."""
    path = Path(name)
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    return path


OCTET_STREAM = {"Content-Type": "application/octet-stream"}


def count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def print_table(rows: list[list[Any]], header: list[str]) -> None:
    table = [header, *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# ---------------------------------------------------------------- commands


def cmd_login(args: argparse.Namespace) -> None:
    config = load_config()
    url = (args.url or config.get("url") or "").rstrip("/")
    if not url:
        raise CliError("give the server with --url")
    username = args.username or os.environ.get("PRO_USERNAME") or input("User name: ")
    password = os.environ.get("PRO_PASSWORD") or getpass.getpass("Password: ")
    otp = args.otp or os.environ.get("PRO_OTP", "")
    try:
        ticket = issue_ticket(url, username, password, otp)
    except CodeNeeded:
        if not sys.stdin.isatty():
            raise CliError("this account logs in with two factors: give the code with --otp (or PRO_OTP)") from None
        ticket = issue_ticket(url, username, password, input("Code of your authenticator app: ").strip())
    save_config({"url": url, "ticket": ticket["ticket"], "username": username, "expires_at": ticket["expires_at"]})
    print(f"Logged in to {url} as {username} until {ticket['expires_at']}.")


def cmd_logout(args: argparse.Namespace) -> None:
    config = load_config()
    if config.get("url") and config.get("ticket", "").startswith("pro_t_"):
        # Revoke it on the server too; a ticket that already ended is just forgotten.
        try:
            requests.delete(
                f"{config['url'].rstrip('/')}/api/v1/auth/tickets/current",
                headers={"Authorization": f"Bearer {config['ticket']}"},
                timeout=TIMEOUT,
            )
        except requests.RequestException:
            print(f"Could not reach {config['url']}: the ticket is forgotten here but stays valid until it expires.")
    config.pop("ticket", None)
    config.pop("expires_at", None)
    save_config(config)
    print("Logged out.")


def cmd_key_create(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"name": args.name}
    if args.expires:
        body["expires_at"] = args.expires
    key = Client(load_config()).json("POST", "auth/keys", json=body)
    print(key["key"])
    expiry = f"expires {key['expires_at']}" if key["expires_at"] else "does not expire"
    print(f"API key {key['id']} ({key['name']}), {expiry}. It is shown this once: keep it now.", file=sys.stderr)


def cmd_key_list(args: argparse.Namespace) -> None:
    keys = Client(load_config()).json("GET", "auth/keys")
    rows = [
        [k["id"], k["name"], k["prefix"] + "…", k["created_at"][:16], (k["expires_at"] or "never")[:16], _key_state(k)]
        for k in keys
    ]
    print_table(rows, ["ID", "NAME", "KEY", "CREATED", "EXPIRES", "STATE"])


def _key_state(key: dict[str, Any]) -> str:
    if key["revoked_at"]:
        return "revoked"
    return "active" if key["active"] else "expired"


def cmd_key_revoke(args: argparse.Namespace) -> None:
    Client(load_config()).request("DELETE", f"auth/keys/{args.id}")
    print(f"API key {args.id} revoked.")


def cmd_app_pack(args: argparse.Namespace) -> None:
    from sessions.runtime import package

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder: give the app's folder, the one with its manifest.toml")
    public_key = _publisher_key(args)
    interface = describe_app(folder)
    try:
        blob, manifest = package.pack_described(folder, interface, public_key)
    except ValueError as exc:  # PackageError, ManifestError: the manifest or the folder's files
        raise CliError(f"cannot pack {folder}: {exc}") from None
    output = Path(args.output or f"{manifest.name}-{manifest.version}.proapp")
    output.write_bytes(blob)
    print(f"Packed {manifest.name} {manifest.version} into {output} ({len(blob)} bytes).")


def _publisher_key(args: argparse.Namespace) -> RSAPublicKey:
    """The key packages for the platform are encrypted with: from ``--key``, else fetched from the platform."""
    from cryptography.exceptions import UnsupportedAlgorithm

    from sessions.runtime import package

    if args.key:
        try:
            pem = Path(args.key).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read the publisher key {args.key}: {exc.strerror}") from None
    else:
        config = load_config()
        url = args.url or config.get("url")
        if not url:
            raise CliError("give the platform with --url (or --key with its publisher key), or run 'pro login'")
        answer = Client({**config, "url": url}).json("GET", "publisher-key", auth=False)
        pem = str((answer or {}).get("public_key", "")).encode()
    try:
        return package.load_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        source = args.key or "the platform"
        raise CliError(
            f"{source} gave no publisher key (a PEM RSA public key, as GET /api/v1/publisher-key gives)"
        ) from None


def describe_app(folder: Path) -> dict[str, Any]:
    """Import the app of ``folder`` in a Python process of its own and return its declared interface.

    The app's code runs with this Python (the modeler's, which has the app's packages) but not
    in this process (``pro_cli.app_check``): its prints, exceptions and exits come back as one
    message, and a package the platform's verification would refuse is not built.
    """
    with tempfile.TemporaryDirectory(prefix="pro-pack-") as work:
        result = Path(work) / "result.json"
        # -P: the current folder does not come first on sys.path; the app's own folder does (the loader puts it there).
        command = [sys.executable, "-P", "-m", "pro_cli.app_check", str(folder.resolve()), str(result)]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        try:
            answer = json.loads(result.read_text())
        except (OSError, ValueError):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CliError(
                f"cannot pack {folder}: its check ended (code {done.returncode}) before answering: {last}"
            ) from None
    if not answer.get("ok"):
        raise CliError(f"cannot pack {folder}: {answer.get('error')}")
    return answer["interface"]


VERIFY_POLL_SECONDS = 1.0
FINAL_VERIFICATION = ("verified", "failed")


def cmd_app_publish(args: argparse.Namespace) -> None:
    path = local_file(args.package)
    client = Client(load_config())
    with open(path, "rb") as handle:
        app = client.json(
            "POST",
            "apps",
            files={"package": (path.name, handle)},
            data={"make_latest": str(not args.no_latest).lower()},
        )
    name, version = app["name"], _published_version(app)
    if args.no_wait:
        print(f"Published {name} {version}; its verification is pending ('pro app show {name}' shows its result).")
        return
    print(f"Uploaded {name} {version}; waiting for the platform to verify it.", file=sys.stderr)
    found = _wait_for_verification(client, name, version, args.timeout)
    if found["verification_state"] == "failed":
        reason = (found["verification_error"] or "no reason given").strip().splitlines()[0]
        raise CliError(
            f"{name} {version} failed verification, so no one can use it: {reason} "
            f"('pro app show {name}' shows the whole report; 'pro app delete {name} {version}' removes it)"
        )
    if found["verification_state"] != "verified":
        raise CliError(
            f"{name} {version} is still {found['verification_state']} after {args.timeout:g} s of waiting "
            f"(is the platform's task queue running?); 'pro app show {name}' shows its result later"
        )
    latest = client.json("GET", f"apps/{name}")["latest_version"]
    print(f"Published {name} {version}, verified; latest is {latest}.")


def _published_version(app: dict[str, Any]) -> str:
    """The version a publish created: the answer says it; from an older server, the newest one published."""
    if app.get("published_version"):
        return str(app["published_version"])
    return str(max(app["versions"], key=lambda v: v["published_at"])["version"])


def _wait_for_verification(client: Client, name: str, version: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = client.json("GET", f"apps/{name}/versions/{version}")
        if found["verification_state"] in FINAL_VERIFICATION or time.monotonic() >= deadline:
            return found
        time.sleep(VERIFY_POLL_SECONDS)


def cmd_app_run(args: argparse.Namespace) -> None:
    from .app_run import RunError, start  # websockets and the app's imports only for this command

    remote, credential = None, args.api_key or ""
    if args.remote is not None:
        config = load_config()
        remote = args.remote or config.get("url")
        if not remote:
            raise CliError("--remote without URL needs 'pro login' first (or PRO_URL)")
        credential = credential or config.get("ticket", "")
    try:
        start(
            Path(args.folder),
            port=args.port,
            solve=args.solve,
            remote=remote,
            credential=credential,
            cases_dir=Path(args.cases) if args.cases else None,
            storage_dir=Path(args.storage) if args.storage else None,
            open_browser=not args.no_browser,
        )
    except RunError as exc:
        raise CliError(str(exc)) from None


def cmd_app_list(args: argparse.Namespace) -> None:
    apps = Client(load_config()).json("GET", "apps")
    rows = [[a["name"], a["latest_version"], len(a["versions"]), a["category"], a["access"], a["title"]] for a in apps]
    print_table(rows, ["NAME", "LATEST", "VERSIONS", "CATEGORY", "ACCESS", "TITLE"])


def cmd_app_show(args: argparse.Namespace) -> None:
    app = Client(load_config()).json("GET", f"apps/{args.name}")
    print(
        f"{app['title']} ({app['name']}), category {app['category']}, owner {app['owner']}, your access: {app['access']}"
    )
    rows = [
        [
            v["version"],
            "latest" if v["is_latest"] else "",
            "hidden" if v["is_hidden"] else "",
            v["runtime"],
            v["verification_state"],
            v["published_at"],
        ]
        for v in app["versions"]
    ]
    print_table(rows, ["VERSION", "TAG", "HIDDEN", "RUNTIME", "VERIFICATION", "PUBLISHED"])
    for v in app["versions"]:
        if v["verification_state"] == "failed" and v.get("verification_error"):
            report = v["verification_error"].strip().replace("\n", "\n    ")
            print(f"\nVerification of {v['version']} failed:\n    {report}")


def cmd_app_version(args: argparse.Namespace) -> None:
    client = Client(load_config())
    path = f"apps/{args.name}/versions/{args.version}"
    if args.action == "delete":
        client.request("DELETE", path)
        print(f"Deleted {args.name} {args.version}.")
        return
    body = {"latest": True} if args.action == "latest" else {"hidden": args.action == "hide"}
    client.json("PATCH", path, json=body)
    print(f"{args.name} {args.version}: {args.action} done.")


def cmd_app_delete(args: argparse.Namespace) -> None:
    Client(load_config()).request("DELETE", f"apps/{args.name}")
    print(f"Deleted app {args.name}.")


def cmd_app_grant(args: argparse.Namespace) -> None:
    grant = Client(load_config()).json(
        "POST",
        f"apps/{args.name}/grants",
        json={"level": args.level, **({"username": args.user} if args.user else {"group": args.group})},
    )
    print(f"Granted {grant['username'] or 'group ' + grant['group']} {grant['level']} access to {args.name}.")


def cmd_storage_ls(args: argparse.Namespace) -> None:
    path = args.path.strip("/")
    listing = Client(load_config()).json("GET", f"storage/{path}/" if path else "storage/")
    rows = [
        [e["name"] + ("/" if e["is_folder"] else ""), e["size"] if e["size"] is not None else "", e["modified"] or ""]
        for e in listing["entries"]
    ]
    print_table(rows, ["NAME", "SIZE", "MODIFIED"])


def cmd_storage_put(args: argparse.Namespace) -> None:
    local = local_file(args.local)
    remote = args.remote.rstrip("/") + "/" + local.name if args.remote.endswith("/") else args.remote
    with open(local, "rb") as handle:  # requests streams a file object in chunks
        entry = Client(load_config()).json("PUT", f"storage/{remote}", data=handle, headers=OCTET_STREAM)
    print(f"Stored {entry['path']} ({entry['size']} bytes).")


def cmd_storage_get(args: argparse.Namespace) -> None:
    response = Client(load_config()).request("GET", f"storage/{args.remote}", stream=True)
    local = Path(args.local or args.remote.rsplit("/", 1)[-1])
    if local.is_dir():
        local = local / args.remote.rsplit("/", 1)[-1]
    partial = local.with_name(local.name + ".part")
    with open(partial, "wb") as sink:
        for chunk in response.iter_content(CHUNK):
            sink.write(chunk)
    partial.replace(local)
    print(f"Saved {local} ({local.stat().st_size} bytes).")


def cmd_storage_rm(args: argparse.Namespace) -> None:
    Client(load_config()).request("DELETE", f"storage/{args.remote}")
    print(f"Deleted {args.remote}.")


# ---------------------------------------------------------------- jobs


def _input_values(args: argparse.Namespace) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if args.input:
        try:
            values.update(json.loads(Path(args.input).read_text()))
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the input {args.input}: {exc}") from None
    for item in args.set or []:
        name, sep, raw = item.partition("=")
        if not sep:
            raise CliError(f"--set takes name=value, not {item!r}")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
    return values or None


def _job_line(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    extra = job["error_message"] or job["solver_status"] or progress.get("message") or ""
    where = f"node {job['node'] or '-'}"
    if job.get("executor") not in (None, "", "local") and job.get("external_id"):
        where += f", {job['executor']} {job['external_id']}"  # the Slurm job or Kubernetes Job it runs as
    return f"job {job['id']} {job['state']} (attempt {job['attempt']}, {where}) {extra}".rstrip()


FINISHED = ("succeeded", "failed", "cancelled")


def cmd_job_submit(args: argparse.Namespace) -> None:
    client = Client(load_config())
    body: dict[str, Any] = {"app": args.app, "procedure": args.procedure, "priority": args.priority}
    for key, value in (
        ("version", args.version),
        ("time_limit", args.time_limit),
        ("memory_limit_mb", args.memory_mb),
        ("start_at", args.start_at),
        ("input_case", args.input_case),
    ):
        if value is not None:
            body[key] = value
    values = _input_values(args)
    if values is not None:
        body["input"] = values
    job = client.json("POST", "jobs", json=body)
    print(job["id"] if args.quiet else f"Submitted job {job['id']} ({args.app} {job['version']}, {args.procedure}).")
    if args.wait:
        _follow_log(client, job["id"], echo=not args.quiet)
        job = client.json("GET", f"jobs/{job['id']}")
        print(_job_line(job))
        if job["state"] != "succeeded":
            raise CliError(f"job {job['id']} {job['state']}")


def _schedule_when(s: dict[str, Any]) -> str:
    return f"cron {s['cron']} ({s['timezone']})" if s["cron"] else f"every {s['interval_seconds']} s"


def cmd_schedule_create(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"app": args.app, "procedure": args.procedure, "overlap": args.overlap}
    body["missed"] = args.missed
    if args.app_version:
        body["version"] = args.app_version
    if args.cron:
        body.update(cron=args.cron, timezone=args.tz)
    else:
        body["interval_seconds"] = args.every
    if args.case:
        body["input_case"] = args.case
    values = _input_values(args)
    if values is not None:
        body["input"] = values
    made = Client(load_config()).json("POST", "schedules", json=body)
    print(f"Schedule {made['id']} created: {_schedule_when(made)}, next run {made['next_run_at']}.")


def cmd_schedule_list(args: argparse.Namespace) -> None:
    found = Client(load_config()).json("GET", "schedules")
    if args.json:
        print(json.dumps(found, indent=2))
        return
    rows = []
    for s in found:
        last = s["last_run"] or {}
        state = last.get("job_state") or last.get("state") or "-"
        job = f"job {last['job']} " if last.get("job") else ""
        rows.append([s["id"], s["app"], s["procedure"], _schedule_when(s), "paused" if s["paused"] else s["next_run_at"],
                     f"{job}{state}"])  # fmt: skip
    print_table(rows, ["ID", "APP", "PROCEDURE", "WHEN", "NEXT", "LAST"])


def cmd_schedule_change(args: argparse.Namespace) -> None:
    client = Client(load_config())
    if args.action == "delete":
        client.request("DELETE", f"schedules/{args.id}")
        print(f"Schedule {args.id} deleted.")
        return
    client.json("PATCH", f"schedules/{args.id}", json={"paused": args.action == "pause"})
    print(f"Schedule {args.id} {args.action}d.")


def cmd_schedule_runs(args: argparse.Namespace) -> None:
    runs = Client(load_config()).json("GET", f"schedules/{args.id}/runs", params={"limit": args.limit})
    rows = [[r["slot_at"], r["state"], r["job"], r["job_state"], r["message"]] for r in runs]
    print_table(rows, ["SLOT", "STATE", "JOB", "JOB STATE", "MESSAGE"])


def _follow_log(client: Client, job_id: int, echo: bool = True) -> None:
    offset = 0
    while True:
        part = client.json("GET", f"jobs/{job_id}/log", params={"offset": offset})
        if echo and part["text"]:
            sys.stdout.write(part["text"])
            sys.stdout.flush()
        offset = part["offset"]
        if part["finished"]:
            return
        if part["text"] and offset < part.get("size", 0):
            continue  # a page of a long log: the next one is there already
        time.sleep(0.5)


def cmd_job_list(args: argparse.Namespace) -> None:
    params = {"state": args.state} if args.state else {}
    found = Client(load_config()).json("GET", "jobs", params=params)
    rows = [
        [j["id"], j["state"], j["app"], j["version"], j["procedure"], j["priority"], j["attempt"], j["created_at"]]
        for j in found
    ]
    print_table(rows, ["ID", "STATE", "APP", "VERSION", "PROCEDURE", "PRIORITY", "ATTEMPT", "CREATED"])


def cmd_job_status(args: argparse.Namespace) -> None:
    job = Client(load_config()).json("GET", f"jobs/{args.id}")
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(_job_line(job))


def cmd_job_log(args: argparse.Namespace) -> None:
    client = Client(load_config())
    if args.follow:
        _follow_log(client, args.id)
        return
    offset = 0
    while True:  # the log as far as it is written, a page at a time
        part = client.json("GET", f"jobs/{args.id}/log", params={"offset": offset})
        sys.stdout.write(part["text"])
        if part["finished"] or not part["text"] or part["offset"] >= part.get("size", 0):
            return
        offset = part["offset"]


def cmd_job_stop(args: argparse.Namespace) -> None:
    job = Client(load_config()).json("POST", f"jobs/{args.id}/{args.action}")
    print(_job_line(job))


def cmd_job_result(args: argparse.Namespace) -> None:
    client = Client(load_config())
    if args.json:
        print(
            json.dumps(client.json("GET", f"jobs/{args.id}/result", params={"format": "json"})["identifiers"], indent=2)
        )
        return
    response = client.request("GET", f"jobs/{args.id}/result", stream=True)
    output = Path(args.output or f"job-{args.id}-result.case")
    with open(output, "wb") as sink:
        for chunk in response.iter_content(CHUNK):
            sink.write(chunk)
    print(f"Saved {output} ({output.stat().st_size} bytes).")


# ---------------------------------------------------------------- runtimes, the wheelhouse, environments


def cmd_runtime_keygen(args: argparse.Namespace) -> None:
    from sessions.runtime import runtime_file

    key = runtime_file.generate_signing_key()
    write_new_private_file(Path(args.out), runtime_file.signing_key_to_pem(key))
    public = key.public_key()
    print(runtime_file.public_key_text(public))
    print(
        f"Wrote signing key {runtime_file.signer_id(public)} to {args.out}: keep it secret. Nodes accept the runtimes "
        "it signs once the line above is in their PRO_RUNTIME_TRUSTED_KEYS.",
        file=sys.stderr,
    )


def write_new_private_file(path: Path, content: bytes) -> None:
    """Write a file that only its owner can read; an existing file is never overwritten."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} exists: a key is never overwritten, choose another file") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(content)


def cmd_runtime_build(args: argparse.Namespace) -> None:
    from sessions.runtime import runtime_file

    name, version = _runtime_name_version(args.name, args.version)
    key = _signing_key(Path(args.key))
    lock = _lock_text(Path(args.lock))
    python = "{}.{}".format(*sys.version_info[:2])
    with tempfile.TemporaryDirectory(prefix="pro-runtime-") as work:
        site = Path(work) / "site"
        _pip_install_lock(Path(args.lock), site, args)
        packages = _installed_packages(site)
        payload = runtime_file.pack_folder(site)
    blob = runtime_file.build(
        name=name, version=version, python=python, lock=lock, packages=packages, payload=payload, key=key
    )
    output = Path(args.output or f"{name}-{version}.proruntime")
    partial = output.with_name(output.name + ".part")
    partial.write_bytes(blob)
    partial.replace(output)
    signer = runtime_file.signer_id(key.public_key())
    print(
        f"Built runtime {name}@{version} (Python {python}, {count(len(packages), 'package')}, signer {signer}) "
        f"into {output} ({len(blob)} bytes)."
    )


def _runtime_name_version(name: str, version: str) -> tuple[str, str]:
    """Checked before pip runs, so that a typo does not cost an install."""
    from sessions.runtime import runtime_file

    try:
        named = runtime_file.parse_ref(name)
        ref = runtime_file.parse_ref(f"{name}@{version}") if not named.version else named
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if named.version or not ref.version:
        raise CliError("give the name alone with --name (e.g. py311-highs) and the version with --version (e.g. 1.2)")
    return ref.name, ref.version


def _signing_key(path: Path) -> Ed25519PrivateKey:
    from sessions.runtime import runtime_file

    try:
        return runtime_file.load_signing_key(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read the signing key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):  # not PEM, not Ed25519, or protected by a password
        raise CliError(f"{path} is not a runtime signing key (make one with 'pro runtime keygen')") from None


def _lock_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the lock file {path}: {exc}") from None


def _pip_install_lock(lock: Path, site: Path, args: argparse.Namespace) -> None:
    """pip installs every package of the lock, each checked against its hash, as wheels, into ``site``.

    pip's own output goes to stderr as it comes, so that a failure is shown in pip's words and
    stdout keeps this command's one line. No .pyc files: nodes unpack the files with new times.
    """
    command = [sys.executable, "-m", "pip", "install", "--require-hashes", "--only-binary", ":all:", "--no-compile"]
    command += ["--no-input", "--disable-pip-version-check", "--target", str(site), "-r", str(lock)]
    for folder in args.find_links or []:
        command += ["--find-links", folder]
    if args.index_url:
        command += ["--index-url", args.index_url]
    if args.no_index:
        command.append("--no-index")
    sys.stdout.flush()
    sys.stderr.flush()
    code = subprocess.run(command, stdout=sys.stderr, check=False).returncode
    if code:
        raise CliError(f"pip could not install the lock file {lock} (exit code {code}): see its messages above")


def _installed_packages(site: Path) -> dict[str, str]:
    """Name (normalised, PEP 503) to version of each distribution installed in ``site``."""
    from sessions.runtime.env_build import distributions

    packages = {name: version for name, (version, _) in sorted(distributions(site).items())}
    if not packages:
        raise CliError("the lock file installed no packages")
    return packages


def cmd_runtime_list(args: argparse.Namespace) -> None:
    runtimes = Client(load_config()).json("GET", "runtimes")
    if args.json:
        print(json.dumps(runtimes, indent=2))
        return
    rows = [
        [r["key"], r["python"], _runtime_state(r), r["app_versions"], _runtime_signer(r), r["file_size"] or "-"]
        for r in runtimes
    ]
    print_table(rows, ["KEY", "PYTHON", "STATE", "APP VERSIONS", "SIGNER", "SIZE"])


def _runtime_state(runtime: dict[str, Any]) -> str:
    return "deprecated" if runtime["deprecated"] else "active"


def _runtime_signer(runtime: dict[str, Any]) -> str:
    return "built-in" if runtime["is_builtin"] else runtime["signer"]


def cmd_runtime_show(args: argparse.Namespace) -> None:
    runtime = Client(load_config()).json("GET", f"runtimes/{args.key}")
    if args.json:
        print(json.dumps(runtime, indent=2))
        return
    state = f"deprecated since {runtime['deprecated_at'][:16]}" if runtime["deprecated"] else "active"
    print(f"{runtime['key']}: {runtime['title']}")
    print(
        f"Python {runtime['python']}, {state}, signer {_runtime_signer(runtime)}, "
        f"{runtime['file_size']} bytes, added {runtime['created_at'][:16]}"
    )
    print(f"Used by: {', '.join(runtime['used_by']) or 'no app version'}")
    print()
    print_table(list(runtime["packages"].items()), ["PACKAGE", "VERSION"])
    if runtime["environments"]:
        print()
        print_table(_environment_rows(runtime["environments"]), ENVIRONMENT_HEADER)


def cmd_runtime_add(args: argparse.Namespace) -> None:
    path = local_file(args.file)
    with open(path, "rb") as handle:  # requests streams a file object in chunks
        runtime = Client(load_config()).json("POST", "runtimes", data=handle, headers=OCTET_STREAM)
    print(
        f"Added runtime {runtime['key']} (Python {runtime['python']}, {count(len(runtime['packages']), 'package')}, "
        f"{runtime['file_size']} bytes)."
    )


def cmd_runtime_deprecate(args: argparse.Namespace) -> None:
    deprecated = args.action == "deprecate"
    Client(load_config()).json("PATCH", f"runtimes/{args.key}", json={"deprecated": deprecated})
    if deprecated:
        print(f"Runtime {args.key} deprecated: new publishes do not choose it; the versions on it keep it.")
    else:
        print(f"Runtime {args.key} is no longer deprecated.")


def cmd_runtime_delete(args: argparse.Namespace) -> None:
    Client(load_config()).request("DELETE", f"runtimes/{args.key}")
    print(f"Deleted runtime {args.key}.")


def cmd_wheelhouse_list(args: argparse.Namespace) -> None:
    wheels = Client(load_config()).json("GET", "wheelhouse")
    if args.json:
        print(json.dumps(wheels, indent=2))
        return
    print_table([[w["name"], w["size"]] for w in wheels], ["NAME", "SIZE"])


def cmd_wheelhouse_add(args: argparse.Namespace) -> None:
    paths = [local_file(name) for name in args.files]  # all of them there before the first is sent
    client = Client(load_config())
    for path in paths:
        with open(path, "rb") as handle:
            wheel = client.json("PUT", f"wheelhouse/{path.name}", data=handle, headers=OCTET_STREAM)
        print(f"Added {wheel['name']} to the wheelhouse ({wheel['size']} bytes).")


def cmd_wheelhouse_delete(args: argparse.Namespace) -> None:
    Client(load_config()).request("DELETE", f"wheelhouse/{args.name}")
    print(f"Deleted {args.name} from the wheelhouse.")


SHORT_KEY = 12  # of an environment's key, as lists show it; `pro env show` takes it
ENVIRONMENT_HEADER = ["KEY", "RUNTIME", "STATE", "INSTALLED", "REQUIREMENTS", "USED BY"]


def _environment_rows(environments: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            e["key"][:SHORT_KEY],
            e["runtime"],
            e["state"],
            e["installed_size"] or "-",
            ",".join(e["requirements"]),
            ", ".join(e["app_versions"]),
        ]
        for e in environments
    ]


def cmd_env_list(args: argparse.Namespace) -> None:
    environments = Client(load_config()).json("GET", "environments")
    if args.json:
        print(json.dumps(environments, indent=2))
        return
    print_table(_environment_rows(environments), ENVIRONMENT_HEADER)


def cmd_env_show(args: argparse.Namespace) -> None:
    client = Client(load_config())
    environment = client.json("GET", f"environments/{_environment_key(client, args.key)}")
    if args.json:
        print(json.dumps(environment, indent=2))
        return
    print(f"Environment {environment['key']}")
    print(
        f"Runtime {environment['runtime']}, {environment['state']}, installed {environment['installed_size']} bytes, "
        f"archive {environment['archive_size']} bytes, built {(environment['built_at'] or 'not yet')[:16]}"
    )
    print(f"Requirements: {' '.join(environment['requirements'])}")
    print(f"Used by: {', '.join(environment['app_versions']) or 'no app version'}")
    if environment["packages"]:
        print()
        print_table(list(environment["packages"].items()), ["PACKAGE", "VERSION"])
    print("\nBuild log:")
    sys.stdout.write(environment["build_log"] or "(none yet)\n")


def _environment_key(client: Client, key: str) -> str:
    """The whole key of the one environment whose key starts with ``key`` (unknown: left to the server to say)."""
    if len(key) >= 64:
        return key
    found = [e["key"] for e in client.json("GET", "environments") if e["key"].startswith(key)]
    if len(found) > 1:
        raise CliError(f"{key!r} starts {len(found)} environment keys: give more of it")
    return found[0] if found else key


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pro", description="Command-line client of the optimization platform.")
    parser.add_argument("--version", action="version", version=f"pro {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    login = commands.add_parser("login", help="get a ticket and remember the server")
    login.add_argument("--url")
    login.add_argument("--username")
    login.add_argument("--otp", metavar="CODE", help="the authenticator's code, for an account with two-factor login")
    login.set_defaults(func=cmd_login)
    commands.add_parser("logout", help="revoke and forget the ticket").set_defaults(func=cmd_logout)

    key = commands.add_parser("key", help="API keys for unattended scripts").add_subparsers(
        dest="key_command", required=True
    )
    key_create = key.add_parser("create", help="create a key; it is printed once")
    key_create.add_argument("name", help="what the key is for")
    key_create.add_argument("--expires", help="expiry time, ISO 8601 (e.g. 2027-06-30T00:00:00Z); default: none")
    key_create.set_defaults(func=cmd_key_create)
    key.add_parser("list", help="your keys").set_defaults(func=cmd_key_list)
    key_revoke = key.add_parser("revoke", help="revoke a key")
    key_revoke.add_argument("id", type=int)
    key_revoke.set_defaults(func=cmd_key_revoke)

    app = commands.add_parser("app", help="pack, publish and manage apps").add_subparsers(
        dest="app_command", required=True
    )
    pack = app.add_parser("pack", help="build an encrypted package of an app folder")
    pack.add_argument("folder")
    pack.add_argument("-o", "--output")
    pack.add_argument("--url", help="the platform to fetch the publisher key from")
    pack.add_argument("--key", help="a file with the platform's publisher key (PEM), instead of fetching it")
    pack.set_defaults(func=cmd_app_pack)
    publish = app.add_parser("publish", help="upload a package and wait for the platform to verify it")
    publish.add_argument("package")
    publish.add_argument("--no-latest", action="store_true", help="do not move the latest tag to this version")
    publish.add_argument("--no-wait", action="store_true", help="return once uploaded, before the verification")
    publish.add_argument(
        "--timeout", type=float, default=900, metavar="SECONDS", help="how long to wait for the verification (900)"
    )
    publish.set_defaults(func=cmd_app_publish)
    run = app.add_parser("run", help="serve an app folder's WebUI on this machine (solves here or on a platform)")
    run.add_argument("folder")
    run.add_argument("--port", type=int, default=0, help="the local port (a free one by default)")
    run.add_argument(
        "--remote",
        nargs="?",
        const="",
        metavar="URL",
        help="a platform that runs the solves (the logged-in one without URL); its cases can be pulled and pushed",
    )
    run.add_argument("--solve", choices=["local", "remote"], help="where solves run (remote when --remote is given)")
    run.add_argument("--api-key", help="the platform's API key (or PRO_API_KEY, or the ticket of 'pro login')")
    run.add_argument("--cases", help="the folder of local cases (~/.local/share/pro/cases/APP)")
    run.add_argument("--storage", help="a local folder standing in for storage paths a solve reads")
    run.add_argument("--no-browser", action="store_true", help="print the address without opening a browser")
    run.set_defaults(func=cmd_app_run)
    app.add_parser("list", help="the apps you can use").set_defaults(func=cmd_app_list)
    show = app.add_parser("show", help="an app and its versions")
    show.add_argument("name")
    show.set_defaults(func=cmd_app_show)
    for action in ("latest", "hide", "unhide"):
        sub = app.add_parser(action, help=f"{action} a version")
        sub.add_argument("name")
        sub.add_argument("version")
        sub.set_defaults(func=cmd_app_version, action=action)
    delete = app.add_parser("delete", help="delete a version, or the whole app without a version")
    delete.add_argument("name")
    delete.add_argument("version", nargs="?")
    delete.set_defaults(
        func=lambda a: (
            cmd_app_version(argparse.Namespace(**vars(a), action="delete")) if a.version else cmd_app_delete(a)
        )
    )
    grant = app.add_parser("grant", help="grant a user or group access")
    grant.add_argument("name")
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--group")
    grant.add_argument("--level", choices=["viewer", "collaborator"], default="viewer")
    grant.set_defaults(func=cmd_app_grant)

    storage = commands.add_parser("storage", help="files in storage").add_subparsers(
        dest="storage_command", required=True
    )
    ls = storage.add_parser("ls", help="list a folder")
    ls.add_argument("path", nargs="?", default="")
    ls.set_defaults(func=cmd_storage_ls)
    put = storage.add_parser("put", help="upload a file")
    put.add_argument("local")
    put.add_argument("remote", help="storage path; ending in / keeps the local name")
    put.set_defaults(func=cmd_storage_put)
    get = storage.add_parser("get", help="download a file")
    get.add_argument("remote")
    get.add_argument("local", nargs="?")
    get.set_defaults(func=cmd_storage_get)
    rm = storage.add_parser("rm", help="delete a file")
    rm.add_argument("remote")
    rm.set_defaults(func=cmd_storage_rm)

    job = commands.add_parser("job", help="submit and follow solve jobs").add_subparsers(
        dest="job_command", required=True
    )
    submit = job.add_parser("submit", help="queue a solve")
    submit.add_argument("app")
    submit.add_argument("procedure")
    submit.add_argument("--version", help="default: the version tagged latest")
    submit.add_argument("--input", help="a JSON file of identifier values")
    submit.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="one identifier value (JSON or text); repeatable"
    )
    submit.add_argument("--input-case", help="the id of a case to solve")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--time-limit", type=float, help="seconds")
    submit.add_argument("--memory-mb", type=int)
    submit.add_argument("--start-at", help="ISO time not to start before")
    submit.add_argument("--wait", action="store_true", help="follow the log until the job ends")
    submit.add_argument("-q", "--quiet", action="store_true", help="print only the job id")
    submit.set_defaults(func=cmd_job_submit)
    jobs_list = job.add_parser("list", help="your jobs")
    jobs_list.add_argument("--state", choices=["queued", "running", *FINISHED])
    jobs_list.set_defaults(func=cmd_job_list)
    status = job.add_parser("status", help="a job's state")
    status.add_argument("id", type=int)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_job_status)
    log = job.add_parser("log", help="a job's solver log")
    log.add_argument("id", type=int)
    log.add_argument("-f", "--follow", action="store_true")
    log.set_defaults(func=cmd_job_log)
    for action, text in (
        ("interrupt", "stop the solver and keep its best solution"),
        ("cancel", "stop the job, keep nothing"),
    ):
        stop = job.add_parser(action, help=text)
        stop.add_argument("id", type=int)
        stop.set_defaults(func=cmd_job_stop, action=action)
    result = job.add_parser("result", help="download a job's result case")
    result.add_argument("id", type=int)
    result.add_argument("-o", "--output")
    result.add_argument("--json", action="store_true", help="print the identifiers as JSON")
    result.set_defaults(func=cmd_job_result)

    schedule = commands.add_parser("schedule", help="recurring runs of a solve").add_subparsers(
        dest="schedule_command", required=True
    )
    create = schedule.add_parser("create", help="run a solve procedure on a cron expression or an interval")
    create.add_argument("app")
    create.add_argument("procedure")
    timing = create.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", metavar="EXPR", help="five fields: minute hour day month weekday")
    timing.add_argument("--every", type=int, metavar="SECONDS", help="an interval")
    create.add_argument("--tz", default="UTC", help="the cron expression's time zone (default UTC)")
    create.add_argument(
        "--app-version", metavar="VERSION", help="run this version of the app (default: the latest at each run)"
    )
    create.add_argument("--case", help="the id of a saved case to run on")
    create.add_argument("--input", help="a JSON file of identifier values")
    create.add_argument("--set", action="append", metavar="NAME=VALUE", help="one identifier value; repeatable")
    create.add_argument("--overlap", choices=["skip", "queue"], default="skip", help="while the last run goes on")
    create.add_argument("--missed", choices=["once", "skip"], default="once", help="slots missed during downtime")
    create.set_defaults(func=cmd_schedule_create)
    schedules_list = schedule.add_parser("list", help="your schedules")
    schedules_list.add_argument("--json", action="store_true")
    schedules_list.set_defaults(func=cmd_schedule_list)
    for action in ("pause", "resume", "delete"):
        change = schedule.add_parser(action, help=f"{action} a schedule")
        change.add_argument("id", type=int)
        change.set_defaults(func=cmd_schedule_change, action=action)
    runs = schedule.add_parser("runs", help="a schedule's runs, the latest first")
    runs.add_argument("id", type=int)
    runs.add_argument("--limit", type=int, default=50)
    runs.set_defaults(func=cmd_schedule_runs)

    runtime = commands.add_parser("runtime", help="signed runtimes: build and sign, add and retire (admins)")
    runtimes = runtime.add_subparsers(dest="runtime_command", required=True)
    keygen = runtimes.add_parser("keygen", help="make a key to sign runtimes with; prints the line nodes trust")
    keygen.add_argument("--out", required=True, metavar="KEY.pem", help="the private key's file (never overwritten)")
    keygen.set_defaults(func=cmd_runtime_keygen)
    build = runtimes.add_parser("build", help="install a lock file (with hashes) with this Python and sign it")
    build.add_argument("--name", required=True, help="e.g. py311-highs")
    build.add_argument("--version", required=True, help="one to three numbers, e.g. 1.2")
    build.add_argument("--lock", required=True, help="requirements pinning every package with == and --hash")
    build.add_argument("--key", required=True, help="the signing key (pro runtime keygen)")
    build.add_argument("--find-links", action="append", metavar="DIR", help="a folder of wheels; repeatable")
    build.add_argument("--no-index", action="store_true", help="no package index: --find-links only")
    build.add_argument("--index-url", help="the package index (default: pip's)")
    build.add_argument("-o", "--output", help="default: NAME-VERSION.proruntime")
    build.set_defaults(func=cmd_runtime_build)
    runtimes_list = runtimes.add_parser("list", help="the runtimes of the platform")
    runtimes_list.add_argument("--json", action="store_true")
    runtimes_list.set_defaults(func=cmd_runtime_list)
    runtime_show = runtimes.add_parser("show", help="a runtime's packages, environments and users")
    runtime_show.add_argument("key", help="e.g. py311-highs@1.0")
    runtime_show.add_argument("--json", action="store_true")
    runtime_show.set_defaults(func=cmd_runtime_show)
    runtime_add = runtimes.add_parser("add", help="upload a signed runtime file")
    runtime_add.add_argument("file")
    runtime_add.set_defaults(func=cmd_runtime_add)
    for action, text in (
        ("deprecate", "new publishes do not choose it; the versions on it keep it"),
        ("undeprecate", "make it choosable again"),
    ):
        retire = runtimes.add_parser(action, help=text)
        retire.add_argument("key")
        retire.set_defaults(func=cmd_runtime_deprecate, action=action)
    runtime_delete = runtimes.add_parser("delete", help="delete a runtime no app version uses")
    runtime_delete.add_argument("key")
    runtime_delete.set_defaults(func=cmd_runtime_delete)

    wheelhouse = commands.add_parser("wheelhouse", help="wheels for app environments (admins)").add_subparsers(
        dest="wheelhouse_command", required=True
    )
    wheels_list = wheelhouse.add_parser("list", help="the wheelhouse's files")
    wheels_list.add_argument("--json", action="store_true")
    wheels_list.set_defaults(func=cmd_wheelhouse_list)
    wheels_add = wheelhouse.add_parser("add", help="upload wheels, each under its own file name")
    wheels_add.add_argument("files", nargs="+", metavar="FILE")
    wheels_add.set_defaults(func=cmd_wheelhouse_add)
    wheels_delete = wheelhouse.add_parser("delete", help="delete a file of the wheelhouse")
    wheels_delete.add_argument("name")
    wheels_delete.set_defaults(func=cmd_wheelhouse_delete)

    env = commands.add_parser("env", help="app environments: requirements built on a runtime (admins)")
    envs = env.add_subparsers(dest="env_command", required=True)
    envs_list = envs.add_parser("list", help="the app environments")
    envs_list.add_argument("--json", action="store_true")
    envs_list.set_defaults(func=cmd_env_list)
    env_show = envs.add_parser("show", help="an environment and its build log")
    env_show.add_argument("key", help="its key, or the start of it as the list shows it")
    env_show.add_argument("--json", action="store_true")
    env_show.set_defaults(func=cmd_env_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CliError as exc:
        return fail(str(exc))
    except requests.RequestException as exc:  # a connection that broke while a body streamed
        return fail(f"the connection to the platform failed: {exc}")
    except EOFError:  # a question (pro login's) with nothing on standard input to answer it
        return fail("standard input ended before the question was answered: give --username and set PRO_PASSWORD")
    except OSError as exc:  # a local file or folder named on the command line
        return fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
    except KeyboardInterrupt:
        return 130
    return 0


def fail(message: str) -> int:
    """Say what went wrong in one line on stderr; the exit status of a failed command."""
    print(f"pro: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
