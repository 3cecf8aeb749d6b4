"""Configuration clone and rollback against two fake orgs, through the CLI as an admin runs them."""

import copy
import json
import random
import signal
import time

import pytest

from fake_genesys import copy_some_names, generate_interactions, populate_config_org
from support import migrate, org_env, run_cli, start_cli, write_export

FAST = ["--max-rps", "1000", "--max-status-rps", "1000", "--poll-initial", "0.05", "--poll-max", "0.3"]
ROLLBACK_FAST = FAST[:4]
WRITES = ("POST", "PUT", "DELETE")
CREDENTIALS = migrate.TRUNK_CREDENTIAL_PROPERTIES
FAKE_KIND = {"skills": "skills", "languages": "languages", "wrapupCodes": "wrapupcodes", "schedules": "schedules",
             "scheduleGroups": "schedulegroups", "queues": "queues", "flows": "flows",
             "trunkBaseSettings": "trunkbasesettings", "divisions": "divisions", "users": "users"}


@pytest.fixture
def orgs(fake):
    """A realistic source org; a target that has the same divisions and users (users are never created)."""
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    refs = populate_config_org(source, seed=1, skills=20, wrapupcodes=12, schedules=6, schedulegroups=3, queues=15,
                               flows=8, users=10)
    populate_config_org(target, seed=1, skills=20, wrapupcodes=12, schedules=6, schedulegroups=3, queues=15,
                        flows=8, users=10, only=["divisions", "users"])
    return source, target, refs, org_env(fake, source="source", target="target")


def clone(env, cwd, *extra):
    return run_cli(["clone", "--yes", *FAST, *extra], env=env, cwd=cwd)


def writes_to(org, since=0):
    return [r for r in org.requests[since:] if r.method in WRITES and r.path.startswith("/api/v2")]


def by_name(org, kind):
    return {obj["name"]: obj for obj in org.objects[kind].values()}


def snapshot(org):
    with org.lock:
        return copy.deepcopy({kind: dict(objects) for kind, objects in org.objects.items()}), \
            copy.deepcopy(org._queue_wrapups) if hasattr(org, "_queue_wrapups") else None


def test_clone_copies_every_object_with_every_reference_mapped(orgs, tmp_path):
    source, target, refs, env = orgs
    result = clone(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Source org: source (id {source.org_id})" in result.stderr
    assert f"Target org: target (id {target.org_id})" in result.stderr
    mapping = json.loads((tmp_path / "mapping.json").read_text())
    id_map = {s: t for table in mapping.values() if isinstance(table, dict) for s, t in table.items()}

    for key, kind in FAKE_KIND.items():
        if key in ("divisions", "users"):
            continue
        targets = by_name(target, kind)
        for obj in source.objects[kind].values():
            if obj.get("managed"):
                assert obj["name"] not in targets, "a managed trunk is the platform's own and never copied"
                continue
            assert obj["name"] in targets, f"{kind} {obj['name']} missing in the target"
            assert mapping[key][obj["id"]] == targets[obj["name"]]["id"]

    target_ids = {oid for objects in target.objects.values() for oid in objects}
    for queue in source.objects["queues"].values():
        copied = by_name(target, "queues")[queue["name"]]
        for ring_s, ring_t in zip(queue.get("bullseye", {}).get("rings", []), copied.get("bullseye", {}).get("rings", [])):
            assert [id_map[s["id"]] for s in ring_s.get("actions", {}).get("skillsToRemove", [])] == \
                [t["id"] for t in ring_t.get("actions", {}).get("skillsToRemove", [])]
        for field in ("queueFlow", "emailInQueueFlow", "messageInQueueFlow"):
            if queue.get(field):
                assert copied[field]["id"] == id_map[queue[field]["id"]]
        assert copied["division"]["id"] == id_map[queue["division"]["id"]]
        source_codes = {c["id"] for c in source_wrapups(source, queue["id"])}
        assert {c["id"] for c in source_wrapups(target, copied["id"])} == {id_map[c] for c in source_codes}
    for group in source.objects["schedulegroups"].values():
        copied = by_name(target, "schedulegroups")[group["name"]]
        assert [s["id"] for s in copied["openSchedules"]] == [id_map[s["id"]] for s in group["openSchedules"]]
    for flow in target.objects["flows"].values():
        if not by_name(source, "flows")[flow["name"]].get("publishedVersion"):
            assert not flow.get("publishedVersion"), "a flow never published in the source stays a shell"
            assert f"not published in the source, created as unpublished shells: {flow['name']}" in result.stderr
            continue
        assert flow.get("publishedVersion"), f"flow {flow['name']} not published"
        assert target._flow_document(flow) == source._flow_document(by_name(source, "flows")[flow["name"]]), \
            "nothing is renamed, so every flow's YAML is the source's byte for byte"
    assert set(mapping["users"]) == set(source.objects["users"])
    manifest = json.loads((tmp_path / "rollback.json").read_text())
    created = [entry for entry in manifest["entries"] if not entry.get("change")]
    assert len(created) == sum(1 for kind in FAKE_KIND.values() if kind not in ("divisions", "users")
                               for obj in source.objects[kind].values() if not obj.get("managed"))
    assert all(entry["state"] == "created" and entry["targetId"] in target_ids for entry in created)


def source_wrapups(org, queue_id):
    with org.lock:
        return org.queue_wrapupcodes(queue_id)


def test_second_run_writes_nothing(orgs, tmp_path):
    source, target, _, env = orgs
    assert clone(env, tmp_path).returncode == 0
    mark = len(target.requests)
    again = clone(env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert writes_to(target, mark) == []
    assert "Clone finished: 0 writes" in again.stderr


def test_plan_writes_nothing_and_lists_unresolved_references(orgs, tmp_path):
    source, target, _, env = orgs
    with target.lock:
        home = next(oid for oid, division in target.objects["divisions"].items() if division.get("homeDivision"))
        for oid in [oid for oid in target.objects["divisions"] if oid != home]:
            del target.objects["divisions"][oid]  # objects of the other divisions cannot be placed now
    result = run_cli(["clone", "--plan", *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert writes_to(target) == []
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["unresolved"], "objects and flows of a division the target lacks must be reported"
    assert any("refers to division" in reason for entry in plan["unresolved"] for reason in entry["reasons"]
               if entry["object"].startswith("flow ")), plan["unresolved"]
    assert {action["action"] for action in plan["actions"]} >= {"create", "skip"}
    assert plan["order"][0] == ["divisions"] and plan["order"][-1] == ["flow contents"]
    assert not (tmp_path / "rollback.json").exists()


def test_conflict_policies(orgs, tmp_path):
    source, target, _, env = orgs
    existing = copy_some_names(source, target, count=2, seed=4)
    before, _ = snapshot(target)
    existing_names = {kind: {before[kind][oid]["name"] for oid in ids} for kind, ids in existing.items()}

    failed = clone(env, tmp_path, "--on-conflict", "fail", "--manifest-out", "fail.json")
    assert failed.returncode == 1 and "already exist in the target" in failed.stderr
    assert writes_to(target) == []

    reused = clone(env, tmp_path, "--on-conflict", "reuse")
    assert reused.returncode == 0, reused.stderr
    mapping = json.loads((tmp_path / "mapping.json").read_text())
    for kind, ids in existing.items():
        key = next(k for k, v in FAKE_KIND.items() if v == kind)
        assert set(ids) <= set(mapping[key].values())
        for oid in ids:
            assert target.objects[kind][oid] == before[kind][oid], "reuse never overwrites"

    prefixed = clone(env, tmp_path, "--on-conflict", "prefix", "--mapping-out", "prefixed.json",
                     "--manifest-out", "prefixed-rollback.json")
    assert prefixed.returncode == 0, prefixed.stderr
    for kind, names in existing_names.items():
        for name in names:
            assert "SRC_" + name in by_name(target, kind)

    mark = len(target.requests)
    updated = clone(env, tmp_path, "--on-conflict", "update", "--mapping-out", "updated.json",
                    "--manifest-out", "updated-rollback.json")
    assert updated.returncode == 0, updated.stderr
    puts = [r.path for r in writes_to(target, mark) if r.method == "PUT"]
    assert puts and not [p for p in puts if "/routing/skills/" in p], "skills are never updated"
    wrapup = next(iter(existing["wrapupcodes"]))
    source_wrapup = next(o for o in source.objects["wrapupcodes"].values()
                         if o["name"] == before["wrapupcodes"][wrapup]["name"])
    assert target.objects["wrapupcodes"][wrapup]["description"] == source_wrapup.get("description")


def test_verify_catches_a_mismatch(orgs, tmp_path):
    source, target, _, env = orgs
    target.tamper_next_write("queues", "description", "changed behind our back")
    result = clone(env, tmp_path)
    assert result.returncode == 3, result.stderr
    assert "Verify: queue" in result.stderr and "description differs" in result.stderr


def test_credentials_never_reach_the_target(orgs, tmp_path):
    source, target, _, env = orgs
    secrets = [prop["value"]["instance"] for trunk in source.objects["trunkbasesettings"].values()
               for name, prop in (trunk.get("properties") or {}).items()
               if name in CREDENTIALS and not name.endswith("_realm")]  # a realm is a host name, not a secret
    assert secrets and all(secrets)
    result = clone(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Trunks awaiting SIP credentials" in result.stderr
    copied = [t for t in target.objects["trunkbasesettings"].values()]
    assert copied and all(not set(t.get("properties") or {}) & set(CREDENTIALS) for t in copied)
    everything = json.dumps(target.objects) + result.stderr + result.stdout + "".join(
        path.read_text() for path in tmp_path.iterdir() if path.suffix == ".json")
    for secret in secrets:
        assert secret not in everything


def test_rollback_restores_the_target_exactly(orgs, tmp_path):
    source, target, _, env = orgs
    copy_some_names(source, target, count=2, seed=5)
    before = snapshot(target)
    assert clone(env, tmp_path, "--on-conflict", "prefix").returncode == 0
    assert snapshot(target) != before
    rolled = run_cli(["rollback", "--yes", *ROLLBACK_FAST], env=env, cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert snapshot(target) == before
    assert json.loads((tmp_path / "rollback.json").read_text())["entries"] == []
    again = run_cli(["rollback", "--yes", *ROLLBACK_FAST], env=env, cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to undo" in again.stderr


def test_killed_clone_reruns_without_duplicates_and_rollback_is_complete(orgs, tmp_path):
    source, target, _, env = orgs
    for org in (source, target):
        org.latency = 0.01
    before = snapshot(target)
    rng = random.Random(21)
    for _ in range(6):
        proc = start_cli(["clone", "--yes", *FAST, "--workers", "4"], env=env, cwd=tmp_path)
        time.sleep(rng.uniform(0.4, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = clone(env, tmp_path)
    assert final.returncode == 0, final.stderr
    for kind in FAKE_KIND.values():
        names = [(obj["name"], obj.get("type")) for obj in target.objects[kind].values()]
        assert len(names) == len(set(names)), f"duplicate {kind}"
    manifest = json.loads((tmp_path / "rollback.json").read_text())
    listed = {entry["targetId"] for entry in manifest["entries"] if not entry.get("change")}
    new = {oid for kind, objects in target.objects.items() for oid in objects if oid not in before[0][kind]}
    assert new == listed, "every object the clone created is in the manifest, and nothing else"
    assert run_cli(["rollback", "--yes", *ROLLBACK_FAST], env=env, cwd=tmp_path).returncode == 0
    assert snapshot(target) == before


def test_clone_mapping_drives_import_end_to_end(orgs, tmp_path):
    source, target, refs, env = orgs
    assert clone(env, tmp_path).returncode == 0
    interaction_refs = {kind: refs[kind] for kind in ("queues", "flows", "skills", "languages", "wrapupcodes", "users")}
    write_export(tmp_path / "in.json.gz", generate_interactions(interaction_refs, 500, seed=3))
    result = run_cli(["import", "--input", "in.json.gz", "--mapping", "mapping.json", "--yes", *FAST],
                     env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(target.imported) == 500


def test_source_equal_to_target_is_refused(fake, orgs, tmp_path):
    env = org_env(fake, source="source", target="source")
    result = clone(env, tmp_path)
    assert result.returncode == 2 and "same org" in result.stderr
