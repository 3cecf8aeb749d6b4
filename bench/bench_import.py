"""Import throughput against the fake org with scaled-down limits.

Runs `migrate.py import` (a subprocess, as an operator would) for N records and
prints the wall time, the lower bound the fake's settings allow, their ratio,
the tool's peak RSS and the 429s it met; then a naive serial reference (one
chunk at a time, polled with 2**attempt backoff, as the seed describes) on a
few chunks, extrapolated per chunk, and our speed-up over it.

    python bench/bench_import.py [--records 100000] [--naive-chunks 8]

The last line is machine-readable:
bench_import: records=N wall_s=W bound_s=B ratio=R rss_mb=M speedup=S failed=F
"""

import argparse
import json
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

import requests  # noqa: E402

import migrate  # noqa: E402
from fake_genesys import FakeGenesys, populate_reference_objects  # noqa: E402
from support import many_records, mapping_between, org_env, write_export  # noqa: E402


def naive_import(org, bodies):
    """The seed's loop: POST a chunk, poll at 1, 2, 4, 8 ... s until done, then the next chunk."""
    session = requests.Session()
    token = session.post(f"{org.login_url}/oauth/token", data={"grant_type": "client_credentials"},
                         auth=(org.client_id, org.client_secret)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    for body in bodies:
        job = session.post(f"{org.api_url}/api/v2/interaction/import", data=body, headers=headers).json()
        for attempt in range(50):
            time.sleep(2 ** attempt)
            status = session.get(f"{org.api_url}/api/v2/interaction/import/{job['id']}", headers=headers)
            if status.status_code == 200 and status.json()["status"] in ("completed", "failed"):
                break
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=300, help="fake: requests per window (real: 300/60 s)")
    parser.add_argument("--status-rate", type=int, default=100, help="fake: status reads per window (real: 100/60 s)")
    parser.add_argument("--window", type=float, default=6.0, help="fake: window seconds (real: 60; scaled 10x down)")
    parser.add_argument("--job-seconds-per-record", type=float, default=0.002)
    parser.add_argument("--parallel-jobs", type=int, default=4, help="fake: import jobs running at once")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--naive-chunks", type=int, default=8)
    args = parser.parse_args()

    knobs = dict(rate_limit=args.rate, rate_window=args.window, status_rate_limit=args.status_rate,
                 status_rate_window=args.window, import_seconds_per_record=args.job_seconds_per_record,
                 max_running_import_jobs=args.parallel_jobs)
    work = tempfile.mkdtemp(prefix="bench_import_")
    with FakeGenesys(("source", "target", "naive"), **knobs) as fake:
        source, target, naive = fake.orgs["source"], fake.orgs["target"], fake.orgs["naive"]
        source_refs = populate_reference_objects(source, seed=3)
        target_refs = populate_reference_objects(target, seed=3)
        populate_reference_objects(naive, seed=3)
        naive_refs = {kind: list(naive.objects[kind]) for kind in naive.objects}
        export = os.path.join(work, "export.json.gz")
        print(f"writing {args.records:,} records ...", flush=True)
        write_export(export, many_records(source_refs, args.records))
        mapping = os.path.join(work, "mapping.json")
        with open(mapping, "w") as handle:
            json.dump(mapping_between(source_refs, target_refs), handle)

        env = org_env(fake, target="target")
        command = [sys.executable, os.path.join(ROOT, "migrate.py"), "import", "--input", export, "--mapping", mapping,
                   "--yes", "--workers", str(args.workers), "--state", os.path.join(work, "state.json"),
                   "--max-rps", f"{args.rate / args.window:.3f}", "--max-status-rps",
                   f"{args.status_rate / args.window:.3f}", "--poll-initial", "0.5", "--poll-max", "1.5",
                   "--log-format", "json"]
        print("importing ...", flush=True)
        started = time.monotonic()
        result = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
        wall = time.monotonic() - started
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary = next((json.loads(line) for line in result.stderr.splitlines()
                        if line.startswith("{") and "Import summary" in line), {})
        if result.returncode != 0:
            print(result.stderr[-3000:])

        posts = sum(1 for r in target.requests if r.method == "POST" and r.path == "/api/v2/interaction/import")
        polls = sum(1 for r in target.requests if r.method == "GET" and r.path.startswith("/api/v2/interaction/import/"))
        throttled = sum(1 for r in target.requests if r.status == 429)
        jobs = target.import_posts
        post_bound = posts / (args.rate / args.window)
        poll_bound = jobs / (args.status_rate / args.window)
        job_bound = args.records * args.job_seconds_per_record / args.parallel_jobs
        bound = max(post_bound, poll_bound, job_bound)
        failed = 0 if result.returncode == 0 and len(target.imported) == args.records else 1

        bodies = [chunk.body() for chunk, _ in zip(migrate.build_chunks(
            [migrate.Path(export)], migrate.Mapping(mapping_between(source_refs, naive_refs)), "fail"),
            range(args.naive_chunks))]
        naive_per_chunk = naive_import(naive, bodies) / len(bodies)
        naive_wall = naive_per_chunk * jobs

    print(f"records imported      {len(target.imported):,} of {args.records:,} (exit {result.returncode})")
    print(f"wall time             {wall:.1f} s  ({args.records / wall:,.0f} records/s)")
    print(f"lower bound           {bound:.1f} s  = max(POSTs {posts}/{args.rate / args.window:.1f} rps = "
          f"{post_bound:.1f} s, polls {jobs} jobs/{args.status_rate / args.window:.1f} rps = {poll_bound:.1f} s, "
          f"job time {args.records * args.job_seconds_per_record:.0f} s/{args.parallel_jobs} = {job_bound:.1f} s)")
    print(f"ratio                 {wall / bound:.2f}")
    print(f"status polls          {polls} for {jobs} jobs ({polls / max(jobs, 1):.2f} per job)")
    print(f"peak RSS (tool)       {rss_mb:.1f} MB")
    print(f"429s                  {throttled}")
    print(f"tool's own summary    {summary.get('chunks_done')} chunks, {summary.get('records_per_s')} records/s")
    print(f"naive serial          {naive_per_chunk:.2f} s per chunk over {len(bodies)} chunks -> "
          f"{naive_wall:.0f} s for {jobs} chunks (extrapolated)")
    print(f"speed-up              {naive_wall / wall:.1f}x")
    print(f"bench_import: records={args.records} wall_s={wall:.1f} bound_s={bound:.1f} ratio={wall / bound:.2f} "
          f"rss_mb={rss_mb:.0f} speedup={naive_wall / wall:.1f} failed={failed}")


if __name__ == "__main__":
    main()
