from django.conf import settings
from django.core.management.base import BaseCommand

from apps.cluster.agent import agent_start
from sessions.management.lifecycle import stop_on_signals


class Command(BaseCommand):
    help = "Run this node's agent: heartbeat into the admin database, elect a master, recover dead nodes' work."

    def handle(self, **options):
        stopping = stop_on_signals()
        agent = agent_start()
        node = agent.node
        roles = ", ".join(node.roles) or "none: backend"
        self.stdout.write(
            f"Node {node.name} up (roles: {roles}), heartbeat every {settings.PRO_HEARTBEAT_SECONDS:g}s", ending="\n"
        )
        self.stdout.flush()
        agent.run(stopping)
        self.stdout.write(f"Node {node.name} stopped")
