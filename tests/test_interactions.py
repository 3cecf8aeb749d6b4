"""Interaction migration: export and import against the fake org, over real HTTP, as operators run it."""

import json
import os
import random
import signal
import time

import pytest

from fake_genesys import InteractionSource, canonical_json, generate_interactions, populate_reference_objects
from support import (many_records, mapping_between, migrate, org_env, run_cli, run_cli_measuring_memory, start_cli,
                     write_export, write_json)

WINDOW = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z"]
FAST = ["--max-rps", "500", "--max-status-rps", "500", "--poll-initial", "0.05", "--poll-max", "0.5"]


@pytest.fixture
def orgs(fake):
    """Source and target populated with the same names (as after a clone), and the mapping between them."""
    source, target = fake.orgs["source"], fake.orgs["target"]
    source_refs = populate_reference_objects(source, seed=3)
    target_refs = populate_reference_objects(target, seed=3)
    return source, target, source_refs, target_refs


def export_records(source, source_refs, n, seed=1):
    source.export_source = InteractionSource(source_refs, n, seed=seed)


def import_args(input_path, mapping_path, *extra):
    return ["import", "--input", str(input_path), "--mapping", str(mapping_path), "--yes", *FAST, *extra]


def expected_import(records, mapping):
    """What the destination must hold: the records stripped and rewritten through the mapping."""
    table = migrate.Mapping(mapping, mapping.get("fallbacks"))
    return sorted(canonical_json(migrate.transform_interaction(dict(record), table, "fallback")) for record in records)


def test_export_then_import_end_to_end(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    export_records(source, source_refs, 2500)
    env = org_env(fake, source="source", target="target")
    result = run_cli(["export", *WINDOW, "--out", "exports", *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Wrote exports/20260101T000000Z_20260201T000000Z.json.gz: 2500 records." in result.stderr
    files = sorted(os.listdir(tmp_path / "exports"))
    assert files == ["20260101T000000Z_20260201T000000Z.json.gz", "20260101T000000Z_20260201T000000Z.meta.json"]
    meta = json.loads((tmp_path / "exports" / files[1]).read_text())
    assert meta["sourceOrg"]["id"] == source.org_id and meta["records"] == 2500

    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)
    result = run_cli(import_args("exports", "mapping.json", "--chunk-records", "400"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Destination org: target (id {target.org_id})" in result.stderr
    assert "records 2500 read, 2500 sent, 0 skipped" in result.stderr and "7 jobs" in result.stderr

    exported = list(migrate.iter_records(tmp_path / "exports" / files[0]))
    assert all("media" not in record for record in exported)  # includeMedia false
    stored = sorted(canonical_json(record) for record in target.imported)
    assert stored == expected_import(exported, mapping)
    target_ids = {i for ids in target_refs.values() for i in ids}
    for record in target.imported:
        assert not set(record) & set(migrate.IMPORT_STRIPPED_FIELDS)
        assert record["routing"]["queue"]["id"] in target_ids and record["userId"] in target_ids

    again = run_cli(import_args("exports", "mapping.json", "--chunk-records", "400"), env=env, cwd=tmp_path)
    assert again.returncode == 0 and "7 resumed" in again.stderr and "0 jobs" in again.stderr
    assert len(target.imported) == 2500
    assert not [r for r in fake.download_log if "authorization" in r.headers]


def test_export_download_never_carries_authorization_and_recovers_an_expired_url(fake, orgs, tmp_path):
    source, _, source_refs, _ = orgs
    export_records(source, source_refs, 300)
    fake.refuse_next_downloads = 2  # the pre-signed URL answers 403 before its expiresAt, twice
    result = run_cli(["export", *WINDOW, *FAST], env=org_env(fake, source="source"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    downloads = fake.download_log
    assert [r.status for r in downloads] == [403, 403, 200]
    assert len({r.query["X-Amz-Signature"] for r in downloads}) == 3  # a fresh URL each time
    assert all("authorization" not in r.headers for r in downloads)
    assert len(list(migrate.iter_records(tmp_path / "exports" / "20260101T000000Z_20260201T000000Z.json.gz"))) == 300


def test_export_checks_the_schema_and_reports_a_failed_job(fake, orgs, tmp_path):
    source, _, source_refs, _ = orgs
    export_records(source, source_refs, 10)
    env = org_env(fake, source="source")
    source.schemas = ("v2.0",)
    result = run_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 1 and "offers export schemas v2.0, not v2.1" in result.stderr
    source.schemas = ("v2.0", "v2.1")
    source.fail_next_export = "shard 3 unavailable"
    result = run_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 1 and "ended failed: shard 3 unavailable" in result.stderr
    result = run_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sum(r.method == "POST" and r.path == "/api/v2/interaction/export" for r in source.requests) == 2


def test_killed_export_resumes_polling_the_same_job(fake, orgs, tmp_path):
    source, _, source_refs, _ = orgs
    export_records(source, source_refs, 200)
    source.export_job_seconds = 3.0
    env = org_env(fake, source="source")
    proc = start_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path)
    deadline = time.monotonic() + 20
    state_path = tmp_path / "migration_state.json"
    while time.monotonic() < deadline:
        if state_path.exists() and "jobId" in state_path.read_text():
            break
        time.sleep(0.02)
    polls_before = sum(r.path.startswith("/api/v2/interaction/export/") for r in source.requests)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert source.export_job(json.loads(state_path.read_text())["exports"]["20260101T000000Z_20260201T000000Z"]["jobId"])
    result = run_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Resuming export job" in result.stderr
    assert sum(r.method == "POST" and r.path == "/api/v2/interaction/export" for r in source.requests) == 1
    assert polls_before < sum(r.path.startswith("/api/v2/interaction/export/") for r in source.requests)
    again = run_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path)
    assert again.returncode == 0 and "Already exported" in again.stderr


def test_incremental_windows_never_overlap(fake, orgs, tmp_path):
    source, _, source_refs, _ = orgs
    now = time.time()
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3 * 3600))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60))
    source.export_source = InteractionSource(source_refs, 900, start=start, end=end, seed=5)
    env = org_env(fake, source="source")
    first = run_cli(["export", "--incremental", "--start", start, "--lag", "1h", *FAST], env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli(["export", "--incremental", "--lag", "0s", *FAST], env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    nothing = run_cli(["export", "--incremental", "--lag", "1h", *FAST], env=env, cwd=tmp_path)
    assert nothing.returncode == 0 and "Nothing to export yet" in nothing.stderr
    metas = [json.loads(p.read_text()) for p in (tmp_path / "exports").glob("*.meta.json")]
    metas.sort(key=lambda meta: meta["start"])
    assert len(metas) == 2 and metas[0]["start"] == start and metas[0]["end"] == metas[1]["start"]
    ids = [record["id"] for path in sorted((tmp_path / "exports").glob("*.json.gz"))
           for record in migrate.iter_records(path)]
    assert len(ids) == len(set(ids)) == source.export_source.count(start, metas[1]["end"], ("voice", "chat", "email"))


def test_dry_run_sends_nothing_and_writes_the_chunks(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 1200, seed=2))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    result = run_cli(["import", "--input", "in.json.gz", "--mapping", "mapping.json", "--dry-run"],
                     env=org_env(fake, target="target"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1200 would be sent in 2 chunks" in result.stderr and "Nothing was sent" in result.stderr
    assert target.requests == [] and target.token_requests == 0
    chunks = sorted((tmp_path / "dry_run_chunks").iterdir())
    bodies = [json.loads(path.read_bytes()) for path in chunks]
    assert [len(body["interactions"]) for body in bodies] == [1000, 200]
    assert all(body["allowDuplicates"] is False and body["schemaVersion"] == "v2.1" for body in bodies)


def export_with_one_unmapped_code(tmp_path, source_refs, target_refs, n, seed):
    """An export file of n records and a mapping that lacks one wrap-up code some of them use."""
    records = list(generate_interactions(source_refs, n, seed=seed))
    write_export(tmp_path / "in.json.gz", records)
    mapping = mapping_between(source_refs, target_refs)
    missing_code = source_refs["wrapupcodes"][0]
    del mapping["wrapupCodes"][missing_code]
    return records, mapping, missing_code


def test_unmapped_fail_fallback_and_skip(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    records, mapping, missing_code = export_with_one_unmapped_code(tmp_path, source_refs, target_refs, 600, 4)
    affected = sum(record["wrapupCode"]["id"] == missing_code for record in records)
    assert 0 < affected < 600
    write_json(tmp_path / "mapping.json", mapping)
    env = org_env(fake, target="target")

    failed = run_cli(import_args("in.json.gz", "mapping.json"), env=env, cwd=tmp_path)
    assert failed.returncode == 1 and "nothing was sent" in failed.stderr
    report = json.loads((tmp_path / "unmapped_report.json").read_text())
    assert report["unmapped"] == [{"kind": "wrapupCodes", "sourceId": missing_code, "records": affected}]
    assert target.requests == []

    no_fallback = run_cli(import_args("in.json.gz", "mapping.json", "--unmapped", "fallback"), env=env, cwd=tmp_path)
    assert no_fallback.returncode == 1 and "needs a fallback for wrapupCodes" in no_fallback.stderr

    skipped = run_cli(import_args("in.json.gz", "mapping.json", "--unmapped", "skip", "--state", "skip.json"),
                      env=env, cwd=tmp_path)
    assert skipped.returncode == 3, skipped.stderr
    assert f"{affected} skipped" in skipped.stderr
    report = json.loads((tmp_path / "unmapped_report.json").read_text())
    assert len(report["skippedRecords"]) == affected
    assert len(target.imported) == 600 - affected

    mended = dict(mapping, wrapupCodes=dict(mapping["wrapupCodes"], **{missing_code: target_refs["wrapupcodes"][0]}))
    write_json(tmp_path / "mended.json", mended)
    rerun = run_cli(import_args("in.json.gz", "mended.json", "--state", "skip.json"), env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{600 - affected} already imported" in rerun.stderr and "left out" in rerun.stderr
    stored = [canonical_json(record) for record in target.imported]
    assert len(stored) == len(set(stored)) == 600  # the left-out records follow, nothing twice

    fallback_code = target_refs["wrapupcodes"][1]
    mapping["fallbacks"] = {"wrapupCodes": fallback_code}
    write_json(tmp_path / "mapping.json", mapping)
    target.imported.clear()
    target.imported_canonical.clear()
    fell_back = run_cli(import_args("in.json.gz", "mapping.json", "--unmapped", "fallback", "--state", "fb.json"),
                        env=env, cwd=tmp_path)
    assert fell_back.returncode == 0, fell_back.stderr
    assert len(target.imported) == 600
    assert sum(record["wrapupCode"]["id"] == fallback_code for record in target.imported) >= affected


def test_mapping_file_errors_name_the_key_and_line(tmp_path):
    (tmp_path / "in.json").write_text("[]")
    (tmp_path / "m.json").write_text('{\n "queues": {\n  "not-a-uuid": "x"\n }\n}\n')
    result = run_cli(["import", "--input", "in.json", "--mapping", "m.json", "--dry-run"], cwd=tmp_path)
    assert result.returncode == 2
    assert "queues: key 'not-a-uuid' is not a UUID (line 3)" in result.stderr
    (tmp_path / "m.json").write_text('{"queue": {}}')
    result = run_cli(["import", "--input", "in.json", "--mapping", "m.json", "--dry-run"], cwd=tmp_path)
    assert result.returncode == 2 and "unknown key 'queue'" in result.stderr
    (tmp_path / "m.json").write_text('{"queues": {')
    result = run_cli(["import", "--input", "in.json", "--mapping", "m.json", "--dry-run"], cwd=tmp_path)
    assert result.returncode == 2 and "is not valid JSON (line 1" in result.stderr


def test_failed_job_stops_new_submissions_and_says_what_to_fix(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 3000, seed=6))
    mapping = mapping_between(source_refs, target_refs)
    queue = next(iter(mapping["queues"]))
    mapping["queues"][queue] = "00000000-0000-4000-8000-000000000000"  # no such queue in the target
    write_json(tmp_path / "mapping.json", mapping)
    result = run_cli(import_args("in.json.gz", "mapping.json", "--chunk-records", "100", "--workers", "2"),
                     env=org_env(fake, target="target"), cwd=tmp_path)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "QUEUE_NOT_FOUND at the record with source id" in error[0] and "fix the mapping file" in error[0]
    assert target.import_posts < 30  # stopped submitting after the failure
    state = json.loads((tmp_path / "migration_state.json").read_text())
    failed = [entry for entry in state["import"]["chunks"].values() if entry["status"] == "failed"]
    assert failed and failed[0]["error"]["code"] == "QUEUE_NOT_FOUND" and "index" in failed[0]["error"]


def test_rejected_requests_are_reported_and_413_is_split(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    records = list(generate_interactions(source_refs, 400, seed=8))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    env = org_env(fake, target="target")

    target.max_body_bytes = 150_000  # a stricter gateway: the 400-record chunk is too large, halves fit
    write_export(tmp_path / "in.json.gz", records)
    result = run_cli(import_args("in.json.gz", "mapping.json"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "split" in result.stderr and len(target.imported) == 400
    assert [r.status for r in target.requests if r.path == "/api/v2/interaction/import"][0] == 413

    target.max_body_bytes = 10 * 1024 * 1024
    odd = [dict(records[0], surveyScore=5)]
    write_export(tmp_path / "odd.json.gz", odd)
    posts = len(target.requests)
    result = run_cli(import_args("odd.json.gz", "mapping.json", "--state", "odd.json"), env=env, cwd=tmp_path)
    assert result.returncode == 2 and "'surveyScore', which schema v2.1 does not know" in result.stderr
    assert len(target.requests) == posts  # found in the first pass: the org was never asked

    target.schemas = ("v2.0",)
    write_export(tmp_path / "one.json.gz", records[:1])
    result = run_cli(import_args("one.json.gz", "mapping.json", "--state", "one.json"), env=env, cwd=tmp_path)
    assert result.returncode == 1 and "SCHEMA_INCOMPATIBLE" in result.stderr


def test_overlapping_input_is_refused_as_duplicate(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 50, seed=9))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    env = org_env(fake, target="target")
    assert run_cli(import_args("in.json.gz", "mapping.json"), env=env, cwd=tmp_path).returncode == 0
    again = run_cli(import_args("in.json.gz", "mapping.json", "--state", "other.json"), env=env, cwd=tmp_path)
    assert again.returncode == 1 and "DUPLICATE_INTERACTION" in again.stderr
    assert len(target.imported) == 50


def test_writes_need_yes_without_a_terminal_and_refuse_the_same_org(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    export_records(source, source_refs, 20)
    env = org_env(fake, source="source", target="source")
    assert run_cli(["export", *WINDOW, *FAST], env=env, cwd=tmp_path).returncode == 0
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, source_refs))
    same = run_cli(import_args("exports", "mapping.json"), env=env, cwd=tmp_path)
    assert same.returncode == 2 and "exported from the destination org itself" in same.stderr
    no_yes = run_cli(["import", "--input", "exports", "--mapping", "mapping.json", "--allow-same-org", *FAST],
                     env=env, cwd=tmp_path)
    assert no_yes.returncode == 2 and "Use --yes" in no_yes.stderr
    assert source.import_posts == 0


def test_import_of_200k_records_streams_in_bounded_memory(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    target.max_running_import_jobs = 8
    target.import_seconds_per_record = 0.0
    target.rate_limit = target.status_rate_limit = 1_000_000  # this test is about memory, not limits
    write_export(tmp_path / "big.json.gz", many_records(source_refs, 200_000))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    result, peak_mb = run_cli_measuring_memory(import_args("big.json.gz", "mapping.json"),
                                               env=org_env(fake, target="target"), cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    assert len(target.imported) == 200_000
    assert peak_mb < 150, f"import peaked at {peak_mb:.0f} MB"


def test_kill_9_at_random_moments_then_rerun_imports_each_record_exactly_once(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    target.import_seconds_per_record = 0.002
    records = list(generate_interactions(source_refs, 4000, seed=11))
    write_export(tmp_path / "in.json.gz", records)
    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)
    env = org_env(fake, target="target")
    args = import_args("in.json.gz", "mapping.json", "--chunk-records", "100", "--workers", "4")
    rng = random.Random(12)
    for _ in range(10):
        proc = start_cli(args, env=env, cwd=tmp_path)
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for _ in range(5):
        final = run_cli(args, env=env, cwd=tmp_path)
        if final.returncode == 0:
            break
    assert final.returncode == 0, final.stderr
    stored = [canonical_json(record) for record in target.imported]
    assert len(stored) == len(set(stored)) == 4000
    assert sorted(stored) == expected_import(records, mapping)


def test_secrets_never_reach_output_state_or_files(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    export_records(source, source_refs, 300)
    env = org_env(fake, source="source", target="target")
    outputs = []
    for log_format in ("text", "json"):
        result = run_cli(["export", *WINDOW, *FAST, "-v", "--log-format", log_format, "--state", f"{log_format}.json"],
                         env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    result = run_cli(import_args("exports", "mapping.json", "-v"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outputs += [result.stdout, result.stderr]
    bad = dict(env, GENESYS_TARGET_CLIENT_SECRET="not-the-secret-but-secret-looking")
    result = run_cli(import_args("exports", "mapping.json", "-v", "--state", "bad.json"), env=bad, cwd=tmp_path)
    assert result.returncode == 2
    outputs += [result.stdout, result.stderr]
    secrets = [source.client_secret, target.client_secret, "not-the-secret-but-secret-looking",
               *source._tokens, *target._tokens]
    assert len(secrets) >= 4
    files = [path.read_bytes().decode("utf-8", "replace") for path in tmp_path.rglob("*")
             if path.is_file() and not path.name.endswith(".gz")]
    for secret in secrets:
        for text in outputs + files:
            assert secret not in text


def test_crash_after_the_post_then_a_mended_mapping_still_sends_nothing_twice(fake, orgs, tmp_path):
    """Killed after a chunk's POST landed but before the state said so; the re-run has a mended mapping."""
    source, target, source_refs, target_refs = orgs
    _, mapping, missing_code = export_with_one_unmapped_code(tmp_path, source_refs, target_refs, 300, 14)
    write_json(tmp_path / "partial.json", mapping)
    env = org_env(fake, target="target")
    first = run_cli(import_args("in.json.gz", "partial.json", "--unmapped", "skip", "--chunk-records", "100"),
                    env=env, cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    landed = len(target.imported)

    # Rewind one chunk to the moment between its POST and the answer: `submitting`, records spooled.
    state = migrate.StateFile(tmp_path / "migration_state.json").load()
    chunk = next(migrate.build_chunks([tmp_path / "in.json.gz"], migrate.Mapping(mapping), "skip", 100))
    assert chunk.skipped_ids, "the rewound chunk must have left records out"
    state.update(lambda data: data["import"]["chunks"][chunk.key].update(status="submitting"))
    migrate.ImportRun(None, state, 1, migrate.PollSettings(), None, None)._spool(chunk)

    mapping["wrapupCodes"][missing_code] = target_refs["wrapupcodes"][0]
    write_json(tmp_path / "mended.json", mapping)
    rerun = run_cli(import_args("in.json.gz", "mended.json", "--chunk-records", "100"), env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "already imported by an earlier attempt" in rerun.stderr and "left out" in rerun.stderr
    stored = [canonical_json(record) for record in target.imported]
    assert len(stored) == len(set(stored)) == 300 and landed < 300
    assert not list((tmp_path / "migration_state.json.spool").iterdir())


def test_chunk_size_is_pinned_by_the_state(fake, orgs, tmp_path):
    source, target, source_refs, target_refs = orgs
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 50, seed=15))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    env = org_env(fake, target="target")
    assert run_cli(import_args("in.json.gz", "mapping.json", "--chunk-records", "20"), env=env, cwd=tmp_path).returncode == 0
    other = run_cli(import_args("in.json.gz", "mapping.json"), env=env, cwd=tmp_path)
    assert other.returncode == 2 and "--chunk-records 20" in other.stderr
    assert len(target.imported) == 50
