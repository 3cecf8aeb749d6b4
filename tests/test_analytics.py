"""export --api analytics: the real API's conversation-detail jobs, converted to v2.1 records."""

import json
import signal
import time

import pytest

from fake_genesys import ConversationSource, populate_reference_objects
from support import mapping_between, migrate, org_env, run_cli, start_cli, write_json

FAST = ["--max-rps", "1000", "--max-status-rps", "1000", "--poll-initial", "0.05", "--poll-max", "0.3"]
START, END = "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"
KEY = "20260101T000000Z_20260104T000000Z"


@pytest.fixture
def orgs(fake):
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    source_refs = populate_reference_objects(source, seed=3)
    target_refs = populate_reference_objects(target, seed=3)
    return source, target, source_refs, target_refs, org_env(fake, source="source", target="target")


def export(env, cwd, *extra):
    return run_cli(["export", "--api", "analytics", "--start", START, "--end", END, *FAST, *extra], env=env, cwd=cwd)


def expected_ids(conversation_source, start=START, end=END):
    """Conversations that begin in [start, end): each belongs to exactly that window."""
    lo, hi = migrate.parse_time(start, "start"), migrate.parse_time(end, "end")
    return [c["conversationId"] for c in conversation_source
            if lo <= migrate.parse_time(c["conversationStart"], "start") < hi]


def test_analytics_export_converts_and_imports_end_to_end(orgs, tmp_path):
    source, target, source_refs, target_refs, env = orgs
    source.conversation_source = ConversationSource(source_refs, 1500, start="2025-12-31T20:00:00Z",
                                                    end="2026-01-04T04:00:00Z", seed=1)
    result = export(env, tmp_path)
    assert result.returncode == 0, result.stderr
    raw = list(migrate.iter_records(tmp_path / "exports" / f"{KEY}.analytics.json.gz"))
    converted = list(migrate.iter_records(tmp_path / "exports" / f"{KEY}.json.gz"))
    assert [c["conversationId"] for c in raw] == expected_ids(source.conversation_source)
    assert [r["id"] for r in converted] == [c["conversationId"] for c in raw]
    first, record = raw[0], converted[0]
    assert record["startTime"] == first["conversationStart"] and record["direction"] == first["originatingDirection"]
    assert record["interactionType"] == first["participants"][0]["sessions"][0]["mediaType"]
    acd = [seg for p in first["participants"] if p["purpose"] == "acd" for s in p["sessions"] for seg in s["segments"]
           if seg.get("queueId")]
    assert record["routing"]["queue"]["id"] == acd[0]["queueId"]
    meta = json.loads((tmp_path / "exports" / f"{KEY}.meta.json").read_text())
    assert meta["api"] == "analytics" and meta["records"] == len(converted)
    assert not (tmp_path / "exports" / ".parts" / KEY).exists()

    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    imported = run_cli(["import", "--input", "exports", "--mapping", "mapping.json", "--yes", *FAST],
                       env=env, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert len(target.imported) == len(converted)


def test_sub_intervals_cover_the_window_exactly_once(orgs, tmp_path):
    source, _, source_refs, _, env = orgs
    source.conversation_source = ConversationSource(source_refs, 1200, start="2025-12-31T22:00:00Z",
                                                    end="2026-01-04T02:00:00Z", seed=2)
    result = export(env, tmp_path, "--job-interval", "7h")
    assert result.returncode == 0, result.stderr
    posts = [r for r in source.requests if r.method == "POST" and r.path.endswith("/details/jobs")]
    assert len(posts) == 11  # 72 h in 7 h sub-intervals
    ids = [c["conversationId"] for c in migrate.iter_records(tmp_path / "exports" / f"{KEY}.analytics.json.gz")]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(expected_ids(source.conversation_source))
    meta = json.loads((tmp_path / "exports" / f"{KEY}.meta.json").read_text())
    assert meta["droppedOutsideWindow"] > 0, "conversations spanning a boundary are answered by both jobs"


def test_unknown_media_types_are_reported_not_lost(orgs, tmp_path):
    source, _, source_refs, _, env = orgs
    source.conversation_source = ConversationSource(source_refs, 600, start=START, end=END, seed=3, unusual=0.1)
    result = export(env, tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "exports" / f"{KEY}.meta.json").read_text())
    unconverted = sum(meta["unconvertedByMediaType"].values())
    assert unconverted > 0 and "media type v2.1 has no interactionType" in result.stderr
    raw = list(migrate.iter_records(tmp_path / "exports" / f"{KEY}.analytics.json.gz"))
    converted = list(migrate.iter_records(tmp_path / "exports" / f"{KEY}.json.gz"))
    assert len(raw) == len(converted) + unconverted  # what the media-type filter let through, all of it
    assert set(meta["unconvertedIds"]) == {c["conversationId"] for c in raw} - {r["id"] for r in converted}


def wait_for_cursor(state_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            parts = json.loads(state_path.read_text())["analytics"][KEY]["parts"]
            if any(part.get("cursor") for part in parts.values()):
                return parts
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    raise AssertionError("no cursor was saved")


def start_one_job_export(env, cwd):
    """The whole window in one job, in the background, so a test can act while it pages."""
    return start_cli(["export", "--api", "analytics", "--start", START, "--end", END, "--job-interval", "3d", *FAST],
                     env=env, cwd=cwd)


def test_killed_export_resumes_from_the_saved_cursor(orgs, tmp_path):
    source, _, source_refs, _, env = orgs
    source.conversation_source = ConversationSource(source_refs, 12000, start=START, end=END, seed=4)
    source.latency = 0.05
    proc = start_one_job_export(env, tmp_path)
    parts = wait_for_cursor(tmp_path / "migration_state.json")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = next(part["cursor"] for part in parts.values() if part.get("cursor"))
    mark = len(source.requests)
    result = export(env, tmp_path, "--job-interval", "3d")
    assert result.returncode == 0, result.stderr
    pages = [r for r in source.requests[mark:] if r.path.endswith("/results")]
    assert pages[0].query.get("cursor") is not None, "the re-run went on from a saved cursor, not from the start"
    assert sum(r.method == "POST" and r.path.endswith("/details/jobs") for r in source.requests) == 1
    ids = [c["conversationId"] for c in migrate.iter_records(tmp_path / "exports" / f"{KEY}.analytics.json.gz")]
    assert len(ids) == len(set(ids)) == len(expected_ids(source.conversation_source))
    assert saved


def test_expired_job_is_resubmitted_for_the_rest(orgs, tmp_path):
    source, _, source_refs, _, env = orgs
    source.conversation_source = ConversationSource(source_refs, 8000, start=START, end=END, seed=5)
    source.latency = 0.05
    proc = start_one_job_export(env, tmp_path)
    wait_for_cursor(tmp_path / "migration_state.json")
    source.expire_analytics_jobs()
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "expired; submitting a new one" in output
    assert sum(r.method == "POST" and r.path.endswith("/details/jobs") for r in source.requests) == 2
    ids = [c["conversationId"] for c in migrate.iter_records(tmp_path / "exports" / f"{KEY}.analytics.json.gz")]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(expected_ids(source.conversation_source))


def test_incremental_never_passes_data_availability(orgs, tmp_path):
    source, _, source_refs, _, env = orgs
    source.conversation_source = ConversationSource(source_refs, 300, start=START, end=END, seed=6)
    source.data_availability_date = "2026-01-02T12:00:00.000Z"
    result = run_cli(["export", "--api", "analytics", "--incremental", "--start", START, "--lag", "0s", *FAST],
                     env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads(next((tmp_path / "exports").glob("*.meta.json")).read_text())
    assert meta["end"] == "2026-01-02T12:00:00Z"
    again = run_cli(["export", "--api", "analytics", "--incremental", "--lag", "0s", *FAST], env=env, cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to export yet" in again.stderr
