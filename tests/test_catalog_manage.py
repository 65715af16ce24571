"""Managing published apps: latest tag, hidden and deleted versions, access grants, visibility."""

import pytest
from django.contrib.auth.models import Group

from apps.catalog.models import App, AppVersion
from tests.helpers import publish_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(published, alice, pack):
    publish_as(alice, pack(version="1.1.0"), make_latest=False)
    return App.objects.get(name="demo")


def patch(client, path, body):
    return client.patch(path, body, format="json")


def test_exactly_one_version_carries_latest(api, alice, two_versions):
    client = api(alice)
    assert client.get("/api/v1/apps/demo").json()["latest_version"] == "1.0.0"
    response = patch(client, "/api/v1/apps/demo/versions/1.1.0", {"latest": True})
    assert response.status_code == 200 and response.json()["is_latest"]
    flags = {v["version"]: v["is_latest"] for v in client.get("/api/v1/apps/demo/versions").json()}
    assert flags == {"1.1.0": True, "1.0.0": False}


def test_latest_cannot_be_unset(api, alice, two_versions):
    response = patch(api(alice), "/api/v1/apps/demo/versions/1.0.0", {"latest": False})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"


def test_hidden_version_only_for_managers(api, alice, carol, two_versions):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json")
    assert patch(api(alice), "/api/v1/apps/demo/versions/1.1.0", {"hidden": True}).status_code == 200
    assert [v["version"] for v in api(carol).get("/api/v1/apps/demo/versions").json()] == ["1.0.0"]
    assert api(carol).get("/api/v1/apps/demo/versions/1.1.0").status_code == 404
    assert [v["version"] for v in api(alice).get("/api/v1/apps/demo/versions").json()] == ["1.1.0", "1.0.0"]
    assert patch(api(alice), "/api/v1/apps/demo/versions/1.1.0", {"hidden": False}).status_code == 200
    assert len(api(carol).get("/api/v1/apps/demo/versions").json()) == 2


def test_latest_version_cannot_be_hidden_or_tagged_while_hidden(api, alice, two_versions):
    response = patch(api(alice), "/api/v1/apps/demo/versions/1.0.0", {"hidden": True})
    assert response.status_code == 409 and response.json()["error"]["code"] == "version_is_latest"
    patch(api(alice), "/api/v1/apps/demo/versions/1.1.0", {"hidden": True})
    response = patch(api(alice), "/api/v1/apps/demo/versions/1.1.0", {"latest": True})
    assert response.status_code == 409 and response.json()["error"]["code"] == "version_hidden"


def test_delete_version(api, alice, two_versions, storage_folder, django_capture_on_commit_callbacks):
    version = AppVersion.objects.get(version="1.1.0")
    assert (storage_folder / version.package_path).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).delete("/api/v1/apps/demo/versions/1.1.0")
    assert response.status_code == 204
    assert not AppVersion.objects.filter(version="1.1.0").exists()
    assert not (storage_folder / version.package_path).exists()


def test_delete_refused_while_in_use(api, alice, two_versions):
    response = api(alice).delete("/api/v1/apps/demo/versions/1.0.0")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "version_in_use"
    assert "latest" in response.json()["error"]["message"]
    assert AppVersion.objects.filter(version="1.0.0").exists()


def test_delete_app(api, alice, two_versions, storage_folder, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert api(alice).delete("/api/v1/apps/demo").status_code == 204
    assert not App.objects.exists()
    assert not [p for p in storage_folder.rglob("*.proapp")]


def test_users_see_only_granted_apps(api, alice, bob, carol, dave, published, pack):
    publish_as(bob, pack(name="bobs-app"))
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json")
    assert [a["name"] for a in api(carol).get("/api/v1/apps").json()] == ["demo"]
    assert api(dave).get("/api/v1/apps").json() == []
    assert api(dave).get("/api/v1/apps/demo").status_code == 404
    assert sorted(a["name"] for a in api(alice).get("/api/v1/apps").json()) == ["demo"]


def test_admin_sees_everything(api, admin_user, published, bob, pack):
    publish_as(bob, pack(name="bobs-app"))
    body = api(admin_user).get("/api/v1/apps").json()
    assert sorted(a["name"] for a in body) == ["bobs-app", "demo"]
    assert {a["access"] for a in body} == {"manager"}


def test_group_grant(api, alice, carol, dave, published):
    team = Group.objects.create(name="planners")
    carol.groups.add(team)
    response = api(alice).post("/api/v1/apps/demo/grants", {"group": "planners", "level": "viewer"}, format="json")
    assert response.status_code == 201 and response.json()["group"] == "planners"
    assert api(carol).get("/api/v1/apps/demo").json()["access"] == "viewer"
    assert api(dave).get("/api/v1/apps/demo").status_code == 404


def test_viewer_cannot_manage(api, alice, carol, two_versions):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json")
    client = api(carol)
    assert patch(client, "/api/v1/apps/demo/versions/1.1.0", {"latest": True}).status_code == 403
    assert client.delete("/api/v1/apps/demo/versions/1.1.0").status_code == 403
    assert client.get("/api/v1/apps/demo/grants").status_code == 403
    assert client.post("/api/v1/apps/demo/grants", {"username": "dave"}, format="json").status_code == 403
    assert patch(client, "/api/v1/apps/demo", {"category": "Mine"}).status_code == 403
    assert client.delete("/api/v1/apps/demo").status_code == 403


def test_collaborator_manages(api, alice, bob, two_versions):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "bob", "level": "collaborator"}, format="json")
    assert api(bob).get("/api/v1/apps/demo").json()["access"] == "collaborator"
    assert patch(api(bob), "/api/v1/apps/demo/versions/1.1.0", {"latest": True}).status_code == 200
    assert patch(api(bob), "/api/v1/apps/demo", {"category": "Planning"}).json()["category"] == "Planning"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "nobody"}, 404, "not_found"),
        ({"group": "no-such-group"}, 404, "not_found"),
        ({"username": "carol", "group": "Everyone"}, 400, "invalid"),
        ({}, 400, "invalid"),
        ({"username": "carol", "level": "owner"}, 400, "invalid"),
    ],
)
def test_bad_grants(api, alice, carol, published, body, status, code):
    response = api(alice).post("/api/v1/apps/demo/grants", body, format="json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not published.app.grants.exists()


def test_revoke_grant(api, alice, carol, published):
    grant = api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json").json()
    assert api(alice).delete(f"/api/v1/apps/demo/grants/{grant['id']}").status_code == 204
    assert api(carol).get("/api/v1/apps/demo").status_code == 404
    assert api(alice).delete(f"/api/v1/apps/demo/grants/{grant['id']}").status_code == 404


def test_regranting_changes_level(api, alice, carol, published):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json")
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol", "level": "collaborator"}, format="json")
    assert published.app.grants.get().level == "collaborator"


def test_unknown_version_and_app(api, alice, published):
    assert api(alice).get("/api/v1/apps/demo/versions/9.9.9").json()["error"]["code"] == "not_found"
    assert api(alice).get("/api/v1/apps/nope").status_code == 404


def test_runtimes_listed(api, carol, runtime):
    assert [r["key"] for r in api(carol).get("/api/v1/runtimes").json()] == ["py311-highs@1.0"]


def test_icon(api, alice, carol, runtime, make_app_folder, platform_public_key):
    from sessions.runtime import package

    folder = make_app_folder(name="iconic", icon="icon.svg")
    (folder / "icon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    blob, _ = package.pack_folder(folder, platform_public_key)
    publish_as(alice, blob)
    body = api(alice).get("/api/v1/apps/iconic").json()
    assert body["icon_url"] == "/api/v1/apps/iconic/icon"
    response = api(alice).get(body["icon_url"])
    assert response.status_code == 200 and b"<svg" in b"".join(response.streaming_content)
    assert api(carol).get(body["icon_url"]).status_code == 404
