"""A job's log: capped to its head and tail whatever the job prints, read a page at a time.

The jobs are made with the ORM and the log services directly: no worker, no solve process.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sessions import jobs
from sessions.models import Job, JobLogChunk, JobState
from tests.helpers import publish_as

pytestmark = pytest.mark.django_db(transaction=True)

LAB = Path(__file__).parent / "apps" / "lab"
MB = 1024 * 1024
MARKER = re.compile(
    r"\n?--- ([\d.]+ (?:GB|MB|kB|bytes)) of log dropped here \(the log is capped at ([^;]+); head and tail kept\) ---\n"
)


@pytest.fixture
def version(alice, runtime, platform_public_key):
    from sessions.runtime import package

    blob, _ = package.pack_folder(LAB, platform_public_key)
    return publish_as(alice, blob, verify=False)


@pytest.fixture
def running(alice, version):
    """A job claimed by node n: its first attempt is running."""
    return Job.objects.create(
        owner=alice,
        app_version=version,
        procedure="solve",
        time_limit=60,
        memory_limit_mb=512,
        state=JobState.RUNNING,
        attempt=1,
        node="n",
    )


def log_lines(size: int, start: int = 0) -> bytes:
    """About ``size`` bytes of numbered log lines, some with characters of 2, 3 and 4 bytes."""
    lines, total, number = [], 0, start
    while total < size:
        line = f"line {number:09d} {'é€😀' if number % 3 == 0 else 'x' * 9} objective {number * 7 % 1000}\n".encode()
        lines.append(line)
        total += len(line)
        number += 1
    return b"".join(lines)


def append(job: Job, data: bytes, offset: int, piece: int) -> int:
    """Append ``data`` as the supervisor does: pieces of whole lines of about ``piece`` bytes."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", min(len(data) - 1, start + piece)) + 1 or len(data)
        offset = jobs.job_append_log(job=job, offset=offset, text=data[start:end].decode())
        start = end
    return offset


def stored_bytes(job: Job) -> int:
    return sum(len(text.encode()) for text in JobLogChunk.objects.filter(job=job).values_list("text", flat=True))


def check_page(full: bytes, asked: int, text: str, answered: int) -> list[str]:
    """A page is the log's bytes from ``asked``, then for each gap a marker line and the bytes after it,
    up to ``answered``; returns the markers' sizes."""
    assert "\ufffd" not in text, "a character was broken"
    parts = MARKER.split(text)
    assert len(parts) in (1, 4), "more than one marker line in a page"
    before = parts[0].encode()
    assert full[asked : asked + len(before)] == before
    if len(parts) == 1:
        assert asked + len(before) == answered
        return []
    after = parts[3].encode()
    assert after and full[answered - len(after) : answered] == after
    missed = answered - len(after) - asked - len(before)
    assert missed > 0 and parts[1] == jobs._size_text(missed)
    return [parts[1]]


@pytest.mark.slow
def test_a_30_mb_log_keeps_10_mb_head_marker_and_tail(running, settings, storage_folder):
    settings.PRO_JOB_LOG_MAX_BYTES = 10 * MB
    full = log_lines(30 * MB)
    end = append(running, full, 0, 256 * 1024)

    assert end == len(full)
    assert 10 * MB - 200 <= stored_bytes(running) <= 10 * MB + 200  # the database holds the cap, not the log
    running.refresh_from_db()
    head_end, dropped = running.log_dropped_at, running.log_dropped
    assert (running.log_size, head_end + dropped) == (len(full), len(full) - (stored_bytes(running) - head_end))
    assert 5 * MB <= head_end < 5 * MB + 200 and full[head_end - 1 : head_end] == b"\n"  # cut at a line end
    assert full[head_end + dropped - 1 : head_end + dropped] == b"\n"  # the tail begins with a line

    assert jobs.job_finish(job=running, state=JobState.SUCCEEDED)
    running.refresh_from_db()
    assert not JobLogChunk.objects.filter(job=running).exists()
    stored = (storage_folder / running.log_path).read_bytes()
    marker = b"--- 20 MB of log dropped here (the log is capped at 10 MB; head and tail kept) ---\n"
    assert abs(dropped - 20 * MB) < 200
    assert stored == full[:head_end] + marker + full[head_end + dropped :]
    assert (running.log_size, running.log_dropped_at, running.log_dropped) == (len(full), head_end, dropped)
    assert 10 * MB <= len(stored) <= 10 * MB + 200


def test_pages_of_a_stored_log_follow_on_and_say_where_next(running, settings, storage_folder, api, alice):
    settings.PRO_JOB_LOG_MAX_BYTES = 64 * 1024
    full = log_lines(300 * 1024)
    append(running, full, 0, 4096)
    jobs.job_finish(job=running, state=JobState.FAILED, error="stopped")
    running.refresh_from_db()
    stored = (storage_folder / running.log_path).read_text()

    client, offset, pages, seen = api(alice), 0, [], ""
    while True:
        page = client.get(f"/api/v1/jobs/{running.pk}/log", {"offset": offset, "limit": 10_000}).json()
        assert len(page["text"].encode()) <= 10_000 + 200  # a page, and a marker line on top at most
        assert page["offset"] > offset and page["size"] == len(full) and page["dropped"] == running.log_dropped
        check_page(full, offset, page["text"], page["offset"])
        pages.append(page)
        seen += page["text"]
        offset = page["offset"]
        if page["finished"]:
            break
    assert seen == stored and offset == len(full)
    assert len(pages) >= 7 and not any(p["finished"] for p in pages[:-1])
    # Past the end: nothing, and the same offset.
    end = client.get(f"/api/v1/jobs/{running.pk}/log", {"offset": offset}).json()
    assert (end["text"], end["offset"], end["finished"]) == ("", offset, True)
    far = client.get(f"/api/v1/jobs/{running.pk}/log", {"offset": 2**62}).json()
    assert (far["text"], far["offset"], far["finished"]) == ("", 2**62, True)
    # Without a limit: the default page, 1 MiB at most; without an offset, from the start.
    assert client.get(f"/api/v1/jobs/{running.pk}/log").json()["text"] == stored


def test_pages_break_no_character(running, settings, storage_folder):
    settings.PRO_JOB_LOG_MAX_BYTES = 1024 * 1024
    full = ("😀é€ ab\n" * 50).encode()
    jobs.job_append_log(job=running, offset=0, text=full.decode())
    for finished in (False, True):
        if finished:
            jobs.job_finish(job=running, state=JobState.SUCCEEDED)
        running.refresh_from_db()
        for limit in (1, 2, 3, 5, 7, 4096):
            offset, seen = 0, ""
            while offset < len(full):
                text, next_offset = jobs.job_log(running, offset, limit)
                assert text and "\ufffd" not in text and next_offset > offset
                seen, offset = seen + text, next_offset
            assert seen.encode() == full


@pytest.mark.parametrize(
    "query",
    ["offset=-1", "offset=abc", "offset=1.5", "limit=0", "limit=-5", "limit=x", f"limit={MB + 1}", "offset=1e400"],
)
def test_bad_offset_or_limit_is_a_400(running, api, alice, query):
    jobs.job_append_log(job=running, offset=0, text="hello\n")
    response = api(alice).get(f"/api/v1/jobs/{running.pk}/log?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.slow
def test_a_follower_never_goes_backwards_while_the_tail_rolls(running, settings, storage_folder, api, alice):
    """A follower keeping up sees the head, one marker and the tail; one falling behind is told what it
    missed; it ends at the end of the stored log, every byte it got where the job printed it."""
    settings.PRO_JOB_LOG_MAX_BYTES = 8192
    client = api(alice)
    full = b""
    follower, fast_seen, markers = 0, "", []
    for round_number in range(60):
        # The job prints: a little at first, then a lot between two polls now and then.
        burst = 20_000 if round_number % 10 == 9 else 700
        data = log_lines(burst, start=len(full))
        append(running, data, len(full), 300)
        full += data
        for _ in range(3):  # a poll or a few, some with small pages
            page = client.get(
                f"/api/v1/jobs/{running.pk}/log", {"offset": follower, "limit": 500 if round_number % 2 else 5000}
            ).json()
            assert page["offset"] >= follower and not page["finished"]
            markers += check_page(full, follower, page["text"], page["offset"])
            fast_seen += page["text"]
            follower = page["offset"]
        assert stored_bytes(running) <= 8192 + 8192 // 16  # the head ends at the end of a line
    assert markers, "the follower never fell behind the tail"
    far = client.get(f"/api/v1/jobs/{running.pk}/log", {"offset": 2**62}).json()
    assert (far["text"], far["offset"], far["finished"]) == ("", 2**62, False)
    jobs.job_finish(job=running, state=JobState.SUCCEEDED)
    running.refresh_from_db()
    while True:
        page = client.get(f"/api/v1/jobs/{running.pk}/log", {"offset": follower, "limit": 700}).json()
        assert page["offset"] >= follower
        check_page(full, follower, page["text"], page["offset"])
        follower = page["offset"]
        if page["finished"]:
            break
    assert follower == len(full) == running.log_size
    # A follower from the start of the finished log gets the stored file, with its one marker line.
    stored = (storage_folder / running.log_path).read_text()
    assert len(MARKER.findall(stored)) == 1 and stored.endswith(full[-1000:].decode())
    assert jobs.job_log(running)[0] == stored


def test_the_cli_pages_through_a_long_log(running, settings, storage_folder, api, alice, monkeypatch, capsys):
    from pro_cli import main as cli

    class Client:
        def __init__(self, config):
            self.api = api(alice)

        def json(self, method, path, params=None):
            assert method == "GET"
            return self.api.get(f"/api/v1/{path}", params or {}).json()

    monkeypatch.setattr(cli, "Client", Client)
    monkeypatch.setattr(cli, "load_config", dict)
    monkeypatch.setattr("time.sleep", lambda seconds: pytest.fail("the follower waited with pages to read"))
    settings.PRO_JOB_LOG_MAX_BYTES = 4 * MB
    full = log_lines(3 * MB)
    append(running, full, 0, 64 * 1024)
    cli.cmd_job_log(type("Args", (), {"id": running.pk, "follow": False})())
    assert capsys.readouterr().out == full.decode()  # three pages of a running job's log
    jobs.job_finish(job=running, state=JobState.SUCCEEDED)
    for follow in (False, True):
        cli.cmd_job_log(type("Args", (), {"id": running.pk, "follow": follow})())
        assert capsys.readouterr().out == full.decode()


def test_nul_characters_are_kept_as_replacement_characters(running):
    assert jobs.job_append_log(job=running, offset=0, text="a\x00b\n") == len("a\ufffdb\n".encode())
    assert jobs.job_log(running)[0] == "a\ufffdb\n"


@pytest.mark.parametrize(("value", "found"), [(None, str(10 * MB)), ("2048", "2048"), ("12", "ImproperlyConfigured")])
def test_the_cap_is_a_setting(tmp_path, monkeypatch, value, found):
    from tests.helpers import probe

    if value is None:
        monkeypatch.delenv("PRO_JOB_LOG_MAX_BYTES", raising=False)
    result = probe(tmp_path, monkeypatch, script=PROBE, **({"PRO_JOB_LOG_MAX_BYTES": value} if value else {}))
    assert found in result.stdout + result.stderr


PROBE = """
import django
from django.conf import settings
django.setup()
print(settings.PRO_JOB_LOG_MAX_BYTES)
"""


def test_a_short_jobs_whole_log_is_stored_at_its_end_and_a_late_end_leaves_it(running, storage_folder):
    assert jobs.job_finish(job=running, state=JobState.SUCCEEDED, log_offset=0, log_tail="entered\nthe end\n")
    running.refresh_from_db()
    assert not JobLogChunk.objects.filter(job=running).exists()  # stored without passing through pieces
    assert (running.log_size, running.log_dropped) == (len("entered\nthe end\n"), 0)
    assert jobs.job_log(running) == ("entered\nthe end\n", running.log_size)
    # The same attempt's end again (a worker that lost the job, late): discarded, the log kept.
    assert not jobs.job_finish(job=running, state=JobState.FAILED, log_offset=0, log_tail="late\n")
    running.refresh_from_db()
    assert running.state == JobState.SUCCEEDED
    assert (storage_folder / running.log_path).read_text() == "entered\nthe end\n"
    assert [path.name for path in (storage_folder / "jobs" / str(running.pk)).iterdir()] == [
        Path(running.log_path).name
    ]
