"""The foundation: endpoints, auth, the rate governor, retries, state file, lock, secrets."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from support import MIGRATE, client_for, migrate, org_env, run_cli

# ---- regions and endpoints ---------------------------------------------------------------


class Args:
    def __init__(self, **values):
        self.__dict__.update(values)


def settings(env, **flags):
    return migrate.org_settings("target", Args(**flags), env)


CREDS = {"GENESYS_TARGET_CLIENT_ID": "cid", "GENESYS_TARGET_CLIENT_SECRET": "csecret-123456"}


@pytest.mark.parametrize("region", ["eu-west-1", "mypurecloud.ie", "EU-WEST-1"])
def test_region_by_name_or_domain(region):
    result = settings(CREDS, target_region=region)
    assert result.api_url == "https://api.mypurecloud.ie"
    assert result.login_url == "https://login.mypurecloud.ie"


def test_region_from_environment_and_overrides():
    env = {**CREDS, "GENESYS_TARGET_REGION": "ap-southeast-2"}
    assert settings(env).api_url == "https://api.mypurecloud.com.au"
    overridden = settings(env, target_api_url="https://proxy.example.com/")
    assert overridden.api_url == "https://proxy.example.com" and overridden.login_url == "https://login.mypurecloud.com.au"


def test_unknown_region_and_missing_settings_are_usage_errors():
    with pytest.raises(migrate.UsageError, match="unknown region"):
        settings(CREDS, target_region="mars-1")
    with pytest.raises(migrate.UsageError, match="GENESYS_TARGET_CLIENT_SECRET"):
        settings({"GENESYS_TARGET_CLIENT_ID": "x"}, target_region="eu-west-1")
    with pytest.raises(migrate.UsageError, match="no region"):
        settings(CREDS)


@pytest.mark.parametrize("url,ok", [("http://127.0.0.1:8080", True), ("http://localhost:1", True),
                                    ("http://[::1]:9", True), ("http://10.0.0.5", False),
                                    ("http://api.mypurecloud.ie", False), ("https://api.mypurecloud.ie", True)])
def test_plain_http_only_to_loopback(url, ok):
    if ok:
        assert settings(CREDS, target_api_url=url, target_login_url=url).api_url == url
    else:
        with pytest.raises(migrate.UsageError, match="plain http"):
            settings(CREDS, target_api_url=url, target_login_url=url)


def test_cli_refuses_plain_http_to_remote_host(tmp_path):
    env = {**os.environ, **CREDS, "GENESYS_TARGET_LOGIN_URL": "http://login.example.com",
           "GENESYS_TARGET_API_URL": "http://api.example.com"}
    result = run_cli(["import", "--input", "x", "--mapping", "y"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "mapping file y does not exist" in result.stderr  # config is checked in order, one line
    (tmp_path / "y").write_text("{}")
    (tmp_path / "x").write_text("[]")
    result = run_cli(["import", "--input", "x", "--mapping", "y", "--yes"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "plain http" in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_credentials_names_the_variable(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENESYS_")}
    result = run_cli(["export", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z",
                      "--source-region", "eu-west-1"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: GENESYS_SOURCE_CLIENT_ID is not set. Export the source org's OAuth client (client credentials "
        "grant) in GENESYS_SOURCE_CLIENT_ID and GENESYS_SOURCE_CLIENT_SECRET."]


def test_commands_not_built_yet_and_usage(tmp_path):
    assert run_cli([], cwd=tmp_path).returncode == 2
    assert run_cli(["export", "--bogus"], cwd=tmp_path).returncode == 2
    help_text = run_cli(["--help"], cwd=tmp_path).stdout
    assert "4 another run holds the lock" in help_text and "3 done but needs attention" in help_text

# ---- auth --------------------------------------------------------------------------------


def test_fifty_threads_share_one_token(fake):
    org = fake.orgs["source"]
    client = client_for(org, workers=50)
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.organization()["id"])) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [org.org_id] * 50
    assert org.token_requests == 1


def test_revoked_token_is_refreshed_once_and_the_call_repeated(fake):
    org = fake.orgs["source"]
    client = client_for(org)
    client.organization()
    org.revoke_tokens()
    assert client.organization()["id"] == org.org_id
    assert org.token_requests == 2
    assert [r.status for r in org.requests if r.path == "/api/v2/organizations/me"] == [200, 401, 200]


def test_token_refreshed_before_expiry(fake):
    org = fake.orgs["source"]
    org.token_lifetime = 2
    client = client_for(org)
    client.organization()
    time.sleep(1.1)  # past half of a 2 s lifetime: the refresh margin of a short-lived token
    client.organization()
    assert org.token_requests == 2
    assert all(r.status == 200 for r in org.requests if r.path.startswith("/api/v2"))


def test_bad_credentials_are_a_usage_error_without_the_secret(fake):
    org = fake.orgs["source"]
    settings_ = migrate.OrgSettings("source", org.client_id, "wrong-secret-value", org.login_url, org.api_url, True)
    with pytest.raises(migrate.UsageError) as caught:
        migrate.ApiClient(settings_).organization()
    assert "refused its client credentials" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value)


def test_api_domain_followed_only_to_genesys_hosts_or_the_override(fake):
    org = fake.orgs["source"]
    client = client_for(org)
    org.api_domain = "https://evil.example.com"
    client.auth.token()
    assert client.auth.api_url == org.api_url  # ignored: not a Genesys host
    org.api_domain = org.api_url
    client.auth.invalidate(client.auth.token())
    client.auth.token()
    assert client.auth.api_url == org.api_url  # the configured override: accepted
    org.api_domain = "api.mypurecloud.de"
    client.auth.invalidate(client.auth.token())
    client.auth.token()
    assert client.auth.api_url == "https://api.mypurecloud.de"  # a known Genesys API host: followed
    org.api_domain = "http://api.mypurecloud.de"
    fresh = client_for(org)
    fresh.auth.token()
    assert fresh.auth.api_url == org.api_url  # plain http never

# ---- rate governor and retries -----------------------------------------------------------


def test_429_pauses_every_thread_until_retry_after(fake):
    org = fake.orgs["source"]
    org.rate_limit, org.rate_window = 4, 1.0
    client = client_for(org, workers=6)
    threads = [threading.Thread(target=client.organization) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    api = [r for r in org.requests if r.path.startswith("/api/v2")]
    throttled = [r for r in api if r.status == 429]
    assert throttled, "the scaled-down limit must have been hit"
    assert sum(r.status == 200 for r in api) == 12
    in_flight = 0.1  # requests already on the wire when the 429 came back cannot be recalled
    for hit in throttled:
        retry_after = float(hit.response_headers["retry-after"])
        too_soon = [r for r in api if hit.time + in_flight < r.time < hit.time + retry_after]
        assert not too_soon, f"{len(too_soon)} requests arrived before Retry-After had passed"
    assert client.governor.throttled == len(throttled)


def test_governor_paces_requests_at_max_rps(fake):
    org = fake.orgs["source"]
    client = client_for(org, max_rps=20.0)
    threads = [threading.Thread(target=client.organization) for _ in range(10)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = sorted(r.time for r in org.requests if r.path.startswith("/api/v2"))
    assert times[-1] - times[0] >= 9 * 0.05 * 0.95
    assert time.monotonic() - started < 2.0


def test_governor_slows_down_before_the_limit(fake):
    org = fake.orgs["source"]
    org.rate_limit, org.rate_window = 30, 2.0
    client = client_for(org, max_rps=200.0)
    for _ in range(40):
        client.organization()
    api = [r for r in org.requests if r.path.startswith("/api/v2")]
    assert sum(r.status == 200 for r in api) == 40
    assert sum(r.status == 429 for r in api) <= 1


def test_503_is_retried_and_its_retry_after_honoured(fake):
    org = fake.orgs["source"]
    client = client_for(org)
    org.inject_fault(status=503, times=2, path_prefix="/api/v2/organizations")
    assert client.organization()["id"] == org.org_id
    org.inject_fault(status=503, retry_after=1, path_prefix="/api/v2/organizations")
    client.organization()
    calls = [r for r in org.requests if r.path == "/api/v2/organizations/me"]
    assert [r.status for r in calls] == [503, 503, 200, 503, 200]
    assert calls[4].time - calls[3].time >= 1.0


def test_dropped_connection_is_retried(fake):
    org = fake.orgs["source"]
    client = client_for(org)
    org.inject_fault(drop=True, path_prefix="/api/v2/organizations")
    assert client.organization()["id"] == org.org_id
    assert [r.status for r in org.requests if r.path == "/api/v2/organizations/me"] == [None, 200]


@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_other_client_errors_are_never_retried(fake, status):
    org = fake.orgs["source"]
    client = client_for(org)
    org.inject_fault(status=status, path_prefix="/api/v2/organizations")
    with pytest.raises(migrate.ApiError) as caught:
        client.organization()
    assert caught.value.status == status and caught.value.code
    assert len([r for r in org.requests if r.path == "/api/v2/organizations/me"]) == 1

# ---- state file and lock -------------------------------------------------------------------


def test_state_file_is_atomic_private_and_keeps_a_backup(tmp_path):
    state = migrate.StateFile(tmp_path / "s.json").load()
    state.update(lambda data: data.update(step=1))
    state.update(lambda data: data.update(step=2))
    assert json.loads((tmp_path / "s.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "s.json.bak").read_text())["step"] == 1
    assert os.stat(tmp_path / "s.json").st_mode & 0o777 == 0o600
    assert json.loads((tmp_path / "s.json").read_text())["formatVersion"] == migrate.STATE_FORMAT_VERSION


WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
import migrate
state = migrate.StateFile(sys.argv[1]).load()
n = state.data.get("n", 0)
while True:
    n += 1
    state.update(lambda data: data.update(n=n, payload=["x" * 100] * 2000))
    print(n, flush=True)
"""


def test_state_write_survives_kill_9_at_random_moments(tmp_path):
    path = tmp_path / "state.json"
    last_seen = 0
    for delay in (0.05, 0.13, 0.21, 0.08, 0.3, 0.17):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), os.path.dirname(MIGRATE)],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one write finished
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())  # never half a file
        assert data["n"] >= last_seen and len(data["payload"]) == 2000
        last_seen = data["n"]
    assert last_seen >= 6


def test_corrupt_state_file_is_a_clear_error_that_changes_nothing(fake, tmp_path):
    (tmp_path / "migration_state.json").write_text('{"formatVersion": 1, "exports": {')
    before = (tmp_path / "migration_state.json").read_bytes()
    env = org_env(fake, source="source")
    result = run_cli(["export", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "state file migration_state.json is not valid JSON (line 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "migration_state.json").read_bytes() == before
    assert not (tmp_path / "migration_state.json.bak").exists()
    assert not [r for r in fake.orgs["source"].requests if r.method == "POST" and "export" in r.path]


def test_second_run_while_the_lock_is_held_exits_4(fake, tmp_path):
    holder = migrate.StateFile(tmp_path / "migration_state.json")
    holder.acquire_lock()
    try:
        env = org_env(fake, source="source")
        result = run_cli(["export", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"],
                         env=env, cwd=tmp_path)
    finally:
        holder.release_lock()
    assert result.returncode == 4
    assert f"pid {os.getpid()}" in result.stderr and "holds migration_state.json.lock" in result.stderr
