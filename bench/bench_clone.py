"""Clone throughput against the fake org with a rate limit R and a per-request latency L.

Clones a generated org of about 1,000 objects with `migrate.py clone` (a
subprocess, as an admin runs it) and prints the wall time, the lower bound
(the larger of: requests to the busier org / R, and the dependency critical
path x L plus the flow jobs' own run time), their ratio, requests made and
429s; then the same clone with --workers 1 (one object at a time) as the
serial reference, and our speed-up over it.

    python bench/bench_clone.py [--rps 50] [--latency 0.03]

The last line is machine-readable:
bench_clone: objects=N requests=Q wall_s=W bound_s=B ratio=R r429=K speedup=S failed=F
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fake_genesys import FakeGenesys, populate_config_org  # noqa: E402
from support import org_env  # noqa: E402

SIZES = dict(skills=300, wrapupcodes=250, schedules=60, schedulegroups=20, queues=300, flows=40, trunks=4,
             languages=10, users=100, divisions=2)
COPIED = ("skills", "wrapupcodes", "schedules", "schedulegroups", "queues", "flows", "trunkbasesettings", "languages")


def api_requests(org, since=0):
    return [r for r in org.requests[since:] if r.path.startswith("/api/v2")]


def run_clone(fake, target_name, workers, max_rps, work):
    source, target = fake.orgs["source"], fake.orgs[target_name]
    env = org_env(fake, source="source", target=target_name)
    folder = tempfile.mkdtemp(dir=work, prefix=f"{target_name}_")
    source_mark = len(source.requests)
    started = time.monotonic()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "migrate.py"), "clone", "--yes", "--workers",
                             str(workers), "--max-rps", f"{max_rps:.2f}", "--max-status-rps", f"{max_rps:.2f}",
                             "--poll-initial", "0.1", "--poll-max", "0.5", "--log-format", "json"],
                            env=env, cwd=folder, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        print(result.stderr[-3000:])
    return result, wall, api_requests(source, source_mark), api_requests(target)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=50.0, help="rate limit R per org (requests per second)")
    parser.add_argument("--latency", type=float, default=0.03, help="per-request latency L (seconds)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--share", type=float, default=0.95,
                        help="--max-rps as a share of R: a client at exactly R meets the sliding window's edge")
    parser.add_argument("--flow-job-seconds", type=float, default=0.3)
    args = parser.parse_args()

    knobs = dict(rate_limit=int(args.rps * 10), rate_window=10.0, status_rate_limit=int(args.rps * 10),
                 status_rate_window=10.0, latency=args.latency, flow_job_seconds=args.flow_job_seconds)
    work = tempfile.mkdtemp(prefix="bench_clone_")
    with FakeGenesys(("source", "target", "serial"), **knobs) as fake:
        source = fake.orgs["source"]
        populate_config_org(source, seed=9, **SIZES)
        for name in ("target", "serial"):
            populate_config_org(fake.orgs[name], seed=9, **SIZES, only=["divisions", "users"])
        objects = sum(1 for kind in COPIED for obj in source.objects[kind].values() if not obj.get("managed"))

        result, wall, source_requests, target_requests = run_clone(fake, "target", args.workers, args.rps * args.share, work)
        target = fake.orgs["target"]
        copied = sum(len(target.objects[kind]) for kind in COPIED)
        failed = 0 if result.returncode == 0 and copied == objects else 1
        throttled = sum(r.status == 429 for r in source_requests + target_requests)
        requests_made = len(source_requests) + len(target_requests)
        busier = max(len(source_requests), len(target_requests))
        # The longest chain of requests that must follow one another: the org check, one list page
        # per level of extraction, the four apply levels (a queue's wrap-up code list after the
        # queue), the flow export job (create, poll, download) and import job (create, upload,
        # poll), and a verify page; plus the two flow jobs' own run time.
        critical_requests = 1 + 1 + 4 + 1 + 3 + 3 + 1
        critical = critical_requests * args.latency + 2 * args.flow_job_seconds
        bound = max(busier / args.rps, critical)

        serial_result, serial_wall, _, _ = run_clone(fake, "serial", 1, args.rps * args.share, work)

    summary = next((json.loads(line) for line in result.stderr.splitlines()
                    if line.startswith("{") and "Clone finished" in line), {})
    print(f"objects copied        {copied} of {objects} (exit {result.returncode})")
    print(f"wall time             {wall:.1f} s")
    print(f"requests              {requests_made} ({len(source_requests)} source, {len(target_requests)} target); "
          f"writes {summary.get('writes')}")
    print(f"lower bound           {bound:.1f} s = max({busier} requests / {args.rps:g} rps = {busier / args.rps:.1f} s, "
          f"critical path {critical_requests} x {args.latency * 1000:.0f} ms + flow jobs = {critical:.1f} s)")
    print(f"ratio                 {wall / bound:.2f}")
    print(f"429s                  {throttled} ({100 * throttled / max(requests_made, 1):.2f}% of requests)")
    print(f"serial (--workers 1)  {serial_wall:.1f} s (exit {serial_result.returncode})")
    print(f"speed-up              {serial_wall / wall:.1f}x")
    print(f"bench_clone: objects={objects} requests={requests_made} wall_s={wall:.1f} bound_s={bound:.1f} "
          f"ratio={wall / bound:.2f} r429={throttled} speedup={serial_wall / wall:.1f} failed={failed}")


if __name__ == "__main__":
    main()
