"""What a new user tripped over in the portal, with Django's test client: state badges styled on
every page, paging and charts' data on the statistics and security pages, the favicon, the API's
root, the admin's title, the catalogue's search, folders and several files on the files page."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from apps.accounts.models import SecurityEvent, SecurityOutcome
from apps.accounts.selectors import SECURITY_EVENTS_PER_PAGE
from apps.catalog.models import App
from apps.cluster.models import NodeState
from apps.portal.views import STATISTICS_PER_PAGE
from pro_portal.openapi import PORTAL_LINKS, link_to_portal
from sessions.models import Job, JobState, SessionState
from tests.helpers import api_as, browser, messages_of, publish_as

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).parents[1]
PORTAL_CSS = (ROOT / "static/css/portal.css").read_text()


def json_data(response, element_id: str):
    """The JSON a page carries for its script (Django's json_script)."""
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', response.content.decode())
    assert found, f"no #{element_id} on the page"
    return json.loads(found.group(1))


def styled_selectors() -> set[str]:
    """Every ``.badge.<class>`` that portal.css gives a background."""
    styled = set()
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", PORTAL_CSS):
        if "background" in body:
            styled |= set(re.findall(r"\.badge\.([\w-]+)", selectors))
    return styled


# ---------------------------------------------------------------- badges


def test_every_state_and_outcome_has_a_coloured_badge_in_portal_css():
    """The lists of jobs, sessions, nodes and security events load portal.css only."""
    styled = styled_selectors()
    wanted = {f"state-{s}" for choices in (JobState, SessionState, NodeState) for s in choices.values}
    wanted |= {f"outcome-{o}" for o in SecurityOutcome.values}
    assert wanted - styled == set()
    # A failure reads differently from a success and from a neutral badge.
    colours = {
        name: re.search(rf"\.badge\.{name}[^{{]*\{{([^}}]*)\}}", PORTAL_CSS).group(1)
        for name in ("outcome-success", "outcome-failure", "state-cancelled")
    }
    assert len(set(colours.values())) == 3


def test_security_page_colours_each_outcome(admin_user, carol):
    Client().post("/login/", {"username": "carol", "password": "wrong"})
    SecurityEvent.objects.create(kind="access", actor="carol", outcome=SecurityOutcome.DENIED)
    page = browser(admin_user).get("/security/").content.decode()
    assert 'class="badge outcome-failure"' in page and 'class="badge outcome-denied"' in page


# ---------------------------------------------------------------- paging and charts


def make_events(count: int, **fields) -> None:
    """Events of a kind of their own, so that logging in (an event too) does not count among them."""
    now = timezone.now()
    SecurityEvent.objects.bulk_create(
        SecurityEvent(at=now - timedelta(minutes=n), kind="probe", actor=f"user{n}", target=f"t{n}", **fields)
        for n in range(count)
    )


def actors(response) -> list[str]:
    return re.findall(r"<td>(user\d+)</td>", response.content.decode())


def test_security_events_page_past_the_newest(admin_user):
    per = SECURITY_EVENTS_PER_PAGE
    make_events(2 * per + 5, outcome="failure")
    client = browser(admin_user)
    first = client.get("/security/?kind=probe")
    assert actors(first) == [f"user{n}" for n in range(per)]  # the newest first
    html = first.content.decode()
    assert 'href="?kind=probe&amp;page=2"' in html and 'href="?kind=probe&amp;page=3"' in html
    second = client.get("/security/?kind=probe&page=2")
    assert actors(second) == [f"user{n}" for n in range(per, 2 * per)]
    assert 'aria-current="page">2<' in second.content.decode()
    last = client.get("/security/?kind=probe&page=3")
    assert actors(last) == [f"user{n}" for n in range(2 * per, 2 * per + 5)]
    assert f"rows {2 * per + 1}\u2013{2 * per + 5} of {2 * per + 5}" in last.content.decode()
    # A stale or odd page number shows rows all the same: the last page, or the first.
    assert actors(client.get("/security/?kind=probe&page=99")) == actors(last)
    assert actors(client.get("/security/?kind=probe&page=zero")) == actors(first)
    # Without filters the login of the admin shows too: the events of every kind, newest first.
    assert "user0" in actors(client.get("/security/"))


def test_security_paging_keeps_the_filters_and_the_export_takes_all(admin_user):
    per = SECURITY_EVENTS_PER_PAGE
    make_events(per + 1, outcome="failure")
    make_events(3, outcome="success")
    client = browser(admin_user)
    html = client.get("/security/?kind=probe&outcome=failure").content.decode()
    assert "?kind=probe&amp;outcome=failure&amp;page=2" in html
    second = client.get("/security/?kind=probe&outcome=failure&page=2")
    assert len(actors(second)) == 1
    # The export link names the filters, not the page.
    assert 'href="?kind=probe&amp;outcome=failure&amp;format=csv"' in second.content.decode()
    export = client.get("/security/?kind=probe&outcome=failure&page=2&format=csv")
    assert len(b"".join(export.streaming_content).decode().strip().splitlines()) == 1 + per + 1


def test_security_chart_counts_events_per_day_and_outcome(admin_user):
    today = timezone.localdate()
    now = timezone.now()
    SecurityEvent.objects.bulk_create(
        SecurityEvent(at=now - timedelta(days=days_ago), kind="probe", outcome=outcome)
        for days_ago, outcome in [(0, "failure"), (0, "failure"), (0, "success"), (3, "denied"), (90, "denied")]
    )
    chart = json_data(browser(admin_user).get("/security/?kind=probe"), "security-data")
    assert len(chart["days"]) == 30 and chart["days"][-1] == today.isoformat()
    assert chart["outcomes"]["failure"][-1] == 2 and chart["outcomes"]["success"][-1] == 1
    # 3 days ago, and not 90 days ago: before the chart's period.
    assert chart["outcomes"]["denied"][-4] == 1 and sum(chart["outcomes"]["denied"]) == 1
    since = (today - timedelta(days=6)).isoformat()
    filtered = json_data(browser(admin_user).get(f"/security/?outcome=failure&since={since}"), "security-data")
    assert len(filtered["days"]) == 7 and filtered["outcomes"] == {"failure": [0, 0, 0, 0, 0, 0, 2]}
    # Every kind, unfiltered: the admin's own login is among today's successes.
    assert json_data(browser(admin_user).get("/security/"), "security-data")["outcomes"]["success"][-1] > 1


@pytest.fixture
def demo_version(alice, runtime, pack):
    return publish_as(alice, pack(), verify=False)


def make_jobs(version, owner, per_day: dict[int, list[tuple[float, float]]]) -> None:
    """Finished jobs ``days ago`` → [(queue seconds, run seconds)]."""
    now = timezone.now()
    rows = []
    for days_ago, times in per_day.items():
        for queue, run in times:
            created = now - timedelta(days=days_ago, seconds=queue + run)
            started = created + timedelta(seconds=queue)
            rows.append(
                Job(
                    owner=owner,
                    app_version=version,
                    procedure="solve",
                    state=JobState.SUCCEEDED,
                    created_at=created,
                    started_at=started,
                    finished_at=started + timedelta(seconds=run),
                    time_limit=60,
                    memory_limit_mb=512,
                )
            )
    Job.objects.bulk_create(rows)


def days_of(response) -> list[str]:
    return re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", response.content.decode())


def test_statistics_page_past_the_newest_days(admin_user, alice, demo_version):
    total = STATISTICS_PER_PAGE + 10
    make_jobs(demo_version, alice, {n: [(1, 2)] for n in range(total)})
    client = browser(admin_user)
    first = client.get("/statistics/?days=90")
    assert len(days_of(first)) == STATISTICS_PER_PAGE
    assert days_of(first)[0] == timezone.localdate().isoformat()
    html = first.content.decode()
    assert "?days=90&amp;page=2" in html and f"of {total}" in html
    second = client.get("/statistics/?days=90&page=2")
    assert len(days_of(second)) == 10 and days_of(second)[-1] < days_of(first)[-1]
    # The chart spans every day of the period, whatever the page.
    assert len(json_data(second, "statistics-data")) == total


def test_statistics_chart_sums_the_apps_of_a_day(admin_user, alice, runtime, pack, demo_version):
    other = publish_as(alice, pack(name="other"), verify=False)
    make_jobs(demo_version, alice, {0: [(1, 10), (3, 30)], 2: [(5, 50)]})
    make_jobs(other, alice, {0: [(2, 20)]})
    client = browser(admin_user)
    chart = json_data(client.get("/statistics/"), "statistics-data")
    assert [row["jobs"] for row in chart] == [1, 3]  # the oldest day first
    today = chart[-1]
    assert today["queue_median"] == pytest.approx(2) and today["run_median"] == pytest.approx(20)
    assert today["queue_p95"] == pytest.approx(3)
    assert [row["jobs"] for row in json_data(client.get("/statistics/?app=other"), "statistics-data")] == [1]
    page = client.get("/statistics/").content.decode()
    assert 'data-chart="job-counts"' in page and "chart.umd.min.js" in page and "js/charts.js" in page
    assert browser(alice).get("/statistics/").status_code == 403


# ---------------------------------------------------------------- branding, favicon, API root


def test_favicon(carol):
    anonymous = Client()
    icon = anonymous.get("/favicon.ico")
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert icon.content.lstrip().startswith(b"<svg")
    page = browser(carol).get("/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg"' in page
    assert anonymous.get("/login/").content.decode().count('rel="icon"') == 1


def test_admin_is_titled_as_the_platform(admin_user):
    client = browser(admin_user)
    index = client.get("/admin/").content.decode()
    assert "Optimization platform administration" in index and "Django administration" not in index
    assert "<title>Users, apps, jobs and the cluster | Optimization platform admin</title>" in index
    login = Client().get("/admin/login/", follow=True)  # the portal's login, also for the admin
    assert login.redirect_chain[-1][0].startswith("/login/") and "Optimization platform" in login.content.decode()


def test_api_root_lists_the_endpoints_and_the_docs(carol):
    from drf_spectacular.generators import SchemaGenerator

    anonymous = Client().get("/api/v1/")
    assert anonymous.status_code == 200 and anonymous["Content-Type"] == "application/json"
    body = anonymous.json()
    assert body["docs"] == "http://testserver/api/v1/docs/"
    assert body["schema"] == "http://testserver/api/v1/schema/"
    assert body["portal"] == "http://testserver/"
    listed = {e["path"]: e["methods"] for e in body["endpoints"]}
    assert listed["/api/v1/apps"] == ["GET", "POST"]
    assert listed["/api/v1/storage/{path}"] == ["GET", "PUT", "DELETE"]
    assert listed["/api/v1/jobs/{job_id}"] == ["GET"]
    # Every operation of the schema is listed, and nothing that is not an endpoint.
    schema = SchemaGenerator().get_schema(request=None, public=True)
    in_schema = {path: sorted(m.upper() for m in ops) for path, ops in schema["paths"].items()}
    for path, methods in in_schema.items():
        if path != "/api/v1/":
            assert sorted(listed.get(path, [])) == methods, path
    assert set(listed) - set(in_schema) == {"/api/v1/schema/", "/api/v1/docs/"}
    # The same for a user with a ticket, and no one's data in it.
    assert api_as(carol).get("/api/v1/").json() == body
    assert "carol" not in anonymous.content.decode()
    assert Client().get("/api/v1/docs/").status_code == 200


def test_docs_link_back_to_the_portal():
    described = link_to_portal({"info": {"description": "Publish apps."}}, None, None, True)
    assert described["info"]["description"].startswith("Publish apps.")
    assert "[← Back to the portal](/)" in described["info"]["description"] == "Publish apps.\n\n" + PORTAL_LINKS
    assert link_to_portal(described, None, None, True)["info"]["description"].count(PORTAL_LINKS) == 1


# ---------------------------------------------------------------- catalogue search


def test_catalogue_search_on_the_server(alice, carol, runtime, pack):
    publish_as(alice, pack(name="routing", title="Vehicle routing", category="Logistics", description="Trucks"))
    publish_as(alice, pack(name="blend", title="Blending", category="Process", description="Refinery recipes"))
    for name in ("routing", "blend"):
        App.objects.get(name=name).grants.create(user=carol, level="viewer")
    client = browser(carol)

    def shown(query: str) -> list[str]:
        html = client.get("/", {"q": query}).content.decode()
        return re.findall(r'<article class="app-card" data-app="([\w-]+)" data-search="[^"]*" >', html)

    assert shown("") == ["routing", "blend"]
    assert shown("ROUTING") == ["routing"]
    assert shown("refinery") == ["blend"]  # the description
    assert shown("vehicle trucks") == ["routing"]  # every word, anywhere
    assert shown("vehicle refinery") == []
    html = client.get("/", {"q": "nothing-like-it"}).content.decode()
    assert 'id="catalogue-no-match" >' in html and 'value="nothing-like-it"' in html
    # Every app stays on the page, hidden, for the script to show again as the search widens.
    assert 'data-app="routing"' in html and 'data-app="blend"' in html
    assert 'id="catalogue-no-match" hidden' in client.get("/").content.decode()


# ---------------------------------------------------------------- files: folders and several files


def test_new_folder_from_the_files_page(carol, storage_folder):
    client = browser(carol)
    made = client.post("/files/users/carol/", {"action": "folder", "name": "models"}, follow=True)
    assert "Created the folder users/carol/models." in messages_of(made)
    assert (storage_folder / "users/carol/models").is_dir()
    assert 'href="/files/users/carol/models/"' in made.content.decode()
    again = client.post("/files/users/carol/", {"action": "folder", "name": "models"}, follow=True)
    assert "There is a folder 'users/carol/models' already." in messages_of(again)
    nameless = client.post("/files/users/carol/", {"action": "folder", "name": " "}, follow=True)
    assert "Name the new folder." in messages_of(nameless)
    bad = client.post("/files/users/carol/", {"action": "folder", "name": ".."}, follow=True)
    assert any("'..'" in m for m in messages_of(bad))
    # Not in another user's folder, nor at the platform's own levels.
    assert client.post("/files/users/dave/", {"action": "folder", "name": "x"}).status_code == 404
    assert not (storage_folder / "users/dave").exists()
    page = client.get("/files/users/").content.decode()
    assert 'id="folder-form"' not in page


def test_several_files_in_one_form(carol, storage_folder):
    files = [SimpleUploadedFile("a.csv", b"a,b\n"), SimpleUploadedFile("b.csv", b"x" * 3000)]
    done = browser(carol).post("/files/users/carol/", {"action": "upload", "file": files}, follow=True)
    assert "Uploaded users/carol/a.csv, users/carol/b.csv." in messages_of(done)
    assert (storage_folder / "users/carol/b.csv").read_bytes() == b"x" * 3000
    html = done.content.decode()
    assert "2.9\xa0KB" in html and "4\xa0bytes" in html  # human units
    assert "📁" not in html and "📄" not in html  # icons are SVG files, not emoji
    assert 'src="/static/img/icons/file.svg"' in html


def test_icons_and_scripts_are_served(carol):
    client = browser(carol)
    for path in ("img/icons/folder.svg", "img/icons/file.svg", "img/icons/upload.svg", "img/icons/folder-plus.svg"):
        response = client.get(f"/static/{path}")
        assert response.status_code == 200 and b"<svg" in b"".join(response.streaming_content), path
    for path in ("js/files.js", "js/catalogue.js", "js/charts.js", "favicon.svg"):
        assert client.get(f"/static/{path}").status_code == 200, path


def test_api_put_of_a_folder(api, carol, dave, storage_folder):
    client = api(carol)
    made = client.put("/api/v1/storage/users/carol/inputs/")
    assert made.status_code == 201
    assert made.json() == {
        "name": "inputs",
        "path": "users/carol/inputs",
        "is_folder": True,
        "size": None,
        "modified": None,
    }
    assert (storage_folder / "users/carol/inputs").is_dir()
    assert client.get("/api/v1/storage/users/carol/").json()["entries"][0]["path"] == "users/carol/inputs"
    assert client.put("/api/v1/storage/users/carol/inputs/").json()["error"]["code"] == "conflict"
    client.generic("PUT", "/api/v1/storage/users/carol/a.txt", b"x", content_type="application/octet-stream")
    assert client.put("/api/v1/storage/users/carol/a.txt/").status_code == 400  # a file is there
    assert client.put("/api/v1/storage/users/carol/a.txt/deeper/").status_code == 400
    assert api(dave).put("/api/v1/storage/users/carol/planted/").status_code == 404
    assert client.put("/api/v1/storage/users/").status_code in (400, 404)  # the platform's own level
    assert not (storage_folder / "users/dave").exists()


def test_a_folder_on_object_storage_holds_a_hidden_marker(carol, settings, monkeypatch):
    """S3 has no empty folders: an empty marker object keeps one, and no listing shows it."""
    import boto3
    from django.core.files.storage import default_storage
    from moto import mock_aws

    from apps.storage import services
    from pro_portal.settings import _storage_backend

    for name, value in {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="files", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        settings.STORAGES = {**settings.STORAGES, "default": _storage_backend("s3://files/platform")}
        entry = services.storage_make_folder(user=carol, path="users/carol/empty")
        assert entry.is_folder and entry.path == "users/carol/empty"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="files")["Contents"]]
        assert keys == [f"platform/users/carol/empty/{services.FOLDER_MARKER}"]
        assert services.storage_list(user=carol, path="users/carol/empty") == []
        assert [e.path for e in services.storage_list(user=carol, path="users/carol")] == ["users/carol/empty"]
        with pytest.raises(services.Conflict):
            services.storage_make_folder(user=carol, path="users/carol/empty")
        services.storage_put(user=carol, path="users/carol/empty/a.txt", stream=io.BytesIO(b"a"))
        assert [e.name for e in services.storage_list(user=carol, path="users/carol/empty")] == ["a.txt"]
        assert default_storage.bucket_name == "files"
