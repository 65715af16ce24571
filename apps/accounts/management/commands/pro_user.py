from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import Role
from apps.accounts.services import user_create
from pro_portal.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a platform account with a role (user, publisher or admin)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--role", choices=[r.value for r in Role], default=Role.USER.value)
        parser.add_argument("--email", default="")

    def handle(self, username, password, role, email, **options):
        try:
            user_create(username=username, password=password, role=role, email=email)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Created {role} {username}.")
