"""Analytics export throughput against the fake org with scaled-down limits.

Runs `migrate.py export --api analytics` (a subprocess) for N conversations and
prints the wall time, the lower bound the fake's settings allow (the larger of:
result pages / request rate, and the job run time of the sub-interval jobs run
a few at a time), their ratio and the tool's peak RSS.

    python bench/bench_export.py [--conversations 50000]

The last line is machine-readable:
bench_export: conversations=N wall_s=W bound_s=B ratio=R rss_mb=M
"""

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import migrate  # noqa: E402
from fake_genesys import ConversationSource, FakeGenesys, populate_reference_objects  # noqa: E402
from support import org_env  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=6, help="window length; one job per day")
    parser.add_argument("--rate", type=int, default=300, help="fake: requests per window (real: 300/60 s)")
    parser.add_argument("--window", type=float, default=60.0, help="fake: window seconds")
    parser.add_argument("--job-seconds", type=float, default=2.0, help="fake: analytics job run time")
    args = parser.parse_args()

    rps = args.rate / args.window
    start = "2026-01-01T00:00:00Z"
    end = migrate.iso_utc(migrate.parse_time(start, "start") + migrate.dt.timedelta(days=args.days))
    knobs = dict(rate_limit=args.rate, rate_window=args.window, status_rate_limit=100, status_rate_window=args.window,
                 analytics_job_seconds=args.job_seconds)
    work = tempfile.mkdtemp(prefix="bench_export_")
    with FakeGenesys(("source",), **knobs) as fake:
        source = fake.orgs["source"]
        refs = populate_reference_objects(source, seed=3)
        source.conversation_source = ConversationSource(refs, args.conversations, start=start, end=end, seed=7)
        env = org_env(fake, source="source")
        command = [sys.executable, os.path.join(ROOT, "migrate.py"), "export", "--api", "analytics", "--start", start,
                   "--end", end, "--max-rps", f"{rps * 0.95:.3f}", "--poll-initial", "0.5", "--poll-max", "2",
                   "--log-format", "json"]
        started = time.monotonic()
        result = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
        wall = time.monotonic() - started
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if result.returncode != 0:
            print(result.stderr[-3000:])
        pages = sum(1 for r in source.requests if r.path.endswith("/results"))
        jobs = sum(1 for r in source.requests if r.method == "POST" and r.path.endswith("/details/jobs"))
        throttled = sum(1 for r in source.requests if r.status == 429)
        requests_made = sum(1 for r in source.requests if r.path.startswith("/api/v2"))
    exported = sum(1 for _ in migrate.iter_records(os.path.join(work, "exports", f"{migrate.compact_stamp(migrate.parse_time(start, 's'))}_{migrate.compact_stamp(migrate.parse_time(end, 'e'))}.analytics.json.gz")))
    job_bound = math.ceil(jobs / migrate.ANALYTICS_PARALLEL_JOBS) * args.job_seconds
    bound = max(requests_made / rps, job_bound)
    print(f"conversations         {exported:,} of {args.conversations:,} (exit {result.returncode})")
    print(f"wall time             {wall:.1f} s ({exported / wall:,.0f} conversations/s)")
    print(f"lower bound           {bound:.1f} s = max({requests_made} requests ({pages} result pages, {jobs} jobs) / "
          f"{rps:g} rps = {requests_made / rps:.1f} s, job time {job_bound:.1f} s)")
    print(f"ratio                 {wall / bound:.2f}")
    print(f"peak RSS (tool)       {rss_mb:.1f} MB")
    print(f"429s                  {throttled}")
    print(f"bench_export: conversations={exported} wall_s={wall:.1f} bound_s={bound:.1f} ratio={wall / bound:.2f} "
          f"rss_mb={rss_mb:.0f}")


if __name__ == "__main__":
    main()
