"""Webhooks and e-mail when a job changes state (apps.webhooks): real HTTP receivers checking the
signature (one slow, one down, one failing first), refusals of the platform's own network, the
delivery log and the secret through the API, e-mail through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes

import pytest
from django.test import Client as PageClient

from apps.webhooks import services as webhooks
from apps.webhooks.models import Delivery, DeliveryStatus, OwnerSettings
from pro_portal.errors import ApplicationError
from sessions import jobs
from sessions.models import Job, JobState
from tests.helpers import wait_until
from tests.live import free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


# ---------------------------------------------------------------- a receiver and the task queue


class Receiver:
    """An HTTP server in a thread on 127.0.0.1 recording what is POSTed: ``answers`` are the
    statuses it gives in turn (the last one from then on), after ``delay`` seconds each."""

    def __init__(self, answers=(200,), delay: float = 0.0):
        self.answers = list(answers)
        self.delay = delay
        self.received: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
                time.sleep(outer.delay)
                status = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answer {status}".encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/jobs?from=pro"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        return [json.loads(r["body"])["event"] for r in self.received]


def verified(request: dict, secret: str, tolerance: float = 300) -> dict:
    """The body of a delivery whose signature is right (the check a receiver makes), else fail."""
    fields = dict(part.split("=", 1) for part in request["headers"]["X-Pro-Signature"].split(","))
    stamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), "bad signature"
    assert abs(time.time() - stamp) < tolerance
    return json.loads(request["body"])


def run_queued_tasks() -> list[str]:
    """Run what the platform queued for django-q2's workers, as a worker would (in threads)."""
    from django.utils.module_loading import import_string
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    names = []
    rows = list(OrmQ.objects.all())
    tasks = [SignedPackage.loads(row.payload) for row in rows]
    OrmQ.objects.filter(pk__in=[row.pk for row in rows]).delete()

    def run(task):
        from django.db import connection

        try:
            func = import_string(task["func"]) if isinstance(task["func"], str) else task["func"]
            func(*task["args"], **task["kwargs"])
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        for task in tasks:
            names.append(task["name"])
        list(pool.map(run, tasks))
    return names


@pytest.fixture
def local_hooks(settings):
    """Receivers on this machine's loopback, allowed as an admin would; short retries."""
    settings.PRO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.PRO_WEBHOOK_RETRY_DELAYS = [0.2, 0.2]
    settings.PRO_WEBHOOK_TIMEOUT = 1.0
    return settings


def submit(user, **options) -> Job:
    return jobs.job_submit(user=user, app_name="lab", procedure="solve", input_values={"cap": 2.0}, **options)


def run_to_end(job: Job, state: str = JobState.SUCCEEDED, **end) -> Job:
    claimed = jobs.job_claim_next(node="hook-node")
    assert claimed is not None and claimed.pk == job.pk
    assert jobs.job_finish(job=claimed, state=state, **end)
    job.refresh_from_db()
    return job


def rotated_secret(client) -> str:
    response = client.post("/api/v1/webhooks/secret")
    assert response.status_code == 201, response.content
    return response.json()["secret"]


# ---------------------------------------------------------------- deliveries


def test_each_state_change_is_posted_signed(api, alice, lab, local_hooks):
    client = api(alice)
    secret = rotated_secret(client)
    with Receiver() as receiver:
        job = submit(alice, webhook_url=receiver.url)
        run_to_end(job, solver_status="Optimal")
        assert receiver.received == []  # nothing is sent from the job's own change
        run_queued_tasks()
        wait_until(lambda: len(receiver.received) == 3, timeout=10, message="deliveries missing")
    bodies = sorted(
        (verified(r, secret) for r in receiver.received),
        key=lambda b: ["job.queued", "job.running", "job.succeeded"].index(b["event"]),
    )
    assert [b["event"] for b in bodies] == ["job.queued", "job.running", "job.succeeded"]
    assert [b["job"]["state"] for b in bodies] == ["queued", "running", "succeeded"]
    last = bodies[-1]
    assert last["job"]["id"] == job.pk and last["job"]["app"] == "lab" and last["job"]["procedure"] == "solve"
    assert last["job"]["solver_status"] == "Optimal" and last["job"]["finished_at"] and last["sent_at"]
    assert last["job"]["url"] == f"/jobs/{job.pk}/"
    request = next(r for r in receiver.received if json.loads(r["body"])["event"] == "job.succeeded")
    assert request["path"] == "/hooks/jobs?from=pro"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Pro-Event"] == "job.succeeded"
    assert request["headers"]["User-Agent"].startswith("pro-platform-webhooks")
    delivery = Delivery.objects.get(pk=int(request["headers"]["X-Pro-Delivery"]))
    assert delivery.job_id == job.pk and delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
    assert delivery.status_code == 200 and delivery.response_excerpt == "answer 200" and delivery.delivered_at
    # A signature made with another secret is refused by the receiver's check.
    with pytest.raises(AssertionError, match="bad signature"):
        verified(request, "whsec_not-the-secret")


def test_a_slow_or_dead_receiver_never_delays_the_job(alice, lab, local_hooks):
    dead = f"http://127.0.0.1:{free_port()}/gone"
    with Receiver(delay=10) as slow:
        started = time.monotonic()
        slow_job = submit(alice, webhook_url=slow.url)
        run_to_end(slow_job)
        dead_job = submit(alice, webhook_url=dead)
        run_to_end(dead_job, state=JobState.FAILED, error="it broke")
        assert time.monotonic() - started < 3  # the two jobs' whole lives, receivers or not
        assert slow_job.state == JobState.SUCCEEDED and dead_job.state == JobState.FAILED
        tried = time.monotonic()
        run_queued_tasks()  # six attempts at once, each cut at PRO_WEBHOOK_TIMEOUT
        assert time.monotonic() - tried < 5
        wait_until(lambda: len(slow.received) == 3, timeout=5)
    slow_ones = Delivery.objects.filter(job=slow_job)
    assert {d.error for d in slow_ones} == {"No answer within 1 s."}
    dead_ones = Delivery.objects.filter(job=dead_job)
    assert all("ConnectionRefused" in d.error and d.status_code is None for d in dead_ones)
    assert all(
        d.status == DeliveryStatus.PENDING and d.next_try_at and d.attempts == 1 for d in [*slow_ones, *dead_ones]
    )


def test_retried_with_backoff_until_it_succeeds_or_gives_up(api, alice, lab, local_hooks):
    from django_q.models import Schedule

    secret = rotated_secret(api(alice))
    with Receiver(answers=(500, 200)) as receiver:
        job = submit(alice, webhook_url=receiver.url)
        run_queued_tasks()
        delivery = Delivery.objects.get(job=job)
        assert delivery.attempts == 1 and delivery.status_code == 500 and delivery.status == DeliveryStatus.PENDING
        assert delivery.error == "The receiver answered 500." and delivery.response_excerpt == "answer 500"
        retry = Schedule.objects.get(func="apps.webhooks.tasks.deliver", args=f"({delivery.pk},)")
        assert retry.schedule_type == Schedule.ONCE and retry.next_run == delivery.next_try_at
        time.sleep(0.25)
        assert webhooks.deliveries_due() == [delivery.pk]  # what the schedule runs
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2 and delivery.status_code == 200
        assert [verified(r, secret)["event"] for r in receiver.received] == ["job.queued", "job.queued"]
        # The same body both times; a fresh timestamp and signature.
        assert json.loads(receiver.received[0]["body"])["job"] == json.loads(receiver.received[1]["body"])["job"]

    dead_job = submit(alice, webhook_url=f"http://127.0.0.1:{free_port()}/")
    run_queued_tasks()
    for _ in range(2):
        time.sleep(0.25)
        webhooks.deliveries_due()
    gone = Delivery.objects.get(job=dead_job)
    assert gone.status == DeliveryStatus.FAILED and gone.attempts == 3 and gone.next_try_at is None
    assert webhooks.deliveries_due() == []


def events(job: Job) -> list[str]:
    return [d.event for d in Delivery.objects.filter(job=job).order_by("id")]


def test_requeues_and_cancels_are_events_too(alice, lab, local_hooks):
    url = f"http://127.0.0.1:{free_port()}/"
    job = submit(alice, webhook_url=url)
    claimed = jobs.job_claim_next(node="hook-node")
    jobs.job_release(job=claimed, reason="its node died")
    jobs.job_cancel(user=alice, job=Job.objects.get(pk=job.pk))
    running = submit(alice, webhook_url=url)
    claimed = jobs.job_claim_next(node="hook-node")
    jobs.job_cancel(user=alice, job=Job.objects.get(pk=running.pk))  # asked to stop: not a change yet
    assert jobs.job_finish(job=claimed, state=JobState.CANCELLED)
    assert events(job) == ["job.queued", "job.running", "job.requeued", "job.cancelled"]
    assert events(running) == ["job.queued", "job.running", "job.cancelled"]
    assert json.loads(Delivery.objects.filter(job=job).order_by("id").last().body)["job"]["state"] == "cancelled"


def test_the_delivery_log_is_the_owners(api, alice, bob, admin_user, lab, local_hooks):
    with Receiver() as receiver:
        job = submit(alice, webhook_url=receiver.url)
        run_to_end(job)
        run_queued_tasks()
    mine = api(alice).get(f"/api/v1/webhooks/deliveries?job={job.pk}")
    assert mine.status_code == 200
    rows = mine.json()
    assert sorted(r["event"] for r in rows) == ["job.queued", "job.running", "job.succeeded"]
    assert all(r["status"] == "delivered" and r["attempts"] == 1 and r["status_code"] == 200 for r in rows)
    assert all(r["job"] == job.pk and r["url"] == receiver.url for r in rows)
    assert api(bob).get(f"/api/v1/webhooks/deliveries?job={job.pk}").status_code == 404
    assert api(bob).get("/api/v1/webhooks/deliveries").json() == []
    assert len(api(admin_user).get(f"/api/v1/webhooks/deliveries?job={job.pk}").json()) == 3
    assert api(None).get("/api/v1/webhooks/deliveries").status_code == 401
    assert api(alice).get("/api/v1/webhooks/deliveries?job=x").status_code == 400
    page = PageClient()
    page.force_login(alice)
    shown = page.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="webhook-deliveries"' in shown and "job.succeeded" in shown and "delivered" in shown


def test_the_platforms_own_network_is_refused(api, alice, lab, settings):
    settings.PRO_WEBHOOK_ALLOWED_HOSTS = []
    for url, word in [
        ("http://127.0.0.1:8000/api/v1/jobs", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://[::1]:9/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("ftp://example.org/", "http:// or https://"),
        ("http://user:pw@example.org/", "user name or password"),
        ("http://" + "a" * 2000 + ".org/", "at most 2000"),
        ("http://no-such-host.invalid/", "does not resolve"),
    ]:
        with pytest.raises(ApplicationError) as refused:
            submit(alice, webhook_url=url)
        assert refused.value.status == 400 and refused.value.code == "bad_webhook_url", url
        assert word in refused.value.message, (url, refused.value.message)
    assert not Job.objects.exists()
    # An admin may allow a host, or a network.
    settings.PRO_WEBHOOK_ALLOWED_HOSTS = ["10.0.0.0/8", "localhost"]
    assert submit(alice, webhook_url="http://10.1.2.3/").webhook_url == "http://10.1.2.3/"
    assert submit(alice, webhook_url="http://localhost:9/x").webhook_url == "http://localhost:9/x"
    # Checked again when sent: allowed at submit, no longer allowed at delivery.
    with Receiver() as receiver:
        settings.PRO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
        job = submit(alice, webhook_url=receiver.url)
        settings.PRO_WEBHOOK_ALLOWED_HOSTS = []
        Delivery.objects.exclude(job=job).delete()
        run_queued_tasks()
        assert receiver.received == []
    assert "loopback" in Delivery.objects.get(job=job).error


def test_the_secret_is_never_shown_again(api, alice, lab, local_hooks):
    from apps.accounts.models import SecurityEvent

    client = api(alice)
    first = rotated_secret(client)
    secret = rotated_secret(client)
    assert first != secret and secret.startswith("whsec_")
    assert SecurityEvent.objects.filter(kind="webhook.secret.rotate", actor="alice").count() == 2
    stored = OwnerSettings.objects.get(user=alice).secret_encrypted
    assert secret not in stored and secret[6:] not in stored
    with Receiver() as receiver:
        job = submit(alice, webhook_url=receiver.url)
        run_to_end(job)
        run_queued_tasks()
        wait_until(lambda: len(receiver.received) == 3, timeout=5)
    assert all(verified(r, secret) for r in receiver.received)  # the old one signs no more
    answers = [
        client.get(f"/api/v1/jobs/{job.pk}"),
        client.get("/api/v1/jobs"),
        client.get(f"/api/v1/jobs/{job.pk}/log"),
        client.get("/api/v1/webhooks/deliveries"),
        client.get("/api/v1/webhooks/settings"),
    ]
    for answer in answers:
        assert answer.status_code == 200 and secret not in answer.content.decode()
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["webhook_url"] == receiver.url
    assert client.get("/api/v1/webhooks/settings").json()["secret_set"] is True
    assert secret not in jobs.job_log(job)[0]
    assert not any(secret in d.body or secret in d.response_excerpt for d in Delivery.objects.all())
    # A data session's ticket cannot rotate it; an API key neither.
    from apps.accounts.api_keys import api_key_create

    raw, _ = api_key_create(user=alice, name="script")
    from rest_framework.test import APIClient

    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert keyed.post("/api/v1/webhooks/secret").status_code == 403


def test_account_page_rotates_and_sets_the_mail_default(alice):
    page = PageClient()
    page.force_login(alice)
    assert b"Webhook secret" in page.get("/account/").content
    shown = page.post("/account/", {"action": "webhook-rotate"})
    assert shown.status_code == 200 and b"new-webhook-secret-value" in shown.content
    secret = shown.content.decode().split('id="new-webhook-secret-value">')[1].split("<")[0]
    assert secret.startswith("whsec_") and webhooks.secret_of(alice.pk) == secret
    assert secret.encode() not in page.get("/account/").content
    page.post("/account/", {"action": "email-job-end", "email_job_end": "on"})
    assert webhooks.email_default(alice)
    assert b"checked" in page.get("/account/").content
    page.post("/account/", {"action": "email-job-end"})
    assert not webhooks.email_default(alice)


# ---------------------------------------------------------------- e-mail


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free port (aiosmtpd), Django's mail sent to it."""
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd calls it so
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield inbox
    controller.stop()


def test_mail_when_a_job_ends(alice, lab, smtp_server):
    alice.email = "alice@example.org"
    alice.save()
    job = submit(alice, notify_email=True)
    assert job.notify_email
    run_queued_tasks()
    assert smtp_server.messages == []  # not when it is queued
    run_to_end(job, state=JobState.FAILED, error="The model is infeasible.")
    run_queued_tasks()
    wait_until(lambda: smtp_server.messages, timeout=10, message="no mail")
    (recipients, message) = smtp_server.messages[0]
    assert recipients == ["alice@example.org"]
    assert message["Subject"] == f"Job {job.pk} failed: lab {job.app_version.version}, solve"
    text = message.get_payload(decode=True).decode()
    assert "The model is infeasible." in text and f"/jobs/{job.pk}/" in text

    # The owner's default, and a job saying otherwise.
    webhooks.email_default_set(user=alice, on=True)
    by_default = submit(alice)
    refused = submit(alice, notify_email=False)
    assert by_default.notify_email and not refused.notify_email
    run_to_end(by_default)
    run_to_end(refused)
    run_queued_tasks()
    wait_until(lambda: len(smtp_server.messages) == 2, timeout=10, message="no mail")
    time.sleep(0.3)
    assert len(smtp_server.messages) == 2
    assert smtp_server.messages[1][1]["Subject"].startswith(f"Job {by_default.pk} succeeded: lab")


# ---------------------------------------------------------------- a real node


@pytest.mark.live
def test_a_real_node_posts_queued_running_succeeded(api, alice, lab, storage_folder, tmp_path, settings):
    import sys

    from tests.live import ROOT, start_node, stop_group

    settings.PRO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    secret = rotated_secret(api(alice))
    node = start_node(
        tmp_path, storage_folder, roles=("web", "solves"), extra_env={"PRO_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
    )
    try:
        node.commands["workers"] = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
        node.logs["workers"] = tmp_path / "workers.log"
        node.start("workers")
        with Receiver() as receiver:
            job = submit(alice, webhook_url=receiver.url)
            arrived = wait_until(
                lambda: {"job.queued", "job.running", "job.succeeded"} <= set(receiver.events()), timeout=60
            )
            deliveries = list(Delivery.objects.values("event", "status", "error"))
            assert arrived, f"deliveries: {receiver.events()} {deliveries}\n{node.log('workers')[-3000:]}"
        assert sorted(receiver.events()) == ["job.queued", "job.running", "job.succeeded"]
        assert "Could not record the webhook" not in node.log("solves")
        bodies = {b["event"]: b for b in (verified(r, secret) for r in receiver.received)}
        assert bodies["job.succeeded"]["job"]["id"] == job.pk and bodies["job.succeeded"]["job"]["state"] == "succeeded"
        assert bodies["job.running"]["job"]["node"] == f"test-node-{node.port}"
    finally:
        if "workers" in node.processes:  # django-q2's cluster, not one of the node's own: its group is ended here
            stop_group(node.processes.pop("workers"), timeout=5)
        node.stop()


@pytest.mark.parametrize(
    ("value", "answer"),
    [
        ("https://opt.example.com/", "https://opt.example.com/jobs/7/"),
        ("http://10.0.0.5:8000/pro", "http://10.0.0.5:8000/pro/jobs/7/"),
        ("opt.example.com", "not an http:// or https:// address"),
        ("javascript:alert(1)", "not an http:// or https:// address"),
    ],
)
def test_job_links_use_the_public_address_and_a_bad_one_stops_the_start(tmp_path, monkeypatch, value, answer):
    from tests.helpers import probe

    script = "import django; django.setup()\nfrom apps.webhooks.services import job_page_url\nprint(job_page_url(7))\n"
    result = probe(tmp_path, monkeypatch, script=script, PRO_PUBLIC_URL=value)
    assert answer in result.stdout + result.stderr
