"""The portal's pages in a real browser (Playwright, Debian's Chromium) against a live web server:
uploading several files by picking and by drag and drop, with progress; a new folder; the
catalogue's search as one types; the charts and page links of the statistics and security pages."""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tests.browser import ARTIFACTS, log_in
from tests.helpers import publish_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.live]

# Screenshots for people to look at, beside the run's artifacts.
SHOTS = Path(os.environ.get("PRO_PORTAL_SHOTS", "/tmp/portal-shots"))
WAIT_MS = 30_000


def shot(page, name: str, full_page: bool = True) -> Path:
    path = ARTIFACTS / f"portal-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def visible_apps(page) -> list[str]:
    return page.eval_on_selector_all(".app-card", "cards => cards.filter(c => c.offsetParent).map(c => c.dataset.app)")


def file_names(page) -> list[str]:
    return page.eval_on_selector_all("table.files a.entry", "links => links.map(a => a.textContent.trim())")


def drop_files(page, selector: str, files: dict[str, str], screenshot: str = "") -> None:
    """Drop files on an element as a person dragging them from their desktop would (dragenter, then drop)."""
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, text] of Object.entries(files)) transfer.items.add(new File([text], name));
            return transfer;
        }""",
        files,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    assert "dragging" in page.get_attribute(selector, "class")
    if screenshot:
        shot(page, screenshot, full_page=False)
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def wait_uploads_done(page, count: int) -> None:
    page.wait_for_function("(count) => document.querySelectorAll('#uploads .upload.done').length === count", arg=count)


# ---------------------------------------------------------------- files


def test_upload_several_files_by_picking_and_by_dropping_then_a_new_folder(
    platform_server, carol, storage_folder, tmp_path, browser_page
):
    page, errors = browser_page
    base = platform_server.url
    mine = storage_folder / "users/carol"
    picked = {"notes.txt": b"first\n", "big.bin": os.urandom(3 * 1024 * 1024 + 512), "odd #1 & more.csv": b"a,b\n"}
    for name, data in picked.items():
        (tmp_path / name).write_bytes(data)

    log_in(page, base, "carol")
    page.goto(f"{base}/files/users/carol/")
    assert "Drop files here" in page.inner_text("table.files")
    page.set_input_files("#upload-input", [str(tmp_path / name) for name in picked])
    wait_uploads_done(page, 3)
    page.wait_for_function("() => document.querySelectorAll('table.files a.entry').length === 3")
    for name, data in picked.items():
        assert (mine / name).read_bytes() == data, name
    assert sorted(file_names(page)) == sorted(picked)
    # Every bar full, and sizes in human units in the bars and in the table.
    assert page.eval_on_selector_all("#uploads progress", "bars => bars.every(b => b.value === b.max)")
    assert "uploaded · 3.0 MB" in page.inner_text("#uploads")
    sizes = page.eval_on_selector_all("table.files td.size", "cells => cells.map(c => c.textContent.trim())")
    assert "3.0\xa0MB" in sizes and "6\xa0bytes" in sizes
    shot(page, "files-uploaded")

    drop_files(page, "#files", {"dropped-1.csv": "x,y\n1,2\n", "dropped-2.csv": "z\n"}, "files-dragging")
    wait_uploads_done(page, 5)
    page.wait_for_function("() => document.querySelectorAll('table.files a.entry').length === 5")
    assert "dragging" not in page.get_attribute("#files", "class")
    assert (mine / "dropped-1.csv").read_text() == "x,y\n1,2\n" and (mine / "dropped-2.csv").read_text() == "z\n"

    page.fill("#folder-form input[name=name]", "inputs")
    page.click("#folder-form button")
    page.wait_for_selector("text=Created the folder users/carol/inputs.")
    assert (mine / "inputs").is_dir()
    folder_link = page.locator("tr.folder a.entry", has_text="inputs/")
    # The icons are SVG files that load, not emoji that need a font.
    assert page.eval_on_selector_all("img.file-icon", "imgs => imgs.length > 0 && imgs.every(i => i.naturalWidth > 0)")
    assert not re.search("[\U0001f4c1\U0001f4c4]", page.inner_text("main"))
    shot(page, "files-folder")
    folder_link.click()
    page.wait_for_url(f"{base}/files/users/carol/inputs/")
    drop_files(page, "#files", {"in-folder.txt": "deep\n"})
    wait_uploads_done(page, 1)
    page.wait_for_selector("table.files a.entry:has-text('in-folder.txt')")
    assert (mine / "inputs/in-folder.txt").read_text() == "deep\n"
    assert errors == []


def test_a_refused_upload_says_why_and_the_others_go_on(platform_server, carol, storage_folder, browser_page):
    page, errors = browser_page
    base = platform_server.url
    log_in(page, base, "carol")
    page.goto(f"{base}/files/users/carol/")
    # ".upload-" names are the storage's own: the API refuses them, with a message for people.
    drop_files(page, "#files", {".upload-mine": "x", "fine.txt": "ok\n"})
    page.wait_for_selector("#uploads .upload.failed")
    wait_uploads_done(page, 1)
    failed = page.inner_text("#uploads .upload.failed")
    assert ".upload-mine" in failed and "reserved" in failed
    assert (storage_folder / "users/carol/fine.txt").read_text() == "ok\n"
    shot(page, "files-refused")
    assert errors == []


# ---------------------------------------------------------------- catalogue


@pytest.fixture
def apps_for_carol(alice, carol, runtime, pack):
    """Three apps granted to carol, published before the browser starts (its loop forbids the ORM)."""
    from apps.catalog.models import AppVersion

    for name, title, category, description in (
        ("routing", "Vehicle routing", "Logistics", "Plan the routes of a fleet of trucks."),
        ("blend", "Blending", "Process", "Mix refinery streams into products at least cost."),
        ("shifts", "Shift planning", "People", "Roster nurses over the weeks of a season."),
    ):
        version = publish_as(alice, pack(name=name, title=title, category=category, description=description), False)
        version.app.grants.create(user=carol, level="viewer")
    AppVersion.objects.update(verification_state="verified")  # no verification subprocess needed here


def test_catalogue_search_filters_as_one_types(platform_server, apps_for_carol, browser_page):
    page, errors = browser_page
    base = platform_server.url
    log_in(page, base, "carol")
    assert visible_apps(page) == ["routing", "shifts", "blend"]  # by category
    page.evaluate("() => { window.notReloaded = true; }")
    search = page.locator("#catalogue-search")
    search.press_sequentially("TRUCK")
    page.wait_for_function("() => document.querySelectorAll('.app-card:not([hidden])').length === 1")
    assert visible_apps(page) == ["routing"]
    assert page.eval_on_selector_all("section.category", "s => s.filter(x => x.offsetParent).length") == 1
    assert page.url == f"{base}/?q=TRUCK"
    shot(page, "catalogue-search")
    search.fill("refinery cost")
    page.wait_for_function("() => document.querySelectorAll('.app-card:not([hidden])').length === 1")
    assert visible_apps(page) == ["blend"]
    search.fill("nothing-like-it")
    page.wait_for_selector("#catalogue-no-match", state="visible")
    assert "nothing-like-it" in page.inner_text("#catalogue-no-match") and visible_apps(page) == []
    search.fill("")
    page.wait_for_function("() => document.querySelectorAll('.app-card:not([hidden])').length === 3")
    assert page.is_hidden("#catalogue-no-match") and page.url == f"{base}/"
    search.press("Enter")  # no reload: the script filters
    assert page.evaluate("() => window.notReloaded === true")
    # A link with ?q= opens filtered, and the search widens from there without a reload.
    page.goto(f"{base}/?q=season")
    assert visible_apps(page) == ["shifts"] and search.input_value() == "season"
    search.fill("")
    page.wait_for_function("() => document.querySelectorAll('.app-card:not([hidden])').length === 3")
    shot(page, "catalogue")
    assert errors == []


# ---------------------------------------------------------------- statistics and security


@pytest.fixture
def history(alice, admin_user, runtime, pack):
    """Jobs over 60 days of two apps, and security events of every outcome over 130 rows."""
    from apps.accounts.models import SecurityEvent
    from sessions.models import Job

    versions = [publish_as(alice, pack(name=name), verify=False) for name in ("demo", "other")]
    now = timezone.now()
    jobs = []
    for day in range(60):
        for n, version in enumerate(versions[: 1 + day % 2]):
            created = now - timedelta(days=day, seconds=100)
            jobs.append(
                Job(
                    owner=alice,
                    app_version=version,
                    procedure="solve",
                    state="succeeded",
                    created_at=created,
                    started_at=created + timedelta(seconds=2 + day % 7 + n),
                    finished_at=created + timedelta(seconds=30 + day % 11),
                    time_limit=60,
                    memory_limit_mb=512,
                )
            )
    Job.objects.bulk_create(jobs)
    outcomes = ["success", "success", "failure", "denied"]
    SecurityEvent.objects.bulk_create(
        SecurityEvent(
            at=now - timedelta(hours=5 * n),
            kind="login",
            actor=f"user{n % 5}",
            source="10.0.0.7",
            target=f"user user{n % 5}",
            outcome=outcomes[n % 4],
        )
        for n in range(130)
    )


def chart_counts(page, canvas: str) -> list[list[float]]:
    return page.evaluate("(id) => Chart.getChart(document.getElementById(id)).data.datasets.map(d => d.data)", canvas)


def test_statistics_and_security_pages_chart_and_page(platform_server, history, browser_page):
    page, errors = browser_page
    base = platform_server.url
    log_in(page, base, "root")

    page.goto(f"{base}/statistics/?days=90")
    page.wait_for_selector("#chart-jobs[data-drawn]")
    page.wait_for_selector("#chart-times[data-drawn='4']")
    [per_day] = chart_counts(page, "chart-jobs")
    assert len(per_day) == 60 and sum(per_day) == 90  # both apps every other day
    assert page.locator("#statistics tbody tr").count() == 50
    shot(page, "statistics")
    shot(page, "statistics-top", full_page=False)
    page.click("nav.pager a:text-is('2')")
    page.wait_for_url(re.compile(r".*days=90&page=2$"))
    assert page.locator("#statistics tbody tr").count() == 40
    assert page.inner_text("nav.pager .current") == "2"

    page.goto(f"{base}/security/")
    page.wait_for_selector("#chart-security[data-drawn]")
    counts = dict(zip(["denied", "failure", "success"], chart_counts(page, "chart-security"), strict=True))
    assert sum(counts["failure"]) > 0 and sum(counts["denied"]) > 0
    # The outcomes are coloured on this page, which loads portal.css only.
    colours = page.evaluate(
        """() => Object.fromEntries(['success', 'failure', 'denied'].map(o => [o,
            getComputedStyle(document.querySelector('.badge.outcome-' + o)).backgroundColor]))"""
    )
    assert len(set(colours.values())) == 3 and "rgb(234, 238, 242)" not in colours.values()  # not the grey
    assert page.locator("#security-events tbody tr").count() == 100
    shot(page, "security")
    shot(page, "security-top", full_page=False)
    page.click("nav.pager a[rel=next]")
    page.wait_for_url(re.compile(r".*page=2$"))
    assert page.locator("#security-events tbody tr").count() >= 30
    page.select_option("select[name=outcome]", "failure")
    page.click("form.inline-form button.primary")
    page.wait_for_url(re.compile(r".*outcome=failure.*"))
    assert set(page.eval_on_selector_all("#security-events .badge", "b => b.map(x => x.textContent)")) == {"failure"}
    assert errors == []


def test_pages_that_were_not_the_platforms_own(platform_server, admin_user, browser_page):
    """The admin under the platform's name, the login page, the API's root and docs."""
    page, errors = browser_page
    base = platform_server.url
    page.goto(f"{base}/login/")
    assert page.get_attribute("link[rel=icon]", "href") == "/static/favicon.svg"
    shot(page, "login")
    log_in(page, base, "root")
    page.goto(f"{base}/admin/")
    assert "Optimization platform administration" in page.inner_text("#header")
    shot(page, "admin")
    root = page.goto(f"{base}/api/v1/")
    assert root.json()["docs"] == f"{base}/api/v1/docs/"
    icon = page.goto(f"{base}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert errors == []


@pytest.fixture
def job_at_slurm(alice, lab):
    """A job of alice's whose attempt waits in Slurm's queue (as a Slurm node's look at its engine records it)."""
    from sessions import jobs
    from sessions.models import Job

    Job.objects.create(owner=alice, app_version=lab, procedure="solve", time_limit=60, memory_limit_mb=512)
    job = jobs.job_claim_next(node="slurm-node", executor="slurm")
    jobs.job_record_external(job=job, external_id="4711")
    jobs.job_report_progress(job=job, progress={"message": "Queued on slurm as 4711: PENDING (Resources)"})
    return job


def test_a_job_at_an_engine_says_where_it_runs_and_why_it_waits(platform_server, alice, job_at_slurm, browser_page):
    page, errors = browser_page
    base = platform_server.url
    log_in(page, base, "alice")
    page.goto(f"{base}/jobs/{job_at_slurm.pk}/")
    page.wait_for_function("() => document.querySelector('#facts').textContent.includes('Runs on')", timeout=WAIT_MS)
    assert "slurm 4711" in page.inner_text("#facts")
    assert page.inner_text("#message") == "Queued on slurm as 4711: PENDING (Resources)"
    shot(page, "job-at-slurm")
    assert not errors
