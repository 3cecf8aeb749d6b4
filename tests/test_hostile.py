"""Issue 8: faults, hostile answers and bad input, against the fake orgs over loopback HTTP.

Each test closes one hole of issue 8 (the item number is in its name). The CLI runs as a subprocess
where that is what an operator sees; item 17 runs `migrate.main` in-process to record the order of
the file-system calls.
"""

import contextlib
import copy
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import pytest

from fake_genesys import (ConversationSource, FakeGenesys, InteractionSource, canonical_json, generate_interactions,
                          populate_config_org, populate_reference_objects)
from support import MIGRATE, ROOT, mapping_between, migrate, org_env, run_cli, write_export, write_json

WINDOW = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z"]
EXPORT_KEY = "20260101T000000Z_20260201T000000Z"
FAST = ["--max-rps", "500", "--max-status-rps", "500", "--poll-initial", "0.05", "--poll-max", "0.5"]
PREVIOUS_VERSION = "45a1319"  # migrate.py before issue 8: state formatVersion 1, manifest without source
NO_QUEUE = "00000000-0000-4000-8000-000000000000"
ONLY_ORG_CHECK = {("POST", "/oauth/token"), ("GET", "/api/v2/organizations/me")}
# One flow: the previous version reads a flow export as YAML text, and an export of several is a zip.
SMALL_CONFIG = dict(seed=1, skills=4, wrapupcodes=3, schedules=2, schedulegroups=1, queues=3, flows=1, trunks=2,
                    languages=2, users=3, divisions=2)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def orgs(fake):
    """Source and target with the same reference names (as after a clone); unlimited rates."""
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    return source, target, populate_reference_objects(source, seed=3), populate_reference_objects(target, seed=3)


@pytest.fixture
def three():
    """Three started orgs ("source", "target", "other"), the same fast timings as conftest's `fake`."""
    f = FakeGenesys(("source", "target", "other"), export_job_seconds=0.2, import_seconds_per_record=0.0001)
    f.start()
    try:
        for org in f.orgs.values():
            org.rate_limit = org.status_rate_limit = 1_000_000
        yield f
    finally:
        f.stop()


def import_args(input_path, mapping_path, *extra):
    return ["import", "--input", str(input_path), "--mapping", str(mapping_path), "--yes", *FAST, *extra]


def clone_args(*extra):
    return ["clone", "--yes", *FAST, *extra]


def expected_import(records, mapping):
    """What the destination must hold: the records stripped and rewritten through the mapping."""
    table = migrate.Mapping(mapping, mapping.get("fallbacks"))
    return sorted(canonical_json(migrate.transform_interaction(dict(record), table, "fallback")) for record in records)


def stored(org):
    return sorted(canonical_json(record) for record in org.imported)


def run_with(args, env=None, cwd=None, preexec_fn=None, timeout=120, script=MIGRATE):
    """`python <script> ARGS` with a preexec_fn (umask, rlimit) that support.run_cli does not offer."""
    return subprocess.run([sys.executable, str(script), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)


def previous_version(tmp_path):
    """migrate.py as it was before issue 8, written to tmp_path, to make legacy states and manifests."""
    path = tmp_path / "previous_migrate.py"
    path.write_bytes(subprocess.run(["git", "-C", ROOT, "show", f"{PREVIOUS_VERSION}:migrate.py"],
                                    capture_output=True, check=True).stdout)
    return path


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def one_error(result):
    """The single `Error:` line of a run that failed cleanly (no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    return errors[0]


def files_of(root):
    """Every file under root and its bytes (run locks left out: they hold the holder's pid)."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and not path.name.endswith(".lock")}


def requests_since(org, mark):
    return {(r.method, r.path) for r in org.requests[mark:]}


def snapshot(org):
    with org.lock:
        return copy.deepcopy({kind: dict(objects) for kind, objects in org.objects.items()}), \
            copy.deepcopy(org._queue_wrapups)


def mode(path):
    return oct(os.stat(path).st_mode & 0o777)


def umask_022():
    os.umask(0o022)


def no_tmp_files(root):
    return [str(path) for path in root.rglob("*") if path.name.endswith(".tmp")]


# ---------------------------------------------------------------------------
# item 1: a failed chunk is rebuilt from the current input and mapping
# ---------------------------------------------------------------------------


def test_item1_failed_chunk_is_rebuilt_after_the_mapping_is_fixed(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    records = list(generate_interactions(source_refs, 300, seed=21))
    write_export(tmp_path / "in.json.gz", records)
    fixed = mapping_between(source_refs, target_refs)
    bad_queue = records[0]["routing"]["queue"]["id"]
    broken = copy.deepcopy(fixed)
    broken["queues"][bad_queue] = NO_QUEUE  # mapped to a queue the target does not have
    write_json(tmp_path / "mapping.json", broken)
    env = org_env(fake, target="target")
    args = import_args("in.json.gz", "mapping.json", "--chunk-records", "100", "--workers", "2")

    failed = run_cli(args, env=env, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "QUEUE_NOT_FOUND" in one_error(failed)
    state = json.loads((tmp_path / "migration_state.json").read_text())
    failed_keys = [key for key, entry in state["import"]["chunks"].items() if entry["status"] == "failed"]
    assert failed_keys, state
    spool = tmp_path / "migration_state.json.spool"
    for key in failed_keys:
        assert not (spool / f"{key}.jsonl").exists(), "a failed job stored nothing: its spool is dropped"
    assert not any(record["routing"]["queue"]["id"] == NO_QUEUE for record in target.imported)

    write_json(tmp_path / "mapping.json", fixed)  # fixed as the error message says
    rerun = run_cli(args, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert stored(target) == expected_import(records, fixed)  # every record once, the fixed queue id
    assert len(target.imported) == len(set(stored(target))) == 300
    assert not any(record["routing"]["queue"]["id"] == NO_QUEUE for record in target.imported)
    assert not spool.exists() or list(spool.iterdir()) == []


# ---------------------------------------------------------------------------
# item 2: state and manifest bound to orgs
# ---------------------------------------------------------------------------


def test_item2_import_state_of_another_destination_is_refused(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 60, seed=22))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    args = import_args("in.json.gz", "mapping.json", "--state", "s.json")
    first = run_cli(args, env=org_env(fake, target="target"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / "s.json").read_text())
    assert state["formatVersion"] == 2
    destination = state["orgs"]["destination"]
    assert destination["id"] == target.org_id and destination["name"] == "target"
    before, mark = files_of(tmp_path), len(source.requests)

    other = run_cli(args, env=org_env(fake, target="source"), cwd=tmp_path)  # production, same default state
    assert other.returncode == 2, other.stderr
    error = one_error(other)
    assert (f"s.json belongs to the destination org 'target' ({target.org_id}), not 'source' ({source.org_id}). "
            "Use another --state") in error
    assert requests_since(source, mark) <= ONLY_ORG_CHECK
    assert ("GET", "/api/v2/organizations/me") in requests_since(source, mark)
    assert source.import_posts == 0 and len(target.imported) == 60
    assert files_of(tmp_path) == before, "neither the state nor any other file changed"


def test_item2_export_state_of_another_source_is_refused(fake, orgs, tmp_path):
    source, target, source_refs, _ = orgs
    source.export_source = InteractionSource(source_refs, 40, seed=1)
    args = ["export", *WINDOW, *FAST, "--state", "e.json"]
    first = run_cli(args, env=org_env(fake, source="source"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    bound = json.loads((tmp_path / "e.json").read_text())["orgs"]["source"]
    assert bound["id"] == source.org_id and bound["name"] == "source"
    before, mark = files_of(tmp_path), len(target.requests)

    other = run_cli(args, env=org_env(fake, source="target"), cwd=tmp_path)
    assert other.returncode == 2, other.stderr
    error = one_error(other)
    assert (f"e.json belongs to the source org 'source' ({source.org_id}), not 'target' ({target.org_id}). "
            "Use another --state") in error
    assert requests_since(target, mark) <= ONLY_ORG_CHECK
    assert ("GET", "/api/v2/organizations/me") in requests_since(target, mark)
    assert files_of(tmp_path) == before, "neither the state nor the export files changed"


def test_item2_state_of_the_previous_version_is_upgraded_and_the_import_finished_once(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    first_half = list(generate_interactions(source_refs, 60, seed=23))
    second_half = list(generate_interactions(source_refs, 60, seed=24))
    assert not {r["id"] for r in first_half} & {r["id"] for r in second_half}
    (tmp_path / "in").mkdir()
    write_export(tmp_path / "in" / "a.json.gz", first_half)
    write_export(tmp_path / "in" / "b.json.gz", second_half)
    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)
    env = org_env(fake, target="target")

    old = previous_version(tmp_path)
    partial = run_with(import_args("in/a.json.gz", "mapping.json", "--chunk-records", "30"), env=env, cwd=tmp_path,
                       script=old)
    assert partial.returncode == 0, partial.stderr
    legacy = json.loads((tmp_path / "migration_state.json").read_text())
    assert legacy["formatVersion"] == 1 and "orgs" not in legacy
    assert len(target.imported) == 60

    finished = run_cli(import_args("in", "mapping.json", "--chunk-records", "30"), env=env, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    warnings = [line for line in finished.stderr.splitlines() if "written by an earlier migrate.py" in line]
    assert len(warnings) == 1 and target.org_id in warnings[0] and "target" in warnings[0], finished.stderr
    assert stored(target) == expected_import(first_half + second_half, mapping)
    assert len(set(stored(target))) == 120
    state = json.loads((tmp_path / "migration_state.json").read_text())
    assert state["formatVersion"] == 2
    assert state["orgs"]["destination"]["id"] == target.org_id


def populate_three(three):
    source, target, other = (three.orgs[name] for name in ("source", "target", "other"))
    populate_config_org(source, **SMALL_CONFIG)
    populate_config_org(other, **SMALL_CONFIG)  # the same names: a reused manifest would claim the first's objects
    populate_config_org(target, **SMALL_CONFIG, only=["divisions", "users"])
    return source, target, other


def test_item2_manifest_of_a_clone_from_another_source_is_refused(three, tmp_path):
    source, target, other = populate_three(three)
    first = run_cli(clone_args(), env=org_env(three, source="source", target="target"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((tmp_path / "rollback.json").read_text())
    assert manifest["formatVersion"] == 2 and manifest["entries"]
    assert manifest["source"]["id"] == source.org_id and manifest["source"]["name"] == "source"
    assert manifest["target"]["id"] == target.org_id
    before, objects, mark = files_of(tmp_path), snapshot(target), len(target.requests)

    second = run_cli(clone_args("--manifest-out", "rollback.json"), env=org_env(three, source="other", target="target"),
                     cwd=tmp_path)
    assert second.returncode == 2, second.stderr
    error = one_error(second)
    assert (f"rollback.json was made by a clone from 'source' ({source.org_id}), not from the source 'other' "
            f"({other.org_id}). Use another --manifest-out.") in error
    writes = [r for r in target.requests[mark:] if r.method in ("POST", "PUT", "DELETE") and r.path.startswith("/api/")]
    assert writes == []
    assert snapshot(target) == objects
    assert files_of(tmp_path) == before


def test_item2_manifest_of_the_previous_version_is_bound_and_still_rolls_back(three, tmp_path):
    source, target, other = populate_three(three)
    with source.lock:  # the previous version sends timeoutMs whatever the prompt: give it queues it can copy
        for queue in source.objects["queues"].values():
            queue["acwSettings"] = {"wrapupPrompt": "MANDATORY_TIMEOUT", "timeoutMs": 30000}
    env = org_env(three, source="source", target="target")
    before = snapshot(target)
    old = previous_version(tmp_path)
    made = run_with(clone_args(), env=env, cwd=tmp_path, script=old)
    assert made.returncode == 0, made.stderr
    legacy = json.loads((tmp_path / "rollback.json").read_text())
    assert "source" not in legacy and legacy["entries"]
    assert snapshot(target) != before
    shutil.copy(tmp_path / "rollback.json", tmp_path / "copy.json")

    # a clone of the same source with a copy of the old manifest binds it, with a warning
    bound = run_cli(clone_args("--manifest-out", "copy.json", "--mapping-out", "copy-mapping.json"), env=env,
                    cwd=tmp_path)
    assert bound.returncode == 0, bound.stderr
    warnings = [line for line in bound.stderr.splitlines() if "written by an earlier migrate.py" in line]
    assert len(warnings) == 1, bound.stderr
    upgraded = json.loads((tmp_path / "copy.json").read_text())
    assert upgraded["formatVersion"] == 2 and upgraded["source"]["id"] == source.org_id

    # the untouched old manifest still rolls back everything the old clone created
    rolled = run_cli(["rollback", "--yes", *FAST[:4]], env=env, cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert snapshot(target) == before


# ---------------------------------------------------------------------------
# item 3: --on-conflict update keeps what clone does not manage
# ---------------------------------------------------------------------------


def test_item3_update_keeps_trunk_credentials_and_unknown_properties(fake, tmp_path):
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    populate_config_org(source, seed=1, only=["divisions", "trunkbasesettings"])
    populate_config_org(target, seed=1, only=["divisions"])
    source_trunk = next(t for t in source.objects["trunkbasesettings"].values() if not t.get("managed"))
    home = target.home_division()

    def prop(kind, value):
        return {"type": kind, "value": {"default": "", "instance": value}}

    kept = {"trunk_sip_authentication_credentials_realm": prop("string", "sip.target.example.org"),
            "trunk_sip_authentication_credentials_username": prop("string", "target-user"),
            "trunk_sip_authentication_credentials_password": prop("string", "target-secret-0123456789"),
            "trunk_target_only_setting": prop("integer", 42)}
    copied_keys = set(source_trunk["properties"]) - set(migrate.TRUNK_CREDENTIAL_PROPERTIES)
    assert copied_keys and not copied_keys & set(kept)
    old_values = {"trunk_label": prop("string", "old label"),
                  "trunk_transport_sip_proxy": prop("string", "old.example.org")}
    trunk_id = target.add_object(
        "trunkbasesettings", source_trunk["name"], version=1, state="active", trunkType="EXTERNAL", managed=False,
        division={"id": home["id"], "name": home["name"], "selfUri": home["selfUri"]},
        description="target's own description", trunkMetabase=dict(source_trunk["trunkMetabase"]),
        properties={**copy.deepcopy(kept), **old_values})

    result = run_cli(clone_args("--on-conflict", "update", "--kinds", "trunkBaseSettings"),
                     env=org_env(fake, source="source", target="target"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r for r in target.requests if r.method == "PUT" and r.path.endswith(f"/trunkbasesettings/{trunk_id}")]
    trunk = target.objects["trunkbasesettings"][trunk_id]
    for key, value in kept.items():
        assert trunk["properties"].get(key) == value, f"{key} must keep the target's value"
    for key in copied_keys:
        assert trunk["properties"].get(key) == source_trunk["properties"][key], f"{key} is copied from the source"
    assert trunk["description"] == source_trunk["description"]


# ---------------------------------------------------------------------------
# item 5: a job the org answers 404 for is resubmitted at most 3 times
# ---------------------------------------------------------------------------


def test_item5_unknown_job_is_resubmitted_at_most_three_times(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    records = list(generate_interactions(source_refs, 50, seed=25))
    write_export(tmp_path / "in.json.gz", records)
    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)
    env = org_env(fake, target="target")
    target.inject_fault(status=404, method="GET", path_prefix="/api/v2/interaction/import/", times=25)

    stopped = run_cli(import_args("in.json.gz", "mapping.json"), env=env, cwd=tmp_path)
    assert stopped.returncode == 1, stopped.stderr
    assert 1 <= target.import_posts <= 4, f"{target.import_posts} POSTs for one chunk"
    error = one_error(stopped)
    job_ids = list(target._import_jobs)
    assert any(job_id in error for job_id in job_ids), error
    chunks = json.loads((tmp_path / "migration_state.json").read_text())["import"]["chunks"]
    assert [entry["status"] for entry in chunks.values()] == ["submitting"]
    key = next(iter(chunks))
    assert (tmp_path / "migration_state.json.spool" / f"{key}.jsonl").exists(), "it may have landed: spool kept"

    with target.lock:
        target._faults.clear()
    rerun = run_cli(import_args("in.json.gz", "mapping.json"), env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert stored(target) == expected_import(records, mapping)
    assert len(set(stored(target))) == 50


# ---------------------------------------------------------------------------
# item 6: files holding records or ids are private
# ---------------------------------------------------------------------------


def test_item6_interaction_files_and_folders_are_private(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    source.export_source = InteractionSource(source_refs, 30, seed=1)
    source.conversation_source = ConversationSource(source_refs, 30, start="2026-01-01T00:00:00Z",
                                                    end="2026-01-02T00:00:00Z", seed=1)
    env = org_env(fake, source="source", target="target")

    exported = run_with(["export", *WINDOW, *FAST], env=env, cwd=tmp_path, preexec_fn=umask_022)
    assert exported.returncode == 0, exported.stderr
    analytics = run_with(["export", "--api", "analytics", "--start", "2026-01-01T00:00:00Z", "--end",
                          "2026-01-02T00:00:00Z", *FAST, "--out", "exports", "--state", "analytics.json"],
                         env=env, cwd=tmp_path, preexec_fn=umask_022)
    assert analytics.returncode == 0, analytics.stderr

    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)
    input_file = f"exports/{EXPORT_KEY}.json.gz"
    dry = run_with(import_args(input_file, "mapping.json", "--dry-run"), env=env, cwd=tmp_path, preexec_fn=umask_022)
    assert dry.returncode == 0, dry.stderr

    records = list(migrate.iter_records(tmp_path / input_file))
    partial = copy.deepcopy(mapping)
    del partial["wrapupCodes"][records[0]["wrapupCode"]["id"]]
    write_json(tmp_path / "partial.json", partial)
    unmapped = run_with(import_args(input_file, "partial.json", "--state", "u.json"), env=env, cwd=tmp_path,
                        preexec_fn=umask_022)
    assert unmapped.returncode == 1 and (tmp_path / "unmapped_report.json").exists(), unmapped.stderr

    private = [tmp_path / "exports" / f"{EXPORT_KEY}.json.gz", tmp_path / "exports" / f"{EXPORT_KEY}.meta.json",
               tmp_path / "exports" / "20260101T000000Z_20260102T000000Z.analytics.json.gz",
               tmp_path / "exports" / "20260101T000000Z_20260102T000000Z.json.gz",
               tmp_path / "exports" / "20260101T000000Z_20260102T000000Z.meta.json",
               *sorted((tmp_path / "dry_run_chunks").glob("chunk-*.json")), tmp_path / "unmapped_report.json",
               tmp_path / "migration_state.json", tmp_path / "migration_state.json.bak", tmp_path / "analytics.json"]
    assert len(list((tmp_path / "dry_run_chunks").glob("chunk-*.json"))) == 1
    assert {str(path.relative_to(tmp_path)): mode(path) for path in private} == \
        {str(path.relative_to(tmp_path)): "0o600" for path in private}
    assert {name: mode(tmp_path / name) for name in ("exports", "dry_run_chunks")} == \
        {"exports": "0o700", "dry_run_chunks": "0o700"}

    # a chunk left `submitting` keeps its spool (item 5): the spool file and its folder are private too
    target.inject_fault(status=404, method="GET", path_prefix="/api/v2/interaction/import/", times=25)
    spooled = run_with(import_args(input_file, "mapping.json", "--state", "i.json"), env=env, cwd=tmp_path,
                       preexec_fn=umask_022)
    assert spooled.returncode == 1, spooled.stderr
    spool_files = sorted((tmp_path / "i.json.spool").glob("*.jsonl"))
    assert len(spool_files) == 1
    private = [tmp_path / "i.json", tmp_path / "i.json.bak", *spool_files]
    assert {path.name: mode(path) for path in private} == {path.name: "0o600" for path in private}
    assert mode(tmp_path / "i.json.spool") == "0o700"


def test_item6_clone_files_are_private(three, tmp_path):
    populate_three(three)
    env = org_env(three, source="source", target="target")
    plan = run_with(clone_args("--plan"), env=env, cwd=tmp_path, preexec_fn=umask_022)
    assert plan.returncode in (0, 3), plan.stderr
    made = run_with(clone_args(), env=env, cwd=tmp_path, preexec_fn=umask_022)
    assert made.returncode == 0, made.stderr
    files = ["plan.json", "mapping.json", "rollback.json"]
    assert {name: mode(tmp_path / name) for name in files} == {name: "0o600" for name in files}


# ---------------------------------------------------------------------------
# item 13: --input FOLDER reads export files only
# ---------------------------------------------------------------------------


def test_item13_input_folder_reads_only_export_files_and_says_what_it_passes_over(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    folder = tmp_path / "in"
    folder.mkdir()
    wanted = list(generate_interactions(source_refs, 40, seed=31))
    write_export(folder / "a.json.gz", wanted)
    (folder / "b.json").write_text(json.dumps(list(generate_interactions(source_refs, 10, seed=32))))
    write_json(folder / "c.meta.json", {"sourceOrg": {"id": source.org_id, "name": "source"}, "records": 40})
    write_export(folder / "d.json.gz.part", generate_interactions(source_refs, 10, seed=33))
    write_export(folder / "e.analytics.json.gz", generate_interactions(source_refs, 10, seed=34))
    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)

    result = run_cli(import_args("in", "mapping.json"), env=org_env(fake, target="target"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stored(target) == expected_import(wanted, mapping)
    passing = [line for line in result.stderr.splitlines() if "Passing over" in line]
    assert len(passing) == 4, result.stderr
    for name in ("b.json", "c.meta.json", "d.json.gz.part", "e.analytics.json.gz"):
        assert sum(name in line for line in passing) == 1, (name, passing)


# ---------------------------------------------------------------------------
# item 14: durations and times out of range are one clear line
# ---------------------------------------------------------------------------

END = ["--end", "2026-02-01T00:00:00Z"]


@pytest.mark.parametrize("args, flag", [
    (["export", "--api", "analytics", *WINDOW, "--job-interval", "0"], "--job-interval"),
    (["export", *WINDOW, "--poll-initial", "0"], "--poll-initial"),
    (["export", *WINDOW, "--poll-max", "0s"], "--poll-max"),
    (["export", *WINDOW, "--poll-deadline", "0"], "--poll-deadline"),
    (["export", *WINDOW, "--poll-max=-1h"], "--poll-max"),
    (["export", "--incremental", "--lag=-1h"], "--lag"),
    (["export", *WINDOW, "--poll-deadline", "99999999999d"], "--poll-deadline"),
    (["export", "--incremental", "--lag", "99999999999d"], "--lag"),
    (["export", "--api", "analytics", *WINDOW, "--job-interval", "99999999999d"], "--job-interval"),
    (["import", "--input", "in.json.gz", "--mapping", "mapping.json", "--poll-initial", "0"], "--poll-initial"),
    (["export", "--start", "0000-01-01T00:00:00Z", *END], "--start"),
    (["export", "--start", "0001-01-01T00:00:00+01:00", *END], "--start"),
    (["export", "--start", "10000-01-01T00:00:00Z", *END], "--start"),
    (["export", "--start", "9999-12-31T23:00:00-05:00", *END], "--start"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_item14_bad_duration_or_time_is_one_line(args, flag, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENESYS_")}
    result = run_cli(args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert flag in lines[0], "the line names the flag, not a later problem (e.g. missing credentials)"
    assert list(tmp_path.iterdir()) == []


def test_item14_zero_lag_is_allowed(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENESYS_")}
    result = run_cli(["export", "--incremental", "--lag", "0"], env=env, cwd=tmp_path)
    error = one_error(result)
    assert "--lag" not in error and "GENESYS_SOURCE_CLIENT_ID" in error  # it got as far as the credentials


# ---------------------------------------------------------------------------
# item 15: disk full
# ---------------------------------------------------------------------------


def file_size_limit(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_item15_disk_full_while_spooling_a_chunk(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    records = list(generate_interactions(source_refs, 200, seed=41))
    write_export(tmp_path / "in.json.gz", records)
    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)
    env = org_env(fake, target="target")
    args = import_args("in.json.gz", "mapping.json", "--chunk-records", "100", "--workers", "1")

    full = run_with(args, env=env, cwd=tmp_path, preexec_fn=file_size_limit(30_000))  # a chunk's spool is ~80 kB
    assert full.returncode == 1, full.stderr
    error = one_error(full)
    assert error.startswith("Error: no space left writing") and "migration_state.json.spool" in error, error
    assert no_tmp_files(tmp_path) == []
    json.loads((tmp_path / "migration_state.json").read_text())
    assert target.import_posts == 0

    rerun = run_cli(args, env=env, cwd=tmp_path)  # space again: the state was consistent
    assert rerun.returncode == 0, rerun.stderr
    assert stored(target) == expected_import(records, mapping)


def test_item15_disk_full_while_downloading_an_export(fake, orgs, tmp_path):
    source, _, source_refs, _ = orgs
    source.export_source = InteractionSource(source_refs, 3000, seed=1)
    full = run_with(["export", *WINDOW, *FAST], env=org_env(fake, source="source"), cwd=tmp_path,
                    preexec_fn=file_size_limit(100_000))
    assert full.returncode == 1, full.stderr
    error = one_error(full)
    assert error.startswith("Error: no space left writing") and f"{EXPORT_KEY}.json.gz.part" in error, error
    assert no_tmp_files(tmp_path) == []
    json.loads((tmp_path / "migration_state.json").read_text())
    assert not (tmp_path / "exports" / f"{EXPORT_KEY}.json.gz").exists()


# ---------------------------------------------------------------------------
# item 17: the spool is durable before the state says `submitting`
# ---------------------------------------------------------------------------


def test_item17_spool_rename_and_folder_fsync_precede_the_submitting_state(fake, orgs, tmp_path, monkeypatch):
    source, target, source_refs, target_refs = orgs
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 20, seed=51))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    state_path = os.path.realpath(tmp_path / "s.json")
    spool_dir = state_path + ".spool"
    for key in [key for key in os.environ if key.startswith("GENESYS_")]:
        monkeypatch.delenv(key)
    for name, value in org_env(fake, target="target").items():
        if name.startswith("GENESYS_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    real_fsync_directory, real_write = migrate.fsync_directory, migrate.write_json_atomically

    def fsync(fd):
        with contextlib.suppress(OSError):
            events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    def fsync_directory(path):
        events.append(("fsync_directory", os.path.realpath(path)))
        return real_fsync_directory(path)

    def write_json_atomically(path, value, *args, **kwargs):
        if os.path.realpath(path) == state_path:
            chunks = (value.get("import") or {}).get("chunks") or {}
            events.append(("state", {key: entry.get("status") for key, entry in chunks.items()},
                           time.monotonic()))
        return real_write(path, value, *args, **kwargs)

    monkeypatch.setattr(migrate.os, "fsync", fsync)
    monkeypatch.setattr(migrate.os, "replace", replace)
    monkeypatch.setattr(migrate, "fsync_directory", fsync_directory)
    monkeypatch.setattr(migrate, "write_json_atomically", write_json_atomically)

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = migrate.main(import_args(tmp_path / "in.json.gz", tmp_path / "mapping.json", "--state", state_path,
                                        "--chunk-records", "20", "--workers", "1", "--report",
                                        str(tmp_path / "report.json")))
    assert code == 0, stderr.getvalue()
    assert len(target.imported) == 20

    submitting = next(index for index, event in enumerate(events)
                      if event[0] == "state" and "submitting" in event[1].values())
    key = next(k for k, status in events[submitting][1].items() if status == "submitting")
    final = os.path.join(spool_dir, f"{key}.jsonl")
    temp = final + ".tmp"
    earlier = events[:submitting]

    def last(event):
        found = [index for index, seen in enumerate(earlier) if seen == event]
        assert found, f"no {event} before the state said `submitting`: {earlier}"
        return found[-1]

    file_fsync = last(("fsync", temp))
    rename = last(("replace", temp, final))
    folder_fsync = last(("fsync_directory", spool_dir))
    assert file_fsync < rename < folder_fsync < submitting, earlier
    post = next(r for r in target.requests if r.method == "POST" and r.path == "/api/v2/interaction/import")
    assert post.time > events[submitting][2], "the POST leaves after the state says `submitting`"
