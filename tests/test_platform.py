"""What the real platform requires that the design documents did not say: the org's own rate limit,
and request bodies the SDK's models accept (issue 9, items 5 and 6)."""

import pytest

from fake_genesys import generate_interactions, populate_config_org, populate_reference_objects
from support import mapping_between, org_env, run_cli, write_export, write_json

FAST = ["--max-rps", "500", "--max-status-rps", "500", "--poll-initial", "0.05", "--poll-max", "0.3"]


def import_run(fake, tmp_path, *extra, records=200):
    source, target = fake.orgs["source"], fake.orgs["target"]
    source_refs = populate_reference_objects(source, seed=3)
    target_refs = populate_reference_objects(target, seed=3)
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, records, seed=4))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    return run_cli(["import", "--input", "in.json.gz", "--mapping", "mapping.json", "--yes", "--chunk-records", "20",
                    *FAST, *extra], env=org_env(fake, target="target"), cwd=tmp_path)


def test_pacing_follows_the_orgs_own_client_limit(fake, tmp_path):
    """20 requests per second-and-a-half (800/min, as support might set it): 20 import jobs and their polls
    burst far past that at --max-rps 500; paced at the limit the org states, the run meets (almost) no 429."""
    target = fake.orgs["target"]
    target.rate_limit, target.rate_window = 20, 1.5
    result = import_run(fake, tmp_path, records=300)
    assert result.returncode == 0, result.stderr
    assert "target org: pacing at its client limit, 800 requests/min (13.33/s), below --max-rps 500." in result.stderr
    api = [r for r in target.requests if r.path.startswith("/api/v2")]
    throttled = [r for r in api if r.status == 429]
    assert len(api) > 30 and len(throttled) <= 0.02 * len(api), f"{len(throttled)} of {len(api)} throttled"
    assert len(target.imported) == 300


def test_a_lower_max_rps_still_wins(fake, tmp_path):
    result = import_run(fake, tmp_path, "--max-rps", "50")
    assert result.returncode == 0, result.stderr
    assert "target org: pacing at --max-rps 50 (its client limit is 6000 requests/min)." in result.stderr


def test_limits_that_cannot_be_read_leave_max_rps(fake, tmp_path):
    fake.orgs["target"].inject_fault(status=403, path_prefix="/api/v2/organizations/limits/")
    result = import_run(fake, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "target org: its rate limit could not be read (403); pacing at --max-rps 500." in result.stderr


def test_bodies_are_what_the_sdk_models_accept(fake, tmp_path):
    """A division without a description is created with "" (AuthzDivision requires it); a queue whose
    wrap-up prompt does not time out is created without the timeoutMs the source answers."""
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    populate_config_org(source, seed=2, skills=2, wrapupcodes=2, schedules=1, schedulegroups=1, queues=3, flows=1,
                        users=2)
    populate_config_org(target, seed=2, skills=2, wrapupcodes=2, schedules=1, schedulegroups=1, queues=3, flows=1,
                        users=2, only=["users"])
    source.add_object("divisions", "Night shift")  # no description, as an org may answer one
    timed = {"wrapupPrompt": "MANDATORY_TIMEOUT", "timeoutMs": 45000}
    with source.lock:
        queues = sorted(source.objects["queues"].values(), key=lambda q: q["name"])
        queues[0]["acwSettings"] = {"wrapupPrompt": "OPTIONAL", "timeoutMs": 30000}
        queues[1]["acwSettings"] = dict(timed)
    result = run_cli(["clone", "--yes", "--create-divisions", *FAST], env=org_env(fake, source="source",
                                                                                  target="target"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    copied = {obj["name"]: obj for obj in target.objects["divisions"].values()}
    assert copied["Night shift"].get("description") == ""
    made = {obj["name"]: obj for obj in target.objects["queues"].values()}
    assert made[queues[0]["name"]]["acwSettings"] == {"wrapupPrompt": "OPTIONAL"}
    assert made[queues[1]["name"]]["acwSettings"] == timed


def config_orgs(fake, flows):
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
        org.flow_job_seconds = 0.05
    sizes = dict(seed=5, skills=3, wrapupcodes=2, schedules=1, schedulegroups=1, queues=2, flows=flows, users=2)
    populate_config_org(source, **sizes)
    populate_config_org(target, **sizes, only=["divisions", "users"])
    return source, target, org_env(fake, source="source", target="target")


def flow_export_posts(org):
    return [r for r in org.requests if r.method == "POST" and r.path == "/api/v2/flows/export/jobs"]


def published(org):
    return {flow["name"] for flow in org.objects["flows"].values() if flow.get("publishedVersion")}


@pytest.mark.parametrize("flows", [6, 1], ids=["zip", "yaml"])
def test_several_flows_come_as_a_zip_one_as_yaml(fake, tmp_path, flows):
    """Several flows: a zip whose member names say nothing; one flow: the YAML itself. Both are matched
    to their flows by content, and the export names each flow's published version."""
    source, target, env = config_orgs(fake, flows)
    result = run_cli(["clone", "--yes", *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert published(target) == published(source)
    posts = flow_export_posts(source)
    assert len(posts) == 1 and posts[0].status == 200


def test_a_transient_flow_export_failure_is_registered_again(fake, tmp_path):
    source, target, env = config_orgs(fake, 4)
    source.flow_export_transient_failures = 2  # "could not find the flow ... (exit code 107)" for flows that exist
    result = run_cli(["clone", "--yes", *FAST], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("registering it again") == 2 and len(flow_export_posts(source)) == 3
    assert published(target) == published(source)


def test_a_flow_export_that_keeps_failing_names_its_flows_and_writes_nothing(fake, tmp_path):
    source, target, env = config_orgs(fake, 3)
    source.flow_export_transient_failures = 10
    result = run_cli(["clone", "--yes", *FAST], env=env, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "failed again" in errors[0] and "exit code 107" in errors[0]
    assert all(repr(name) in errors[0] for name in published(source))
    assert len(flow_export_posts(source)) == 4
    assert not [r for r in target.requests if r.method in ("POST", "PUT", "DELETE") and r.path.startswith("/api/v2")]

