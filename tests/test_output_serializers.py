"""Output serializers render with fields bound once per class: the same answer as DRF's own
rendering, each use with its own context, and DRF's rendering wherever a field needs its own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework import serializers

from pro_portal.output import OutputSerializer


def drf_rendering(serializer: serializers.Serializer, instance) -> dict:
    """What DRF's own Serializer.to_representation answers, with fields bound to ``serializer``."""
    return dict(serializers.Serializer.to_representation(serializer, instance))


@pytest.mark.django_db
def test_every_output_serializer_answers_as_drf(alice, lab):
    from sessions import jobs
    from sessions.models import Job
    from sessions.serializers import CaseOut, JobDetailOut, JobOut

    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve", input_values={"cap": 3})
    Job.objects.filter(pk=job.pk).update(progress={"fraction": 0.5}, cpu_seconds=1.5)
    job = Job.objects.select_related("app_version__app", "owner", "input_case").get(pk=job.pk)
    for cls in (JobOut, JobDetailOut):
        assert cls._plan() is not None  # the shared fields
        for _ in range(2):
            assert cls(job).to_representation(job) == drf_rendering(cls(job), job)
    case = job.input_case
    assert CaseOut(case).to_representation(case) == drf_rendering(CaseOut(case), case)
    assert JobDetailOut(job).data["waiting_for"]  # a method field, called on the serializer in use


@pytest.mark.django_db
def test_a_method_field_reads_the_context_of_the_serializer_in_use(alice):
    from django.contrib.auth.models import User

    class UserOut(OutputSerializer):
        greeting = serializers.SerializerMethodField()

        class Meta:
            model = User
            fields = ["username", "greeting"]

        def get_greeting(self, user: User) -> str:
            return f"{self.context['word']} {user.username}"

    def render(word: str) -> str:
        return UserOut(alice, context={"word": word}).data["greeting"]

    with ThreadPoolExecutor(4) as threads:  # side by side, each with its own context
        answers = list(threads.map(render, [f"word{i}" for i in range(200)]))
    assert answers == [f"word{i} alice" for i in range(200)]
    assert [row["greeting"] for row in UserOut([alice, alice], many=True, context={"word": "hi"}).data] == [
        "hi alice"
    ] * 2


@pytest.mark.django_db
def test_a_nested_serializer_or_a_hyperlink_renders_as_drf_does(alice):
    from django.contrib.auth.models import Group, User

    class GroupOut(OutputSerializer):
        class Meta:
            model = Group
            fields = ["name"]

    class UserWithGroups(OutputSerializer):
        groups = GroupOut(many=True)

        class Meta:
            model = User
            fields = ["username", "groups"]

    class UserLinked(OutputSerializer):
        url = serializers.HyperlinkedIdentityField(view_name="nowhere")

        class Meta:
            model = User
            fields = ["username", "url"]

    alice.groups.add(Group.objects.create(name="team"))
    assert UserWithGroups._plan() is None and UserLinked._plan() is None
    groups = sorted(group["name"] for group in UserWithGroups(alice).data["groups"])
    assert groups == sorted(alice.groups.values_list("name", flat=True)) and "team" in groups
