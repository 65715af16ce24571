"""django-q2's database broker, woken by a notification instead of polling (when there is no Redis).

A task enqueued anywhere notifies the ``tasks`` topic (:mod:`pro_portal.notify`) once its row is
committed; an idle pusher waits for that, and looks at the table on its own only every
``PRO_QUEUE_SAFETY_POLL_SECONDS``. A published version's verification starts at once, and an
idle node does not query the task table twice a second.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django_q.brokers.orm import ORM

from . import notify


class NotifiedORM(ORM):
    """The ORM broker; its ``poll`` (``Q_CLUSTER``) is 0: an empty queue waits here instead."""

    stopping = threading.Event()  # never set: the cluster stops its pusher by terminating it

    def enqueue(self, task: str):
        task_id = super().enqueue(task)
        notify.notify("tasks", id=task_id)
        return task_id

    def dequeue(self):
        found = super().dequeue()
        if not found:
            if getattr(self, "wake", None) is None:
                self.wake = notify.hub().subscribe("tasks")
            self.wake.idle(self.stopping, settings.PRO_QUEUE_SAFETY_POLL_SECONDS)
        return found
