"""Regressions of a review of the people clone and the exact-undo rollback (one test per finding), through the
CLI against the fake over loopback, on small orgs (`populate_people`, a few users and queues).

1. audio an update replaces is kept by content: a second clone (after a rollback and a new recording) keeps,
   and its rollback restores, the new audio;
2. audio uploaded onto a TTS-only prompt resource is taken away by rollback (the resource is recreated with
   its texts: compare texts and audio, not ids);
3. an updated data table: schema read with expand=schema, never restored (a column cannot be dropped), the rows
   restored, and the table not "Left alone";
4. a field update whose PUT never landed, or a rollback stopped after its PUT, is found already undone;
5. members a clone added but stopped before their ring PATCHes (ring 1, joined) are removed by rollback;
6. a rollback stopped after it restored a prompt resource, run again, finds it undone;
7. --on-conflict update keeps the target queue's own bullseye memberGroups, and rollback returns the queue;
8. damaged change entries in the manifest are refused before anything is written."""

import copy
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest

from fake_genesys import FakeGenesys, make_wav, populate_config_org, populate_people
from support import org_env, run_cli
from test_people import FAST, ROLLBACK_FAST, full_snapshot, snapshot_differences

WRITES = ("POST", "PUT", "PATCH", "DELETE")
MANIFEST = "rollback.json"


class Orgs:
    def __init__(self, fake, tmp_path):
        self.fake = fake
        self.source, self.target = fake.orgs["src"], fake.orgs["tgt"]
        self.env = org_env(fake, source="src", target="tgt")
        os.makedirs(tmp_path / "run", exist_ok=True)
        self.dir = str(tmp_path / "run")

    def clone(self, *extra, cwd=None):
        return run_cli(["clone", "--yes", *FAST, *extra], env=self.env, cwd=cwd or self.dir)

    def rollback(self, *extra, cwd=None):
        return run_cli(["rollback", "--yes", *ROLLBACK_FAST, *extra], env=self.env, cwd=cwd or self.dir)

    def manifest(self, cwd=None):
        with open(os.path.join(cwd or self.dir, MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)

    def target_writes(self, since=0):
        return [(r.method, r.path) for r in self.target.requests[since:]
                if r.method in WRITES and r.path.startswith("/api/v2")]


@contextmanager
def started_orgs(path, users=4, queues=1, members=2, config=False):
    """A started fake, a source and a target populated like the reviewer's scripts (review10/base.py), the CLI
    run in path/run; stopped afterwards, and no server error on the way."""
    fake = FakeGenesys(("src", "tgt"), rate_limit=1_000_000, status_rate_limit=1_000_000, flow_job_seconds=0.05,
                       prompt_transcode_seconds=0.0)
    fake.start()
    try:
        source, target = fake.orgs["src"], fake.orgs["tgt"]
        if config:
            sizes = dict(seed=5, skills=4, wrapupcodes=3, schedules=2, schedulegroups=1, queues=3, flows=0, trunks=1,
                         languages=2, users=3, divisions=2)
            populate_config_org(source, **sizes)
            populate_config_org(target, **sizes, variant=1, only={
                "divisions": 1.0, "users": 1.0, "skills": 0.5, "wrapupcodes": 0.5, "schedules": 2,
                "schedulegroups": 1, "queues": 3, "trunkbasesettings": 1.0, "languages": 1.0})
        populate_people(source, target, seed=3, users=users, queues=queues, members_per_queue=members)
        yield Orgs(fake, path)
        assert fake.server_errors == [], fake.server_errors[0]
    finally:
        fake.stop()


@pytest.fixture
def make(tmp_path):
    """make(users, queues, members, config=False) -> Orgs (started_orgs, for one test)."""
    with ExitStack() as stack:
        yield lambda **sizes: stack.enter_context(started_orgs(tmp_path, **sizes))


def ok(result, code=0):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, result.stderr[-3000:]
    return result


def no_left_alone(result):
    assert "Left alone" not in result.stderr, result.stderr[-3000:]
    assert "0 left alone, 0 left in rollback.json" in result.stderr, result.stderr[-3000:]


def digest(data):
    return hashlib.sha256(data).hexdigest()


def audio_of(org, prompt_id, language="en-us"):
    with org.lock:
        return org.prompt_audio.get((prompt_id, language))


def resource_of(org, prompt_id, language="en-us"):
    with org.lock:
        return copy.deepcopy(org.prompt_resources[prompt_id][language])


PROMPT_CLONE = ("--kinds", "prompts", "--on-conflict", "update")


@dataclass
class PromptRun:
    """Two prompts the target had: "Welcome" (text and audio, both replaced by the clone) and "Greeting" (text
    only; the clone uploads the source's audio onto it).  Clone, rollback, a new recording on Welcome, clone
    again into the same manifest, rollback, then that rollback again from the manifest as it was before it
    (as if stopped before its manifest write)."""
    orgs: object
    welcome: str
    greeting: str
    audio: dict  # name -> bytes
    results: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)  # stage -> {prompt: (resource, audio)}
    manifests: dict = field(default_factory=dict)
    kept: list = field(default_factory=list)

    def capture(self, stage):
        self.states[stage] = {prompt: (resource_of(self.orgs.target, prompt), audio_of(self.orgs.target, prompt))
                              for prompt in (self.welcome, self.greeting)}


@pytest.fixture(scope="module")
def prompt_run(tmp_path_factory):
    with started_orgs(tmp_path_factory.mktemp("prompts")) as orgs:
        audio = {"source": make_wav(1), "first": make_wav(2), "recorded": make_wav(3), "greeting": make_wav(4)}
        source, target = orgs.source, orgs.target
        welcome = source.add_object("prompts", "Welcome", description="greeting")
        source.add_prompt_resource(welcome, "en-us", tts="Hello from source", audio=audio["source"])
        greeting = source.add_object("prompts", "Greeting", description="short")
        source.add_prompt_resource(greeting, "en-us", tts="Hi", audio=audio["greeting"])
        run = PromptRun(orgs, target.add_object("prompts", "Welcome", description="greeting"),
                        target.add_object("prompts", "Greeting", description="short"), audio)
        target.add_prompt_resource(run.welcome, "en-us", tts="Hello", audio=audio["first"])
        target.add_prompt_resource(run.greeting, "en-us", tts="Hi")

        run.results["clone 1"] = orgs.clone(*PROMPT_CLONE)
        run.capture("clone 1")
        run.manifests["clone 1"] = orgs.manifest()
        run.results["rollback 1"] = orgs.rollback()
        run.capture("rollback 1")
        target.add_prompt_resource(run.welcome, "en-us", tts="Hello", audio=audio["recorded"])  # an admin records
        run.results["clone 2"] = orgs.clone(*PROMPT_CLONE)
        run.capture("clone 2")
        run.kept = sorted(os.listdir(os.path.join(orgs.dir, MANIFEST + ".audio")))
        saved = open(os.path.join(orgs.dir, MANIFEST), "rb").read()
        run.results["rollback 2"] = orgs.rollback()
        run.capture("rollback 2")
        with open(os.path.join(orgs.dir, MANIFEST), "wb") as handle:  # as if stopped before its manifest write
            handle.write(saved)
        mark = len(target.requests)
        run.results["rollback 2 again"] = orgs.rollback()
        run.capture("rollback 2 again")
        run.manifests["end"] = orgs.manifest()
        run.rerun_writes = orgs.target_writes(mark)
        yield run


def texts(state):
    resource, audio = state
    return resource.get("ttsString"), resource.get("text"), audio


# --- 1 (t6) ------------------------------------------------------------------------------------------------------

def test_second_clone_after_rollback_keeps_and_restores_the_new_recording_not_the_first_clones(prompt_run):
    run, audio = prompt_run, prompt_run.audio
    for stage in ("clone 1", "rollback 1", "clone 2", "rollback 2"):
        ok(run.results[stage])
        if stage.startswith("rollback"):
            no_left_alone(run.results[stage])
    welcome = {stage: run.states[stage][run.welcome][1] for stage in run.states}
    assert welcome["clone 1"] == audio["source"] and welcome["rollback 1"] == audio["first"]
    assert welcome["clone 2"] == audio["source"]
    assert digest(welcome["rollback 2"]) == digest(audio["recorded"]), "rollback put back the first clone's audio"
    assert run.states["rollback 2"][run.welcome][0]["ttsString"] == "Hello"
    assert len([name for name in run.kept if name.startswith(run.welcome)]) == 2, run.kept  # one file per content


# --- 2 (t2) ------------------------------------------------------------------------------------------------------

def test_audio_uploaded_onto_a_tts_only_resource_is_removed_by_rollback(prompt_run):
    run = prompt_run
    [entry] = [e for e in run.manifests["clone 1"]["entries"] if e["targetId"] == run.greeting]
    assert entry["change"] == "resources" and entry["before"]["en-us"]["audio"] is None, entry
    assert texts(run.states["clone 1"][run.greeting]) == ("Hi", None, run.audio["greeting"])
    for stage in ("rollback 1", "rollback 2"):
        no_left_alone(ok(run.results[stage]))
        # recreated (a new id and status: compare texts and audio, not ids): its text, no audio
        assert texts(run.states[stage][run.greeting]) == ("Hi", None, None), stage
    assert list(run.orgs.target.prompt_resources[run.greeting]) == ["en-us"]


# --- 6 (t8) ------------------------------------------------------------------------------------------------------

def test_a_rollback_stopped_after_restoring_a_prompt_resource_finds_it_undone_when_run_again(prompt_run):
    run = prompt_run
    result = ok(run.results["rollback 2 again"])
    no_left_alone(result)
    assert "2 restored" in result.stderr, result.stderr[-2000:]
    assert run.manifests["end"]["entries"] == []
    assert texts(run.states["rollback 2 again"][run.welcome]) == ("Hello", None, run.audio["recorded"])
    assert texts(run.states["rollback 2 again"][run.greeting]) == ("Hi", None, None)


# --- 3 (t5) ------------------------------------------------------------------------------------------------------

def table_schema(*columns):
    properties = {"key": {"title": "key", "type": "string", "$id": "/properties/key", "displayOrder": 0}}
    for n, column in enumerate(columns, 1):
        properties[column] = {"title": column, "type": "string", "$id": f"/properties/{column}", "displayOrder": n}
    return {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": properties,
            "required": ["key"], "additionalProperties": False}


def test_updated_table_keeps_its_added_column_and_rollback_restores_the_rows(make):
    orgs = make()
    source_home, target_home = orgs.source.home_division(), orgs.target.home_division()
    source_table = orgs.source.add_object("datatables", "Routing Table", description="d",
                                          division={"id": source_home["id"]}, schema=table_schema("dest", "note"))
    orgs.source.set_table_rows(source_table, [{"key": "a", "dest": "x", "note": "n"}])
    table = orgs.target.add_object("datatables", "Routing Table", description="d",
                                   division={"id": target_home["id"]}, schema=table_schema("dest"))
    orgs.target.set_table_rows(table, [{"key": "a", "dest": "old"}])

    mark = len(orgs.target.requests)
    ok(orgs.clone("--kinds", "dataTables", "--on-conflict", "update"))
    reads = [r for r in orgs.target.requests[mark:] if r.method == "GET" and r.path.endswith("/datatables/" + table)]
    assert reads and all(r.query.get("expand") == "schema" for r in reads), [(r.path, r.query) for r in reads]
    assert "note" in orgs.target.objects["datatables"][table]["schema"]["properties"]
    assert orgs.target.table_rows[table]["a"]["dest"] == "x"
    fields = [e for e in orgs.manifest()["entries"] if e.get("change") == "fields"]
    assert all("schema" not in e["before"] and "schema" not in e["after"] and "schema" not in e["absent"]
               for e in fields), fields

    result = ok(orgs.rollback())
    no_left_alone(result)
    with orgs.target.lock:
        rows = copy.deepcopy(orgs.target.table_rows[table])
        held = orgs.target.objects["datatables"][table]
        assert set(held["schema"]["properties"]) == {"key", "dest", "note"}  # the column stays
        assert held["division"]["id"] == target_home["id"] and held["description"] == "d"
    assert list(rows) == ["a"] and rows["a"]["dest"] == "old" and rows["a"].get("note") in (None, ""), rows


# --- 4 (t3) ------------------------------------------------------------------------------------------------------

def test_a_field_update_never_landed_or_already_put_back_is_found_undone(make):
    """Two queues the target had lack the description the source sets (the update records it as absent):
    the PUT of one is refused, the other lands.  Rollback finds the first undone; run again from the manifest as
    it was (as if stopped after its PUTs, before its manifest write), it finds both undone and writes nothing."""
    orgs = make(users=6, queues=3, members=3)
    with orgs.target.lock:
        refused, landed = [q for q in orgs.target.objects["queues"].values() if q["name"].startswith("People ")][:2]
        for queue in (refused, landed):
            next(q for q in orgs.source.objects["queues"].values()
                 if q["name"] == queue["name"])["description"] = "from source"
            queue.pop("description", None)
    before = full_snapshot(orgs.target)

    orgs.target.inject_fault(status=400, method="PUT", path_prefix="/api/v2/routing/queues/" + refused["id"])
    ok(orgs.clone("--kinds", "queues", "--on-conflict", "update"), code=1)
    saved = open(os.path.join(orgs.dir, MANIFEST), "rb").read()
    entries = {e["targetId"]: e for e in orgs.manifest()["entries"] if e.get("change") == "fields"}
    assert entries[refused["id"]]["absent"] == entries[landed["id"]]["absent"] == ["description"], entries
    assert "description" not in orgs.target.objects["queues"][refused["id"]]
    assert orgs.target.objects["queues"][landed["id"]]["description"] == "from source"

    no_left_alone(ok(orgs.rollback()))
    assert snapshot_differences(before, full_snapshot(orgs.target)) == []

    with open(os.path.join(orgs.dir, MANIFEST), "wb") as handle:
        handle.write(saved)
    mark = len(orgs.target.requests)
    result = ok(orgs.rollback())
    no_left_alone(result)
    assert "3 restored" in result.stderr, result.stderr[-2000:]
    assert orgs.target_writes(mark) == []
    assert snapshot_differences(before, full_snapshot(orgs.target)) == []


# --- 5 (t10) -----------------------------------------------------------------------------------------------------

def test_members_added_by_a_clone_stopped_before_their_ring_patches_are_removed(make):
    orgs = make(users=10, queues=3, members=4)
    before = full_snapshot(orgs.target)
    orgs.target.inject_fault(status=400, method="PATCH", path_prefix="/api/v2/routing/queues/", times=1000)
    ok(orgs.clone("--kinds", "queueMembers", "--workers", "1"), code=1)
    with orgs.target.lock:
        orgs.target._faults.clear()
    entries = [e for e in orgs.manifest()["entries"] if e.get("change") == "members"]
    added = {(e["targetId"], user) for e in entries for user in e["added"]}
    posted = {"ringNumber": 1, "joined": True}  # as the members POST leaves a member
    as_posted = [(e["targetId"], user) for e in entries for user in e["added"]
                 if orgs.target.direct_members.get(e["targetId"], {}).get(user) == posted
                 and {**posted, **e["after"][user]} != posted]
    assert as_posted, "no member left as its POST left it, unlike what clone recorded: the setup missed the case"

    no_left_alone(ok(orgs.rollback()))
    assert all(user not in orgs.target.direct_members.get(queue, {}) for queue, user in added)
    assert snapshot_differences(before, full_snapshot(orgs.target)) == []


# --- 7 (t4) ------------------------------------------------------------------------------------------------------

def test_update_keeps_the_target_queues_own_member_groups_and_rollback_returns_the_queue(make):
    orgs = make(users=8, queues=3, members=3)
    target = orgs.target
    with target.lock:
        queue = next(q for q in target.objects["queues"].values() if q["name"].startswith("People "))
        users = [u["id"] for u in target.objects["users"].values()][:3]
    group = target.add_group("Target Team", users)
    with target.lock:
        rings = copy.deepcopy((queue.get("bullseye") or {}).get("rings")) or [
            {"expansionCriteria": [], "actions": {"skillsToRemove": []}}]
        named = target.groups[group]  # stored as the platform stores what a client writes
        rings[0] = dict(rings[0], memberGroups=[{"id": group, "name": named["name"], "type": "GROUP",
                                                 "selfUri": named["selfUri"]}])
        queue["bullseye"] = {"rings": rings}
        target._refresh_all_queue_counts()
    group_members = sorted(m["id"] for m in target.queue_members(queue["id"], "group"))
    assert group_members
    before = full_snapshot(target)

    ok(orgs.clone("--kinds", "queues,queueMembers", "--on-conflict", "update"))
    assert [e for e in orgs.manifest()["entries"] if e.get("targetId") == queue["id"] and e.get("change") == "fields"]
    rings_now = target.objects["queues"][queue["id"]]["bullseye"]["rings"]
    assert [g["id"] for ring in rings_now for g in ring.get("memberGroups") or []] == [group], rings_now
    assert sorted(m["id"] for m in target.queue_members(queue["id"], "group")) == group_members

    no_left_alone(ok(orgs.rollback()))
    assert sorted(m["id"] for m in target.queue_members(queue["id"], "group")) == group_members
    assert snapshot_differences(before, full_snapshot(target)) == []


# --- 8 (t7, t7b) -------------------------------------------------------------------------------------------------

def first(entries, kind, change, where=lambda e: True):
    return next(e for e in entries if e["kind"] == kind and e.get("change") == change and where(e))


# label -> (damage(entries, target org), what the error names)
DAMAGES = {
    "userSkills entry without before": (
        lambda es, t: first(es, "userSkills", "skills").pop("before"), "without its before"),
    "queues fields entry without absent": (
        lambda es, t: first(es, "queues", "fields").pop("absent"), "without its absent"),
    # t7b: the entry of members clone added to a queue the target had (not one clone created), targetId null
    "targetId null on members added to an existing queue": (
        lambda es, t: first(es, "queueMembers", "members", lambda e: e["added"] and e["targetId"] in t.objects["queues"]
                            and e["targetId"] not in [x["targetId"] for x in es if not x.get("change")])
        .__setitem__("targetId", None), "without a target id"),
    "queues wrapupcodes entry renamed to change 'members'": (
        lambda es, t: first(es, "queues", "wrapupcodes").__setitem__("change", "members"),
        "change 'members', which queues does not have"),
    "userSkills before proficiency a string": (
        lambda es, t: first(es, "userSkills", "skills")["before"].update(abc="high"),
        "skills values of the wrong shape"),
}


def test_damaged_change_entries_are_refused_before_anything_is_written(make, tmp_path):
    orgs = make(users=10, queues=3, members=4, config=True)
    ok(orgs.clone("--on-conflict", "update"))
    after_clone = full_snapshot(orgs.target)
    data = orgs.manifest()
    cases = {}
    for n, (label, (damage, _)) in enumerate(DAMAGES.items()):
        folder = tmp_path / f"case{n}"
        shutil.copytree(orgs.dir, folder)
        damaged = copy.deepcopy(data)
        damage(damaged["entries"], orgs.target)
        assert damaged != data, label
        (folder / MANIFEST).write_text(json.dumps(damaged))
        cases[label] = (folder, (folder / MANIFEST).read_bytes())

    mark = len(orgs.target.requests)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cases, pool.map(lambda folder: orgs.rollback(cwd=str(folder)),
                                           [folder for folder, _ in cases.values()])))
    assert orgs.target_writes(mark) == []
    assert snapshot_differences(after_clone, full_snapshot(orgs.target)) == []
    for label, result in results.items():
        folder, written = cases[label]
        assert "Traceback" not in result.stderr + result.stdout, (label, result.stderr)
        assert result.returncode == 2, (label, result.returncode, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "rollback.json is not a rollback manifest" in errors[0], (label, result.stderr)
        assert DAMAGES[label][1] in errors[0], (label, errors[0])
        assert "Rollback:" not in result.stderr, (label, result.stderr)
        assert (folder / MANIFEST).read_bytes() == written, label  # the manifest is left as it was
