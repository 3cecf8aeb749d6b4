"""Tests of the fake Genesys Cloud itself, over real loopback HTTP (tests/FAKE_SPEC.md)."""

import gzip
import http.client
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
import requests

from fake_genesys import (
    FakeGenesys,
    InteractionSource,
    canonical_json,
    generate_interactions,
    populate_reference_objects,
)

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_PATH = os.path.join(HERE, "..", "..", "shared", "genesys-models.json")
MODELS = json.load(open(MODELS_PATH))["models"] if os.path.exists(MODELS_PATH) else None
ERROR_BODY_KEYS = {"message", "code", "status", "messageWithParams", "messageParams", "contextId", "details", "errors"}
RECORD_KEYS = ["id", "createdDate", "lastUpdatedDate", "version", "selfUri", "interactionType", "direction",
               "startTime", "endTime", "routing", "wrapupCode", "userId", "participants", "attributes",
               "transcripts", "media"]
STRIP = {"id", "createdDate", "lastUpdatedDate", "version", "selfUri", "media", "transcripts"}


# ---- helpers ---------------------------------------------------------------------------------

def session():
    s = requests.Session()
    s.trust_env = False
    return s


def get_token(org, s=None):
    r = (s or session()).post(org.login_url + "/oauth/token", auth=(org.client_id, org.client_secret),
                              data={"grant_type": "client_credentials"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


class Api:
    def __init__(self, org, s=None):
        self.org = org
        self.s = s or session()
        self.token = get_token(org, self.s)

    def __call__(self, method, path, **kw):
        headers = kw.pop("headers", {})
        headers.setdefault("Authorization", "Bearer " + self.token)
        return self.s.request(method, self.org.api_url + path, headers=headers, timeout=10, **kw)

    def get(self, path, **kw):
        return self("GET", path, **kw)

    def post(self, path, **kw):
        return self("POST", path, **kw)


def wait_for(fn, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %.1fs" % timeout)
        time.sleep(interval)


def assert_error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ERROR_BODY_KEYS
    assert body["code"] == code and body["status"] == status
    return body


def assert_fits_model(obj, model):
    """Every field is a field of the real model, and enum fields hold known values."""
    if MODELS is None:
        pytest.skip("genesys-models.json not found")
    fields = MODELS[model]
    assert set(obj) <= set(fields), (model, set(obj) - set(fields))
    for k, v in obj.items():
        spec = fields[k].split(" ", 1)
        if len(spec) == 2 and isinstance(v, str):
            assert v in spec[1].split("|"), (model, k, v)


def export_body(start, end, **kw):
    body = {"startDate": start, "endDate": end, "schemaVersion": "v2.1",
            "interactionTypes": ["voice", "chat", "email"], "includeTranscripts": True,
            "includeMedia": False, "format": "json"}
    body.update(kw)
    return body


def import_ready(records):
    return [{k: v for k, v in r.items() if k not in STRIP} for r in records]


def run_export(api, body):
    r = api.post("/api/v2/interaction/export", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    return wait_for(lambda: (lambda j: j if j["status"] in ("completed", "failed") else None)(
        api.get("/api/v2/interaction/export/" + job_id).json()))


def download(url, **kw):
    return session().get(url, timeout=10, **kw)


def run_import(api, records, allow_duplicates=False):
    r = api.post("/api/v2/interaction/import",
                 json={"interactions": records, "schemaVersion": "v2.1", "allowDuplicates": allow_duplicates})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    return wait_for(lambda: (lambda j: j if j["status"] in ("completed", "failed") else None)(
        api.get("/api/v2/interaction/import/" + job_id).json()))


# ---- auth --------------------------------------------------------------------------------------

def test_token_and_organization(fake):
    org = fake.orgs["source"]
    s = session()
    r = s.post(org.login_url + "/oauth/token", auth=(org.client_id, org.client_secret),
               data={"grant_type": "client_credentials"})
    assert r.status_code == 200
    assert set(r.json()) == {"access_token", "token_type", "expires_in"}
    assert r.json()["token_type"] == "bearer" and r.json()["expires_in"] == 86399
    assert org.token_requests == 1
    me = s.get(org.api_url + "/api/v2/organizations/me",
               headers={"Authorization": "Bearer " + r.json()["access_token"]})
    assert me.status_code == 200
    assert me.json() == {"id": org.org_id, "name": "source", "domain": "source", "state": "active",
                         "selfUri": "/api/v2/organizations/" + org.org_id}
    assert_fits_model(me.json(), "Organization")
    assert [(q.method, q.path, q.status, q.client_id) for q in org.requests] == [
        ("POST", "/oauth/token", 200, org.client_id), ("GET", "/api/v2/organizations/me", 200, org.client_id)]
    assert org.requests[1].headers["authorization"].startswith("Bearer ")
    assert fake.orgs["target"].requests == []


def test_token_bad_credentials_and_api_domain(fake):
    org = fake.orgs["source"]
    s = session()
    url = org.login_url + "/oauth/token"
    r = s.post(url, auth=(org.client_id, "wrong"), data={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client" and "description" in r.json()
    r = s.post(url, data={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    other = fake.orgs["target"]
    r = s.post(url, auth=(other.client_id, other.client_secret), data={"grant_type": "client_credentials"})
    assert r.status_code == 400, "each org knows only its own client"
    r = s.post(url, auth=(org.client_id, org.client_secret), data={"grant_type": "password"})
    assert r.status_code == 400
    assert org.token_requests == 0
    org.api_domain = "mypurecloud.ie"
    r = s.post(url, auth=(org.client_id, org.client_secret), data={"grant_type": "client_credentials"})
    assert r.json()["api_domain"] == "mypurecloud.ie"


def test_401_bad_credentials_and_revoke(fake):
    org = fake.orgs["source"]
    api = Api(org)
    assert_error(api.get("/api/v2/organizations/me", headers={"Authorization": ""}), 401, "bad.credentials")
    assert_error(api.s.get(org.api_url + "/api/v2/organizations/me"), 401, "bad.credentials")
    assert_error(api.get("/api/v2/organizations/me", headers={"Authorization": "Bearer nope"}), 401,
                 "bad.credentials")
    assert api.get("/api/v2/organizations/me").status_code == 200
    org.revoke_tokens()
    r = api.get("/api/v2/organizations/me")
    body = assert_error(r, 401, "bad.credentials")
    assert_fits_model(body, "ErrorBody")
    assert "inin-ratelimit-count" in r.headers
    api.token = get_token(org, api.s)
    assert api.get("/api/v2/organizations/me").status_code == 200
    # a token of the other org is not valid here
    other = get_token(fake.orgs["target"])
    assert_error(api.get("/api/v2/organizations/me", headers={"Authorization": "Bearer " + other}), 401,
                 "bad.credentials")


def test_token_lifetime(fake):
    org = fake.orgs["source"]
    org.token_lifetime = 0
    api = Api(org)
    assert_error(api.get("/api/v2/organizations/me"), 401, "bad.credentials")
    org.token_lifetime = 3600
    api.token = get_token(org, api.s)
    assert api.get("/api/v2/organizations/me").status_code == 200


def test_unknown_path_is_404_error_body(fake):
    api = Api(fake.orgs["source"])
    assert_error(api.get("/api/v2/no/such/thing"), 404, "not.found")
    assert_error(api.get("/api/v2/interaction/export/does-not-exist"), 404, "not.found")


# ---- rate limits -------------------------------------------------------------------------------

def test_sliding_window_429_and_headers(fake):
    org = fake.orgs["source"]
    org.rate_limit, org.rate_window = 5, 1.0
    api = Api(org)
    t0 = time.monotonic()
    for i in range(1, 6):
        r = api.get("/api/v2/organizations/me")
        assert r.status_code == 200
        assert r.headers["inin-ratelimit-count"] == str(i)
        assert r.headers["inin-ratelimit-allowed"] == "5"
        assert r.headers["inin-ratelimit-reset"] == "1"
        assert r.headers["X-RateLimit-Remaining"] == str(5 - i)
    for _ in range(3):                      # throttled requests do not count
        r = api.get("/api/v2/organizations/me")
        body = assert_error(r, 429, "too.many.requests")
        assert r.headers["Retry-After"] == "1"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert body["messageParams"] == {"retryAfter": "1"}
        assert org.requests[-1].status == 429 and org.requests[-1].response_headers["retry-after"] == "1"
    time.sleep(max(0.0, t0 + 1.05 - time.monotonic()))
    assert [api.get("/api/v2/organizations/me").status_code for _ in range(6)] == [200] * 5 + [429]
    assert org.token_requests == 1, "the token endpoint is not rate limited"


def test_retry_after_is_ceiling_of_oldest_leaving(fake):
    org = fake.orgs["target"]
    org.rate_limit, org.rate_window = 2, 2.5
    api = Api(org)
    assert api.get("/api/v2/organizations/me").status_code == 200
    assert api.get("/api/v2/organizations/me").headers["inin-ratelimit-reset"] == "3"
    r = api.get("/api/v2/organizations/me")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    # limits are per client: the other org is unaffected
    assert Api(fake.orgs["source"]).get("/api/v2/organizations/me").status_code == 200


def test_status_window_shared_by_export_and_import_status(fake):
    src = fake.orgs["source"]
    src.status_rate_limit, src.status_rate_window = 3, 1.0
    api = Api(src)
    refs = populate_reference_objects(src)
    export_id = api.post("/api/v2/interaction/export",
                         json=export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")).json()["id"]
    records = import_ready(generate_interactions(refs, 2))
    import_id = api.post("/api/v2/interaction/import",
                         json={"interactions": records, "schemaVersion": "v2.1"}).json()["id"]
    r = api.get("/api/v2/interaction/export/" + export_id)
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "2"
    assert r.headers["inin-ratelimit-count"] == "3"         # general window: 2 POSTs + this GET
    assert api.get("/api/v2/interaction/import/" + import_id).headers["X-RateLimit-Remaining"] == "1"
    assert api.get("/api/v2/interaction/export/" + export_id).headers["X-RateLimit-Remaining"] == "0"
    r = api.get("/api/v2/interaction/import/" + import_id)
    assert_error(r, 429, "too.many.requests")
    assert r.headers["Retry-After"] == "1"
    assert api.get("/api/v2/interaction/export/" + export_id).status_code == 429
    # other endpoints only use the general window
    assert api.get("/api/v2/organizations/me").status_code == 200
    assert api.get("/api/v2/interaction/export/schemas").status_code == 200
    assert api.post("/api/v2/interaction/export",
                    json=export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")).status_code == 202


def test_concurrent_clients_hit_the_limit_exactly(fake):
    org = fake.orgs["source"]
    org.rate_limit, org.rate_window = 40, 30.0
    token = get_token(org)
    codes = []
    lock = threading.Lock()

    def worker():
        s = session()
        for _ in range(5):
            c = s.get(org.api_url + "/api/v2/organizations/me", headers={"Authorization": "Bearer " + token}).status_code
            with lock:
                codes.append(c)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(200) == 40 and codes.count(429) == 40
    assert fake.server_errors == []


# ---- faults, latency, keep-alive ---------------------------------------------------------------

def test_fault_injection(fake):
    org = fake.orgs["source"]
    api = Api(org)
    org.inject_fault(503, retry_after=2)
    r = api.get("/api/v2/organizations/me")
    assert_error(r, 503, "service.unavailable")
    assert r.headers["Retry-After"] == "2"
    assert api.get("/api/v2/organizations/me").status_code == 200
    org.inject_fault(502, method="POST", path_prefix="/api/v2/interaction/import", times=2)
    assert api.get("/api/v2/organizations/me").status_code == 200
    body = {"interactions": [{"interactionType": "voice"}], "schemaVersion": "v2.1"}
    assert [api.post("/api/v2/interaction/import", json=body).status_code for _ in range(3)] == [502, 502, 202]
    assert org.import_posts == 1
    org.inject_fault(504)                   # default: API requests only, not the token endpoint
    assert get_token(org)
    assert api.get("/api/v2/organizations/me").status_code == 504
    org.inject_fault(503, path_prefix="/oauth/token")
    assert session().post(org.login_url + "/oauth/token").status_code == 503


def test_dropped_connection(fake):
    org = fake.orgs["source"]
    api = Api(org)
    assert api.get("/api/v2/organizations/me").status_code == 200     # a pooled keep-alive connection
    org.inject_fault(drop=True)
    with pytest.raises(requests.ConnectionError):
        api.get("/api/v2/organizations/me")
    assert org.requests[-1].status is None
    assert api.get("/api/v2/organizations/me").status_code == 200
    org.inject_fault(drop=True, method="POST")
    with pytest.raises(requests.ConnectionError):
        api.post("/api/v2/interaction/import", json={"interactions": []})
    assert api.get("/api/v2/organizations/me").status_code == 200


def test_keep_alive_survives_error_paths(fake):
    org = fake.orgs["source"]
    token = get_token(org)
    host, port = urlsplit(org.api_url).hostname, urlsplit(org.api_url).port
    conn = http.client.HTTPConnection(host, port, timeout=10)
    auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    big_body = b'{"interactions": [], "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    calls = [
        ("GET", "/api/v2/organizations/me", None, {}, 401),
        ("POST", "/api/v2/interaction/import", b'{"interactions": [1, 2]}', {}, 401),
        ("POST", "/api/v2/interaction/import", big_body, auth, 413),
        ("POST", "/api/v2/interaction/import", b"{not json", auth, 400),
        ("POST", "/api/v2/interaction/import",
         json.dumps({"interactions": [{}] * 1001, "schemaVersion": "v2.1"}).encode(), auth, 413),
        ("GET", "/api/v2/nothing", None, auth, 404),
        ("POST", "/oauth/token", b"grant_type=client_credentials", {}, 400),
        ("GET", "/api/v2/organizations/me", None, auth, 200),
    ]
    sock = None
    for method, path, body, headers, status in calls:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == status, (path, data)
        assert not resp.will_close
        if sock is None:
            sock = conn.sock
        assert conn.sock is sock, "the server closed the connection after %s %s" % (method, path)
    assert json.loads(data)["id"] == org.org_id
    conn.close()


def test_latency(fake):
    org = fake.orgs["source"]
    api = Api(org)
    org.latency = 0.2
    t = time.monotonic()
    assert api.get("/api/v2/organizations/me").status_code == 200
    assert time.monotonic() - t >= 0.2


# ---- export ------------------------------------------------------------------------------------

@pytest.fixture
def exported(fake):
    src = fake.orgs["source"]
    refs = populate_reference_objects(src, seed=3)
    src.interactions = list(generate_interactions(refs, 300, start="2026-01-01T00:00:00Z",
                                                  end="2026-01-04T00:00:00Z", seed=3))
    return src, Api(src)


def test_export_job_lifecycle_and_download(fake, exported):
    src, api = exported
    recs = src.interactions
    start, end = recs[50]["startTime"], recs[250]["startTime"]           # [start, end)
    expected = [{k: v for k, v in r.items() if k != "media"} for r in recs[50:250]
                if r["interactionType"] in ("voice", "chat")]
    r = api.post("/api/v2/interaction/export", json=export_body(start, end, interactionTypes=["voice", "chat"]))
    assert r.status_code == 202
    job = r.json()
    assert set(job) == {"id", "status", "selfUri"} and job["status"] == "queued"
    assert job["selfUri"] == "/api/v2/interaction/export/" + job["id"]
    first = api.get("/api/v2/interaction/export/" + job["id"]).json()
    assert first["status"] in ("queued", "running") and "downloadUrl" not in first
    done = wait_for(lambda: (lambda j: j if j["status"] == "completed" else None)(
        api.get("/api/v2/interaction/export/" + job["id"]).json()))
    assert set(done) == {"id", "status", "recordCount", "downloadUrl", "expiresAt"}
    assert done["recordCount"] == len(expected)
    assert done["downloadUrl"].startswith(fake.download_url + "/")
    assert urlsplit(done["downloadUrl"]).netloc != urlsplit(src.api_url).netloc
    expires = datetime.fromisoformat(done["expiresAt"])
    assert abs((expires - datetime.now(timezone.utc)).total_seconds() - 300) < 10

    refused = download(done["downloadUrl"], headers={"Authorization": "Bearer " + api.token})
    assert refused.status_code == 400
    assert fake.download_log[-1].headers["authorization"].startswith("Bearer ")
    assert fake.download_log[-1].status == 400

    got = download(done["downloadUrl"])
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/gzip"
    assert got.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Encoding" not in got.headers
    assert json.loads(gzip.decompress(got.content)) == expected
    assert "authorization" not in fake.download_log[-1].headers

    # each read of the job mints a fresh URL; expiring them all gives 403, a new read heals it
    second = api.get("/api/v2/interaction/export/" + job["id"]).json()
    assert second["downloadUrl"] != done["downloadUrl"]
    src.expire_download_urls()
    assert download(done["downloadUrl"]).status_code == 403
    assert download(second["downloadUrl"]).status_code == 403
    third = api.get("/api/v2/interaction/export/" + job["id"]).json()
    assert download(third["downloadUrl"]).status_code == 200
    fake.refuse_next_downloads = 1                # 403 before expiresAt, once
    assert download(third["downloadUrl"]).status_code == 403
    assert download(third["downloadUrl"]).status_code == 200
    tampered = third["downloadUrl"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert download(tampered).status_code == 403


def test_export_media_and_transcripts_flags(fake, exported):
    src, api = exported
    done = run_export(api, export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
                                       includeTranscripts=False, includeMedia=True))
    got = json.loads(gzip.decompress(download(done["downloadUrl"]).content))
    assert got and len(got) == done["recordCount"]
    assert all("media" in r and "transcripts" not in r for r in got)
    assert all(r["startTime"] < "2026-01-02" for r in got)
    assert "transcripts" in src.interactions[0], "the stored records are not changed"


def test_download_url_expires_after_ttl(fake, exported):
    src, api = exported
    src.download_ttl = 0.3
    done = run_export(api, export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"))
    assert "X-Amz-Signature=" in done["downloadUrl"]
    time.sleep(0.35)
    assert download(done["downloadUrl"]).status_code == 403


def test_export_failure_and_validation(fake, exported):
    src, api = exported
    src.fail_next_export = "Export storage unavailable"
    failed = run_export(api, export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"))
    assert failed["status"] == "failed" and failed["errorMessage"] == "Export storage unavailable"
    assert "downloadUrl" not in failed
    assert run_export(api, export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"))["status"] == "completed"
    assert api.get("/api/v2/interaction/export/schemas").json() == {
        "entities": [{"version": "v2.0"}, {"version": "v2.1"}]}
    assert_error(api.post("/api/v2/interaction/export",
                          json=export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", schemaVersion="v9")),
                 400, "SCHEMA_INCOMPATIBLE")
    assert api.post("/api/v2/interaction/export",
                    json=export_body("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")).status_code == 400
    assert api.post("/api/v2/interaction/export", json=export_body("yesterday", "today")).status_code == 400


def test_export_time_based_without_polling(fake, exported):
    src, api = exported
    src.export_job_seconds = 0.3
    job_id = api.post("/api/v2/interaction/export",
                      json=export_body("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")).json()["id"]
    assert api.get("/api/v2/interaction/export/" + job_id).json()["status"] == "queued"
    time.sleep(0.3)
    assert api.get("/api/v2/interaction/export/" + job_id).json()["status"] == "completed"


def test_export_source_streams_generated_records(fake):
    src = fake.orgs["source"]
    refs = populate_reference_objects(src, seed=7)
    gen = generate_interactions(refs, 10, seed=7)
    assert inspect.isgenerator(gen)
    src.export_source = InteractionSource(refs, 5000, seed=7)
    src.interactions = [{"bogus": True}]                 # overridden by export_source
    api = Api(src)
    done = run_export(api, export_body("2026-01-03T00:00:00Z", "2026-01-10T00:00:00Z",
                                       interactionTypes=["voice"]))
    expected = [{k: v for k, v in r.items() if k != "media"} for r in generate_interactions(refs, 5000, seed=7)
                if "2026-01-03" <= r["startTime"] < "2026-01-10" and r["interactionType"] == "voice"]
    assert done["recordCount"] == len(expected) > 100
    assert json.loads(gzip.decompress(download(done["downloadUrl"]).content)) == expected

    # a plain callable that ignores its arguments is filtered by the fake
    src.export_source = lambda start, end, types: generate_interactions(refs, 300, seed=8)
    done = run_export(api, export_body("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z"))
    got = json.loads(gzip.decompress(download(done["downloadUrl"]).content))
    assert len(got) == done["recordCount"] > 0
    assert all("2026-01-05" <= r["startTime"] < "2026-01-06" for r in got)


# ---- import ------------------------------------------------------------------------------------

@pytest.fixture
def target(fake):
    tgt = fake.orgs["target"]
    refs = populate_reference_objects(tgt, seed=11)
    return tgt, refs, Api(tgt)


def test_import_validation(fake, target):
    tgt, refs, api = target
    good = import_ready(generate_interactions(refs, 3, seed=1))

    def post(records, **extra):
        body = {"interactions": records, "schemaVersion": "v2.1", "allowDuplicates": False}
        body.update(extra)
        return api.post("/api/v2/interaction/import", json=body)

    assert_error(post(good * 334), 413, "payload.too.large")                 # 1002 records
    big = api.post("/api/v2/interaction/import", data=b" " * (10 * 1024 * 1024 + 1),
                   headers={"Content-Type": "application/json"})
    assert_error(big, 413, "payload.too.large")
    for field in ("id", "createdDate", "lastUpdatedDate", "version", "selfUri"):
        body = assert_error(post(good[:1] + [dict(good[1], **{field: "x"})]), 400, "IMMUTABLE_FIELD")
        assert body["details"][0]["fieldName"] == "interactions[1].%s" % field
    for field in ("media", "transcripts", "notes"):
        assert_error(post([dict(good[0], **{field: {}})]), 400, "UNKNOWN_FIELD")
    tgt.max_body_bytes = 2000                                                  # a stricter gateway
    assert_error(post(good), 413, "payload.too.large")
    tgt.max_body_bytes = 10 * 1024 * 1024
    assert_error(post(good, schemaVersion="v3.0"), 400, "SCHEMA_INCOMPATIBLE")
    assert_error(post(good, schemaVersion=None), 400, "SCHEMA_INCOMPATIBLE")
    assert tgt.import_posts == 0
    r = post(good)
    assert r.status_code == 202
    assert set(r.json()) == {"id", "status"} and r.json()["status"] == "queued"
    assert tgt.import_posts == 1
    assert post(good * 333).status_code == 202                                  # 999 records: fine


def test_import_job_stores_records(fake, target):
    tgt, refs, api = target
    records = import_ready(generate_interactions(refs, 50, seed=2))
    job = run_import(api, records)
    assert job == {"id": job["id"], "status": "completed", "recordCount": 50, "errors": []}
    assert tgt.imported == records
    assert tgt.imported_canonical == {canonical_json(r) for r in records}


def test_import_all_or_nothing_lists_every_failing_record(fake, target):
    tgt, refs, api = target
    records = import_ready(generate_interactions(refs, 10, seed=3))
    records[2]["routing"]["queue"]["id"] = "no-such-queue"
    records[4]["routing"]["flow"]["id"] = "no-such-flow"
    records[5]["routing"]["skills"].append({"id": "no-such-skill"})
    records[6]["routing"]["languageId"] = "xx"
    records[7]["wrapupCode"]["id"] = "no-such-code"
    records[8]["participants"][0]["userId"] = "no-such-user"
    records[9]["userId"] = "no-such-user"
    job = run_import(api, records)
    assert job["status"] == "failed" and job["recordCount"] == 10
    assert [(e["index"], e["code"]) for e in job["errors"]] == [
        (2, "QUEUE_NOT_FOUND")] + [(i, "INVALID_REFERENCE") for i in range(4, 10)]
    assert all(set(e) == {"code", "message", "index"} for e in job["errors"])
    assert tgt.imported == [] and tgt.imported_canonical == set()
    # the same references in the source org's terms are unknown here
    src_refs = populate_reference_objects(fake.orgs["source"], seed=11)
    assert src_refs["queues"][0] not in tgt.objects["queues"]


def test_import_duplicates(fake, target):
    tgt, refs, api = target
    records = import_ready(generate_interactions(refs, 5, seed=4))
    assert run_import(api, records)["status"] == "completed"
    shuffled = []
    for r in records:                      # same content, other key order: still equal
        keys = list(r)
        random.Random(1).shuffle(keys)
        shuffled.append({k: r[k] for k in keys})
    again = run_import(api, shuffled)
    assert again["status"] == "failed"
    assert [(e["index"], e["code"]) for e in again["errors"]] == [(i, "DUPLICATE_INTERACTION") for i in range(5)]
    fresh = import_ready(generate_interactions(refs, 3, seed=5))
    within = run_import(api, [fresh[0], fresh[1], fresh[0]])
    assert [(e["index"], e["code"]) for e in within["errors"]] == [(2, "DUPLICATE_INTERACTION")]
    assert len(tgt.imported) == 5
    assert run_import(api, records, allow_duplicates=True)["status"] == "completed"
    assert len(tgt.imported) == 10


def test_import_jobs_fifo_and_max_running(fake, target):
    tgt, refs, api = target
    tgt.max_running_import_jobs = 2
    tgt.import_seconds_per_record = 0.006                  # 50 records: 0.3 s per job
    all_records = import_ready(generate_interactions(refs, 300, seed=6))
    chunks = [all_records[i:i + 50] for i in range(0, 300, 50)]
    ids = [api.post("/api/v2/interaction/import",
                    json={"interactions": c, "schemaVersion": "v2.1"}).json()["id"] for c in chunks]
    assert api.get("/api/v2/interaction/import/" + ids[-1]).json()["status"] == "queued"
    wait_for(lambda: all(api.get("/api/v2/interaction/import/" + i).json()["status"] == "completed" for i in ids),
             interval=0.05)
    jobs = [tgt.import_job(i) for i in ids]
    assert [j.started for j in jobs] == sorted(j.started for j in jobs)
    assert [j.finished for j in jobs] == sorted(j.finished for j in jobs)
    for j in jobs:                        # never more than 2 running at once
        assert sum(1 for o in jobs if o.started <= j.started < o.finished) <= 2
        assert j.finished - j.started >= 0.3 - 1e-6
    assert tgt.imported == all_records


def test_stop_ends_servers_and_scheduler():
    fake = FakeGenesys(("a",))
    fake.start()
    api_url = fake.orgs["a"].api_url
    assert fake._scheduler.is_alive()
    fake.stop()
    assert not fake._scheduler.is_alive()
    with pytest.raises(requests.ConnectionError):
        session().get(api_url + "/api/v2/organizations/me", timeout=2)
    fake.stop()                           # idempotent


# ---- generators --------------------------------------------------------------------------------

def test_reference_objects(fake):
    src, tgt = fake.orgs["source"], fake.orgs["target"]
    a = populate_reference_objects(src, seed=0)
    b = populate_reference_objects(tgt, seed=0)
    assert {k: len(v) for k, v in a.items()} == {"divisions": 1, "queues": 8, "flows": 4, "skills": 6,
                                                   "languages": 3, "wrapupcodes": 6, "users": 10}
    names = lambda org, kind: sorted(o["name"] for o in org.objects[kind].values())  # noqa: E731
    for kind in a:
        assert names(src, kind) == names(tgt, kind)
        assert not set(a[kind]) & set(b[kind]), "ids differ between orgs"
        assert len(set(names(src, kind))) == len(a[kind])
    assert "Billing" in names(src, "queues") and "Support EN" in names(src, "queues")
    emails = [u["email"] for u in src.objects["users"].values()]
    assert len(set(emails)) == 10 and all("@" in e for e in emails)
    again = FakeGenesys(("source",)).orgs["source"]
    assert populate_reference_objects(again, seed=0) == a, "deterministic"
    models = {"divisions": "AuthzDivision", "skills": "RoutingSkill", "languages": "Language",
              "wrapupcodes": "WrapupCode", "flows": "Flow", "queues": "Queue", "users": "User"}
    for kind, model in models.items():
        for obj in src.objects[kind].values():
            assert_fits_model(obj, model)
            assert obj["selfUri"].endswith("/" + obj["id"])


def test_generate_interactions_shape_order_uniqueness(fake):
    org = fake.orgs["source"]
    refs = populate_reference_objects(org)
    recs = list(generate_interactions(refs, 2000, start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"))
    assert len(recs) == 2000
    assert recs == list(generate_interactions(refs, 2000, start="2026-01-01T00:00:00Z",
                                              end="2026-01-02T00:00:00Z"))
    assert recs != list(generate_interactions(refs, 2000, start="2026-01-01T00:00:00Z",
                                              end="2026-01-02T00:00:00Z", seed=1))
    starts = [r["startTime"] for r in recs]
    assert starts == sorted(starts) and len(set(starts)) == 2000
    assert "2026-01-01T00:00:00.000Z" <= starts[0] and starts[-1] < "2026-01-02T00:00:00.000Z"
    assert len({canonical_json(r) for r in import_ready(recs)}) == 2000
    assert len({r["id"] for r in recs}) == 2000
    assert {r["interactionType"] for r in recs} == {"voice", "chat", "email"}
    for r in recs:
        assert list(r) == RECORD_KEYS
        assert r["selfUri"] == "/api/v2/interactions/" + r["id"]
        assert r["startTime"] < r["endTime"] <= r["createdDate"] <= r["lastUpdatedDate"]
        assert datetime.fromisoformat(r["startTime"]).tzinfo is not None
        assert r["direction"] in ("inbound", "outbound")
        routing = r["routing"]
        assert set(routing) == {"queue", "flow", "skills", "languageId"}
        assert routing["queue"]["id"] in refs["queues"] and routing["flow"]["id"] in refs["flows"]
        assert routing["skills"] and all(s["id"] in refs["skills"] for s in routing["skills"])
        assert routing["languageId"] in refs["languages"] and r["wrapupCode"]["id"] in refs["wrapupcodes"]
        assert r["userId"] in refs["users"]
        assert [p["purpose"] for p in r["participants"]] == ["agent", "customer"]
        assert r["participants"][0]["userId"] == r["userId"] and r["participants"][1]["address"]
        assert all(isinstance(v, str) for v in r["attributes"].values())
        assert r["transcripts"] and all(set(t) == {"text"} for t in r["transcripts"])
        assert set(r["media"]) == {"recordingUri"}
    only_chat = list(generate_interactions(refs, 20, types=("chat",)))
    assert {r["interactionType"] for r in only_chat} == {"chat"}


def test_interaction_source_matches_generator(fake):
    refs = populate_reference_objects(fake.orgs["source"])
    source = InteractionSource(refs, 3000, seed=9)
    full = list(generate_interactions(refs, 3000, seed=9))
    assert list(source) == full
    window = ("2026-01-10T00:00:00Z", "2026-01-12T12:00:00Z", ["chat", "email"])
    expected = [r for r in full if "2026-01-10" <= r["startTime"] < "2026-01-12T12"
                and r["interactionType"] in ("chat", "email")]
    assert list(source(*window)) == expected
    assert source.count(*window) == len(expected)


# ---- standalone --------------------------------------------------------------------------------

def test_standalone_main():
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_genesys.py"), "--orgs", "one,two",
                             "--rate-limit", "7", "--export-job-seconds", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert set(info["orgs"]) == {"one", "two"}
        assert info["download_url"].startswith("http://127.0.0.1:")
        one = info["orgs"]["one"]
        assert set(one) == {"login_url", "api_url", "client_id", "client_secret", "org_id"}
        s = session()
        tok = s.post(one["login_url"] + "/oauth/token", auth=(one["client_id"], one["client_secret"]),
                     data={"grant_type": "client_credentials"}).json()["access_token"]
        r = s.get(one["api_url"] + "/api/v2/organizations/me", headers={"Authorization": "Bearer " + tok})
        assert r.json()["id"] == one["org_id"] and r.headers["inin-ratelimit-allowed"] == "7"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == "" and err == ""
