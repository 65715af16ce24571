from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sessions.launcher import SandboxUnavailable
from sessions.management.lifecycle import stop_on_signals
from sessions.session_manager import SessionManager


class Command(BaseCommand):
    help = "Run this node's session manager: start, watch and stop its data session processes."

    def handle(self, **options):
        stopping = stop_on_signals()
        self.stdout.write(
            f"Session manager on {settings.PRO_NODE_NAME}: pool of {settings.PRO_SESSION_POOL} warm interpreters"
        )
        try:
            SessionManager(settings.PRO_NODE_NAME).run(stopping)
        except SandboxUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("Session manager stopped")
