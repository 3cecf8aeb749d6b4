"""Clone throughput against the fake org with a rate limit R and a per-request latency L.

Clones a generated org of about 1,300 objects with `migrate.py clone` (a
subprocess, as an admin runs it): the routing kinds, and what flows need
(40 prompts with audio in two languages, 10 data tables with 2,000 rows in
all, 20 IVRs, emergency groups, 60+ flows whose content moves by Architect
jobs). People (queue members, agents' skills and languages) are left to
bench_people.py. It prints the wall time, the lower bound, their ratio, requests made
and 429s; then the same clone with --workers 1 (one object at a time) as the
serial reference, and our speed-up over it.

The lower bound is the largest of: the busier org's API requests / R (every
table row is one write, so the rows are in it); its job-status reads / the
status lane's rate (every flow job needs at least one status read, and all
status reads share a window of their own, 100/min against 300/min in the
real platform, so R/3 here); and the dependency critical path x L plus the
jobs' and one transcode's own run time.

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

from fake_genesys import FakeGenesys, populate_clone_demo  # noqa: E402
from support import migrate, org_env  # noqa: E402

SCALE = 10  # populate_clone_demo: 40 prompts, 10 tables with 2,000 rows, 20 IVRs, 60+ flows
MORE = dict(skills=300, wrapupcodes=250, queues=300)  # the routing kinds at the size of a big org
COPIED = ("divisions", "skills", "wrapupcodes", "schedules", "schedulegroups", "queues", "flows", "trunkbasesettings",
          "languages", "prompts", "datatables", "ivrs", "emergencygroups")
STATUS_SHARE = 1 / 3  # the job-status lane's rate as a share of R (100/min against 300/min)
# The objects; the people (queue members, agents' skills and languages) have bench_people.py.
OBJECT_KINDS = ",".join(key for key in migrate.CLONABLE_KINDS
                        if key != "divisions" and not migrate.KINDS_BY_KEY[key].relation_of)


def prepare_target(source, target, template):
    """What a clone needs in the target and cannot create: users, data actions (every one, so no flow is
    left out), DID pools (the template target's: half the IVRs' numbers await porting)."""
    if target is not template:
        for user in list(source.objects["users"].values()):
            target.add_object("users", user["name"], email=user.get("email"))
        for pool in list(template.objects["didpools"].values()):
            target.add_did_pool(pool["startPhoneNumber"], pool["endPhoneNumber"])
    present = {(a["category"], a["name"]) for a in target.objects["dataactions"].values()}
    for action in list(source.objects["dataactions"].values()):
        if (action["category"], action["name"]) not in present:
            target.add_data_action(action["category"], action["name"])


def status_reads(requests):
    return sum(1 for r in requests if r.method == "GET" and "/jobs/" in r.path)


def api_requests(org, since=0):
    return [r for r in org.requests[since:] if r.path.startswith("/api/v2")]


def run_clone(fake, target_name, workers, max_rps, status_rps, work):
    source, target = fake.orgs["source"], fake.orgs[target_name]
    env = org_env(fake, source="source", target=target_name)
    folder = tempfile.mkdtemp(dir=work, prefix=f"{target_name}_")
    source_mark = len(source.requests)
    started = time.monotonic()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "migrate.py"), "clone", "--yes", "--create-divisions",
                             "--kinds", OBJECT_KINDS,
                             "--workers", str(workers), "--max-rps", f"{max_rps:.2f}", "--max-status-rps",
                             f"{status_rps:.2f}", "--poll-initial", "0.1", "--poll-max", "0.5", "--log-format", "json"],
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
    parser.add_argument("--transcode-seconds", type=float, default=0.3)
    parser.add_argument("--no-serial", action="store_true", help="skip the serial reference run")
    args = parser.parse_args()

    status_rps = args.rps * STATUS_SHARE
    knobs = dict(rate_limit=int(args.rps * 10), rate_window=10.0, status_rate_limit=int(status_rps * 10),
                 status_rate_window=10.0, latency=args.latency, flow_job_seconds=args.flow_job_seconds,
                 prompt_transcode_seconds=args.transcode_seconds)
    work = tempfile.mkdtemp(prefix="bench_clone_")
    with FakeGenesys(("source", "target", "serial"), **knobs) as fake:
        source, target = fake.orgs["source"], fake.orgs["target"]
        populate_clone_demo(source, target, seed=9, scale=SCALE, **MORE)
        for name in ("target", "serial"):
            prepare_target(source, fake.orgs[name], target)
        objects = sum(1 for kind in COPIED for obj in source.objects[kind].values()
                      if not obj.get("managed") and not obj.get("homeDivision"))
        rows = sum(len(rows) for rows in source.table_rows.values())

        result, wall, source_requests, target_requests = run_clone(fake, "target", args.workers, args.rps * args.share,
                                                                   status_rps * args.share, work)
        copied = sum(1 for kind in COPIED for obj in target.objects[kind].values() if not obj.get("homeDivision"))
        copied_rows = sum(len(rows) for rows in target.table_rows.values())
        failed = 0 if result.returncode == 0 and copied == objects and copied_rows == rows else 1
        throttled = sum(r.status == 429 for r in source_requests + target_requests)
        requests_made = len(source_requests) + len(target_requests)
        busier = max(len(source_requests), len(target_requests))
        busier_status = max(status_reads(source_requests), status_reads(target_requests))
        # The longest chain of requests that must follow one another: the org check, one list page per
        # level of extraction, a flow's consumed resources, the flow export job (create, poll, download),
        # the apply levels (a prompt's resource, its upload grant and transcode poll after the prompt; a
        # queue's wrap-up code list after the queue), the import job (create, upload, poll), a verify
        # page; plus the jobs' and one transcode's own run time.
        critical_requests = 1 + 1 + 1 + 3 + 5 + 3 + 3 + 1
        critical = critical_requests * args.latency + 2 * args.flow_job_seconds + args.transcode_seconds
        bound = max(busier / args.rps, busier_status / status_rps, critical)

        serial_wall, serial_result = None, None
        if not args.no_serial:
            serial_result, serial_wall, _, _ = run_clone(fake, "serial", 1, args.rps * args.share,
                                                         status_rps * args.share, work)

    summary = next((json.loads(line) for line in result.stderr.splitlines()
                    if line.startswith("{") and "Clone finished" in line), {})
    print(f"objects copied        {copied} of {objects}, rows {copied_rows} of {rows} (exit {result.returncode})")
    print(f"wall time             {wall:.1f} s")
    print(f"requests              {requests_made} ({len(source_requests)} source, {len(target_requests)} target); "
          f"writes {summary.get('writes')}")
    print(f"lower bound           {bound:.1f} s = max({busier} requests / {args.rps:g} rps = {busier / args.rps:.1f} s, "
          f"{busier_status} status reads / {status_rps:.1f} rps = {busier_status / status_rps:.1f} s, "
          f"critical path {critical_requests} x {args.latency * 1000:.0f} ms + jobs + transcode = {critical:.1f} s)")
    print(f"ratio                 {wall / bound:.2f}")
    print(f"429s                  {throttled} ({100 * throttled / max(requests_made, 1):.2f}% of requests)")
    speedup = serial_wall / wall if serial_wall else float("nan")
    if serial_wall:
        print(f"serial (--workers 1)  {serial_wall:.1f} s (exit {serial_result.returncode})")
        print(f"speed-up              {speedup:.1f}x")
    print(f"bench_clone: objects={objects} requests={requests_made} wall_s={wall:.1f} bound_s={bound:.1f} "
          f"ratio={wall / bound:.2f} r429={throttled} speedup={speedup:.1f} failed={failed}")


if __name__ == "__main__":
    main()
