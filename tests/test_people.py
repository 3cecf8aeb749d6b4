"""People end to end (issue 10): queue members, agents' skills and languages, and a rollback that undoes every
change, through the CLI as an admin runs it, against generated orgs of 200 users (`populate_people`).

One FakeGenesys per module holds four source/target pairs, each populated alike (same seed, so the same names,
emails and structure; other ids): "a" is planned, then cloned with the default `--on-conflict reuse` at a terminal
(the confirmation line), then cloned again; "b" holds a configuration too (`populate_config_org`) and is cloned
with `--on-conflict update`, then rolled back; "c" is cloned with `update`, changed by someone else, then rolled
back, then rolled back with `--force`; "k" is killed during apply, run again, then rolled back.  Each pair also
holds a queue of 130 direct members and a user of 55 more skills, so the bulk limits (100 members, 50 skills a
call) are crossed."""

import copy
import json
import math
import os
import pty
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from fake_genesys import FakeGenesys, populate_config_org, populate_people
from support import MIGRATE, client_for, migrate, org_env, run_cli, start_cli

SEED = 10
CONFIG_SEED = 5
FAST = ["--max-rps", "1000", "--max-status-rps", "1000", "--poll-initial", "0.05", "--poll-max", "0.3"]
ROLLBACK_FAST = FAST[:4]
WRITES = ("POST", "PUT", "PATCH", "DELETE")
PAIRS = ("a", "b", "c", "k")
CONFIG = dict(skills=8, wrapupcodes=6, schedules=3, schedulegroups=2, queues=6, flows=0, trunks=2, languages=3,
              users=6, divisions=2)
CONFIG_IN_TARGET = {"divisions": 1.0, "users": 1.0, "skills": 0.5, "wrapupcodes": 0.5, "schedules": 2,
                    "schedulegroups": 1, "queues": 3, "trunkbasesettings": 1.0, "languages": 1.0}
BULK_QUEUE = "People Bulk Queue"
BULK_QUEUE_MEMBERS = 130
BULK_SKILLS = 55
SERVER_MANAGED = ("dateModified", "version", "memberCount", "userMemberCount", "joinedMemberCount", "modifiedBy")
TIMED_WRAPUP_PROMPTS = migrate.TIMED_WRAPUP_PROMPTS
NOTE_UNMATCHED = migrate.NOTE_UNMATCHED_USERS  # "Users with no email match in the target ..."
NOTE_GROUPS = migrate.NOTE_GROUPS_DROPPED  # "Queues copied without their group members ..."
NOTE_CLAMPED = migrate.NOTE_RING_CLAMPED  # "Queue members whose ring number is beyond the target queue's rings ..."
MEMBERS_PATH = re.compile(r"^/api/v2/routing/queues/([^/]+)/members$")
USER_LIST_PATH = re.compile(r"^/api/v2/users/([^/]+)/(routingskills|routinglanguages)$")
USER_BULK_PATH = re.compile(r"^/api/v2/users/([^/]+)/(routingskills|routinglanguages)/bulk$")


# --- the orgs ----------------------------------------------------------------------------------------------------

@dataclass
class Pair:
    fake: FakeGenesys
    source: object
    target: object
    expected: dict
    env: dict
    bulk_user_email: str = ""


def add_bulk(source, target, expected):
    """A source queue of 130 matched direct members (ring 1, joined: two POSTs, no PATCH) and a matched user
    holding 55 more skills, which the target has by name but the user lacks (two bulk PATCHes)."""
    unmatched = set(expected["unmatched_emails"])
    with source.lock:
        matched = sorted((u for u in source.objects["users"].values() if u.get("email", "").startswith("people.")
                          and u["email"].lower() not in unmatched and ".local." not in u["email"]),
                         key=lambda u: u["email"])
        template = next(q for q in source.objects["queues"].values() if q["name"] == expected["queues"][-1])
    fields = {name: copy.deepcopy(value) for name, value in template.items()
              if name not in ("id", "name", "selfUri", "bullseye", "memberCount", "userMemberCount",
                              "joinedMemberCount")}
    fields.update(description="130 agents", bullseye={"rings": [{"expansionCriteria": [
        {"type": "TIMEOUT_SECONDS", "threshold": 10.0}], "actions": {"skillsToRemove": []}}]})
    queue_id = source.add_object("queues", BULK_QUEUE, **fields)
    for user in matched[:BULK_QUEUE_MEMBERS]:
        source.set_queue_member(queue_id, user["id"], 1, True)
    skills = {}
    for org in (source, target):
        home = org._home_ref()
        skills[org.name] = [org.add_object("skills", f"People Bulk Skill {n:02d}", division=dict(home),
                                           state="active", version="1") for n in range(BULK_SKILLS)]
    user = matched[len(matched) // 2]
    with source.lock:
        held = dict(source.user_skills.get(user["id"], {}))
    source.set_user_skills(user["id"], {**held, **{sid: 3.0 for sid in skills[source.name]}})
    return user["email"].lower()


def populate_pair(fake, name, config=False):
    source, target = fake.orgs[f"src_{name}"], fake.orgs[f"tgt_{name}"]
    if config:
        populate_config_org(source, seed=CONFIG_SEED, **CONFIG)
        populate_config_org(target, seed=CONFIG_SEED, **CONFIG, variant=1, only=CONFIG_IN_TARGET)
    expected = populate_people(source, target, seed=SEED, users=200)
    pair = Pair(fake, source, target, expected, org_env(fake, source=source.name, target=target.name))
    pair.bulk_user_email = add_bulk(source, target, expected)
    return pair


@pytest.fixture(scope="module")
def orgs():
    """One FakeGenesys for the module: a source and a target org per pair."""
    names = tuple(f"{side}_{name}" for name in PAIRS for side in ("src", "tgt"))
    fake = FakeGenesys(names, rate_limit=1_000_000, status_rate_limit=1_000_000, flow_job_seconds=0.05)
    fake.start()
    try:
        yield fake
        assert fake.server_errors == [], fake.server_errors[0]
    finally:
        fake.stop()


# --- helpers -----------------------------------------------------------------------------------------------------

def clone(pair, cwd, *extra):
    return run_cli(["clone", "--yes", *FAST, *extra], env=pair.env, cwd=cwd)


def rollback(pair, cwd, *extra):
    return run_cli(["rollback", "--yes", *ROLLBACK_FAST, *extra], env=pair.env, cwd=cwd)


def writes_to(org, since=0):
    return [r for r in org.requests[since:] if r.method in WRITES and r.path.startswith("/api/v2")]


def assert_sane(result):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def people(org):
    return copy.deepcopy(org.people_snapshot())


def ring_counts(org):
    with org.lock:
        return {q["name"]: len((q.get("bullseye") or {}).get("rings") or []) or 1
                for q in org.objects["queues"].values()}


def writable(obj):
    """An object as a client can write it: no server-managed fields, and no acwSettings.timeoutMs beside a
    wrap-up prompt that does not time out (the platform may answer one, but refuses it in a PUT)."""
    obj = {name: value for name, value in obj.items() if name not in SERVER_MANAGED}
    acw = obj.get("acwSettings")
    if isinstance(acw, dict) and "timeoutMs" in acw and acw.get("wrapupPrompt") not in TIMED_WRAPUP_PROMPTS:
        obj["acwSettings"] = {name: value for name, value in acw.items() if name != "timeoutMs"}
    return obj


def full_snapshot(org):
    """Everything of a target a clone may touch, minus what the server manages (an empty entry of a store, such
    as a user's skills once all are removed, is the same as none)."""
    def held(store):
        return {key: value for key, value in store.items() if value}

    with org.lock:
        return copy.deepcopy({
            "objects": {kind: {oid: writable(obj) for oid, obj in objects.items()}
                        for kind, objects in org.objects.items()},
            "wrapups": held(org._queue_wrapups), "people": org.people_snapshot(),
            "members": held(org.direct_members), "skills": held(org.user_skills),
            "languages": held(org.user_languages), "groups": org.groups, "groupMembers": held(org.group_members),
            "rows": held(org.table_rows), "resources": held(org.prompt_resources)})


def snapshot_differences(before, after):
    """Readable differences of two full snapshots (at most 20)."""
    found = []
    for part in before:
        if before[part] == after[part]:
            continue
        if part == "objects":
            for kind in before[part]:
                for oid in sorted(set(before[part][kind]) | set(after[part][kind])):
                    was, now = before[part][kind].get(oid), after[part][kind].get(oid)
                    if was != now:
                        if was is None or now is None:
                            found.append(f"{kind} {(was or now).get('name')!r} " + ("added" if was is None else "gone"))
                        else:
                            fields = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
                            found.append(f"{kind} {was.get('name')!r}: {', '.join(fields)} differ")
        elif part == "people":
            for key in before[part]:
                for name in sorted(set(before[part][key]) | set(after[part][key])):
                    if before[part][key].get(name) != after[part][key].get(name):
                        found.append(f"{key} of {name}: {before[part][key].get(name)} -> {after[part][key].get(name)}")
        else:
            found.append(f"{part} differ")
    return found[:20]


def expected_people(source_people, target_people, rings, policy):
    """The target's people after a clone: what it had, plus the source's direct members of matched users
    (on at most the target queue's last ring) and their skills and languages; with `update`, the source's
    proficiency where both hold one."""
    matched = set(target_people["skills"]) & set(source_people["skills"])
    members = copy.deepcopy(target_people["members"])
    for queue, listed in source_people["members"].items():
        into = members.setdefault(queue, {})
        for email, member in listed.items():
            if member["memberBy"] == "user" and email in matched and email not in into:
                into[email] = {"ringNumber": min(member["ringNumber"], rings[queue]), "joined": member["joined"],
                               "memberBy": "user"}
    out = {"members": members}
    for key in ("skills", "languages"):
        out[key] = copy.deepcopy(target_people[key])
        for email in matched:
            for name, proficiency in source_people[key][email].items():
                if name not in out[key][email] or policy == "update":
                    out[key][email][name] = proficiency
    return out


def additions(before, after):
    """{queue or email: n} of the members / skills / languages after holds and before lacks (or held otherwise)."""
    found = {}
    for key in ("members", "skills", "languages"):
        found[key] = {}
        for holder, values in after[key].items():
            n = sum(1 for name, value in values.items() if before[key].get(holder, {}).get(name) != value)
            if n:
                found[key][holder] = n
    return found


def note(stderr, topic):
    """The items of the last summary line of a topic."""
    lines = [line for line in stderr.splitlines() if line.startswith(topic + ": ")]
    assert lines, f"no line {topic!r} in:\n{stderr}"
    return lines[-1][len(topic) + 2:].rstrip(".")


def left_alone(stderr):
    return re.findall(r"^Left alone: (\S+) (.+?) \(([0-9a-f-]{36})\): (.+?)\. Use --force", stderr, re.M)


def run_at_terminal(args, env, cwd, answer):
    """The CLI with a terminal on standard input (so it asks), answering `answer`."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, MIGRATE, *args], env=env, cwd=cwd, stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(master, answer.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- "a": plan, clone (reuse) at a terminal, second clone ------------------------------------------------------

@dataclass
class ReuseRun:
    pair: Pair
    folder: object
    source_people: dict
    before: dict  # full snapshot of the target
    expected_after: dict
    plan: subprocess.CompletedProcess
    plan_writes: list
    first: subprocess.CompletedProcess  # run at a terminal, answering yes
    after: dict = None  # people of the target after the first clone
    marks: dict = field(default_factory=dict)  # org name -> (start, end) of the first clone's requests
    second: subprocess.CompletedProcess = None
    second_writes: list = None


@pytest.fixture(scope="module")
def reuse(orgs, tmp_path_factory):
    pair = populate_pair(orgs, "a")
    folder = tmp_path_factory.mktemp("reuse")
    source, target = pair.source, pair.target
    source_people, before = people(source), full_snapshot(target)
    expected_after = expected_people(source_people, before["people"], {**ring_counts(source), **ring_counts(target)},
                                     "reuse")
    mark = len(target.requests)
    plan = run_cli(["clone", "--plan", *FAST], env=pair.env, cwd=folder)
    plan_writes = writes_to(target, mark)
    marks = {org.name: len(org.requests) for org in (source, target)}
    first = run_at_terminal(["clone", *FAST], pair.env, folder, "y\n")  # as an admin runs it: asked, answers yes
    run = ReuseRun(pair, folder, source_people, before, expected_after, plan, plan_writes, first)
    run.marks = {org.name: (marks[org.name], len(org.requests)) for org in (source, target)}
    run.after = people(target)
    mark = len(target.requests)
    run.second = clone(pair, folder)
    run.second_writes = writes_to(target, mark)
    return run


def test_plan_counts_memberships_skills_and_languages_and_writes_nothing(reuse):
    plan, expected = reuse.plan, reuse.pair.expected
    assert plan.returncode == 0, plan.stderr
    assert_sane(plan)
    assert reuse.plan_writes == []
    added = additions(reuse.before["people"], reuse.expected_after)
    counted = dict(re.findall(r"^  (queueMembers|userSkills|userLanguages) +(.+)$", plan.stderr, re.M))
    assert counted == {
        "queueMembers": f"{sum(added['members'].values())} changes, {len(added['members'])} on queues",
        "userSkills": f"{sum(added['skills'].values())} changes, {len(added['skills'])} on users",
        "userLanguages": f"{sum(added['languages'].values())} changes, {len(added['languages'])} on users",
    }, plan.stderr
    document = json.loads((reuse.folder / "plan.json").read_text())
    assert sorted(email.lower() for email in document["notes"][NOTE_UNMATCHED]) == expected["unmatched_emails"]
    assert {kind for kind in ("queueMembers", "userSkills", "userLanguages")} <= set(document["kinds"]), \
        "the people kinds are in the default --kinds"


def test_confirmation_counts_the_changes_to_what_the_target_had(reuse):
    asked, before = reuse.first, reuse.before
    assert asked.returncode == 0, asked.stderr
    added = additions(before["people"], reuse.expected_after)
    existing = {q["name"] for q in before["objects"]["queues"].values()}
    to_existing = {queue: n for queue, n in added["members"].items() if queue in existing}
    source_queues = set(reuse.source_people["members"])
    line = next(line for line in asked.stderr.splitlines() if "Proceed? [y/N]" in line)
    assert f"Create {len(source_queues - existing)} and update up to 0 objects" in line, line
    assert f"add {sum(to_existing.values())} members to {len(to_existing)} existing queues" in line, line
    assert f"add or change {sum(added['skills'].values())} skills on {len(added['skills'])} existing users" in line
    assert f"add or change {sum(added['languages'].values())} languages on {len(added['languages'])} existing " \
           f"users" in line, line


def test_clone_copies_memberships_skills_and_languages_of_matched_users(reuse):
    first, expected, target = reuse.first, reuse.pair.expected, reuse.pair.target
    assert first.returncode == 0, first.stderr
    assert_sane(first)
    assert "0 verify mismatches" in first.stderr
    after = reuse.after
    for key in ("members", "skills", "languages"):
        for holder in sorted(set(reuse.expected_after[key]) | set(after[key])):
            assert after[key].get(holder) == reuse.expected_after[key].get(holder), (key, holder)
    # what the target had is kept: its members' rings and joined, its users' other and differing values
    for queue, email, _, (ring, joined) in expected["kept_members"]:
        assert after["members"][queue][email] == {"ringNumber": ring, "joined": joined, "memberBy": "user"}
    for email, skill, _, theirs in expected["differing_proficiency"]:
        assert after["skills"][email][skill] == theirs, "--on-conflict reuse keeps the target's proficiency"
    for email, language, _, theirs in expected["differing_language_proficiency"]:
        assert after["languages"][email][language] == theirs
    for email, extra in expected["target_extra"].items():
        for key in ("skills", "languages"):
            assert extra[key].items() <= after[key][email].items()
    # rings beyond the target queue's are its last
    rings = ring_counts(target)
    for queue, email, _, target_rings in expected["clamped"]:
        assert after["members"][queue][email]["ringNumber"] == target_rings == rings[queue]
    # unmatched users: nothing of theirs, listed
    assert not set(expected["unmatched_emails"]) & set(after["skills"])
    assert sorted(note(first.stderr, NOTE_UNMATCHED).split(", ")) == expected["unmatched_emails"]


def test_group_queues_are_copied_without_their_groups_and_listed(reuse):
    first, expected, target = reuse.first, reuse.pair.expected, reuse.pair.target
    assert expected["group_queues"]
    listed = {queue: (groups, int(n)) for queue, groups, n in
              re.findall(r"(?:^|, )([^,]+?): (.+?) \((\d+) members\)", note(first.stderr, NOTE_GROUPS))}
    assert listed == {queue: (", ".join(info["groups"]), info["members"])
                      for queue, info in expected["group_queues"].items()}
    with target.lock:
        for queue in target.objects["queues"].values():
            if queue["name"] in expected["group_queues"]:
                assert not queue.get("memberGroups")
                assert all(not ring.get("memberGroups") for ring in queue["bullseye"]["rings"])
                assert all(m["memberBy"] == "user" for m in target.queue_members(queue["id"]))


def test_clamped_list_names_exactly_the_members_clone_moved(reuse):
    expected = reuse.pair.expected
    assert expected["clamped"]
    listed = sorted((queue, email.lower(), ring, rings) for queue, email, ring, rings in re.findall(
        r"(.+?): (.+?) ring (\d+) -> (\d+)(?:, |$)", note(reuse.first.stderr, NOTE_CLAMPED)))
    assert listed == sorted((queue, email, str(ring), str(rings))  # by email: display names repeat
                            for queue, email, ring, rings in expected["clamped"])


def test_second_run_writes_nothing(reuse):
    assert reuse.second.returncode == 0, reuse.second.stderr
    assert_sane(reuse.second)
    assert reuse.second_writes == []
    assert "Clone finished: 0 writes" in reuse.second.stderr
    assert people(reuse.pair.target) == reuse.after


def test_bulk_limits_and_reads_per_user_only_where_the_expansion_is_missing(reuse):
    pair = reuse.pair
    source, target = pair.source, pair.target
    (s0, s1), (t0, t1) = reuse.marks[source.name], reuse.marks[target.name]
    source_log, target_log = source.requests[s0:s1], target.requests[t0:t1]
    assert [(r.method, r.path, r.status) for r in source_log + target_log if r.status is None or r.status >= 400] == []
    added = additions(reuse.before["people"], reuse.after)
    with target.lock:
        queue_name = {qid: q["name"] for qid, q in target.objects["queues"].items()}
        email_of = {uid: u["email"].lower() for uid, u in target.objects["users"].items()}
    # members: ceil(new members / 100) POSTs per queue; skills and languages: ceil(n / 50) PATCHes per user
    posts, patches = {}, {}
    for r in target_log:
        if r.method == "POST" and MEMBERS_PATH.match(r.path):
            name = queue_name[MEMBERS_PATH.match(r.path).group(1)]
            posts[name] = posts.get(name, 0) + 1
        if r.method == "PATCH" and USER_BULK_PATH.match(r.path):
            user, kind = USER_BULK_PATH.match(r.path).groups()
            key = (email_of[user], "skills" if kind == "routingskills" else "languages")
            patches[key] = patches.get(key, 0) + 1
    new_members = {queue: sum(1 for email in members if email not in reuse.before["people"]["members"].get(queue, {}))
                   for queue, members in reuse.after["members"].items()}
    assert posts == {queue: math.ceil(n / 100) for queue, n in new_members.items() if n}
    assert posts[BULK_QUEUE] == 2
    assert patches == {(email, key): math.ceil(n / 50) for key in ("skills", "languages")
                       for email, n in added[key].items()}
    assert patches[(pair.bulk_user_email, "skills")] == 2
    # the users list is read with the expansion; per user only where the platform left it out
    for org, log in ((source, source_log), (target, target_log)):
        assert any(r.path == "/api/v2/users" and "skills" in r.query.get("expand", "") for r in log)
        with org.lock:
            matched = {uid for uid, u in org.objects["users"].items() if u.get("email", "").lower()
                       in set(reuse.before["people"]["skills"]) & set(reuse.source_people["skills"])}
        missing = {uid for uid in matched if org.expand_misses(uid)}
        assert missing and matched - missing
        for kind in ("routingskills", "routinglanguages"):
            read = [USER_LIST_PATH.match(r.path).group(1) for r in log
                    if r.method == "GET" and USER_LIST_PATH.match(r.path)
                    and USER_LIST_PATH.match(r.path).group(2) == kind]
            assert sorted(read) == sorted(missing), (org.name, kind)


# --- "b": a configuration too, --on-conflict update, then rollback --------------------------------------------

@dataclass
class UpdateRun:
    pair: Pair
    folder: object
    source_people: dict
    before: dict
    rings: dict
    result: subprocess.CompletedProcess
    after: dict
    manifest: dict
    rolled: subprocess.CompletedProcess
    restored: dict


@pytest.fixture(scope="module")
def updated(orgs, tmp_path_factory):
    pair = populate_pair(orgs, "b", config=True)
    folder = tmp_path_factory.mktemp("update")
    source_people, before = people(pair.source), full_snapshot(pair.target)
    rings = ring_counts(pair.source)
    result = clone(pair, folder, "--on-conflict", "update")
    after = full_snapshot(pair.target)
    manifest = json.loads((folder / "rollback.json").read_text())
    rolled = rollback(pair, folder)
    return UpdateRun(pair, folder, source_people, before, rings, result, after, manifest, rolled,
                     full_snapshot(pair.target))


def test_update_sets_the_sources_proficiency_and_keeps_the_rest(updated):
    result, expected = updated.result, updated.pair.expected
    assert result.returncode == 0, result.stderr
    assert_sane(result)
    assert "0 verify mismatches" in result.stderr
    want = expected_people(updated.source_people, updated.before["people"], updated.rings, "update")
    for key in ("skills", "languages"):
        assert updated.after["people"][key] == want[key], key
    for email, skill, theirs, _ in expected["differing_proficiency"]:
        assert updated.after["people"]["skills"][email][skill] == theirs
    for email, language, theirs, _ in expected["differing_language_proficiency"]:
        assert updated.after["people"]["languages"][email][language] == theirs
    changes = [e for e in updated.manifest["entries"] if e.get("change") in ("skills", "languages")]
    assert changes and all(e["state"] == "changed" for e in changes)
    recorded = {(e["name"].lower(), e["change"]): e for e in changes}
    for email, skill, _, theirs in expected["differing_proficiency"]:
        entry = recorded[(email, "skills")]
        skill_id = next(sid for sid, s in updated.before["objects"]["skills"].items() if s["name"] == skill)
        assert entry["before"][skill_id] == theirs and skill_id not in entry["added"]
    fields = {e["name"] for e in updated.manifest["entries"] if e.get("change") == "fields"}
    assert set(expected["existing_queues"]) <= fields, "the settings PUT over each existing queue are recorded"


def test_update_keeps_the_source_rings_on_a_queue_it_gives_the_source_rings(updated):
    want = expected_people(updated.source_people, updated.before["people"], updated.rings, "update")
    assert updated.after["people"]["members"] == want["members"]


def test_update_then_rollback_returns_the_target_to_its_earlier_state(updated):
    assert updated.result.returncode == 0, updated.result.stderr
    assert updated.after != updated.before
    rolled = updated.rolled
    assert_sane(rolled)
    assert left_alone(rolled.stderr) == []
    assert rolled.returncode == 0, rolled.stderr
    assert snapshot_differences(updated.before, updated.restored) == []
    assert json.loads((updated.folder / "rollback.json").read_text())["entries"] == []


# --- "c": --on-conflict update, then someone else changes things, then rollback ---------------------------------

@dataclass
class Meddled:
    pair: Pair
    folder: object
    before: dict
    after_clone: dict
    result: subprocess.CompletedProcess
    manifest: dict
    touched: dict  # what someone else changed: {"skill": (user id, email), "queue": (id, name), "fields": (id, name)}
    rolled: subprocess.CompletedProcess
    kept: dict  # the manifest after the rollback
    after_rollback: dict
    forced: subprocess.CompletedProcess
    after_force: dict


@pytest.fixture(scope="module")
def meddled(orgs, tmp_path_factory):
    pair = populate_pair(orgs, "c")
    folder = tmp_path_factory.mktemp("meddled")
    target = pair.target
    before = full_snapshot(target)
    result = clone(pair, folder, "--on-conflict", "update")
    after_clone = full_snapshot(target)
    manifest = json.loads((folder / "rollback.json").read_text())
    api = client_for(target, "target")
    rng = random.Random(SEED)
    # someone else: a skill clone added to a user gets another proficiency ...
    entry = rng.choice(sorted((e for e in manifest["entries"] if e.get("change") == "skills" and e["added"]),
                              key=lambda e: e["targetId"]))
    skill_id = entry["added"][0]
    other = 5.0 if entry["after"][skill_id] != 5.0 else 1.0
    api.request("PATCH", f"/api/v2/users/{entry['targetId']}/routingskills/bulk",
                body=[{"id": skill_id, "proficiency": other}])
    # ... a member joins a queue clone created ...
    created = rng.choice(sorted((e for e in manifest["entries"] if not e.get("change") and e["kind"] == "queues"),
                                key=lambda e: e["targetId"]))
    with target.lock:
        outsider = next(uid for uid, u in sorted(target.objects["users"].items()) if ".local." in u["email"]
                        and uid not in target.direct_members.get(created["targetId"], {}))
    api.post(f"/api/v2/routing/queues/{created['targetId']}/members", [{"id": outsider}])
    # ... and a queue clone updated gets another description
    changed = next(e for e in manifest["entries"] if e.get("change") == "fields" and e["kind"] == "queues")
    current = api.get(f"/api/v2/routing/queues/{changed['targetId']}")
    body = {name: value for name, value in current.items() if name not in (
        "id", "selfUri", "dateCreated", "dateModified", "memberCount", "userMemberCount", "joinedMemberCount")}
    body["description"] = "changed by a person after the clone"
    api.request("PUT", f"/api/v2/routing/queues/{changed['targetId']}", body=body)
    touched = {"skill": (entry["targetId"], entry["name"]), "queue": (created["targetId"], created["name"]),
               "fields": (changed["targetId"], changed["name"])}
    rolled = rollback(pair, folder)
    kept = json.loads((folder / "rollback.json").read_text())
    after_rollback = full_snapshot(target)
    forced = rollback(pair, folder, "--force")
    return Meddled(pair, folder, before, after_clone, result, manifest, touched, rolled, kept, after_rollback,
                   forced, full_snapshot(target))


def test_changes_by_someone_else_to_people_are_left_alone_and_the_rest_undone(meddled):
    assert meddled.result.returncode == 0, meddled.result.stderr
    rolled, touched, before, now = meddled.rolled, meddled.touched, meddled.before, meddled.after_rollback
    assert rolled.returncode == 3, rolled.stderr
    assert_sane(rolled)
    alone = {(kind, target_id): why for kind, _, target_id, why in left_alone(rolled.stderr)}
    assert "proficiency" in alone[("userSkills", touched["skill"][0])]
    assert "clone did not add" in alone[("queues", touched["queue"][0])]
    assert "changed after the clone" in alone[("queues", touched["fields"][0])]
    kept = {(e["kind"], e["targetId"], e.get("change")) for e in meddled.kept["entries"]}
    assert {("userSkills", touched["skill"][0], "skills"), ("queues", touched["queue"][0], None),
            ("queueMembers", touched["queue"][0], "members"), ("queues", touched["fields"][0], "fields")} <= kept, \
        "the entries of what was left alone are kept"
    # the rest of the people is undone: every other user's skills and languages, every other queue's members
    user_email = touched["skill"][1].lower()
    for key in ("skills", "languages"):
        for email, values in before["people"][key].items():
            if not (key == "skills" and email == user_email):
                assert now["people"][key][email] == values, (key, email)
    created_queue = touched["queue"][1]
    for queue, members in before["people"]["members"].items():
        assert now["people"]["members"][queue] == members, queue
    assert set(now["people"]["members"]) == set(before["people"]["members"]) | {created_queue}, \
        "every queue clone created is gone but the one someone else added a member to"


def test_a_field_someone_else_changed_is_left_alone_and_the_other_updates_undone(meddled):
    rolled, touched, before, now = meddled.rolled, meddled.touched, meddled.before, meddled.after_rollback
    alone = {(kind, target_id): why for kind, _, target_id, why in left_alone(rolled.stderr)}
    assert set(alone) == {("userSkills", touched["skill"][0]), ("queues", touched["queue"][0]),
                          ("queues", touched["fields"][0])}, rolled.stderr
    assert now["objects"]["queues"][touched["fields"][0]]["description"] == "changed by a person after the clone"
    for queue_id, queue in before["objects"]["queues"].items():
        if queue_id != touched["fields"][0]:
            assert now["objects"]["queues"][queue_id] == queue, queue["name"]


def test_rollback_force_undoes_what_was_left_alone_too(meddled):
    forced = meddled.forced
    assert forced.returncode == 0, forced.stderr
    assert_sane(forced)
    assert left_alone(forced.stderr) == []
    assert snapshot_differences(meddled.before, meddled.after_force) == []
    assert json.loads((meddled.folder / "rollback.json").read_text())["entries"] == []


# --- "k": killed during apply, then run again --------------------------------------------------------------------

@dataclass
class Killed:
    pair: Pair
    folder: object
    before: dict
    kills: list
    final: subprocess.CompletedProcess
    manifest: dict
    after: dict


def iter_until(stream, marker):
    for line in stream:
        yield line
        if marker in line:
            return


@pytest.fixture(scope="module")
def killed(orgs, tmp_path_factory):
    """SIGKILL of the real process at seeded moments during apply (level 2: queues created, users' skills and
    languages PATCHed; level 3: members added and PATCHed), each run finding what the previous one left."""
    pair = populate_pair(orgs, "k")
    folder = tmp_path_factory.mktemp("killed")
    target = pair.target
    before = full_snapshot(target)
    rng = random.Random(SEED)
    kills = []
    target.latency = 0.01  # requests of 10 ms stretch apply, so that each kill lands inside it
    try:
        for marker, delay in (("Applying level 2", rng.uniform(0.05, 0.3)), ("Applying level", rng.uniform(0.05, 0.3))):
            proc = start_cli(["clone", "--yes", *FAST, "--workers", "4"], env=pair.env, cwd=folder)
            if any(marker in line for line in iter_until(proc.stdout, marker)):
                time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills.append((marker, round(delay, 3)))
            proc.stdout.read()
            proc.wait()
    finally:
        target.latency = 0.0
    final = clone(pair, folder)
    manifest = json.loads((folder / "rollback.json").read_text())
    return Killed(pair, folder, before, kills, final, manifest, full_snapshot(target))


def test_killed_and_run_again_ends_as_an_uninterrupted_clone_without_duplicates(killed, reuse):
    assert len(killed.kills) >= 2, killed.kills
    assert killed.final.returncode == 0, killed.final.stderr
    assert_sane(killed.final)
    target = killed.pair.target
    with target.lock:
        names = [q["name"] for q in target.objects["queues"].values()]
        assert len(names) == len(set(names)), "duplicate queues"
        for queue_id in target.objects["queues"]:
            ids = [m["id"] for m in target.queue_members(queue_id)]
            assert len(ids) == len(set(ids)), "a member listed twice"
    assert killed.after["people"] == reuse.after, "the same people as a clone never interrupted"
    assert killed.after["people"] == reuse.expected_after


def test_killed_runs_leave_a_complete_manifest(killed):
    before, after, manifest = killed.before, killed.after, killed.manifest
    created = [e for e in manifest["entries"] if not e.get("change")]
    assert all(e["state"] == "created" and e["targetId"] for e in created), created
    listed = [e["targetId"] for e in created]
    assert len(listed) == len(set(listed)), "each object listed once"
    new = {oid for kind, objects in after["objects"].items() for oid in objects if oid not in before["objects"][kind]}
    assert set(listed) == new, "every object the clone created is in the manifest, and nothing else"
    changes = {(e["kind"], e["targetId"]): e for e in manifest["entries"] if e.get("change")}
    assert len(changes) == len([e for e in manifest["entries"] if e.get("change")]), "one entry per change"
    # everything clone added is recorded as added (what rollback removes), and nothing it did not
    for queue_id, members in after["members"].items():
        added = set(members) - set(before["members"].get(queue_id, {}))
        recorded = set(changes[("queueMembers", queue_id)]["added"]) if added else set()
        assert added == recorded, queue_id
    for key, kind in (("skills", "userSkills"), ("languages", "userLanguages")):
        for user_id, values in after[key].items():
            added = set(values) - set(before[key].get(user_id, {}))
            recorded = set(changes[(kind, user_id)]["added"]) if added else set()
            assert added == recorded, (key, user_id)


def test_killed_runs_leave_every_change_entry_changed(killed):
    changes = [e for e in killed.manifest["entries"] if e.get("change")]
    assert changes
    assert [(e["kind"], e["name"], e["state"]) for e in changes if e["state"] != "changed"] == []


def test_rollback_after_the_killed_clone_returns_every_queue_and_user(killed):
    rolled = rollback(killed.pair, killed.folder)
    assert rolled.returncode == 0, rolled.stderr
    assert_sane(rolled)
    assert snapshot_differences(killed.before, full_snapshot(killed.pair.target)) == []
    assert json.loads((killed.folder / "rollback.json").read_text())["entries"] == []
