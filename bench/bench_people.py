"""People throughput: queue members and agents' skills and languages, against the fake org with a rate
limit R and a per-request latency L.

Clones the people of a generated contact centre (2,000 users holding 5 skills and 2 languages each,
100 queues of 20 direct members; the queues, skills, languages and users already exist in the
target by name and email) with `migrate.py clone --kinds queueMembers,userSkills,userLanguages`
(a subprocess, as an admin runs it) and prints the requests made against the minimum the contract
allows, and the wall time against the rate bound.

The minimum, over both orgs: ceil(users / 500) list pages (expand=skills,languages), plus two reads
(skills, languages) per matched user the expansion leaves out, plus the member-list pages of the
source's queues and of the target's, plus for each user needing writes ceil(n / 50) per list, plus
for each queue ceil(new members / 100), plus one PATCH per new member whose ring is not 1 or whose
`joined` is false. The rate bound is the busier org's share of that minimum / R.

    python bench/bench_people.py [--rps 50] [--latency 0.03] [--users 2000]

The last line is machine-readable:
bench_people: users=N requests=Q min_requests=M req_ratio=Q/M wall_s=W bound_s=B ratio=R failed=F
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fake_genesys import FakeGenesys, populate_people  # noqa: E402
from support import org_env  # noqa: E402

KINDS = "queueMembers,userSkills,userLanguages"


def by_email(org):
    return {user["email"].lower(): user for user in org.objects["users"].values() if user.get("email")}


def minimum_requests(source, target):
    """(source's, target's) minimum requests for the people clone, from both orgs as they are now."""
    src_snap, tgt_snap = source.people_snapshot(), target.people_snapshot()
    src_users, tgt_users = by_email(source), by_email(target)
    matched = set(src_users) & set(tgt_users)
    src = math.ceil(len(source.objects["users"]) / 500) + sum(
        2 for email in matched if source.expand_misses(src_users[email]["id"]))
    tgt = math.ceil(len(target.objects["users"]) / 500) + sum(
        2 for email in matched if target.expand_misses(tgt_users[email]["id"]))
    target_queues = {queue["name"]: queue for queue in target.objects["queues"].values()}
    for name, members in src_snap["members"].items():
        src += max(1, math.ceil(len(members) / 100))
        present = tgt_snap["members"].get(name)
        if present is not None:
            tgt += max(1, math.ceil(len(present) / 100))
        rings = len((target_queues.get(name, {}).get("bullseye") or {}).get("rings") or []) or 1
        new = {email: state for email, state in members.items()
               if state["memberBy"] == "user" and email in matched and email not in (present or {})}
        tgt += math.ceil(len(new) / 100)
        tgt += sum(1 for state in new.values() if min(state["ringNumber"], rings) != 1 or not state["joined"])
    for email in matched:
        for field in ("skills", "languages"):
            missing = set(src_snap[field].get(email, {})) - set(tgt_snap[field].get(email, {}))
            tgt += math.ceil(len(missing) / 50)
    return src, tgt


def copied_all(source, target):
    """Every matched user's skills and languages, and every queue's direct members, are in the target."""
    src_snap, tgt_snap = source.people_snapshot(), target.people_snapshot()
    matched = set(by_email(source)) & set(by_email(target))
    for field in ("skills", "languages"):
        for email in matched:
            if not set(src_snap[field].get(email, {})) <= set(tgt_snap[field].get(email, {})):
                return False
    for name, members in src_snap["members"].items():
        wanted = {email for email, state in members.items() if state["memberBy"] == "user" and email in matched}
        if not wanted <= set(tgt_snap["members"].get(name, {})):
            return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=50.0, help="rate limit R per org (requests per second)")
    parser.add_argument("--latency", type=float, default=0.03, help="per-request latency L (seconds)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--share", type=float, default=0.95,
                        help="--max-rps as a share of R: a client at exactly R meets the sliding window's edge")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--queues", type=int, default=100)
    args = parser.parse_args()

    knobs = dict(rate_limit=int(args.rps * 10), rate_window=10.0, status_rate_limit=int(args.rps * 10 / 3),
                 status_rate_window=10.0, latency=args.latency)
    work = tempfile.mkdtemp(prefix="bench_people_")
    with FakeGenesys(("source", "target"), **knobs) as fake:
        source, target = fake.orgs["source"], fake.orgs["target"]
        populate_people(source, target, seed=11, users=args.users, queues=args.queues, skills=12, languages=4,
                        members_per_queue=20, skills_per_user=(5, 5), languages_per_user=(2, 2),
                        group_queues=0, existing_target_queues=args.queues)
        min_source, min_target = minimum_requests(source, target)
        minimum = min_source + min_target
        source_mark, target_mark = len(source.requests), len(target.requests)
        started = time.monotonic()
        result = subprocess.run([sys.executable, os.path.join(ROOT, "migrate.py"), "clone", "--yes", "--kinds", KINDS,
                                 "--workers", str(args.workers), "--max-rps", f"{args.rps * args.share:.2f}",
                                 "--log-format", "json"],
                                env=org_env(fake, source="source", target="target"), cwd=work, capture_output=True,
                                text=True)
        wall = time.monotonic() - started
        made = [r for org, mark in ((source, source_mark), (target, target_mark))
                for r in org.requests[mark:] if r.path.startswith("/api/v2")]
        failed = 0 if result.returncode == 0 and copied_all(source, target) else 1
        throttled = sum(r.status == 429 for r in made)
    if result.returncode != 0:
        print(result.stderr[-3000:])
    summary = next((json.loads(line) for line in result.stderr.splitlines()
                    if line.startswith("{") and "Clone finished" in line), {})
    bound = max(min_source, min_target) / args.rps
    print(f"users                 {args.users} ({args.queues} queues of 20 direct members; exit {result.returncode})")
    print(f"requests              {len(made)} (writes {summary.get('writes')}), minimum {minimum} "
          f"({min_source} source, {min_target} target): {len(made) / minimum:.2f}x")
    print(f"wall time             {wall:.1f} s against a rate bound of {bound:.1f} s "
          f"(the target's minimum / {args.rps:g} rps): {wall / bound:.2f}x")
    print(f"429s                  {throttled}")
    print(f"bench_people: users={args.users} requests={len(made)} min_requests={minimum} "
          f"req_ratio={len(made) / minimum:.2f} wall_s={wall:.1f} bound_s={bound:.1f} ratio={wall / bound:.2f} "
          f"failed={failed}")


if __name__ == "__main__":
    main()
