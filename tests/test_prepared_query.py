"""PreparedQuery: compiled once, it finds what the ORM finds, with the same fields, conversions
and select_related relations, for each caller's parameters."""

from __future__ import annotations

import pytest

from pro_portal.errors import NotFound
from pro_portal.prepared import PreparedQuery


@pytest.mark.django_db
def test_a_job_reads_as_the_orm_reads_it(alice, bob, admin_user, lab):
    from sessions import jobs
    from sessions.models import Job
    from sessions.selectors import job_get_for_user, jobs_for_user

    lab.app.grants.create(user=bob, level="viewer")
    mine = jobs.job_submit(user=alice, app_name="lab", procedure="solve", input_values={"cap": 3})
    Job.objects.filter(pk=mine.pk).update(progress={"fraction": 0.5, "message": "half"}, progress_points=[{"t": 1}])
    theirs = jobs.job_submit(user=bob, app_name="lab", procedure="solve")
    expected = jobs_for_user(alice).get(pk=mine.pk)
    for _ in range(2):  # compiled at the first, reused at the second
        found = job_get_for_user(alice, mine.pk)
        for field in Job._meta.concrete_fields:
            assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
        assert found.progress == {"fraction": 0.5, "message": "half"}  # JSON converted
        assert found.created_at.tzinfo is not None  # datetimes converted
        assert (found.owner.username, found.app_version.app.name) == ("alice", "lab")
    with pytest.raises(NotFound):
        job_get_for_user(alice, theirs.pk)  # another user's job, for the non-admin variant
    assert job_get_for_user(admin_user, theirs.pk).owner.username == "bob"  # the admin variant
    for wrong in (10**6, "12abc", None, 2**70, -(2**70)):
        with pytest.raises(NotFound):
            job_get_for_user(alice, wrong)


@pytest.mark.django_db
def test_a_prepared_query_refuses_what_it_cannot_replay(alice):
    from django.contrib.auth.models import User

    prefetching = PreparedQuery(lambda variant, pk: User.objects.filter(pk=pk).prefetch_related("groups"), "pk")
    with pytest.raises(ValueError, match="cannot prefetch"):
        prefetching.fetch(None, pk=alice.pk)
    plain = PreparedQuery(lambda variant, pk: User.objects.filter(pk=pk), "pk")
    assert [user.username for user in plain.fetch(None, pk=alice.pk)] == ["alice"]
    assert plain.fetch(None, pk=-1) == []


@pytest.mark.django_db
def test_the_app_list_reads_as_the_orm_reads_it(alice, bob, carol, admin_user, lab, transport):
    from django.contrib.auth.models import Group

    from apps.catalog import selectors

    team = Group.objects.create(name="team")
    team.user_set.add(bob)
    lab.app.grants.create(group=team, level="collaborator")
    for user in (alice, bob, carol, admin_user):
        for _ in range(2):
            listed = selectors.app_list_for_user(user)
            expected = list(selectors.with_versions(selectors.apps_for_user(user)))
            assert [a.name for a in listed] == [a.name for a in expected], user
            for mine, theirs in zip(listed, expected, strict=True):
                assert selectors.app_access_level(user, mine) == selectors.app_access_level(user, theirs)
                assert [v.version for v in selectors.versions_for_user(user, mine)] == [
                    v.version for v in selectors.versions_for_user(user, theirs)
                ]
                assert all(v.app is mine for v in mine.every_version)
    assert selectors.app_access_level(bob, selectors.app_list_for_user(bob)[0]) == "collaborator"
    assert [a.name for a in selectors.app_list_for_user(carol)] == ["transport"]
