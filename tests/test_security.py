"""Issue 8, items 7-10 and 16: where the token may go, what the environment may change, how long the server
may make us wait, and answers a hostile or broken server may give. Real loopback HTTP against the fake;
the CLI as a subprocess where the behaviour is what an operator sees."""

import base64
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from requests.structures import CaseInsensitiveDict

from fake_genesys import (ConversationSource, InteractionSource, generate_interactions, populate_config_org,
                          populate_reference_objects)
from support import client_for, mapping_between, migrate, org_env, run_cli, write_export, write_json

FAST = ["--max-rps", "500", "--max-status-rps", "500", "--poll-initial", "0.05", "--poll-max", "0.5"]
DAY = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"]
EXPORT = ["export", *DAY, "--out", "exports", *FAST]
EXPORT_PATH = "/api/v2/interaction/export"
IMPORT_PATH = "/api/v2/interaction/import"
ANALYTICS_JOBS = "/api/v2/analytics/conversations/details/jobs"
# Variables that would change where requests go or what they trust: the tests set them explicitly.
NETWORK_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle",
                     "netrc", "ssl_cert_file"}


# ---- helpers ---------------------------------------------------------------------------------


def clean(env, **extra):
    env = {key: value for key, value in env.items() if key.lower() not in NETWORK_VARIABLES}
    env.update(extra)
    return env


def source_env(fake, **extra):
    return clean(org_env(fake, source="source"), **extra)


def cli(args, env, cwd, timeout=20, note=lambda: ""):
    """run_cli, but a run that hangs (a wait it should have refused) fails the test instead of the suite."""
    started = time.monotonic()
    try:
        result = run_cli(args, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"migrate.py {' '.join(args[:1])} still ran after {timeout} s {note()}\n{stderr[-3000:]}")
    result.elapsed = time.monotonic() - started
    return result


def error_line(result):
    """The run's one `Error:` line (and no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


CRASH = re.compile(r"\b(Type|Key|Attribute|Index|Value|Name|UnboundLocal|Recursion|Overflow|ZeroDivision)Error\b")


def hostile_error_line(result):
    """One `Error:` line that says what the org answered, not a programming error caught and printed."""
    line = error_line(result)
    assert not CRASH.search(line), line
    return line


def tiny_export_source(org):
    """A cheap export: about 20 records in the DAY window."""
    refs = populate_reference_objects(org, seed=3)
    org.export_source = InteractionSource(refs, 20, start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z", seed=1)
    return refs


def export_wrote_file(tmp_path):
    return (tmp_path / "exports" / "20260101T000000Z_20260102T000000Z.json.gz").exists()


def answer_not_found(conn):
    """What a listener this test owns answers: a plain HTTP 404, then it closes."""
    with conn:
        conn.settimeout(2)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def listener():
    """A loopback port this test owns: it records every connection."""
    own = Server(answer_not_found)
    yield own
    own.close()


def pipe(a, b):
    """Copies bytes both ways until either side closes (TLS-aware: drains what OpenSSL already holds)."""
    try:
        while True:
            ready = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([a, b], [], [], 30)
                if not ready:
                    return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        for sock in (a, b):
            try:
                sock.close()
            except OSError:
                pass


class Server:
    """A threaded TCP server running `handle(conn)` per connection; it records who connected."""

    def __init__(self, handle, host="127.0.0.1"):
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.connections = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, address = self.sock.accept()
            except OSError:
                return
            self.connections.append(address)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handle(conn)
        except OSError:
            conn.close()

    def close(self):
        for action in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                action()
            except OSError:
                pass


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture
def tls_front(fake, certificate):
    """https://localhost:<port> terminating TLS in front of the source org's plain http port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    upstream_port = int(fake.orgs["source"].api_url.rsplit(":", 1)[1])

    def handle(conn):
        conn.settimeout(5)
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        tls.settimeout(None)
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
        pipe(tls, upstream)

    server = Server(handle)
    yield server
    server.close()


@pytest.fixture
def connect_proxy():
    """An HTTP CONNECT proxy that records each request line and tunnels it."""
    seen = []

    def handle(conn):
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = conn.recv(4096)
            if not data:
                conn.close()
                return
            head += data
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        seen.append(line)
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
            return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=5)
        upstream.settimeout(None)
        conn.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(conn, upstream)

    server = Server(handle)
    server.seen = seen
    yield server
    server.close()


# ---- item 7: where the token may go ------------------------------------------------------------


def settings_for(api_url="https://api.mypurecloud.ie", overridden=False):
    return migrate.OrgSettings("source", "cid", "csecret-123456", "https://login.mypurecloud.ie", api_url, overridden)


@pytest.mark.parametrize("api_domain", [
    "https://127.0.0.1:8443\\@api.mypurecloud.com",      # urlsplit sees the Genesys host, urllib3 connects to 127.0.0.1
    "https://127.0.0.1\\@api.mypurecloud.com",
    "https://api.mypurecloud.com\\@evil.com",
    "https://user@api.mypurecloud.com",
    "https://user:pw@api.mypurecloud.com",
    "https://api.mypurecloud.com:8443",
    "https://api.mypurecloud.com/x",
    "https://api.mypurecloud.com?x=1",
    "https://api.mypurecloud.com/?x=1",
    "https://api.mypurecloud.com#frag",
    "https://api.mypurecloud.com.evil.com",
    "https://evil.com/api.mypurecloud.com",
    "https://login.mypurecloud.com",
    "http://api.mypurecloud.com",
    "http://api.mypurecloud.com:443",
    "ftp://api.mypurecloud.com",
])
def test_api_domain_refused(api_domain):
    assert migrate.accepted_api_domain(api_domain, settings_for()) is None


@pytest.mark.parametrize("api_domain", ["https://api.mypurecloud.ie", "https://api.mypurecloud.ie:443/",
                                        "https://api.mypurecloud.ie/", "https://api.mypurecloud.de"])
def test_api_domain_accepted_for_genesys_hosts(api_domain):
    accepted = migrate.accepted_api_domain(api_domain, settings_for())
    host = api_domain.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    assert accepted in (f"https://{host}", f"https://{host}:443"), accepted  # a base: no trailing slash


def test_api_domain_accepted_for_the_configured_override_only():
    override = settings_for("http://127.0.0.1:8080", overridden=True)
    assert migrate.accepted_api_domain("http://127.0.0.1:8080", override) == "http://127.0.0.1:8080"
    assert migrate.accepted_api_domain("http://127.0.0.1:8081", override) is None        # another port
    assert migrate.accepted_api_domain("https://127.0.0.1:8080", override) is None       # another scheme
    assert migrate.accepted_api_domain("http://localhost:8080", override) is None        # another host
    assert migrate.accepted_api_domain("http://user@127.0.0.1:8080", override) is None   # userinfo
    not_overridden = settings_for("http://127.0.0.1:8080", overridden=False)              # came from a region
    assert migrate.accepted_api_domain("http://127.0.0.1:8080", not_overridden) is None


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_api_domain_bypass_never_reaches_its_host(fake, listener, tmp_path, scheme):
    source = fake.orgs["source"]
    tiny_export_source(source)
    source.api_domain = f"{scheme}://127.0.0.1:{listener.port}\\@api.mypurecloud.com"
    result = cli(EXPORT, source_env(fake), tmp_path,
                 note=lambda: f"(the listener got {len(listener.connections)} connections)")
    assert result.returncode == 0, result.stderr
    assert "ignoring api_domain" in result.stderr
    assert listener.connections == [], "the Bearer token went to the api_domain's real host"
    assert export_wrote_file(tmp_path)
    assert all(r.headers.get("authorization", "").startswith("Bearer ")
               for r in source.requests if r.path.startswith("/api/v2/"))


@pytest.mark.parametrize("flag,value", [
    ("--source-api-url", "http://evil.example\\@127.0.0.1:1"),
    ("--source-login-url", "http://evil.example\\@127.0.0.1:1"),
    ("--source-api-url", "http://user:pw@127.0.0.1:1"),
    ("--source-api-url", "https://127.0.0.1:1\\@api.mypurecloud.com"),
])
def test_operator_urls_with_userinfo_or_backslash_are_usage_errors(fake, tmp_path, flag, value):
    result = cli([*EXPORT, flag, value], source_env(fake), tmp_path)
    assert result.returncode == 2, result.stderr
    error_line(result)
    assert fake.orgs["source"].requests == []


def test_presigned_download_redirect_is_not_followed(fake, listener, tmp_path):
    source = fake.orgs["source"]
    tiny_export_source(source)
    fake.redirect_downloads = f"http://127.0.0.1:{listener.port}/stolen?from=redirect"
    result = cli(EXPORT, source_env(fake), tmp_path,
                 note=lambda: f"(the listener got {len(listener.connections)} connections)")
    assert result.returncode == 1, result.stderr
    line = error_line(result)
    assert listener.connections == [], "a redirect of the pre-signed URL was followed"
    assert fake.download_log and all(r.status == 302 for r in fake.download_log)
    assert all("authorization" not in r.headers for r in fake.download_log)
    assert "X-Amz-Signature" not in result.stderr and "X-Amz" not in line
    assert not export_wrote_file(tmp_path)


def non_loopback_address():
    """An address of this machine that is not loopback (plain http to it must be refused), or None."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("198.51.100.7", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_presigned_url_over_plain_http_to_a_remote_host_is_refused(fake, tmp_path):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    remote = Server(answer_not_found, address)
    try:
        check_plain_http_download_refused(fake, tmp_path, remote, address)
    finally:
        remote.close()


def check_plain_http_download_refused(fake, tmp_path, remote, address):
    source = fake.orgs["source"]
    tiny_export_source(source)
    signed = (f"http://{address}:{remote.port}/exports/x.json.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
              f"&X-Amz-Signature=feedface00")
    # One answer for both GETs under the prefix: the schema list (entities) and the job (completed).
    source.inject_answer(method="GET", path_prefix=EXPORT_PATH + "/", times=50,
                         body={"entities": [{"version": "v2.0"}, {"version": "v2.1"}], "id": "job-1",
                               "status": "completed", "recordCount": 1, "downloadUrl": signed,
                               "expiresAt": "2099-01-01T00:00:00.000Z"})
    result = cli(EXPORT, source_env(fake), tmp_path)
    assert result.returncode in (1, 2), result.stderr   # a failed transfer; the spec names no code for this case
    line = error_line(result)
    assert "feedface00" not in result.stderr and "X-Amz" not in line
    assert remote.connections == [], "a pre-signed URL over plain http to another host was used"

# ---- item 8: ~/.netrc never read; proxies and CA bundles still work -----------------------------


def test_netrc_never_replaces_the_tools_credentials(fake, tmp_path):
    source = fake.orgs["source"]
    tiny_export_source(source)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login x password y\n")
    os.chmod(home / ".netrc", 0o600)
    result = cli(EXPORT, source_env(fake, HOME=str(home)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert export_wrote_file(tmp_path)
    api = [r for r in source.requests if r.path.startswith("/api/v2/")]
    assert api and all(r.headers.get("authorization", "").startswith("Bearer ") for r in api)
    tokens = [r for r in source.requests if r.path == "/oauth/token"]
    assert tokens
    for request in tokens:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        assert scheme.lower() == "basic"
        assert base64.b64decode(value).decode().split(":", 1)[0] == source.client_id
    assert fake.download_log and all("authorization" not in r.headers for r in fake.download_log)


def tls_export(fake, tls_front, certificate, tmp_path, **variables):
    tiny_export_source(fake.orgs["source"])
    base = f"https://localhost:{tls_front.port}"
    env = source_env(fake, REQUESTS_CA_BUNDLE=certificate[0], **variables)
    return cli([*EXPORT, "--source-api-url", base, "--source-login-url", base], env, tmp_path)


def test_requests_ca_bundle_is_honoured(fake, tls_front, certificate, tmp_path):
    result = tls_export(fake, tls_front, certificate, tmp_path)
    assert result.returncode == 0, result.stderr
    assert export_wrote_file(tmp_path)
    assert any(r.path == "/oauth/token" for r in fake.orgs["source"].requests)


def test_https_proxy_is_honoured(fake, tls_front, certificate, connect_proxy, tmp_path):
    result = tls_export(fake, tls_front, certificate, tmp_path, HTTPS_PROXY=f"http://127.0.0.1:{connect_proxy.port}")
    assert result.returncode == 0, result.stderr
    assert export_wrote_file(tmp_path)
    assert connect_proxy.seen, "the CLI did not go through HTTPS_PROXY"
    assert all(line.startswith(f"CONNECT localhost:{tls_front.port} HTTP/1.") for line in connect_proxy.seen), \
        connect_proxy.seen


def test_no_proxy_is_honoured(fake, tls_front, certificate, connect_proxy, tmp_path):
    result = tls_export(fake, tls_front, certificate, tmp_path,
                        HTTPS_PROXY=f"http://127.0.0.1:{connect_proxy.port}", NO_PROXY="localhost")
    assert result.returncode == 0, result.stderr
    assert export_wrote_file(tmp_path)
    assert connect_proxy.seen == []

# ---- item 9: server-given waits ------------------------------------------------------------------


@pytest.mark.parametrize("status,value", [(503, "86400"), (429, "7200"), (429, "inf"), (429, "soon"), (503, "nan")])
def test_a_wait_longer_than_the_ceiling_stops_the_run(fake, tmp_path, status, value):
    source = fake.orgs["source"]
    tiny_export_source(source)
    source.inject_fault(status=status, retry_after=value, method="POST", path_prefix=EXPORT_PATH, times=20)
    result = cli(EXPORT, source_env(fake), tmp_path, timeout=15)
    assert result.returncode == 1, result.stderr
    line = error_line(result)
    assert "asks to wait" in line and "later" in line
    if value.isdigit():
        assert f"{value} s" in line
    assert result.elapsed < 8
    posts = [r for r in source.requests if r.method == "POST" and r.path == EXPORT_PATH]
    assert len(posts) == 1, "a wait the tool will not honour is not shortened into a retry"
    state = tmp_path / "migration_state.json"
    if state.exists():
        json.loads(state.read_text())


def test_a_short_retry_after_is_honoured_and_the_run_succeeds(fake, tmp_path):
    source = fake.orgs["source"]
    tiny_export_source(source)
    source.inject_fault(status=503, retry_after="1", method="POST", path_prefix=EXPORT_PATH)
    result = cli(EXPORT, source_env(fake), tmp_path)
    assert result.returncode == 0, result.stderr
    posts = [r for r in source.requests if r.method == "POST" and r.path == EXPORT_PATH]
    assert [r.status for r in posts] == [503, 202]
    assert posts[1].time - posts[0].time >= 1.0
    assert export_wrote_file(tmp_path)


@pytest.mark.parametrize("reset", ["1e9", "inf", "nan", "-5", "-inf", "1e400", "soon"])
def test_ratelimit_reset_never_stalls_a_lane_past_the_ceiling(reset):
    governor = migrate.RateGovernor(5.0, 100 / 60)
    for lane in ("api", "status"):
        governor.observe(lane, CaseInsensitiveDict({"inin-ratelimit-allowed": "300", "inin-ratelimit-count": "300",
                                                    "X-RateLimit-Remaining": "0", "inin-ratelimit-reset": reset}))
        spacing = governor.spacing(lane)
        assert 0 < spacing <= migrate.MAX_SERVER_WAIT_S, (lane, spacing)


def test_ratelimit_reset_within_the_ceiling_still_slows_the_lane():
    governor = migrate.RateGovernor(5.0, 100 / 60)
    governor.observe("api", CaseInsensitiveDict({"inin-ratelimit-allowed": "300", "inin-ratelimit-count": "299",
                                                 "X-RateLimit-Remaining": "1", "inin-ratelimit-reset": "30"}))
    assert 1 / 5.0 < governor.spacing("api") <= migrate.MAX_SERVER_WAIT_S


def test_token_lock_is_not_held_while_waiting_to_retry(fake):
    org = fake.orgs["source"]
    client = client_for(org)
    org.inject_fault(status=503, retry_after=1, path_prefix="/oauth/token")
    outcome = {}

    def fetch():
        started = time.monotonic()
        try:
            outcome["token"] = client.auth.token()
        except Exception as exc:  # reported below
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    fetcher = threading.Thread(target=fetch, daemon=True)
    fetcher.start()
    deadline = time.monotonic() + 5
    while not any(r.path == "/oauth/token" and r.status == 503 for r in org.requests):
        assert time.monotonic() < deadline, "the token endpoint was not asked"
        time.sleep(0.01)
    got = client.auth._lock.acquire(timeout=0.3)
    if got:
        client.auth._lock.release()
    fetcher.join(10)
    assert got, "TokenProvider._lock is held while sleeping before the token retry"
    assert not fetcher.is_alive() and "error" not in outcome, outcome
    assert outcome["token"] and outcome["elapsed"] >= 0.95  # Retry-After: 1 was honoured
    assert org.token_requests == 1

# ---- item 10: the secret redactor under threads ----------------------------------------------------


def test_secret_redactor_is_thread_safe():
    redactor = migrate.SecretRedactor()
    threads_n, per_thread = 8, 300
    errors = []
    start = threading.Barrier(threads_n)

    def secret(i, j):
        return f"sec{i:02d}x{j:05d}zz"

    def work(i):
        try:
            start.wait()
            for j in range(per_thread):
                redactor.add(secret(i, j))
                text = redactor.redact(f"Bearer {secret(i, j)} and {secret((i + 1) % threads_n, j)} in a line")
                assert secret(i, j) not in text
        except Exception as exc:  # collected: an exception in a thread would pass unnoticed
            errors.append(repr(exc))

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    for i in range(threads_n):
        for j in range(per_thread):
            assert redactor.redact(f"<{secret(i, j)}>") == "<***>"

# ---- item 16: hostile answers --------------------------------------------------------------------


def test_list_page_repeating_the_previous_page(fake, tmp_path):
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    populate_config_org(source, seed=1, skills=6, wrapupcodes=3, schedules=2, schedulegroups=1, queues=3, flows=2,
                        users=3, trunks=1, languages=2)
    populate_config_org(target, seed=1, skills=6, wrapupcodes=3, schedules=2, schedulegroups=1, queues=3, flows=2,
                        users=3, trunks=1, languages=2, only=["divisions", "users"])
    skills = sorted(source.objects["skills"].values(), key=lambda skill: skill["name"].lower())[:2]
    page = {"entities": skills, "pageSize": 500, "pageNumber": 1, "total": 1500, "pageCount": 3,
            "firstUri": "/api/v2/routing/skills?pageSize=500&pageNumber=1",
            "selfUri": "/api/v2/routing/skills?pageSize=500&pageNumber=1",
            "nextUri": "/api/v2/routing/skills?pageSize=500&pageNumber=2",
            "lastUri": "/api/v2/routing/skills?pageSize=500&pageNumber=3"}
    source.inject_answer(method="GET", path_prefix="/api/v2/routing/skills", path_suffix="/skills", body=page, times=2)
    env = clean(org_env(fake, source="source", target="target"))
    result = cli(["clone", "--plan", "--yes", *FAST], env, tmp_path)
    assert result.returncode == 1, result.stderr
    hostile_error_line(result)
    assert not [r for r in target.requests if r.method in ("POST", "PUT", "DELETE") and r.path.startswith("/api/v2/")]


@pytest.fixture
def import_setup(fake, tmp_path):
    """Both orgs with the same names, a 5-record export file and its mapping."""
    source, target = fake.orgs["source"], fake.orgs["target"]
    source_refs = populate_reference_objects(source, seed=3)
    target_refs = populate_reference_objects(target, seed=3)
    write_export(tmp_path / "in.json.gz", generate_interactions(source_refs, 5, seed=2))
    write_json(tmp_path / "mapping.json", mapping_between(source_refs, target_refs))
    return target, clean(org_env(fake, target="target"))


IMPORT = ["import", "--input", "in.json.gz", "--mapping", "mapping.json", "--yes", *FAST]


def chunk_entries(tmp_path):
    return list(json.loads((tmp_path / "migration_state.json").read_text())["import"]["chunks"].items())


def test_import_answer_without_job_id(import_setup, tmp_path):
    target, env = import_setup
    target.inject_answer(method="POST", path_prefix=IMPORT_PATH, path_suffix="/import", status=202, body={})
    result = cli(IMPORT, env, tmp_path)
    assert result.returncode == 1, result.stderr
    hostile_error_line(result)
    entries = chunk_entries(tmp_path)
    assert [entry["status"] for _, entry in entries] == ["submitting"], "it may have landed: resend it next run"
    key = entries[0][0]
    assert (tmp_path / "migration_state.json.spool" / f"{key}.jsonl").exists()


def test_failed_import_job_with_null_indexes(import_setup, tmp_path):
    target, env = import_setup
    failed = {"id": "00000000-0000-4000-8000-000000000001", "status": "failed", "recordCount": 5,
              "errors": [{"code": "INVALID_REFERENCE", "message": "Unknown user.", "index": None},
                         {"code": "QUEUE_NOT_FOUND", "message": "Unknown queue.", "index": None}]}
    target.inject_answer(method="GET", path_prefix=IMPORT_PATH + "/", body=failed, times=1)
    result = cli(IMPORT, env, tmp_path)
    assert result.returncode == 1, result.stderr
    hostile_error_line(result)
    assert [entry["status"] for _, entry in chunk_entries(tmp_path)] == ["failed"]


def test_token_answer_with_non_numeric_expires_in(fake, tmp_path):
    source = fake.orgs["source"]
    tiny_export_source(source)
    source.inject_answer(method="POST", path_prefix="/oauth/token", times=10,
                         body={"access_token": "hostile-token-123456", "token_type": "bearer", "expires_in": "abc"})
    result = cli(EXPORT, source_env(fake), tmp_path)
    assert result.returncode == 1, result.stderr
    line = hostile_error_line(result)
    assert "hostile-token-123456" not in result.stderr, line


@pytest.fixture
def analytics_source(fake):
    source = fake.orgs["source"]
    source.rate_limit = source.status_rate_limit = 1_000_000
    refs = populate_reference_objects(source, seed=3)
    source.conversation_source = ConversationSource(refs, 50, start="2026-01-01T00:00:00Z",
                                                    end="2026-01-04T00:00:00Z", seed=1)
    return source


ANALYTICS = ["export", "--api", "analytics", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-04T00:00:00Z",
             "--job-interval", "3d", *FAST]


def test_analytics_page_with_a_non_object_conversation(fake, analytics_source, tmp_path):
    analytics_source.inject_answer(method="GET", path_prefix=ANALYTICS_JOBS + "/", path_suffix="/results",
                                   body={"conversations": [7], "cursor": None})
    result = cli(ANALYTICS, source_env(fake), tmp_path)
    assert result.returncode == 1, result.stderr
    hostile_error_line(result)
    assert not export_wrote_file(tmp_path)


def test_analytics_page_repeating_the_cursor_it_was_asked_with(fake, analytics_source, tmp_path):
    analytics_source.inject_answer(method="GET", path_prefix=ANALYTICS_JOBS + "/", path_suffix="/results", times=2,
                                   body={"conversations": [], "cursor": "cursor-1"})
    result = cli(ANALYTICS, source_env(fake), tmp_path)
    assert result.returncode == 1, result.stderr
    hostile_error_line(result)
    pages = [r for r in analytics_source.requests if r.path.endswith("/results")]
    assert [r.query.get("cursor") for r in pages] == [None, "cursor-1"], "stopped at the repeat, not paging forever"
