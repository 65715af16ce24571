from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sessions.launcher import SandboxUnavailable
from sessions.management.lifecycle import stop_on_signals
from sessions.supervisor import SolveWorker


class Command(BaseCommand):
    help = "Run this node's solve worker: claim queued jobs and supervise their solve processes."

    def add_arguments(self, parser):
        parser.add_argument(
            "--capacity", type=int, default=settings.PRO_MAX_SOLVES, help="Concurrent solves on this node."
        )

    def handle(self, capacity: int, **options):
        stopping = stop_on_signals()
        self.stdout.write(f"Solve worker on {settings.PRO_NODE_NAME}: up to {capacity} concurrent solves")
        try:
            SolveWorker(settings.PRO_NODE_NAME, capacity).run(stopping)
        except SandboxUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("Solve worker stopped")
