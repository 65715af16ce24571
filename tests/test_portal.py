"""Portal pages, clicked through with Django's test client as each persona."""

import io

import pytest
from django.test import Client

from apps.catalog.models import App, AppVersion
from tests.helpers import body_of, browser, messages_of, publish_as

pytestmark = pytest.mark.django_db


def test_login_page_and_redirect(carol):
    client = Client()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    page = client.get("/login/")
    assert page.status_code == 200 and b"Log in" in page.content
    bad = client.post("/login/", {"username": "carol", "password": "nope"})
    assert b"The user name or password is wrong" in bad.content
    good = client.post("/login/", {"username": "carol", "password": "carol-Secret-pw-1"}, follow=True)
    assert good.redirect_chain[-1][0] == "/"
    assert b"carol" in good.content


def test_logout(carol):
    client = browser(carol)
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_catalogue_groups_granted_apps_by_category(alice, carol, dave, runtime, pack):
    publish_as(alice, pack(name="routing", title="Vehicle routing", category="Logistics"))
    publish_as(alice, pack(name="blend", title="Blending", category="Process"))
    publish_as(alice, pack(name="secret", title="Secret model", category="Process"))
    for name in ("routing", "blend"):
        App.objects.get(name=name).grants.create(user=carol, level="viewer")
    page = browser(carol).get("/").content.decode()
    assert "Vehicle routing" in page and "Blending" in page and "Secret model" not in page
    assert page.index("Logistics") < page.index("Process")
    assert 'action="/launch/routing/latest"' in page
    assert "No apps are shared with you yet" in browser(dave).get("/").content.decode()


def test_launch_links(alice, carol, published, pack):
    publish_as(alice, pack(version="2.0.0"))
    published.app.grants.create(user=carol, level="viewer")
    client = browser(carol)
    latest = client.get("/launch/demo/latest")
    assert latest.status_code == 200 and latest.context["version"].version == "2.0.0"
    exact = client.get("/launch/demo/1.0.0")
    assert exact.status_code == 200 and exact.context["version"].version == "1.0.0"
    assert client.get("/launch/demo/3.0.0").status_code == 404
    assert client.get("/launch/other/latest").status_code == 404


def test_version_page_shows_the_declared_interface(alice, carol, published):
    published.app.grants.create(user=carol, level="viewer")
    page = browser(carol).get("/apps/demo/versions/1.0.0/")
    assert page.status_code == 200 and b"Add up" in page.content and b"weight" in page.content


def test_launch_of_hidden_version_is_not_found_for_users(alice, carol, published, pack):
    publish_as(alice, pack(version="0.9.0"), make_latest=False)
    AppVersion.objects.filter(version="0.9.0").update(is_hidden=True)
    published.app.grants.create(user=carol, level="viewer")
    assert browser(carol).get("/launch/demo/0.9.0").status_code == 404
    assert browser(alice).get("/launch/demo/0.9.0").status_code == 200


def test_publish_page(alice, carol, runtime, pack):
    assert browser(carol).get("/publish/").status_code == 302
    client = browser(alice)
    page = client.get("/publish/")
    assert page.status_code == 200 and b"pro app pack" in page.content
    response = client.post("/publish/", {"package": io.BytesIO(pack()), "make_latest": "on"}, follow=True)
    assert response.redirect_chain[-1][0] == "/apps/demo/"
    assert "Published demo 1.0.0." in messages_of(response)


def test_publish_page_shows_refusal(alice, runtime):
    response = browser(alice).post("/publish/", {"package": io.BytesIO(b"junk")})
    assert response.status_code == 200
    assert any("not an app package" in m for m in messages_of(response))
    assert not App.objects.exists()


def test_app_page_manage_actions(alice, carol, published, pack):
    publish_as(alice, pack(version="1.1.0"), make_latest=False)
    client = browser(alice)
    page = client.get("/apps/demo/")
    assert page.status_code == 200 and b"Tag latest" in page.content and b"Access" in page.content

    def act(**data):
        return client.post("/apps/demo/manage", data, follow=True)

    assert "Version 1.1.0 now carries the latest tag." in messages_of(act(action="latest", version="1.1.0"))
    assert "Version 1.0.0 is hidden." in messages_of(act(action="hide", version="1.0.0"))
    refused = act(action="hide", version="1.1.0")
    assert any("move the tag" in m for m in messages_of(refused))
    assert "Granted user carol viewer access." in messages_of(
        act(action="grant", kind="user", grantee="carol", level="viewer")
    )
    assert any("no user" in m for m in messages_of(act(action="grant", kind="user", grantee="zed", level="viewer")))
    assert "App details saved." in messages_of(
        act(action="update", title="Demo app", category="Training", description="d")
    )
    assert App.objects.get().category == "Training"
    grant = App.objects.get().grants.get()
    assert "Access revoked." in messages_of(act(action="revoke", grant=grant.pk))
    assert "Version 1.0.0 is deleted." in messages_of(act(action="delete-version", version="1.0.0"))
    assert any("Unknown action" in m for m in messages_of(act(action="explode")))


def test_viewer_sees_no_manage_controls_and_cannot_post(alice, carol, published):
    published.app.grants.create(user=carol, level="viewer")
    client = browser(carol)
    page = client.get("/apps/demo/")
    assert page.status_code == 200 and b"Tag latest" not in page.content and b"Revoke" not in page.content
    response = client.post("/apps/demo/manage", {"action": "delete-app"}, follow=True)
    assert any("do not manage" in m for m in messages_of(response))
    assert App.objects.exists()


def test_outsider_gets_404_on_app_pages(dave, published):
    client = browser(dave)
    assert client.get("/apps/demo/").status_code == 404
    assert client.post("/apps/demo/manage", {"action": "delete-app"}).status_code == 404


def test_files_page_upload_download_delete(carol, storage_folder):
    client = browser(carol)
    root = client.get("/files/")
    assert root.status_code == 200 and b"users" in root.content
    folder = client.get("/files/users/carol/")
    assert folder.status_code == 200 and b"Upload here" in folder.content
    upload = io.BytesIO(b"1,2,3\n")
    upload.name = "numbers.csv"
    response = client.post("/files/users/carol/", {"action": "upload", "file": upload}, follow=True)
    assert "Uploaded users/carol/numbers.csv." in messages_of(response)
    assert (storage_folder / "users/carol/numbers.csv").read_bytes() == b"1,2,3\n"
    assert b"numbers.csv" in response.content
    download = client.get("/api/v1/storage/users/carol/numbers.csv")
    assert body_of(download) == b"1,2,3\n"
    response = client.post("/files/users/carol/", {"action": "delete", "path": "users/carol/numbers.csv"}, follow=True)
    assert "Deleted users/carol/numbers.csv." in messages_of(response)


def test_files_page_refuses_other_users_folder(carol, dave):
    response = browser(dave).get("/files/users/carol/")
    assert response.status_code == 404 and b"no file or folder" in response.content


def test_admin_site_for_admins_only(admin_user, alice):
    assert browser(admin_user).get("/admin/catalog/app/").status_code == 200
    assert browser(admin_user).get("/admin/accounts/apiticket/").status_code == 200
    assert browser(alice).get("/admin/catalog/app/").status_code == 302


def test_healthz(db):
    assert Client().get("/healthz").json()["status"] == "ok"
