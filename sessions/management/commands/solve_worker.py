import faulthandler
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sessions.launcher import SandboxUnavailable
from sessions.supervisor import SolveWorker


class Command(BaseCommand):
    help = "Run this node's solve worker: claim queued jobs and supervise their solve processes."

    def add_arguments(self, parser):
        parser.add_argument(
            "--capacity", type=int, default=settings.PRO_MAX_SOLVES, help="Concurrent solves on this node."
        )

    def handle(self, capacity: int, **options):
        faulthandler.register(signal.SIGUSR2, all_threads=True)  # a stuck process shows where it is
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        self.stdout.write(f"Solve worker on {settings.PRO_NODE_NAME}: up to {capacity} concurrent solves")
        try:
            SolveWorker(settings.PRO_NODE_NAME, capacity).run(stopping)
        except SandboxUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("Solve worker stopped")
