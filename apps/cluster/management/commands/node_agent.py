import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.cluster.services import node_heartbeat, node_register, node_stop


class Command(BaseCommand):
    help = "Run this node's agent: register the node and heartbeat into the admin database."

    def handle(self, **options):
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        node = node_register()
        self.stdout.write(
            f"Node {node.name} up (roles: {', '.join(node.roles)}), heartbeat every {settings.PRO_HEARTBEAT_SECONDS}s"
        )
        while not stopping.wait(settings.PRO_HEARTBEAT_SECONDS):
            node_heartbeat(node=node)
        node_stop(node=node)
        self.stdout.write(f"Node {node.name} stopped")
