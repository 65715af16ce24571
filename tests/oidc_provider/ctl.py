"""Changes to the test provider's database, run by ``tests.oidc`` in a process of its own (the
provider's settings cannot be loaded into the pytest process, which runs the platform's).

``python -m tests.oidc_provider.ctl <operation> '<JSON of keyword arguments>'`` prints the
operation's result as JSON; the environment is the provider's (see ``settings``).
"""

import json
import os
import sys

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"

import django

django.setup()

# Models only once Django is set up.
from django.contrib.auth.models import Group, User  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402


def migrate():
    call_command("migrate", verbosity=0, interactive=False)


def setup(client_id, client_secret, redirect_uris, post_logout_redirect_uris):
    """The database (migrated, unless it is already), and the one client: the platform."""
    migrate()
    Application.objects.create(
        name="platform",
        client_id=client_id,
        client_secret=client_secret,  # stored hashed; the plain text stays with the fixture
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(post_logout_redirect_uris),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,  # no consent page
    )


def add_user(username, password, groups, email):
    User.objects.create_user(username, email=email, password=password)
    set_groups(username, groups)


def set_groups(username, groups):
    """The user's groups are exactly ``groups`` (created as needed)."""
    groups = [Group.objects.get_or_create(name=name)[0] for name in groups]
    User.objects.get(username=username).groups.set(groups)


def _allow(field, uri):
    application = Application.objects.get()
    uris = getattr(application, field).split()
    if uri not in uris:
        setattr(application, field, " ".join([*uris, uri]))
        application.save(update_fields=[field])


def allow_redirect(uri):
    _allow("redirect_uris", uri)


def allow_post_logout_redirect(uri):
    _allow("post_logout_redirect_uris", uri)


def active_sessions(username):
    """How many unexpired sessions at the provider are signed in as ``username``."""
    user_id = str(User.objects.get(username=username).pk)
    sessions = Session.objects.filter(expire_date__gt=timezone.now())
    return sum(session.get_decoded().get("_auth_user_id") == user_id for session in sessions)


OPERATIONS = {
    f.__name__: f
    for f in (migrate, setup, add_user, set_groups, allow_redirect, allow_post_logout_redirect, active_sessions)
}

if __name__ == "__main__":
    operation, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(OPERATIONS[operation](**arguments)))
