"""The claim's cost with fair share and quotas, at a deep queue (not a test).

    .venv/bin/python bench/claim_bench.py [--jobs 10000] [--users 100] [--claims 200] [--database-url URL]

It fills a throwaway database (PostgreSQL by default: a database ``pro_bench_claim`` on the local
server, made and dropped here; ``--database-url sqlite`` for SQLite in a temporary folder) with
``--jobs`` queued jobs of ``--users`` users, and times ``--claims`` claims each way:

- first in, first out (the claim before fair share: the oldest job of the highest priority);
- fair share (sessions.jobs.job_claim_next): users in turn, without quotas;
- fair share with a running-solves quota on every user (their limits read at each claim).

Each claimed job is put back in the queue after its claim, so every claim sees the full queue.
It prints the median and p95 of each and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_URL = "postgres://postgres@127.0.0.1:5432/pro_bench_claim"


def setup(database_url: str, folder: Path) -> None:
    os.environ.update({"PRO_DATA_DIR": str(folder), "DJANGO_SETTINGS_MODULE": "pro_portal.settings"})
    if database_url == "sqlite":
        os.environ.pop("DATABASE_URL", None)
    else:
        import psycopg

        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS pro_bench_claim")
            admin.execute("CREATE DATABASE pro_bench_claim")
        os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(jobs: int, users: int):
    from django.contrib.auth.models import User
    from django.utils import timezone

    from apps.catalog.models import App, AppVersion, Runtime
    from sessions.models import Job

    owner = User.objects.create(username="publisher")
    runtime = Runtime.objects.create(key="bench@1.0", name="bench", version="1.0", title="bench")
    app = App.objects.create(name="bench", title="bench", owner=owner)
    version = AppVersion.objects.create(
        app=app,
        version="1.0.0",
        manifest={},
        runtime=runtime,
        package_path="x",
        package_size=1,
        package_sha256="0" * 64,
    )
    people = User.objects.bulk_create([User(username=f"user{n}") for n in range(users)])
    start = timezone.now() - timedelta(hours=1)
    Job.objects.bulk_create(
        [
            Job(
                owner=people[n % users],
                app_version=version,
                procedure="solve",
                time_limit=60,
                memory_limit_mb=1024,
                created_at=start + timedelta(milliseconds=n),
                not_before=start,
            )
            for n in range(jobs)
        ],
        batch_size=2000,
    )
    return people


def fifo_claim(node: str):
    """The claim as it was before fair share."""
    from django.conf import settings
    from django.db.models import F
    from django.utils import timezone

    from sessions.models import Job, JobState

    now = timezone.now()
    runnable = Job.objects.filter(state=JobState.QUEUED, not_before__lte=now, cancel_requested_at__isnull=True)
    for job_id in runnable.order_by("-priority", "created_at", "id").values_list("id", flat=True)[:10]:
        if Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(
            state=JobState.RUNNING,
            node=node,
            attempt=F("attempt") + 1,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS),
        ):
            return Job.objects.get(pk=job_id)
    return None


def timed(claim, claims: int) -> dict:
    from sessions.models import Job, JobState

    times = []
    for _ in range(claims):
        started = time.perf_counter()
        job = claim("bench-node")
        times.append(time.perf_counter() - started)
        assert job is not None
        Job.objects.filter(pk=job.pk).update(state=JobState.QUEUED, attempt=0, node="")
    times.sort()
    return {"median_ms": statistics.median(times) * 1000, "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--database-url", default=PG_URL)
    parser.add_argument("--out", default=str(ROOT / "bench" / "claim-results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pro-bench-claim-") as folder:
        setup(args.database_url, Path(folder))
        people = fill(args.jobs, args.users)
        from apps.accounts.models import Quota
        from sessions.jobs import job_claim_next

        results = {"jobs": args.jobs, "users": args.users, "claims": args.claims, "database": args.database_url}
        results["fifo"] = timed(fifo_claim, args.claims)
        results["fair_share"] = timed(lambda node: job_claim_next(node=node), args.claims)
        Quota.objects.bulk_create([Quota(user=person, running_jobs=5) for person in people])
        results["fair_share_with_quotas"] = timed(lambda node: job_claim_next(node=node), args.claims)
    print(f"{args.jobs} queued jobs of {args.users} users, {args.claims} claims each ({args.database_url}):")
    for name in ("fifo", "fair_share", "fair_share_with_quotas"):
        print(f"  {name:24} median {results[name]['median_ms']:7.2f} ms   p95 {results[name]['p95_ms']:7.2f} ms")
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
