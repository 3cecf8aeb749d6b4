"""End-to-end clone of flows and the later kinds (prompts, data tables, IVRs, emergency groups) against a
generated demo org (`populate_clone_demo`), through the CLI as an admin runs it (issue 9).

One source org is generated per module; every test clones into a target of its own, prepared like the demo's
target (the users, every data action but the missing one, DID pools for the even-indexed source IVRs)."""

import copy
import json
import math
import random
import re
import signal
import time
from dataclasses import dataclass

import pytest
import yaml

from fake_genesys import FakeGenesys, make_wav, parse_flow_yaml, populate_clone_demo, populate_config_org
from support import client_for, migrate, org_env, run_cli, start_cli

SEED = 3
FAST = ["--max-rps", "1000", "--max-status-rps", "1000", "--poll-initial", "0.05", "--poll-max", "0.3"]
ROLLBACK_FAST = FAST[:4]
WRITES = ("POST", "PUT", "DELETE", "PATCH")
# One target per test; "conflict" is the demo's own target (populate_clone_demo(..., conflicting_number=True)).
TARGETS = ("conflict", "full", "rollback", "prefix", "plan", "export", "killed", "deps", "divisions", "update")
COPIED_KINDS = ("divisions", "skills", "languages", "wrapupcodes", "schedules", "schedulegroups", "queues", "flows",
                "trunkbasesettings", "prompts", "datatables", "ivrs", "emergencygroups")
# parse_flow_yaml's reference kinds -> migrate.py's kind keys (flow_name_references)
PARSE_KINDS = {"queue": "queues", "skill": "skills", "language": "languages", "schedule group": "scheduleGroups",
               "emergency group": "emergencyGroups", "wrap-up code": "wrapupCodes", "flow": "flows",
               "common module": "flows", "data table": "dataTables", "data action": "dataActions",
               "prompt": "prompts"}
IVR_FLOW_FIELDS = ("openHoursFlow", "closedHoursFlow", "holidayHoursFlow")


@dataclass
class Demo:
    fake: FakeGenesys
    source: object
    expected: dict

    def target(self, name):
        return self.fake.orgs[name]

    def env(self, target):
        return org_env(self.fake, source="source", target=target)


def prepare_target(source, target, expected, seed=SEED):
    """What populate_clone_demo gives its target, for a further target: the users (same emails), every source
    data action but the missing one, a DID pool for every source IVR of even plan index."""
    populate_config_org(target, seed=seed, **expected["counts"], only=["users"])
    for category, name in expected["data_actions"]:
        if (category, name) != tuple(expected["missing_data_action"]):
            target.add_data_action(category, name)
    refs = expected["refs"]
    for index, pool_id in enumerate(refs["didpools"]):
        if index % 2 == 0:
            pool = source.objects["didpools"][pool_id]
            target.add_did_pool(pool["startPhoneNumber"], pool["endPhoneNumber"])


def target_shape(org):
    """What a prepared target holds, comparable between orgs."""
    with org.lock:
        return ({u["email"] for u in org.objects["users"].values()},
                {(a["category"], a["name"]) for a in org.objects["dataactions"].values()},
                {(p["startPhoneNumber"], p["endPhoneNumber"]) for p in org.objects["didpools"].values()},
                {d["name"] for d in org.objects["divisions"].values()})


@pytest.fixture(scope="module")
def demo():
    fake = FakeGenesys(("source",) + TARGETS, rate_limit=1_000_000, status_rate_limit=1_000_000,
                       flow_job_seconds=0.05, prompt_transcode_seconds=0.05, export_job_seconds=0.2)
    fake.start()
    try:
        source = fake.orgs["source"]
        expected = populate_clone_demo(source, fake.orgs["conflict"], seed=SEED, conflicting_number=True)
        for name in TARGETS[1:]:
            prepare_target(source, fake.orgs[name], expected)
        assert target_shape(fake.orgs["full"]) == target_shape(fake.orgs["conflict"]), \
            "a prepared target holds what populate_clone_demo gives its own target"
        assert expected["flows_needing_missing_action"] and expected["unpublished_flows"]
        assert expected["numbers_in_target_pools"] and expected["numbers_awaiting_porting"]
        assert expected["conflicting_numbers"] and expected["enabled_emergency_groups"]
        yield Demo(fake, source, expected)
        assert fake.server_errors == [], fake.server_errors[0]
    finally:
        fake.stop()


# --- helpers -------------------------------------------------------------------------------------------------

def clone(demo, target, cwd, *extra):
    return run_cli(["clone", "--yes", *FAST, *extra], env=demo.env(target), cwd=cwd)


def rollback(demo, target, cwd):
    return run_cli(["rollback", "--yes", *ROLLBACK_FAST], env=demo.env(target), cwd=cwd)


def writes_to(org, since=0):
    return [r for r in org.requests[since:] if r.method in WRITES and r.path.startswith("/api/v2")]


def uploads_to(fake, org, since=0):
    """PUTs of flow YAML or prompt audio to an org's pre-signed upload URLs."""
    return [r for r in fake.download_log[since:] if r.method == "PUT" and org.org_id in r.path]


def assert_sane(result, verified=True):
    """No traceback (every answer was understood); a clone that ran to its end verified without a mismatch."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    if verified:
        assert "Verify:" not in result.stderr and "0 verify mismatches" in result.stderr, result.stderr


def twin(org, kind, obj):
    """The org's one object of that kind named like obj (flows: and of its type)."""
    name = obj["name"]
    with org.lock:
        found = [o for o in org.objects[kind].values()
                 if o.get("name") == name and (kind != "flows" or o.get("type") == obj.get("type"))]
    assert len(found) == 1, f"{kind} {name!r}: {len(found)} in {org.name}"
    return found[0]


def names_of(org, kind):
    with org.lock:
        return [(o.get("name"), o.get("type")) for o in org.objects[kind].values()]


def flow_by_id(org, flow_id):
    with org.lock:
        return org.objects["flows"][flow_id]


def flow_named(org, name):
    with org.lock:
        return next(f for f in org.objects["flows"].values() if f["name"] == name)


def snapshot(org):
    """Everything of a target a clone may touch."""
    with org.lock:
        return copy.deepcopy({"objects": org.objects, "wrapups": org._queue_wrapups,
                              "resources": org.prompt_resources, "audio": org.prompt_audio,
                              "rows": org.table_rows, "content": org.flow_content, "deps": org.flow_deps})


def left_out(stderr):
    """{label: reasons} of the summary's "Left out:" lines."""
    return dict(re.findall(r"Left out: (.+?) (uses .+|refers to .+|its division .+|names .+); it is not copied\.",
                           stderr))


def published_flows(org):
    with org.lock:
        return [f for f in org.objects["flows"].values() if f.get("publishedVersion")]


def flow_closure(source, seeds):
    """Names of the flows in seeds and of every flow naming (targetFlow, commonModule) one of them, transitively."""
    with source.lock:
        ids = {f["id"] for f in source.objects["flows"].values() if f["name"] in seeds}
        grew = True
        while grew:
            grew = False
            for fid, deps in source.flow_deps.items():
                if fid not in ids and any(d["kind"] == "flows" and d["id"] in ids for d in deps):
                    ids.add(fid)
                    grew = True
        return {source.objects["flows"][fid]["name"] for fid in ids if fid in source.objects["flows"]}


# --- 1, 2: a full clone, then the same again ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def full(demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    target = demo.target("full")
    before = snapshot(target)
    result = clone(demo, "full", folder, "--create-divisions")
    return folder, result, before


def test_full_clone_copies_every_kind_with_content_and_references(demo, full):
    folder, result, before = full
    source, target, expected = demo.source, demo.target("full"), demo.expected
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    skipped_flows = set(expected["flows_needing_missing_action"])

    # every source object of every copied kind exists once in the target; only the left-out flows and the
    # managed trunk are missing
    for kind in COPIED_KINDS:
        present = names_of(target, kind)
        for obj in source.objects[kind].values():
            key = (obj["name"], obj.get("type"))
            count = sum(1 for name, ftype in present
                        if name == obj["name"] and (kind != "flows" or ftype == obj["type"]))
            if obj.get("managed") or (kind == "flows" and obj["name"] in skipped_flows):
                assert count == 0, f"{kind} {key} must not be copied"
            else:
                assert count == 1, f"{kind} {key}: {count} in the target"
    category, action = expected["missing_data_action"]
    assert f"{category} / {action}" in result.stderr
    reasons = left_out(result.stderr)
    assert {label for label in reasons if label.startswith("flow ")} == {f"flow {name!r}" for name in skipped_flows}
    assert all(label.startswith("flow ") for label in reasons), reasons

    # the mapping names every copied object's twin
    mapping = json.loads((folder / "mapping.json").read_text())
    for key, kind in (("prompts", "prompts"), ("dataTables", "datatables"), ("ivrs", "ivrs"),
                      ("emergencyGroups", "emergencygroups"), ("flows", "flows"), ("queues", "queues")):
        for obj in source.objects[kind].values():
            if not (kind == "flows" and obj["name"] in skipped_flows):
                assert mapping[key][obj["id"]] == twin(target, kind, obj)["id"], (key, obj["name"])

    # flows: published ones byte for byte (nothing renamed), the unpublished one a shell
    unpublished = set(expected["unpublished_flows"])
    for flow in source.objects["flows"].values():
        if flow["name"] in skipped_flows:
            continue
        copied = twin(target, "flows", flow)
        if flow["name"] in unpublished:
            assert not flow.get("publishedVersion") and not copied.get("publishedVersion")
            assert copied["id"] not in target.flow_content
            continue
        assert copied.get("publishedVersion"), f"flow {flow['name']!r} not published"
        source_text, target_text = source._flow_document(flow), target.flow_content[copied["id"]]
        assert yaml.safe_load(target_text) == yaml.safe_load(source_text)
        assert target_text == source_text
    for name in unpublished:
        assert re.search(r"not published in the source, created as unpublished shells: [^\n]*" + re.escape(name),
                         result.stderr)
        assert not re.search(r"Verify: flow " + re.escape(repr(name)), result.stderr)

    # what each published target flow consumes is the target's own objects, the same names as the source's
    source_ids = {oid for objects in source.objects.values() for oid in objects}
    for flow in published_flows(target):
        deps = target.flow_dependencies(flow["id"])
        assert deps, flow["name"]
        for dep in deps:
            kind, obj = target.find_object(dep["id"])
            assert obj is not None and not dep["deleted"] and dep["id"] not in source_ids, (flow["name"], dep)
        original = twin(source, "flows", flow)
        assert {(d["type"], d["name"]) for d in deps} == \
            {(d["type"], d["name"]) for d in source.flow_dependencies(original["id"])}

    # prompts: every language, TTS and text, audio byte for byte
    for prompt in source.objects["prompts"].values():
        copied = twin(target, "prompts", prompt)
        wanted, present = source.prompt_resources[prompt["id"]], target.prompt_resources.get(copied["id"], {})
        assert set(present) == set(wanted), prompt["name"]
        for language, resource in wanted.items():
            for field in ("ttsString", "text"):
                assert present[language].get(field) == resource.get(field), (prompt["name"], language, field)
            audio = source.prompt_audio.get((prompt["id"], language))
            assert target.prompt_audio.get((copied["id"], language)) == audio, (prompt["name"], language)
            if audio is not None:
                assert present[language]["uploadStatus"] == "transcoded"
    assert any(len(r) > 1 for r in source.prompt_resources.values()), "the demo has a prompt of two languages"

    # data tables: schema and every row
    for table in source.objects["datatables"].values():
        copied = twin(target, "datatables", table)
        assert copied["schema"]["properties"] == table["schema"]["properties"]
        assert copied["schema"]["required"] == table["schema"]["required"]
        assert target.table_rows[copied["id"]] == source.table_rows[table["id"]], table["name"]
        assert len(source.table_rows[table["id"]]) > 20

    # IVRs: the numbers inside the target's pools; the others awaiting porting; flows and schedule group mapped
    in_pools = set(expected["numbers_in_target_pools"])
    for ivr in source.objects["ivrs"].values():
        copied = twin(target, "ivrs", ivr)
        assert copied["dnis"] == [n for n in ivr["dnis"] if n in in_pools], ivr["name"]
        for field in IVR_FLOW_FIELDS:
            if ivr.get(field):
                assert copied[field]["id"] == twin(target, "flows", flow_by_id(source, ivr[field]["id"]))["id"]
            else:
                assert not copied.get(field)
        group = source.objects["schedulegroups"][ivr["scheduleGroup"]["id"]]
        assert copied["scheduleGroup"]["id"] == twin(target, "schedulegroups", group)["id"]
        for number in ivr["dnis"]:
            if number not in in_pools:
                assert re.search(r"IVR numbers awaiting porting[^\n]*" + re.escape(f"{number} ({ivr['name']})"),
                                 result.stderr), number
    assert set(expected["numbers_awaiting_porting"]).isdisjoint(
        n for ivr in target.objects["ivrs"].values() for n in ivr.get("dnis", []))

    # emergency groups: disabled, mapped; the enabled one listed for cutover
    for group in source.objects["emergencygroups"].values():
        copied = twin(target, "emergencygroups", group)
        assert copied["enabled"] is False
        assert [(e["emergencyFlow"]["id"], [i["id"] for i in e["ivrs"]]) for e in copied["emergencyCallFlows"]] == \
            [(twin(target, "flows", flow_by_id(source, e["emergencyFlow"]["id"]))["id"],
              [twin(target, "ivrs", source.objects["ivrs"][i["id"]])["id"] for i in e["ivrs"]])
             for e in group["emergencyCallFlows"]]
    for name in expected["enabled_emergency_groups"]:
        assert re.search(r"enable by hand at cutover: [^\n]*" + re.escape(name), result.stderr)

    # queues' prompts are the target's copies
    seen = 0
    for queue in source.objects["queues"].values():
        copied = twin(target, "queues", queue)
        for field in ("whisperPrompt", "onHoldPrompt"):
            if queue.get(field):
                seen += 1
                prompt = source.objects["prompts"][queue[field]["id"]]
                assert copied[field]["id"] == twin(target, "prompts", prompt)["id"], (queue["name"], field)
            else:
                assert not copied.get(field)
    assert seen, "the demo has queues with whisper or on-hold prompts"

    # the manifest lists exactly what was created
    manifest = json.loads((folder / "rollback.json").read_text())
    new = {oid for kind, objects in target.objects.items() for oid in objects if oid not in before["objects"][kind]}
    assert {e["targetId"] for e in manifest["entries"] if not e.get("change")} == new
    assert all(e["state"] == "created" for e in manifest["entries"] if not e.get("change"))


def test_second_run_writes_nothing(demo, full):
    folder, first, _ = full
    target = demo.target("full")
    assert first.returncode == 3, first.stderr
    mark, uploads = len(target.requests), len(demo.fake.download_log)
    again = clone(demo, "full", folder, "--create-divisions")
    assert again.returncode == 3, again.stderr
    assert_sane(again)
    assert writes_to(target, mark) == []
    assert uploads_to(demo.fake, target, uploads) == []
    assert "Clone finished: 0 writes" in again.stderr


# --- 3: rollback ------------------------------------------------------------------------------------------------

def test_rollback_returns_the_target_to_its_state_before_the_clone(demo, tmp_path):
    source, target = demo.source, demo.target("rollback")
    # the target already holds some same-named objects (reused, never touched): a prompt with a resource, a table
    # with rows, a queue with a wrap-up code of its own
    api = client_for(target, "target")
    prompt = next(p for p in source.objects["prompts"].values())
    pid = api.post("/api/v2/architect/prompts", {"name": prompt["name"], "description": "the target's own"})["id"]
    target.add_prompt_resource(pid, "en-us", tts="The target's own words.", audio=make_wav("rollback"))
    table = next(iter(source.objects["datatables"].values()))
    tid = api.post("/api/v2/flows/datatables", {"name": table["name"], "schema": table["schema"]})["id"]
    target.set_table_rows(tid, list(source.table_rows[table["id"]].values())[:3])
    code = api.post("/api/v2/routing/wrapupcodes", {"name": "The target's own code"})["id"]
    queue = next(q for q in source.objects["queues"].values())
    qid = api.post("/api/v2/routing/queues", {"name": queue["name"]})["id"]
    api.post(f"/api/v2/routing/queues/{qid}/wrapupcodes", [{"id": code}])
    before = snapshot(target)

    result = clone(demo, "rollback", tmp_path, "--create-divisions")
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    assert snapshot(target) != before
    assert target.table_rows[tid] == before["rows"][tid], "a reused table is never written"
    rolled = rollback(demo, "rollback", tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert_sane(rolled, verified=False)
    after = snapshot(target)
    for part in before:
        assert after[part] == before[part], part
    assert json.loads((tmp_path / "rollback.json").read_text())["entries"] == []


# --- 4: --on-conflict prefix --------------------------------------------------------------------------------------

PREFIX = "SRC: "  # needs quoting in YAML; a prompt's copy gets it with every character but letters, digits, _ as _
PROMPT_PREFIX = "SRC__"


def most_named(source, dependency_type, exclude=()):
    """The name of the object of a Dependency type that the most published source flows name."""
    counts = {}
    with source.lock:
        for fid, deps in source.flow_deps.items():
            if source.objects["flows"][fid]["name"] in exclude:
                continue
            for d in deps:
                if d["type"] == dependency_type:
                    counts[d["name"]] = counts.get(d["name"], 0) + 1
    return max(sorted(counts), key=counts.get)


@pytest.fixture(scope="module")
def prefixed(demo, tmp_path_factory):
    """A target holding same-named objects of the kinds flows name, then `clone --on-conflict prefix`."""
    folder = tmp_path_factory.mktemp("prefix")
    source, target = demo.source, demo.target("prefix")
    skipped = set(demo.expected["flows_needing_missing_action"])
    taken = {"queues": most_named(source, "QUEUE", skipped), "skills": most_named(source, "ACDSKILL", skipped),
             "schedulegroups": most_named(source, "SCHEDULEGROUP", skipped),
             "datatables": most_named(source, "DATATABLE", skipped),
             "prompts": most_named(source, "USERPROMPT", skipped),
             # a flow other flows transfer to, and a common module
             ("flows", "INBOUNDCALL"): most_named(source, "INBOUNDCALLFLOW", skipped),
             ("flows", "COMMONMODULE"): most_named(source, "COMMONMODULEFLOW", skipped)}
    api = client_for(target, "target")
    own = {"skills": api.post("/api/v2/routing/skills", {"name": taken["skills"]})["id"],
           "queues": api.post("/api/v2/routing/queues", {"name": taken["queues"], "description": "the target's"})["id"],
           "schedulegroups": api.post("/api/v2/architect/schedulegroups", {
               "name": taken["schedulegroups"], "timeZone": "Europe/Berlin", "openSchedules": [],
               "closedSchedules": [], "holidaySchedules": []})["id"],
           "prompts": api.post("/api/v2/architect/prompts", {"name": taken["prompts"]})["id"]}
    table = twin(source, "datatables", {"name": taken["datatables"]})
    own["datatables"] = api.post("/api/v2/flows/datatables", {"name": table["name"], "schema": table["schema"]})["id"]
    for ftype, key in (("INBOUNDCALL", "inboundCall"), ("COMMONMODULE", "commonModule")):
        name = taken[("flows", ftype)]
        fid = api.post("/api/v2/flows", {"name": name, "type": ftype})["id"]
        target.set_flow_content(fid, f"{key}:\n  name: {json.dumps(name)}\n  description: the target's own\n")
        api.post("/api/v2/flows/actions/publish", params={"flow": fid})
        own[("flows", ftype)] = fid
    before = snapshot(target)
    result = clone(demo, "prefix", folder, "--create-divisions", "--on-conflict", "prefix", "--prefix", PREFIX)
    return result, taken, own, before


def test_prefix_creates_copies_and_flows_name_them(demo, prefixed):
    source, target, expected = demo.source, demo.target("prefix"), demo.expected
    result, taken, own, before = prefixed
    skipped = set(expected["flows_needing_missing_action"])
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    for key, oid in own.items():
        kind = key[0] if isinstance(key, tuple) else key
        assert target.objects[kind][oid] == before["objects"][kind][oid], "the target's own objects stay as they were"

    # prefixed copies of the taken names; a prompt's prefix holds only letters, digits and _
    for key, name in taken.items():
        kind = key[0] if isinstance(key, tuple) else key
        copy_name = (PROMPT_PREFIX if kind == "prompts" else PREFIX) + name
        found = [o for o in target.objects[kind].values()
                 if o["name"] == copy_name and (kind != "flows" or o["type"] == key[1])]
        assert len(found) == 1, (kind, copy_name)
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", PROMPT_PREFIX + taken["prompts"])
    parse_kind = {"queues": "queue", "skills": "skill", "schedulegroups": "schedule group",
                  "datatables": "data table", "prompts": "prompt"}
    renamed = {(parse_kind[key], name) for key, name in taken.items() if key in parse_kind}
    renamed |= {("common module", taken[("flows", "COMMONMODULE")])}
    transferred = taken[("flows", "INBOUNDCALL")]

    def expected_name(kind, name, flow_type):
        """A transferToFlow names a flow of the document's own type."""
        if (kind, name) not in renamed and not (kind == "flow" and name == transferred and flow_type == "INBOUNDCALL"):
            return name
        return (PROMPT_PREFIX if kind == "prompt" else PREFIX) + name

    # every published target flow copied from the source names the prefixed objects, and nothing else changed
    checked, copies = set(), 0
    for flow in source.objects["flows"].values():
        if flow["name"] in skipped or not flow.get("publishedVersion"):
            continue
        copies += 1
        copy_name = expected_name("common module" if flow["type"] == "COMMONMODULE" else "flow", flow["name"],
                                  flow["type"])
        copied = twin(target, "flows", {"name": copy_name, "type": flow["type"]})
        assert copied.get("publishedVersion"), copy_name
        source_text, target_text = source.flow_content[flow["id"]], target.flow_content[copied["id"]]
        parsed, original = parse_flow_yaml(target_text), parse_flow_yaml(source_text)
        assert parsed["name"] == copy_name and parsed["type"] == flow["type"]
        assert parsed["description"] == original["description"]
        if original["division"] is not None:  # the YAML names the division the target's flow is in
            division = target.objects["divisions"][copied["division"]["id"]]["name"]
            assert parsed["division"] == division
        wanted = [(kind, name if kind == "data action" else expected_name(kind, name, flow["type"]))
                  for kind, name in original["references"]]
        assert parsed["references"] == wanted, flow["name"]
        assert not {d["id"] for d in target.flow_dependencies(copied["id"])} & set(own.values()), \
            "no copied flow uses the target's own same-named objects"
        tool_view = {(kind, name) for kind, name, _ in migrate.flow_name_references(target_text) if kind != "divisions"}
        assert tool_view == {(PARSE_KINDS[kind], name[1] if kind == "data action" else name)
                             for kind, name in parsed["references"]}, flow["name"]
        # byte for byte but for the renamed names: the same lines, and each changed one holds a prefixed name
        source_lines, target_lines = source_text.splitlines(), target_text.splitlines()
        assert len(source_lines) == len(target_lines)
        for line, new in zip(source_lines, target_lines):
            if line != new:
                assert PREFIX in new or PROMPT_PREFIX in new, (line, new)
                assert len(line) - len(line.lstrip()) == len(new) - len(new.lstrip())
        if parsed["references"] != original["references"]:
            checked.add(flow["name"])
    assert "Names: it's all quoted" in checked and len(checked) >= 4, checked
    job_ids = {r.path.rsplit("/", 1)[1] for r in target.requests
               if r.method == "GET" and r.path.startswith("/api/v2/flows/jobs/")}
    jobs = [target.flow_import_job(job_id) for job_id in job_ids]
    assert len(jobs) == copies, "one import job per published flow"
    assert jobs and all(job.status == "Success" for job in jobs), [job.messages for job in jobs if job.status != "Success"]


def test_prefix_maps_the_home_division_to_the_targets_home(demo, prefixed):
    source, target = demo.source, demo.target("prefix")
    source_home, home = source.home_division(), target.home_division()
    assert PREFIX + source_home["name"] not in {d["name"] for d in target.objects["divisions"].values()}
    for queue in source.objects["queues"].values():
        if queue["division"]["id"] == source_home["id"]:
            name = queue["name"] if queue["name"] != prefixed[1]["queues"] else PREFIX + queue["name"]
            assert twin(target, "queues", {"name": name})["division"]["id"] == home["id"], name


# --- 5: plan ------------------------------------------------------------------------------------------------------

def test_plan_writes_nothing_and_names_what_is_left_out(demo, tmp_path):
    source, target, expected = demo.source, demo.target("plan"), demo.expected
    uploads = len(demo.fake.download_log)
    result = run_cli(["clone", "--plan", "--create-divisions", *FAST], env=demo.env("plan"), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert_sane(result, verified=False)
    assert writes_to(target) == [] and uploads_to(demo.fake, target, uploads) == []
    assert not (tmp_path / "rollback.json").exists()
    plan = json.loads((tmp_path / "plan.json").read_text())
    category, action = expected["missing_data_action"]
    missing_topic = [topic for topic in plan["notes"] if "Data actions the target lacks" in topic]
    assert missing_topic and plan["notes"][missing_topic[0]] == [f"{category} / {action}"]
    unpublished_topic = [topic for topic in plan["notes"] if "not published in the source" in topic]
    assert unpublished_topic and plan["notes"][unpublished_topic[0]] == expected["unpublished_flows"]
    unresolved = {entry["object"]: entry["reasons"] for entry in plan["unresolved"]}
    assert set(unresolved) == {f"flow {name!r}" for name in expected["flows_needing_missing_action"]}
    # a flow calling the action is left out naming it; one naming such a flow is left out naming that flow
    direct = [f for f in expected["flows_needing_missing_action"]
              if any(d["type"] == "DATAACTION" and d["name"] == action
                     for d in source.flow_dependencies(flow_named(source, f)["id"]))]
    assert direct
    for name in expected["flows_needing_missing_action"]:
        reasons = " ".join(unresolved[f"flow {name!r}"])
        if name in direct:
            assert f"{category} / {action}" in reasons, reasons
        else:
            assert any(f"flow {other!r}" in reasons for other in expected["flows_needing_missing_action"]), reasons
    actions = {(a["kind"], a["name"]): a["action"] for a in plan["actions"]}
    for name in expected["flows_needing_missing_action"]:
        assert actions[("flows", name)] == "skip"


# --- 6: export jobs: zips and a transient failure ------------------------------------------------------------------

def test_export_zips_and_a_transient_export_failure(demo, tmp_path):
    source, target, expected = demo.source, demo.target("export"), demo.expected
    mark, downloads = len(source.requests), len(demo.fake.download_log)
    source.flow_export_transient_failures = 2
    try:
        result = clone(demo, "export", tmp_path, "--create-divisions")
    finally:
        left = source.flow_export_transient_failures
        source.flow_export_transient_failures = 0
    assert left == 0
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    assert "exit code 107" in result.stderr and "Clone finished" in result.stderr
    exported = [f for f in source.objects["flows"].values()
                if f.get("publishedVersion") and f["name"] not in expected["flows_needing_missing_action"]]
    batches = math.ceil(len(exported) / migrate.FLOW_EXPORT_BATCH)
    posts = [r for r in source.requests[mark:] if r.method == "POST" and r.path == "/api/v2/flows/export/jobs"]
    assert len(posts) == batches + 2
    assert all(r.status == 200 for r in posts)
    served = [r for r in demo.fake.download_log[downloads:]
              if r.method == "GET" and r.path.startswith(f"/architect/exports/{source.org_id}/")]
    assert served and all(r.status == 200 for r in served)
    zips = [r for r in served if r.response_headers.get("content-type") == "application/zip"]
    assert zips, [r.response_headers.get("content-type") for r in served]
    with source.lock:
        jobs = [source.flow_export_job(r.path.rsplit("/", 1)[1][:-len(".yaml")]) for r in zips]
    assert all(job is not None and len(job.documents) > 1 for job in jobs)
    for flow in exported:
        copied = twin(target, "flows", flow)
        assert copied.get("publishedVersion") and target.flow_content[copied["id"]] == source._flow_document(flow)


# --- 7: killed and run again -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def killed(demo, tmp_path_factory):
    """SIGKILL of the real process at seeded random moments during apply (the first just after level 1 began,
    while its creates are in flight), then a clean run; what the target and the manifest hold then."""
    folder = tmp_path_factory.mktemp("killed")
    target = demo.target("killed")
    before = snapshot(target)
    rng = random.Random(SEED)
    kills = []
    target.latency = 0.01  # requests of 10 ms stretch apply, so that each kill lands inside it
    try:
        moments = (("Applying level 1", rng.uniform(0.0, 0.02)), ("Applying level", rng.uniform(0.1, 0.6)),
                   ("Applying level", rng.uniform(0.3, 1.2)))
        for marker, delay in moments:
            proc = start_cli(["clone", "--yes", "--create-divisions", *FAST, "--workers", "4"],
                             env=demo.env("killed"), cwd=folder)
            seen = any(marker in line for line in iter_until(proc.stdout, marker))
            if seen:
                time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills.append((marker, round(delay, 3)))
            proc.stdout.read()
            proc.wait()
    finally:
        target.latency = 0.0
    final = clone(demo, "killed", folder, "--create-divisions")
    manifest = json.loads((folder / "rollback.json").read_text())
    new = {oid for kind, objects in target.objects.items() for oid in objects if oid not in before["objects"][kind]}
    return folder, before, kills, final, manifest, new


def iter_until(stream, marker):
    for line in stream:
        yield line
        if marker in line:
            return


def test_killed_during_apply_and_run_again(demo, killed):
    source, target = demo.source, demo.target("killed")
    folder, before, kills, final, _, _ = killed
    assert len(kills) >= 2 and kills[0][0] == "Applying level 1", kills
    assert final.returncode == 3, final.stderr
    assert_sane(final)
    for kind in COPIED_KINDS:
        names = names_of(target, kind)
        assert len(names) == len(set(names)), f"duplicate {kind}"
    for prompt in source.objects["prompts"].values():
        copied = twin(target, "prompts", prompt)
        assert sorted(target.prompt_resources[copied["id"]]) == sorted(source.prompt_resources[prompt["id"]])
        for language in source.prompt_resources[prompt["id"]]:
            assert target.prompt_audio.get((copied["id"], language)) == \
                source.prompt_audio.get((prompt["id"], language))
    for table in source.objects["datatables"].values():
        copied = twin(target, "datatables", table)
        assert target.table_rows[copied["id"]] == source.table_rows[table["id"]]
    rolled = rollback(demo, "killed", folder)
    assert rolled.returncode == 0, rolled.stderr
    assert_sane(rolled, verified=False)
    after = snapshot(target)
    assert {kind: set(objs) for kind, objs in after["objects"].items()} == \
        {kind: set(objs) for kind, objs in before["objects"].items()}, "rollback leaves no object the clone created"
    assert after == before


def test_killed_runs_leave_a_complete_manifest(killed):
    _, _, _, final, manifest, new = killed
    assert final.returncode == 3, final.stderr
    listed = [entry["targetId"] for entry in manifest["entries"] if not entry.get("change")]
    assert [entry for entry in manifest["entries"] if entry["state"] not in ("created", "changed")] == []
    assert len(listed) == len(set(listed)), "each object listed once"
    assert set(listed) == new, "every object the clone created is in the manifest, and nothing else"


# --- 8: a number another target IVR holds ------------------------------------------------------------------------

def test_number_held_by_another_target_ivr_is_left_off(demo, tmp_path):
    source, target, expected = demo.source, demo.target("conflict"), demo.expected
    (number, holder), = expected["conflicting_numbers"].items()
    legacy = twin(target, "ivrs", {"name": holder})
    legacy_before = copy.deepcopy(legacy)
    result = clone(demo, "conflict", tmp_path, "--create-divisions")
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    owner = next(ivr for ivr in source.objects["ivrs"].values() if number in ivr["dnis"])
    copied = twin(target, "ivrs", owner)
    in_pools = set(expected["numbers_in_target_pools"])
    assert number not in copied["dnis"]
    assert copied["dnis"] == [n for n in owner["dnis"] if n in in_pools and n != number]
    assert target.objects["ivrs"][legacy["id"]] == legacy_before
    line = re.search(r"IVR numbers left off because another IVR of the target holds them: ([^\n]*)", result.stderr)
    assert line and number in line.group(1) and repr(holder) in line.group(1) and owner["name"] in line.group(1)
    for ivr in source.objects["ivrs"].values():
        if ivr is not owner:
            assert twin(target, "ivrs", ivr)["dnis"] == [n for n in ivr["dnis"] if n in in_pools]


# --- 9: dependencies decided before writing ----------------------------------------------------------------------

def pick_deleted_dependency(source, skipped):
    """A language a published flow names that another flow transfers to (or calls): (language, direct flows,
    every flow left out with them), the smallest such set."""
    best = None
    with source.lock:
        languages = list(source.objects["languages"].values())
    for language in languages:
        direct = {source.objects["flows"][fid]["name"] for fid, deps in source.flow_deps.items()
                  if any(d["kind"] == "languages" and d["id"] == language["id"] for d in deps)} - skipped
        closure = flow_closure(source, direct)
        if direct and closure - direct and (best is None or len(closure) < len(best[2])):
            best = (language, direct, closure)
    assert best, "the demo has a flow naming a language that another flow transfers to"
    return best


def test_dependencies_decided_before_writing(demo, tmp_path):
    source, target, expected = demo.source, demo.target("deps"), demo.expected
    skipped = set(expected["flows_needing_missing_action"])
    language, direct, closure = pick_deleted_dependency(source, skipped)
    removed = source.remove_object("languages", language["id"])
    try:
        for name in direct:
            deps = source.flow_dependencies(flow_named(source, name)["id"])
            assert any(d["name"] == language["name"] and d["deleted"] is True for d in deps)
        mark = len(target.requests)
        result = clone(demo, "deps", tmp_path, "--create-divisions")
    finally:
        with source.lock:
            source.objects["languages"][removed["id"]] = removed
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    reasons = left_out(result.stderr)
    flows_out = {label[len("flow "):] for label in reasons if label.startswith("flow ")}
    assert flows_out == {repr(name) for name in closure | skipped}
    for name in direct:
        reason = reasons[f"flow {name!r}"]
        assert f"{language['name']!r}" in reason and "deleted in the source" in reason, reason
    for name in closure - direct:
        reason = reasons[f"flow {name!r}"]
        assert re.search(r"uses flow .* which is left out: .*deleted in the source", reason), reason
        assert any(f"flow {other!r}" in reason for other in closure), reason
    # nothing left out was written: no shell, no content, no language
    present = {name for name, _ in names_of(target, "flows")}
    assert present.isdisjoint(closure | skipped)
    assert language["name"] not in {name for name, _ in names_of(target, "languages")}
    posted = [r for r in writes_to(target, mark) if r.path == "/api/v2/flows"]
    assert len(posted) == sum(1 for f in source.objects["flows"].values() if f["name"] not in closure | skipped)
    for flow in source.objects["flows"].values():
        if flow["name"] not in closure | skipped and flow.get("publishedVersion"):
            assert twin(target, "flows", flow).get("publishedVersion"), flow["name"]


def test_a_flow_in_a_division_the_target_lacks_is_left_out_naming_it(demo, tmp_path):
    source, target = demo.source, demo.target("divisions")
    home = source.home_division()
    target_divisions = {d["name"] for d in target.objects["divisions"].values()}
    elsewhere = [f for f in source.objects["flows"].values() if f["division"]["id"] != home["id"]]
    assert any(f.get("publishedVersion") for f in elsewhere)
    assert all(f["division"]["name"] not in target_divisions for f in elsewhere)
    result = clone(demo, "divisions", tmp_path)  # no --create-divisions
    assert result.returncode == 3, result.stderr
    assert_sane(result)
    reasons = left_out(result.stderr)
    for flow in elsewhere:
        division = source.objects["divisions"][flow["division"]["id"]]["name"]
        reason = reasons.get(f"flow {flow['name']!r}")
        assert reason is not None and f"division {division!r}" in reason, (flow["name"], reason)
    present = {name for name, _ in names_of(target, "flows")}
    assert present.isdisjoint(f["name"] for f in elsewhere), "nothing left out is written"
    assert {d["name"] for d in target.objects["divisions"].values()} == target_divisions
    for flow in published_flows(target):
        assert twin(source, "flows", flow)["division"]["id"] == home["id"]


# --- 10: --on-conflict update only adds or corrects --------------------------------------------------------------

def test_update_adds_and_corrects_tables_prompts_and_ivr_numbers(demo, tmp_path):
    source, target, expected = demo.source, demo.target("update"), demo.expected
    api = client_for(target, "target")
    # a table with fewer of the source's columns and one of its own, fewer rows, one differing row, a row of its own
    table = max(source.objects["datatables"].values(), key=lambda t: len(t["schema"]["properties"]))
    columns = [c for c in table["schema"]["properties"] if c != "key"]
    assert len(columns) >= 2, "the demo has a table of two columns or more"
    kept = columns[:1]
    narrow = copy.deepcopy(table["schema"])
    narrow["properties"] = {c: p for c, p in narrow["properties"].items() if c == "key" or c in kept}
    narrow["properties"]["target_note"] = {"title": "target_note", "type": "string", "$id": "/properties/target_note",
                                           "displayOrder": 99}
    narrow["required"] = [r for r in narrow["required"] if r in narrow["properties"]]
    tid = api.post("/api/v2/flows/datatables", {"name": table["name"], "schema": narrow})["id"]
    source_rows = list(source.table_rows[table["id"]].values())
    mine = [{"key": row["key"], **{c: row[c] for c in kept if c in row}} for row in source_rows[:5]]
    mine[0]["target_note"] = "the target's note"
    differing = mine[2]
    column = kept[0]
    differing[column] = {"string": "changed", "integer": -1, "number": -1.5, "boolean": None}.get(
        table["schema"]["properties"][column]["type"])
    if differing[column] is None:
        differing[column] = not source_rows[2][column]
    assert differing[column] != source_rows[2][column]
    extra = {"key": "the target's own row", **{c: source_rows[0][c] for c in kept}, "target_note": "mine"}
    target.set_table_rows(tid, mine + [extra])
    # a prompt with one of its two languages, with other TTS
    prompt = next(p for p in source.objects["prompts"].values() if len(source.prompt_resources[p["id"]]) >= 2)
    languages = source.prompt_resources[prompt["id"]]
    language = next((lang for lang, r in languages.items() if r.get("ttsString")), sorted(languages)[0])
    pid = api.post("/api/v2/architect/prompts", {"name": prompt["name"]})["id"]
    older = make_wav("older") if source.prompt_audio.get((prompt["id"], language)) else None
    target.add_prompt_resource(pid, language, tts="The target's older words.", audio=older)
    # an IVR with a number of its own, where the source's has numbers the target's pools hold
    in_pools = set(expected["numbers_in_target_pools"])
    ivr = next(i for i in source.objects["ivrs"].values() if set(i["dnis"]) & in_pools)
    target.add_did_pool("+14155550100", "+14155550199")
    iid = api.post("/api/v2/architect/ivrs", {"name": ivr["name"], "dnis": ["+14155550123"]})["id"]

    result = clone(demo, "update", tmp_path, "--create-divisions", "--on-conflict", "update")
    assert result.returncode == 3, result.stderr
    assert_sane(result)

    copied = target.objects["datatables"][tid]
    assert set(copied["schema"]["properties"]) == set(table["schema"]["properties"]) | {"target_note"}, \
        "the union of the columns"
    for name, prop in [*narrow["properties"].items(), *table["schema"]["properties"].items()]:
        assert copied["schema"]["properties"][name]["type"] == prop["type"]
    rows = target.table_rows[tid]
    assert {key: {c: v for c, v in rows[key].items() if c != "target_note"} for key in source.table_rows[table["id"]]} \
        == source.table_rows[table["id"]]
    assert rows[mine[0]["key"]]["target_note"] == "the target's note", "the target's own column keeps its value"
    assert rows[differing["key"]] == source.table_rows[table["id"]][differing["key"]], "the differing row corrected"
    assert rows[extra["key"]] == extra, "the target's own row kept"
    assert set(rows) == set(source.table_rows[table["id"]]) | {extra["key"]}

    resources = target.prompt_resources[pid]
    assert set(resources) == set(languages)
    for lang, resource in languages.items():
        for field in ("ttsString", "text"):
            assert resources[lang].get(field) == resource.get(field), (lang, field)
        assert target.prompt_audio.get((pid, lang)) == source.prompt_audio.get((prompt["id"], lang)), lang

    assert target.objects["ivrs"][iid]["dnis"] == ["+14155550123"] + [n for n in ivr["dnis"] if n in in_pools]
