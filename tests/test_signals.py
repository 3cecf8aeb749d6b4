"""SIGINT and SIGTERM at random moments of import, analytics export, clone and a download (issue 8, item 4).

Each run is the CLI as a subprocess over real loopback HTTP against the fake.  After a signal: a
`Stopping: finishing` line within 1 s, a quick exit with 130 (SIGINT) or 143 (SIGTERM) and a final
`Stopped by ...` line, no `*.tmp` or `*.part` left, and the lock released only once the state (and
manifest) were final: a watcher thread blocks on `<state>.lock` and hashes the guarded files the moment it
gets the lock; they must not change after that.  Then the same command again finishes the work, every
record (conversation, object) exactly once.
"""

import collections
import copy
import fcntl
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from fake_genesys import (ConversationSource, InteractionSource, canonical_json, generate_interactions,
                          populate_config_org, populate_reference_objects)
from support import MIGRATE, mapping_between, migrate, org_env, run_cli, write_export, write_json

FAST = ["--max-rps", "1000", "--max-status-rps", "1000", "--poll-initial", "0.05", "--poll-max", "0.3"]
EXIT_CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}
STOPPING = re.compile(r"^Stopping: finishing (\d+) requests? \(at most 10 s\); Ctrl-C again to stop now")
IMPORT_PATH = "/api/v2/interaction/import"
WINDOW = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z"]
EXPORT_FILE = "20260101T000000Z_20260201T000000Z.json.gz"
A_START, A_END = "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"
A_KEY = "20260101T000000Z_20260104T000000Z"
FAST_EXIT_S = 2.0    # no job poll, no transfer and no instant request is waited for
GRACE_EXIT_S = 12.0  # requests in flight get at most 10 s for their answer


# ---------------------------------------------------------------------------
# The CLI as a subprocess, the lock watcher, the checks after a signal
# ---------------------------------------------------------------------------


class Cli:
    """`python migrate.py ARGS` in the background; each stderr line kept with the moment it arrived."""

    def __init__(self, args, env, cwd):
        self.proc = subprocess.Popen([sys.executable, MIGRATE, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.stdout, self.watchers = [], [], []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.proc.stderr, self.lines), (self.proc.stdout, self.stdout))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, sink):
        for line in stream:
            with self._cond:
                sink.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        for watcher in self.watchers:
            watcher.close()

    def watch_lock(self, lock_path, guarded):
        """A LockWatcher on `lock_path`: call it only once the run holds the lock (it has shown progress)."""
        watcher = LockWatcher(lock_path, guarded)
        self.watchers.append(watcher)
        return watcher

    def send(self, signum):
        sent = time.monotonic()
        self.proc.send_signal(signum)
        return sent

    def line_time(self, pattern, timeout):
        """When the first stderr line matching `pattern` arrived, or None within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((at for at, line in self.lines if pattern.search(line)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._cond.wait(min(left, 0.05))

    def wait(self, timeout):
        """The moment the process ended, or None (then it is killed)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        return time.monotonic()

    def output(self):
        if self.proc.poll() is not None:  # then the pipes reach their end: read them to it
            for reader in self._readers:
                reader.join(5)
        with self._cond:
            return "\n".join(line for _, line in self.lines)


def digest(paths):
    hashes = {}
    for path in paths:
        try:
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            hashes[str(path)] = None
    return hashes


class LockWatcher:
    """Blocks on an flock of `<state>.lock` (start it only while the CLI holds it) and hashes the guarded
    files the moment it gets the lock; holds the lock until `check`, so nothing else can take it meanwhile."""

    def __init__(self, lock_path, guarded):
        self.guarded = list(guarded)
        self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.hashes = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.hashes = digest(self.guarded)

    def check(self):
        """After the CLI ended: the guarded files are as they were when the lock was released."""
        self.thread.join(5)
        assert self.hashes is not None, "the lock was still held after the process ended"
        assert digest(self.guarded) == self.hashes, "a state or manifest write happened after the lock was released"

    def close(self):
        """Once the process has ended (so the thread got the lock): lets go of it."""
        self.thread.join(5)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def leftovers(folder):
    return sorted(str(path.relative_to(folder)) for pattern in ("*.tmp", "*.part") for path in folder.rglob(pattern))


def wait_until(cli, predicate, what, timeout=40):
    """Polls for progress (the state file, the fake's request log) while the CLI runs."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if cli.proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {cli.proc.returncode}) before {what}:\n{cli.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s:\n{cli.output()}")
        time.sleep(0.005)


def stop(cli, signum, watcher, run_dir, exit_within=FAST_EXIT_S, second_after=None):
    """Sends `signum` (and, with `second_after`, the same signal again that many seconds after the
    Stopping line) and checks everything the spec promises about the stop. Returns (sent, ended)."""
    name = signal.Signals(signum).name
    sent = cli.send(signum)
    stopping = cli.line_time(STOPPING, timeout=3.0)
    assert stopping is not None and stopping - sent <= 1.0, \
        f"no 'Stopping: finishing N requests' line within 1 s of {name}:\n{cli.output()}"
    if second_after is not None:
        time.sleep(max(0.0, stopping + second_after - time.monotonic()))
        sent = cli.send(signum)
    ended = cli.wait(timeout=exit_within + 5)
    output = cli.output()
    assert ended is not None, f"still running {exit_within + 5:.0f} s after {name}:\n{output}"
    assert ended - sent <= exit_within, f"exit took {ended - sent:.2f} s after {name}:\n{output}"
    assert cli.proc.returncode == EXIT_CODE[signum], output
    assert "Traceback" not in output, output
    last = [line for _, line in cli.lines if line.strip()][-1]
    assert f"Stopped by {name}" in last and "Run the same command again to resume" in last, output
    assert leftovers(run_dir) == [], "temporary or partial files were left behind"
    watcher.check()
    watcher.close()  # the next run needs the lock
    return sent, ended


def read_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------


@pytest.fixture
def import_setup(fake, tmp_path):
    """Two orgs with the same names, an export file, the mapping; returns what an import test needs."""
    source, target = fake.orgs["source"], fake.orgs["target"]
    target.rate_limit = target.status_rate_limit = 1_000_000  # this file is about signals, not limits
    source_refs = populate_reference_objects(source, seed=3)
    target_refs = populate_reference_objects(target, seed=3)
    mapping = mapping_between(source_refs, target_refs)
    write_json(tmp_path / "mapping.json", mapping)

    def make(n, chunk, workers, seed):
        records = list(generate_interactions(source_refs, n, seed=seed))
        write_export(tmp_path / "in.json.gz", records)
        args = ["import", "--input", "in.json.gz", "--mapping", "mapping.json", "--yes", *FAST,
                "--chunk-records", str(chunk), "--workers", str(workers)]
        return target, records, mapping, args, org_env(fake, target="target")
    return make


def expected_import(records, mapping):
    table = migrate.Mapping(mapping, mapping.get("fallbacks"))
    return sorted(canonical_json(migrate.transform_interaction(dict(record), table, "fallback")) for record in records)


def assert_imported_exactly_once(target, records, mapping):
    stored = [canonical_json(record) for record in target.imported]
    assert len(stored) == len(set(stored)) == len(records)
    assert sorted(stored) == expected_import(records, mapping)


def chunk_statuses(state_path):
    state = read_json(state_path) or {}
    chunks = (state.get("import") or {}).get("chunks") or {}
    return [entry.get("status") for entry in chunks.values() if isinstance(entry, dict)]


def import_posts_after(target, moment):
    return [r for r in target.requests if r.method == "POST" and r.path == IMPORT_PATH and r.time > moment]


def unfinished_jobs(target):
    with target.lock:
        return [job_id for job_id, job in target._import_jobs.items() if job.finished is None]


@pytest.mark.parametrize("signum, seed", [(signal.SIGINT, 4), (signal.SIGTERM, 5)], ids=["SIGINT", "SIGTERM"])
def test_import_stops_at_once_while_jobs_run_and_resumes_exactly_once(import_setup, tmp_path, signum, seed):
    target, records, mapping, args, env = import_setup(1200, 200, 4, seed=20 + seed)
    target.import_seconds_per_record = 0.01  # each 200-record job runs 2 s: polls are pending at the signal
    state_path, lock_path = tmp_path / "migration_state.json", tmp_path / "migration_state.json.lock"
    rng = random.Random(seed)

    # First moment: the first run, once a job is being polled.
    with Cli(args, env, tmp_path) as cli:
        wait_until(cli, lambda: "submitted" in chunk_statuses(state_path), "submitted chunk in the state")
        watcher = cli.watch_lock(lock_path, [state_path])
        time.sleep(rng.uniform(0.0, 0.5))
        sent, _ = stop(cli, signum, watcher, tmp_path)
    running = unfinished_jobs(target)
    assert running, "the run waited for its jobs instead of stopping its polls"
    state_text = state_path.read_text()
    assert all(job_id in state_text for job_id in running), "a job in the org is not in the state to resume"
    assert import_posts_after(target, sent + 0.3) == [], "a chunk was submitted after the signal"

    # Second moment: the re-run, once it is at work (resuming the jobs).
    mark = len(target.requests)
    with Cli(args, env, tmp_path) as cli:
        wait_until(cli, lambda: any(r.path.startswith(IMPORT_PATH) for r in target.requests[mark:]),
                   "import request of the re-run")
        watcher = cli.watch_lock(lock_path, [state_path])
        time.sleep(rng.uniform(0.0, 0.5))
        sent, _ = stop(cli, signum, watcher, tmp_path)
    assert import_posts_after(target, sent + 0.3) == [], "a chunk was submitted after the signal"

    final = run_cli(args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert_imported_exactly_once(target, records, mapping)
    assert target.import_posts == 6, "every answer was recorded: no chunk was sent twice"
    assert leftovers(tmp_path) == []


def test_import_request_in_flight_gets_its_answer_recorded(import_setup, tmp_path):
    target, records, mapping, args, env = import_setup(600, 200, 2, seed=31)
    target.latency = 1.0  # every answer takes 1 s: the import POSTs are in flight at the signal
    state_path, lock_path = tmp_path / "migration_state.json", tmp_path / "migration_state.json.lock"
    rng = random.Random(7)
    with Cli(args, env, tmp_path) as cli:
        wait_until(cli, lambda: any(r.method == "POST" and r.path == IMPORT_PATH and r.status is None
                                    for r in target.requests), "import POST in flight")
        watcher = cli.watch_lock(lock_path, [state_path])
        time.sleep(rng.uniform(0.0, 0.5))
        sent, _ = stop(cli, signal.SIGINT, watcher, tmp_path, exit_within=GRACE_EXIT_S)
    in_flight = int(next(STOPPING.search(line) for _, line in cli.lines if STOPPING.search(line)).group(1))
    assert in_flight >= 1, "the Stopping line counts the import POSTs in flight"
    posts = [r for r in target.requests if r.method == "POST" and r.path == IMPORT_PATH]
    assert posts and all(r.status == 202 for r in posts), "the run ended before the answers it waited for"
    assert import_posts_after(target, sent + 0.3) == [], "a chunk was submitted after the signal"
    state_text = state_path.read_text()
    with target.lock:
        job_ids = list(target._import_jobs)
    assert job_ids and all(job_id in state_text for job_id in job_ids), "an answer in flight was not recorded"

    target.latency = 0.0
    final = run_cli(args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert_imported_exactly_once(target, records, mapping)
    assert target.import_posts == 3, "the answers were recorded: the re-run resumed those jobs, sent nothing twice"
    assert leftovers(tmp_path) == []


def test_second_sigint_exits_at_once(import_setup, tmp_path):
    target, records, mapping, args, env = import_setup(400, 200, 2, seed=32)
    target.latency = 2.0  # the first signal alone would wait about 2 s for the import POSTs in flight
    state_path, lock_path = tmp_path / "migration_state.json", tmp_path / "migration_state.json.lock"
    with Cli(args, env, tmp_path) as cli:
        wait_until(cli, lambda: any(r.method == "POST" and r.path == IMPORT_PATH and r.status is None
                                    for r in target.requests), "import POST in flight")
        watcher = cli.watch_lock(lock_path, [state_path])
        stop(cli, signal.SIGINT, watcher, tmp_path, exit_within=1.0, second_after=0.05)
    assert read_json(state_path) is not None, "the state file is not valid JSON"

    target.latency = 0.0
    final = run_cli(args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert_imported_exactly_once(target, records, mapping)


# ---------------------------------------------------------------------------
# Interaction export: a download streaming at the signal
# ---------------------------------------------------------------------------


def streaming(folder):
    for path in folder.rglob("*.part"):
        try:
            if path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            pass
    return False


def test_interrupted_download_leaves_no_part_and_the_rerun_completes_it(fake, tmp_path):
    source = fake.orgs["source"]
    source.rate_limit = source.status_rate_limit = 1_000_000
    refs = populate_reference_objects(source, seed=3)
    source.export_source = InteractionSource(refs, 60_000, seed=2)  # about 8 MB, streamed for a few seconds
    args = ["export", *WINDOW, *FAST]
    env = org_env(fake, source="source")
    exports, state_path = tmp_path / "exports", tmp_path / "migration_state.json"
    with Cli(args, env, tmp_path) as cli:
        wait_until(cli, lambda: streaming(tmp_path), "download streaming to a .part file")
        watcher = cli.watch_lock(tmp_path / "migration_state.json.lock", [state_path])
        time.sleep(random.Random(8).uniform(0.0, 0.5))
        stop(cli, signal.SIGINT, watcher, tmp_path)
    assert not (exports / EXPORT_FILE).exists(), "the download finished before the signal: nothing was tested"

    final = run_cli(args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    ids = [record["id"] for record in migrate.iter_records(exports / EXPORT_FILE)]
    expected = source.export_source.count("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z",
                                          ("voice", "chat", "email"))
    assert len(ids) == len(set(ids)) == expected
    assert sum(r.method == "POST" and r.path == "/api/v2/interaction/export" for r in source.requests) == 1, \
        "the re-run resumes the export job the state recorded"
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------
# Analytics export
# ---------------------------------------------------------------------------


def expected_conversation_ids(conversation_source):
    lo, hi = migrate.parse_time(A_START, "start"), migrate.parse_time(A_END, "end")
    return [c["conversationId"] for c in conversation_source
            if lo <= migrate.parse_time(c["conversationStart"], "start") < hi]


def test_analytics_export_interrupted_then_every_conversation_once(fake, tmp_path):
    source = fake.orgs["source"]
    source.rate_limit = source.status_rate_limit = 1_000_000
    refs = populate_reference_objects(source, seed=3)
    source.conversation_source = ConversationSource(refs, 8000, start="2025-12-31T22:00:00Z",
                                                    end="2026-01-04T02:00:00Z", seed=9)
    source.latency = 0.25  # three 1-day jobs of three results pages each, each answer 0.25 s
    args = ["export", "--api", "analytics", "--start", A_START, "--end", A_END, "--job-interval", "1d", *FAST]
    env = org_env(fake, source="source")
    state_path = tmp_path / "migration_state.json"
    rng = random.Random(6)
    for _ in range(2):  # the first run, then the re-run, each once it asks for a results page
        mark = len(source.requests)
        with Cli(args, env, tmp_path) as cli:
            wait_until(cli, lambda: any(r.path.endswith("/results") for r in source.requests[mark:]),
                       "results page asked for")
            watcher = cli.watch_lock(tmp_path / "migration_state.json.lock", [state_path])
            time.sleep(rng.uniform(0.0, 0.15))
            stop(cli, signal.SIGINT, watcher, tmp_path, exit_within=5.0)  # the page in flight is recorded
        assert not (tmp_path / "exports" / f"{A_KEY}.json.gz").exists(), "finished before the signal"

    final = run_cli(args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    expected = sorted(expected_conversation_ids(source.conversation_source))
    raw = [c["conversationId"] for c in migrate.iter_records(tmp_path / "exports" / f"{A_KEY}.analytics.json.gz")]
    converted = [r["id"] for r in migrate.iter_records(tmp_path / "exports" / f"{A_KEY}.json.gz")]
    assert len(raw) == len(set(raw)) and sorted(raw) == expected
    assert len(converted) == len(set(converted)) and sorted(converted) == expected
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------
# Clone
# ---------------------------------------------------------------------------


def snapshot(org):
    with org.lock:
        return copy.deepcopy({kind: dict(objects) for kind, objects in org.objects.items()}), \
            copy.deepcopy(org._queue_wrapups)


def test_clone_stopped_by_sigterm_during_apply_resumes_and_rolls_back_completely(fake, tmp_path):
    source, target = fake.orgs["source"], fake.orgs["target"]
    for org in (source, target):
        org.rate_limit = org.status_rate_limit = 1_000_000
    counts = dict(skills=20, wrapupcodes=12, schedules=6, schedulegroups=3, queues=15, flows=8, users=10)
    populate_config_org(source, seed=1, **counts)
    populate_config_org(target, seed=1, **counts, only=["divisions", "users"])
    before = snapshot(target)
    for org in (source, target):
        org.latency = 0.05
    env = org_env(fake, source="source", target="target")
    args = ["clone", "--yes", *FAST, "--workers", "2"]
    guarded = [tmp_path / "migration_state.json", tmp_path / "rollback.json"]
    rng = random.Random(11)
    for _ in range(2):  # the first run, then the re-run, each once it is creating objects
        mark = len(target.requests)
        with Cli(args, env, tmp_path) as cli:
            wait_until(cli, lambda: any(r.method == "POST" and r.status == 200 for r in target.requests[mark:]),
                       "object created in the target")
            watcher = cli.watch_lock(tmp_path / "migration_state.json.lock", guarded)
            time.sleep(rng.uniform(0.0, 0.8))
            stop(cli, signal.SIGTERM, watcher, tmp_path, exit_within=3.0)

    for org in (source, target):
        org.latency = 0.0
    final = run_cli(["clone", "--yes", *FAST], env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    new = {oid for kind, objects in target.objects.items() for oid in objects if oid not in before[0][kind]}
    everything = json.loads((tmp_path / "rollback.json").read_text())["entries"]
    assert all(entry["state"] == "changed" for entry in everything if entry.get("change")), everything
    entries = [entry for entry in everything if not entry.get("change")]
    listed = collections.Counter(entry["targetId"] for entry in entries)
    assert all(entry["state"] == "created" and entry["targetId"] for entry in entries), entries
    assert [oid for oid, count in listed.items() if count > 1] == [], "an object is listed twice"
    assert set(listed) == new, "every object the clone created is in the manifest, and nothing else"
    for kind, objects in target.objects.items():
        names = [(obj["name"], obj.get("type")) for obj in objects.values()]
        assert len(names) == len(set(names)), f"duplicate {kind}"
    rolled = run_cli(["rollback", "--yes", *FAST[:4]], env=env, cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert snapshot(target) == before
