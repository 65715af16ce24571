"""``/metrics``: the platform's figures in Prometheus's text format, for dashboards and autoscaling.

Two kinds of figure:

- **Cluster-wide, read from the database at each scrape** (so every node answers the same, and a
  scraper may ask any of them): queued jobs and the oldest wait per app and per group, running
  jobs and live data sessions per node, each node's solve and session slots, finished jobs per
  app and outcome, and the run time of finished jobs as a histogram. A queue deeper than the
  solve slots is what an autoscaler of the solves role watches
  (``pro_queue_jobs`` / ``pro_node_solve_slots``).
- **This node's web requests**: their latency per view, observed by :class:`RequestMetrics`.
  Under ``run_platform`` every web server process of the node writes its observations to
  ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and a scrape sums them.

Who may read it: admins (their session, ticket or API key), or a scraper holding
``PRO_METRICS_TOKEN`` (``Authorization: Bearer <token>``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
NO_GROUP = "(none)"


class PlatformCollector:
    """The cluster-wide figures, each family built from one or two queries at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        now = timezone.now()
        yield from self._queue(now, GaugeMetricFamily)
        yield from self._nodes(GaugeMetricFamily)
        finished = CounterMetricFamily(
            "pro_jobs_finished", "Finished jobs by app and outcome.", labels=["app", "state"]
        )
        for row in _finished_jobs().values("app_version__app__name", "state").annotate(n=Count("pk")):
            finished.add_metric([row["app_version__app__name"], row["state"]], row["n"])
        yield finished
        yield _durations()

    def _queue(self, now, gauge: Callable) -> Iterator[Any]:
        from sessions.models import Job, JobState

        waiting = Job.objects.filter(state=JobState.QUEUED, not_before__lte=now)
        by = {"": ("app", "app_version__app__name"), "_by_group": ("group", "owner__groups__name")}
        for suffix, (label, field) in by.items():
            depth = gauge(f"pro_queue_jobs{suffix}", f"Jobs waiting to start, per {label}.", labels=[label])
            oldest = gauge(
                f"pro_queue_oldest_wait_seconds{suffix}",
                f"How long the longest-waiting job has waited, per {label}.",
                labels=[label],
            )
            for row in waiting.values(field).annotate(n=Count("pk"), first=Min("not_before")).order_by(field):
                name = row[field] or NO_GROUP
                depth.add_metric([name], row["n"])
                oldest.add_metric([name], max(0.0, (now - row["first"]).total_seconds()))
            yield depth
            yield oldest

    def _nodes(self, gauge: Callable) -> Iterator[Any]:
        from apps.cluster.models import Node
        from sessions.models import LIVE_SESSION_STATES, DataSession, Job, JobState

        running = gauge("pro_jobs_running", "Jobs running, per node.", labels=["node"])
        for row in Job.objects.filter(state=JobState.RUNNING).values("node").annotate(n=Count("pk")).order_by("node"):
            running.add_metric([row["node"]], row["n"])
        sessions = gauge("pro_sessions_live", "Data sessions starting or running, per node.", labels=["node"])
        live = DataSession.objects.filter(state__in=LIVE_SESSION_STATES)
        for row in live.values("node").annotate(n=Count("pk")).order_by("node"):
            sessions.add_metric([row["node"]], row["n"])
        up = gauge("pro_node_up", "1 for each node with its state.", labels=["node", "state"])
        solves = gauge("pro_node_solve_slots", "Concurrent solves a node runs.", labels=["node"])
        slots = gauge("pro_node_session_slots", "Data sessions a node hosts.", labels=["node"])
        for node in Node.objects.order_by("name"):
            up.add_metric([node.name, node.state], 1)
            solves.add_metric([node.name], node.max_solves)
            slots.add_metric([node.name], node.max_sessions)
        yield from (running, sessions, up, solves, slots)


def _finished_jobs():
    from sessions.models import FINISHED_STATES, Job

    return Job.objects.filter(state__in=FINISHED_STATES)


def _durations() -> Any:
    from prometheus_client.core import HistogramMetricFamily

    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    ran = _finished_jobs().filter(started_at__isnull=False, finished_at__isnull=False).annotate(took=took)
    sums = {f"le_{bound}": Count("pk", filter=Q(took__lte=timedelta(seconds=bound))) for bound in DURATION_BUCKETS}
    totals = ran.aggregate(count=Count("pk"), total=Sum("took"), **sums)
    buckets = [(str(float(bound)), totals[f"le_{bound}"]) for bound in DURATION_BUCKETS]
    buckets.append(("+Inf", totals["count"]))
    total = totals["total"].total_seconds() if totals["total"] is not None else 0.0
    histogram = HistogramMetricFamily("pro_job_duration_seconds", "Run time of finished jobs (start to end).")
    histogram.add_metric([], buckets, total)
    return histogram


# ---------------------------------------------------------------- web requests


_request_seconds: Any = None


def _request_histogram() -> Any:
    global _request_seconds
    if _request_seconds is None:
        from prometheus_client import Histogram

        _request_seconds = Histogram(
            "pro_http_request_duration_seconds",
            "Web requests of this node, by view and status class, from the first middleware to the response.",
            labelnames=["view", "status"],
            buckets=REQUEST_BUCKETS,
            registry=None,  # each scrape's own registry takes it (or the multiprocess files hold it)
        )
    return _request_seconds


class RequestMetrics:
    """Middleware (first in the chain): each request's time, labelled by its view's route name."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match is not None else "") or "unmatched"
        status = f"{response.status_code // 100}xx"
        _request_histogram().labels(view, status).observe(time.perf_counter() - started)
        return response


def render() -> tuple[bytes, str]:
    """The scrape's body and content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every web process of the node, summed
    else:
        registry.register(_request_histogram())
    registry.register(PlatformCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
