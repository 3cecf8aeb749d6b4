"""Hostile input files (issue 8, items 11, 12 and 18): targeted bad files, then a seeded fuzz pass.

Every bad file gets one clear line: exit 2 (1 for a failed run), exactly one stderr line starting
`Error:` that names the file, no traceback, no request that writes, and no file changed but the ones
the run owns (state, .bak, lock, spool, report).

The fuzz pass mutates export files, mapping files, state files (taken from real imports) and rollback
manifests with random.Random(8). An independent checker in this file (gzip, UTF-8, JSON, and the shapes
documented in the README and the issue; no code of migrate.py) decides for each mutated file whether it
must be refused. Most runs are in-process (`migrate.main(argv)`) against one shared fake; about ten run
the real CLI as a subprocess.
"""

import contextlib
import copy
import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import random
import re
import time
import traceback
import uuid
import zlib
from pathlib import Path

import pytest

from fake_genesys import FakeGenesys, generate_interactions, populate_reference_objects
from support import mapping_between, migrate, org_env, run_cli, write_export, write_json

SPEEDS = ["--max-rps", "1000", "--max-status-rps", "1000"]
POLL = ["--poll-initial", "0.01", "--poll-max", "0.05", "--poll-deadline", "10s"]
CHUNK = ["--chunk-records", "2"]
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
TRACEBACK = "Traceback (most recent call last)"

# ---------------------------------------------------------------------------
# The documented shapes, written down independently of migrate.py
# ---------------------------------------------------------------------------

RECORD_FIELDS = {"id", "createdDate", "lastUpdatedDate", "version", "selfUri", "interactionType", "direction",
                 "startTime", "endTime", "routing", "wrapupCode", "userId", "participants", "attributes",
                 "transcripts", "media"}
REFERENCE_PATHS = ((("routing", "queue", "id"), "queues"), (("routing", "flow", "id"), "flows"),
                   (("routing", "skills", "*", "id"), "skills"), (("routing", "languageId"), "languages"),
                   (("wrapupCode", "id"), "wrapupCodes"), (("userId",), "users"),
                   (("participants", "*", "userId"), "users"))
MAPPING_KINDS = ("divisions", "skills", "languages", "wrapupCodes", "schedules", "scheduleGroups", "queues", "flows",
                 "users", "trunkBaseSettings")
CHUNK_STATUSES = ("pending", "submitting", "submitted", "completed", "failed", "split")
MANIFEST_KINDS = ("divisions", "skills", "languages", "wrapupCodes", "schedules", "scheduleGroups", "queues",
                  "flows", "trunkBaseSettings")
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclasses.dataclass
class Verdict:
    """What the spec demands for a file: `reject` (bad file, exit 2), `unmapped` (a failed run under
    --unmapped fail, exit 1, nothing sent) or `accept` (anything but a traceback or a stray write)."""
    kind: str
    reason: str
    exits: tuple = ()

    @property
    def strict(self):
        return self.kind in ("reject", "unmapped")


def reject(reason):
    return Verdict("reject", reason, (2,))


ACCEPT = Verdict("accept", "well formed")


def walk(value):
    """Every value below `value` (itself included), keys of objects as values too; no recursion."""
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def has_lone_surrogate(value):
    return any(isinstance(item, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in item) for item in walk(value))


def parse_json_bytes(data, gzipped=False):
    """(document, None) or (None, problem): the gzip, UTF-8 and JSON layers of a file."""
    if gzipped and data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            return None, f"gzip: {exc}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"utf-8: {exc.reason}"
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"json: {str(exc)[:60]}"


def reference_leaves(record):
    """([(kind, value)] at the reference paths, odd) where odd says a container on the way has another type."""
    leaves, odd = [], False
    for path, kind in REFERENCE_PATHS:
        level = [record]
        for head in path:
            deeper = []
            for node in level:
                if head == "*":
                    if isinstance(node, list):
                        deeper.extend(node)
                    elif node is not None:
                        odd = True
                elif isinstance(node, dict):
                    if head in node:
                        deeper.append(node[head])
                elif node is not None:
                    odd = True
            level = deeper
        leaves.extend((kind, value) for value in level)
    return leaves, odd


def unmapped_verdict(leaves, odd, tables):
    """With every record of the right shape: does --unmapped fail have to stop the run (exit 1)?"""
    missing, case_only = [], False
    for kind, value in leaves:
        table = tables.get(kind) if isinstance(tables.get(kind), dict) else {}
        if not isinstance(value, str):
            missing.append(f"{kind} {type(value).__name__}")
        elif value not in table:
            if value.lower() in {key.lower() for key in table}:
                case_only = True  # a mapping could be read case-insensitively: leave it to the tool
            else:
                missing.append(f"{kind} {value[:40]!r}")
    if missing:
        return Verdict("unmapped", f"unmapped {missing[0]}", (1, 2) if odd else (1,))
    if case_only or odd:
        return Verdict("accept", "references of an unusual shape or case")
    return ACCEPT


def check_export(data, tables):
    """An export file: gzip (or plain), UTF-8, a JSON array of records of the v2.1 shape."""
    doc, problem = parse_json_bytes(data, gzipped=True)
    if problem:
        return reject(problem)
    if not isinstance(doc, list):
        return reject("not a JSON array")
    leaves, odd = [], False
    for record in doc:
        if not isinstance(record, dict):
            return reject(f"a {type(record).__name__} element")
        unknown = set(record) - RECORD_FIELDS
        if unknown:
            return reject(f"unknown field {sorted(unknown)[0][:30]!r}")
        if "id" in record and not isinstance(record["id"], str):
            return reject(f"id is a {type(record['id']).__name__}")
        if has_lone_surrogate(record):
            return reject("lone surrogate")
        found, strange = reference_leaves(record)
        leaves.extend(found)
        odd = odd or strange
    return unmapped_verdict(leaves, odd, tables)


def is_uuid(value):
    return isinstance(value, str) and UUID_TEXT.fullmatch(value) is not None


def check_mapping(data, needed):
    """A mapping file: an object of kind tables (UUID -> UUID), fallbacks, timeZones, `_` keys."""
    doc, problem = parse_json_bytes(data)
    if problem:
        return reject(problem)
    if not isinstance(doc, dict):
        return reject("not an object")
    for key, value in doc.items():
        if key in MAPPING_KINDS:
            if not isinstance(value, dict):
                return reject(f"{key} is not an object")
            for source, target in value.items():
                if not is_uuid(source) or not is_uuid(target):
                    return reject(f"{key}: not UUID -> UUID")
        elif key == "fallbacks":
            if not isinstance(value, dict):
                return reject("fallbacks is not an object")
            for kind, target in value.items():
                if kind not in MAPPING_KINDS or not is_uuid(target):
                    return reject("fallbacks: not kind -> UUID")
        elif key == "timeZones":
            if not isinstance(value, dict) or not all(isinstance(zone, str) for zone in value.values()):
                return reject("timeZones is not zone -> zone")
        elif not key.startswith("_"):
            return reject(f"unknown key {key[:30]!r}")
    return unmapped_verdict(needed, False, doc)


def is_time(value):
    if not isinstance(value, str):
        return False
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment.tzinfo is not None


def check_state(data):
    """A state file: the shapes the issue lists (anything it does not list is left to the tool)."""
    doc, problem = parse_json_bytes(data)
    if problem:
        return reject(problem)
    if not isinstance(doc, dict):
        return reject("not an object")
    version = doc.get("formatVersion")
    if type(version) is not int or not 1 <= version <= 2:
        return reject(f"formatVersion {version!r}")
    if "orgs" in doc:
        orgs = doc["orgs"]
        if not isinstance(orgs, dict):
            return reject("orgs is not an object")
        for role in ("source", "destination"):
            if role in orgs and (not isinstance(orgs[role], dict) or not isinstance(orgs[role].get("id"), str)):
                return reject(f"orgs.{role} is not an org")
    for name in ("exports", "analytics"):
        if name in doc and (not isinstance(doc[name], dict)
                            or not all(isinstance(item, dict) for item in doc[name].values())):
            return reject(f"{name} is not an object of objects")
    incremental = doc.get("incremental")
    if isinstance(incremental, dict) and incremental.get("pending") is not None:
        pending = incremental["pending"]
        if not isinstance(pending, dict) or "end" not in pending:
            return reject("incremental.pending without end")
        if not is_time(pending["end"]) or ("start" in pending and not is_time(pending["start"])):
            return reject("incremental.pending with a bad time")
    if "import" in doc:
        imports = doc["import"]
        if not isinstance(imports, dict):
            return reject("import is not an object")
        records = imports.get("chunkRecords")
        if records is not None and (type(records) is not int or not 1 <= records <= 1000):
            return reject(f"chunkRecords {records!r}")
        if "chunks" in imports:
            chunks = imports["chunks"]
            if not isinstance(chunks, dict):
                return reject("import.chunks is not an object")
            for chunk in chunks.values():
                if not isinstance(chunk, dict):
                    return reject("a chunk is not an object")
                if "status" in chunk and chunk["status"] not in CHUNK_STATUSES:
                    return reject(f"chunk status {chunk['status']!r}")
    return ACCEPT


def check_manifest(data):
    """A rollback manifest: entries of {kind, name, targetId (string or null), state}."""
    doc, problem = parse_json_bytes(data)
    if problem:
        return reject(problem)
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        return reject("no list of entries")
    for entry in doc["entries"]:
        if not isinstance(entry, dict):
            return reject("an entry is not an object")
        kind = entry.get("kind")
        if not isinstance(kind, str) or (kind not in MANIFEST_KINDS and kind != "users"):
            return reject(f"kind {kind!r:.40}")
        if not isinstance(entry.get("name"), str):
            return reject("name is not a string")
        if "targetId" in entry and not isinstance(entry["targetId"], (str, type(None))):
            return reject("targetId is not a string or null")
        if not isinstance(entry.get("state"), str):
            return reject("state is not a string")
    return ACCEPT


# ---------------------------------------------------------------------------
# Running the tool and judging a run
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    code: object
    stdout: str
    stderr: str
    crash: str
    requests: list
    failed_jobs: int

    @property
    def errors(self):
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]

    @property
    def traceback(self):
        return bool(self.crash) or TRACEBACK in self.stderr or TRACEBACK in self.stdout

    @property
    def writes(self):
        return [r for r in self.requests if r.method in WRITE_METHODS and r.path != "/oauth/token"]

    @property
    def effective_writes(self):
        return [r for r in self.writes if r.status is not None and r.status < 400]

    def describe(self):
        tail = "\n    ".join((self.crash or self.stderr).strip().splitlines()[-6:])
        writes = sorted({f"{r.method} {r.path[:40]} {r.status}" for r in self.writes})[:4]
        return f"exit {self.code}, errors {self.errors!r:.400}, writes {writes}\n    {tail[:1500]}"


def run_tool(world, argv, cwd, subprocess=False):
    """migrate.main(argv) in-process with cwd and stderr redirected, or the CLI as a subprocess."""
    marks = {name: len(org.requests) for name, org in world.fake.orgs.items()}
    with world.target.lock:
        jobs_before = set(world.target._import_jobs)
    crash = ""
    if subprocess:
        result = run_cli(argv, env=org_env(world.fake, source="source", target="target"), cwd=cwd, timeout=60)
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        out, err, old = io.StringIO(), io.StringIO(), os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = migrate.main(list(argv))
                except BaseException:  # noqa: B036 - a SystemExit or any exception out of main() is a defect
                    code, crash = None, traceback.format_exc()
        finally:
            os.chdir(old)
        out, err = out.getvalue(), err.getvalue()
    requests = [r for name, org in world.fake.orgs.items() for r in list(org.requests)[marks[name]:]]
    with world.target.lock:
        failed = sum(job.status == "failed" for job_id, job in world.target._import_jobs.items()
                     if job_id not in jobs_before)
    return Run(code, out, err, crash, requests, failed)


def snapshot(*folders):
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in Path(folder).rglob("*") if path.is_file()}


def changed_files(before, after, owned):
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    return sorted(path for path in changed if not owned(Path(path)))


def owned_by(folder, state_name, extra=()):
    names = {state_name, f"{state_name}.bak", f"{state_name}.lock", "report.json", *extra}
    spool = Path(folder) / f"{state_name}.spool"

    def owned(path):
        return (path.parent == Path(folder) and path.name in names) or spool in path.parents
    return owned


def reset_target(world):
    with world.target.lock:
        world.target.imported.clear()
        world.target.imported_canonical.clear()


# ---------------------------------------------------------------------------
# One fake for the module, inputs made by real runs
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    fake: FakeGenesys
    source: object
    target: object
    source_refs: dict
    target_refs: dict
    root: Path
    base: Path
    records: list
    mapping: dict
    states: dict  # "complete"/"partial" -> (state bytes, spool files {name: bytes})
    manifest: dict

    def folder(self, name):
        path = self.root / name
        path.mkdir()
        return path


def import_argv(input_path, mapping_path, state, *extra):
    return ["import", "--input", str(input_path), "--mapping", str(mapping_path), "--state", str(state),
            "--report", "report.json", "--yes", *SPEEDS, *POLL, *CHUNK, *extra]


def read_state(folder, name):
    spool = folder / f"{name}.spool"
    files = {path.name: path.read_bytes() for path in spool.iterdir()} if spool.is_dir() else {}
    return (folder / name).read_bytes(), files


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fake = FakeGenesys(("source", "target"), export_job_seconds=0.2, import_seconds_per_record=0.0001)
    fake.start()
    try:
        source, target = fake.orgs["source"], fake.orgs["target"]
        for org in (source, target):
            org.rate_limit = org.status_rate_limit = 1_000_000
        source_refs = populate_reference_objects(source, seed=3)
        target_refs = populate_reference_objects(target, seed=3)
        root = tmp_path_factory.mktemp("fuzz")
        base = root / "base"
        base.mkdir()
        records = list(generate_interactions(source_refs, 6, seed=21))
        # The last record (the third chunk of two) alone uses one queue: the partial state breaks only it.
        used = {record["routing"]["queue"]["id"] for record in records[:5] if record.get("routing", {}).get("queue")}
        records[5]["routing"]["queue"] = {"id": next(q for q in source_refs["queues"] if q not in used)}
        mapping = mapping_between(source_refs, target_refs)
        mapping["_comment"] = "fuzz base"
        mapping["timeZones"] = {"Europe/Dublin": "Europe/London"}
        write_export(base / "in.json.gz", records)
        write_json(base / "mapping.json", mapping)
        broken = copy.deepcopy(mapping)
        broken["queues"][records[5]["routing"]["queue"]["id"]] = "00000000-0000-4000-8000-00000000dead"
        write_json(base / "broken-mapping.json", broken)
        manifest = {
            "formatVersion": 2,
            "source": {"id": source.org_id, "name": source.name, "apiUrl": source.api_url},
            "target": {"id": target.org_id, "name": target.name, "apiUrl": target.api_url},
            "entries": [{"kind": kind, "name": f"Fuzz {kind} {n}", "type": "INBOUNDCALL" if kind == "flows" else None,
                         "sourceId": str(uuid.UUID(int=1000 + n, version=4)),
                         "targetId": None if n == 3 else str(uuid.UUID(int=2000 + n, version=4)),
                         "state": "creating" if n == 3 else "created"}
                        for n, kind in enumerate(("flows", "queues", "scheduleGroups", "wrapupCodes", "skills",
                                                  "schedules", "languages", "trunkBaseSettings"))],
        }
        with pytest.MonkeyPatch.context() as env:
            for key in [key for key in os.environ if key.startswith("GENESYS_")]:
                env.delenv(key)
            for key, value in org_env(fake, source="source", target="target").items():
                if key.startswith("GENESYS_"):
                    env.setenv(key, value)
            world = World(fake, source, target, source_refs, target_refs, root, base, records, mapping, {}, manifest)
            # Real state files: a complete import, and one stopped by a failed job.
            for name, mapping_file, expected, extra in (("complete", "mapping.json", 0, ()),
                                                        ("partial", "broken-mapping.json", 1, ("--workers", "1"))):
                folder = world.folder(f"seed-{name}")
                reset_target(world)
                run = run_tool(world, import_argv("../base/in.json.gz", f"../base/{mapping_file}", "state.json",
                                                  *extra), folder)
                assert run.code == expected and not run.traceback, run.describe()
                world.states[name] = read_state(folder, "state.json")
                chunks = json.loads(world.states[name][0])["import"]["chunks"]
                assert len(chunks) >= 2 and (name == "complete" or any(c["status"] == "failed" for c in chunks.values()))
            yield world
    finally:
        fake.stop()


# ---------------------------------------------------------------------------
# Targeted tests
# ---------------------------------------------------------------------------


def assert_one_error_naming(run, name):
    assert not run.traceback, run.describe()
    assert len(run.errors) == 1, run.describe()
    assert name in run.errors[0], run.describe()


def gz(data):
    return gzip.compress(data, mtime=0)


def array_text(records):
    return ("[" + ",\n".join(json.dumps(record) for record in records) + "]").encode()


def bad_exports(records):
    good = gz(array_text(records[:3]))
    text = array_text(records[:3])
    corrupt = bytearray(good)
    corrupt[10] = 0xFF  # the first deflate block header: BTYPE 11, a reserved block type
    id_surrogate = array_text([dict(records[0], id="PLACEHOLDER")]).replace(b'"PLACEHOLDER"', b'"ab\\ud800cd"')
    return {
        "truncated gzip": good[: len(good) // 2],
        "corrupt deflate": bytes(corrupt),
        "invalid utf-8": gz(text.replace(b'"caseNumber": "', b'"caseNumber": "\xff\xfe', 1)),
        "text after the closing bracket": gz(text + b"\n{\"more\": true}\n"),
        "a second array after the closing bracket": gz(text + b"[]"),
        "lone surrogate escape in an id": gz(id_surrogate),
        "unknown top-level field": gz(array_text([records[0], dict(records[1], surveyScore=5)])),
        "id that is a number": gz(array_text([records[0], dict(records[1], id=12345)])),
        "not an array": gz(json.dumps({"interactions": records[:1]}).encode()),
        "a non-object element": gz(array_text(records[:1])[:-1] + b", 7]"),
    }


BAD_EXPORTS = ["truncated gzip", "corrupt deflate", "invalid utf-8", "text after the closing bracket",
               "a second array after the closing bracket", "lone surrogate escape in an id",
               "unknown top-level field", "id that is a number", "not an array", "a non-object element"]


@pytest.mark.parametrize("case", BAD_EXPORTS)
def test_bad_export_file_is_one_line_before_any_request(world, case):
    data = bad_exports(world.records)[case]
    assert check_export(data, world.mapping).kind == "reject"  # the checker agrees the file is bad
    folder = world.folder(f"export-{BAD_EXPORTS.index(case)}")
    (folder / "bad.json.gz").write_bytes(data)
    before = snapshot(folder, world.base)
    reset_target(world)
    run = run_tool(world, import_argv("bad.json.gz", "../base/mapping.json", "state.json"), folder)
    assert run.code == 2, run.describe()
    assert_one_error_naming(run, "bad.json.gz")
    assert run.requests == [], "the export is checked in the first pass, before any request"
    assert world.target.imported == []
    assert_nothing_written(folder, world, before)


def assert_nothing_written(folder, world, before):
    """The inputs are as they were, and no state was written (a lock file may have been made)."""
    assert changed_files(before, snapshot(folder, world.base), owned_by(folder, "state.json")) == []
    assert not (folder / "state.json").exists() and not (folder / "state.json.bak").exists()


def test_lone_surrogate_in_an_id_is_one_line_from_the_real_cli(world):
    """Item 18: the real CLI, whose stderr is a UTF-8 stream (not a StringIO), prints one line."""
    folder = world.folder("export-surrogate-cli")
    (folder / "bad.json.gz").write_bytes(bad_exports(world.records)["lone surrogate escape in an id"])
    before = snapshot(folder, world.base)
    run = run_tool(world, import_argv("bad.json.gz", "../base/mapping.json", "state.json"), folder, subprocess=True)
    assert run.code == 2, run.describe()
    assert_one_error_naming(run, "bad.json.gz")
    assert "UnicodeEncodeError" not in run.stderr
    assert run.requests == []
    assert_nothing_written(folder, world, before)


def test_record_too_large_for_one_request_is_found_before_any_request(world):
    """Item 12: the 11 MB record is the second one; with one record per chunk the first would go out first."""
    folder = world.folder("export-too-large")
    big = dict(world.records[1], attributes={"note": "x" * 11_000_000})
    write_export(folder / "big.json.gz", [world.records[0], big, world.records[2]])
    before = snapshot(folder, world.base)
    reset_target(world)
    run = run_tool(world, import_argv("big.json.gz", "../base/mapping.json", "state.json", "--chunk-records", "1"),
                   folder)
    assert run.code == 2, run.describe()
    assert_one_error_naming(run, "big.json.gz")
    assert run.requests == [], "found in the first pass: not even a token request"
    assert world.target.imported == []
    assert_nothing_written(folder, world, before)


def non_string_reference_records(world):
    """Five records; four hold a non-string value at a reference path (number, null, list, object)."""
    r0, r1, r2, r3, r4 = (copy.deepcopy(record) for record in world.records[:5])
    r1["userId"] = 12345
    r2["wrapupCode"]["id"] = None
    r3["routing"]["queue"]["id"] = [world.records[3]["routing"]["queue"]["id"]]
    agent = next(p for p in r4["participants"] if "userId" in p)
    agent["userId"] = {"id": agent["userId"]}
    return [r0, r1, r2, r3, r4]


def case_number(record):
    return record["attributes"]["caseNumber"]


@pytest.mark.parametrize("policy", ["fail", "fallback", "skip"])
def test_non_string_reference_counts_as_unmapped(world, policy):
    """Item 12: a number, null, list or object at a reference path is unmapped, whatever the policy says."""
    records = non_string_reference_records(world)
    folder = world.folder(f"non-string-{policy}")
    write_export(folder / "refs.json.gz", records)
    fallbacks = {"users": world.target_refs["users"][0], "wrapupCodes": world.target_refs["wrapupcodes"][0],
                 "queues": world.target_refs["queues"][0]}
    write_json(folder / "mapping.json", dict(world.mapping, fallbacks=fallbacks))
    reset_target(world)
    before = snapshot(folder, world.base)
    run = run_tool(world, import_argv("refs.json.gz", "mapping.json", "state.json", "--unmapped", policy), folder)
    assert not run.traceback, run.describe()
    stored = {case_number(record): record for record in world.target.imported}
    if policy == "fail":
        assert run.code == 1 and len(run.errors) == 1, run.describe()
        assert run.writes == [], "nothing is sent when --unmapped fail stops the run"
        assert stored == {}
        assert changed_files(before, snapshot(folder, world.base), owned_by(folder, "state.json")) == []
    elif policy == "fallback":
        assert run.code == 0, run.describe()
        assert set(stored) == {case_number(record) for record in records}
        assert stored[case_number(records[1])]["userId"] == fallbacks["users"]
        assert stored[case_number(records[2])]["wrapupCode"]["id"] == fallbacks["wrapupCodes"]
        assert stored[case_number(records[3])]["routing"]["queue"]["id"] == fallbacks["queues"]
        agents = [p for p in stored[case_number(records[4])]["participants"] if "userId" in p]
        assert agents and all(p["userId"] == fallbacks["users"] for p in agents)
    else:
        assert run.code == 3, run.describe()
        assert set(stored) == {case_number(records[0])}, "the four records with a non-string reference are left out"


def bad_mappings(mapping):
    text = json.dumps(mapping, indent=1).encode()
    return {
        "invalid utf-8": text.replace(b'"fuzz base"', b'"fuzz \xc3\x28base"'),
        "truncated JSON": text[: len(text) // 2],
        "not an object": json.dumps([mapping]).encode(),
        "a table that is a list": json.dumps(dict(mapping, queues=list(mapping["queues"]))).encode(),
    }


BAD_MAPPINGS = ["invalid utf-8", "truncated JSON", "not an object", "a table that is a list"]


@pytest.mark.parametrize("case", BAD_MAPPINGS)
def test_bad_mapping_file_is_one_line(world, case):
    data = bad_mappings(world.mapping)[case]
    assert check_mapping(data, []).kind == "reject"
    folder = world.folder(f"mapping-{BAD_MAPPINGS.index(case)}")
    (folder / "bad-mapping.json").write_bytes(data)
    before = snapshot(folder, world.base)
    run = run_tool(world, import_argv("../base/in.json.gz", "bad-mapping.json", "state.json"), folder)
    assert run.code == 2, run.describe()
    assert_one_error_naming(run, "bad-mapping.json")
    assert run.writes == []
    assert changed_files(before, snapshot(folder, world.base), owned_by(folder, "state.json")) == []
    assert not (folder / "state.json").exists()


def first_chunk(doc):
    return doc["import"]["chunks"][sorted(doc["import"]["chunks"])[0]]


def with_state(edit):
    def bad(state_bytes):
        doc = json.loads(state_bytes)
        edit(doc)
        return json.dumps(doc, indent=1).encode()
    return bad


BAD_STATES = {
    "invalid utf-8": lambda data: data.replace(b'"completed"', b'"compl\xe9ted"', 1),
    "truncated JSON": lambda data: data[: len(data) * 2 // 3],
    "import is a list": with_state(lambda doc: doc.__setitem__("import", [])),
    "pending window without end": with_state(lambda doc: doc.__setitem__(
        "incremental", {"pending": {"start": "2026-01-01T00:00:00Z"}})),
    "formatVersion 0": with_state(lambda doc: doc.__setitem__("formatVersion", 0)),
    "formatVersion true": with_state(lambda doc: doc.__setitem__("formatVersion", True)),
    "formatVersion string": with_state(lambda doc: doc.__setitem__("formatVersion", "2")),
    "chunk status 7": with_state(lambda doc: first_chunk(doc).__setitem__("status", 7)),
    "chunk status true": with_state(lambda doc: first_chunk(doc).__setitem__("status", True)),
    "chunk status list": with_state(lambda doc: first_chunk(doc).__setitem__("status", [])),
    "chunkRecords object": with_state(lambda doc: doc["import"].__setitem__("chunkRecords", {})),
    "chunks is a list": with_state(lambda doc: doc["import"].__setitem__("chunks", list(doc["import"]["chunks"].values()))),
}
SHAPE_PROBLEMS = [case for case in BAD_STATES if case not in ("invalid utf-8", "truncated JSON")]


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_damaged_state_file_names_the_backup_and_sends_nothing(world, case):
    """Items 11 and 18: the state's own fields are checked, not trusted (a status of 7 is not 'send again')."""
    state_bytes, spool = world.states["complete"]
    data = BAD_STATES[case](state_bytes)
    assert check_state(data).kind == "reject"
    folder = world.folder(f"state-{list(BAD_STATES).index(case)}")
    (folder / "state.json").write_bytes(data)
    before = snapshot(folder, world.base)
    reset_target(world)
    state = str(folder / "state.json")
    run = run_tool(world, import_argv("../base/in.json.gz", "../base/mapping.json", state), folder)
    assert run.code == 2, run.describe()
    assert_one_error_naming(run, f"{state}.bak")
    if case in SHAPE_PROBLEMS:
        assert run.errors[0].startswith(f"Error: state file {state} is damaged: "), run.errors
        assert run.errors[0].endswith(f"Restore {state}.bak or use --state to choose another file."), run.errors
    assert run.writes == [], "a damaged state sends nothing"
    assert world.target.imported == []
    assert (folder / "state.json").read_bytes() == data, "the damaged state is left as it was"
    assert changed_files(before, snapshot(folder, world.base), owned_by(folder, "state.json")) == []


BAD_MANIFEST_ENTRIES = {
    "entry is a string": lambda entries: entries.__setitem__(0, "flows Fuzz flow"),
    "entry without kind": lambda entries: entries[1].pop("kind"),
    "unknown kind": lambda entries: entries[1].__setitem__("kind", "widgets"),
    "name is a number": lambda entries: entries[2].__setitem__("name", 42),
    "targetId is a number": lambda entries: entries[4].__setitem__("targetId", 7),
    "targetId is an object": lambda entries: entries[4].__setitem__("targetId", {"id": "x"}),
    "entry without state": lambda entries: entries[5].pop("state"),
}


def bad_manifest(manifest, case):
    doc = copy.deepcopy(manifest)
    BAD_MANIFEST_ENTRIES[case](doc["entries"])
    return json.dumps(doc, indent=1).encode()


@pytest.mark.parametrize("case", list(BAD_MANIFEST_ENTRIES))
def test_manifest_entry_of_the_wrong_shape_stops_rollback(world, case):
    data = bad_manifest(world.manifest, case)
    assert check_manifest(data).kind == "reject"
    folder = world.folder(f"manifest-{list(BAD_MANIFEST_ENTRIES).index(case)}")
    (folder / "bad-rollback.json").write_bytes(data)
    before = snapshot(folder, world.base)
    run = run_tool(world, ["rollback", "--manifest", "bad-rollback.json", "--state", "state.json", "--yes", *SPEEDS],
                   folder)
    assert run.code == 2, run.describe()
    assert_one_error_naming(run, "bad-rollback.json")
    assert run.writes == [], "no DELETE for a manifest rollback cannot read"
    assert (folder / "bad-rollback.json").read_bytes() == data
    assert changed_files(before, snapshot(folder, world.base), owned_by(folder, "state.json")) == []


@pytest.mark.parametrize("case", ["unknown kind", "targetId is a number"])
def test_manifest_entry_of_the_wrong_shape_stops_clone(world, tmp_path, case):
    """Clone reads its --manifest-out before it writes anything; a bad entry stops it (a fresh pair of orgs,
    so whatever today's clone writes stays out of the shared fake)."""
    data = bad_manifest(world.manifest, case)
    with FakeGenesys(("source", "target"), flow_job_seconds=0.05) as fake:
        source_refs = populate_reference_objects(fake.orgs["source"], seed=4)
        manifest = json.loads(data)
        for role, org in (("source", fake.orgs["source"]), ("target", fake.orgs["target"])):
            manifest[role] = {"id": org.org_id, "name": org.name, "apiUrl": org.api_url}
        data = json.dumps(manifest, indent=1).encode()
        (tmp_path / "bad-rollback.json").write_bytes(data)
        before = snapshot(tmp_path)
        run = run_cli(["clone", "--yes", *SPEEDS, *POLL[:4], "--manifest-out", "bad-rollback.json",
                       "--mapping-out", "mapping-out.json", "--state", "state.json"],
                      env=org_env(fake, source="source", target="target"), cwd=tmp_path, timeout=60)
        writes = [r for org in fake.orgs.values() for r in org.requests
                  if r.method in WRITE_METHODS and r.path != "/oauth/token"]
        assert source_refs["queues"]
    assert result_line_ok(run, "bad-rollback.json")
    assert writes == [], "clone writes nothing with a manifest it cannot read"
    assert (tmp_path / "bad-rollback.json").read_bytes() == data
    assert not (tmp_path / "mapping-out.json").exists()
    assert changed_files(before, snapshot(tmp_path), owned_by(tmp_path, "state.json")) == []


def result_line_ok(result, name):
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert TRACEBACK not in result.stderr + result.stdout, result.stderr[-2000:]
    assert len(errors) == 1 and name in errors[0], result.stderr[-2000:]
    return True


# ---------------------------------------------------------------------------
# The fuzz pass
# ---------------------------------------------------------------------------

FAMILY_SIZES = {"export": 90, "mapping": 70, "state": 70, "manifest": 70}
SUBPROCESS_EVERY, SUBPROCESS_AT = 30, 15  # mutations 15, 45, 75, ...: ten of them run the real CLI
SEED = 8


class Raw:
    """JSON text written as is: huge numbers, escapes, deep nesting."""

    def __init__(self, text):
        self.text = text


class Pairs(list):
    """An object as a list of (key, value): keys may repeat."""


def dump_str(text):
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return json.dumps(text)  # a lone surrogate can only be written as its escape
    return json.dumps(text, ensure_ascii=False)


def dump(value):
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, (dict, Pairs)):
        items = value.items() if isinstance(value, dict) else value
        return "{" + ",".join(f"{dump(key)}:{dump(item)}" for key, item in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(item) for item in value) + "]"
    if isinstance(value, str):
        return dump_str(value)
    return json.dumps(value)


def slots(doc):
    """(container, key) of every value below doc, in a fixed order."""
    found, stack = [], [doc]
    while stack:
        node = stack.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        for key, value in items:
            found.append((node, key))
            stack.append(value)
    return found


WRONG_VALUES = [0, -1, 3.5, True, False, None, "", "x", [], [1, "a"], {}, {"id": 5}]
SPECIAL_CHARS = ["\ud800", "\udfff", "\x00", "\u200f", "\u202e", "\ufeff", "\U0001F600", "\u00e9"]


def op_wrong_type(doc, rng, pick):
    container, key = pick()
    current = container[key]
    container[key] = rng.choice([v for v in WRONG_VALUES if type(v) is not type(current)])
    return f"wrong type at {key!r:.30}"


def op_huge_number(doc, rng, pick):
    container, key = pick()
    value = rng.choice([Raw("9" * 5000), Raw("1e999"), Raw("-1e999"), 2 ** 200, 1e308, Raw("1" + "0" * 400)])
    container[key] = value
    return f"huge number at {key!r:.30}"


def op_huge_string(doc, rng, pick):
    container, key = pick()
    container[key] = "Z" * rng.choice([60_000, 250_000])
    return f"huge string at {key!r:.30}"


def op_unicode(doc, rng, pick):
    char = rng.choice(SPECIAL_CHARS)
    strings = [(c, k) for c, k in slots(doc) if isinstance(c[k], str)]
    keyed = [(c, k) for c, k in slots(doc) if isinstance(c, dict)]
    if keyed and (not strings or rng.random() < 0.3):
        container, key = rng.choice(keyed)
        at = rng.randrange(len(key) + 1)
        renamed = key[:at] + char + key[at:]
        items = [(renamed if k == key else k, v) for k, v in container.items()]
        container.clear()
        container.update(items)
        return f"{char!r} in key {key!r:.30}"
    container, key = rng.choice(strings)
    at = rng.randrange(len(container[key]) + 1)
    container[key] = container[key][:at] + char + container[key][at:]
    return f"{char!r} in value at {key!r:.30}"


def op_duplicate_key(doc, rng, pick):
    objects = [(c, k) for c, k in slots(doc) if isinstance(c[k], dict) and c[k]]
    container, key = rng.choice(objects)
    target = container[key]
    name = rng.choice(list(target))
    other = rng.choice(WRONG_VALUES + [copy.deepcopy(target[name])])
    pairs = Pairs(target.items())
    if rng.random() < 0.5:
        pairs.insert(0, (name, other))  # the original comes last and wins
    else:
        pairs.append((name, other))  # the new value wins
    container[key] = pairs
    return f"duplicate key {name!r:.30}"


def op_deep_nest(doc, rng, pick):
    container, key = pick()
    depth = rng.choice([40, 100_000])
    container[key] = Raw("[" * depth + "]" * depth) if rng.random() < 0.5 else Raw('{"a":' * depth + "1" + "}" * depth)
    return f"nesting {depth} at {key!r:.30}"


BYTE_INSERTS = [b'"', b",", b"]", b"}", b"{", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b" ", b"garbage", b"\\ud800",
                b"\n]"]


def byte_mutation(data, rng):
    op = rng.choice(["truncate", "bit flip", "insert", "delete"])
    data = bytearray(data)
    if op == "truncate":
        at = rng.randrange(len(data))
        return bytes(data[:at]), f"truncate at {at}/{len(data)}"
    if op == "bit flip":
        flips = [(rng.randrange(len(data)), rng.randrange(8)) for _ in range(rng.randint(1, 3))]
        for at, bit in flips:
            data[at] ^= 1 << bit
        return bytes(data), f"bit flips {flips}"
    if op == "insert":
        at = rng.randrange(len(data) + 1)
        chunk = rng.choice(BYTE_INSERTS + [bytes([rng.randrange(256)])])
        data[at:at] = chunk
        return bytes(data), f"insert {bytes(chunk)!r} at {at}"
    at = rng.randrange(len(data))
    size = rng.randint(1, 8)
    del data[at:at + size]
    return bytes(data), f"delete {size} at {at}"


STRUCTURED = [op_wrong_type, op_huge_number, op_huge_string, op_unicode, op_duplicate_key, op_deep_nest]


def state_edit(doc, rng, pick):
    """Fields the issue lists, set to values of the right and of the wrong shape."""
    chunks = doc["import"]["chunks"]
    chunk = chunks[rng.choice(sorted(chunks))]
    good_time, later = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
    edits = [
        ("formatVersion", lambda v: doc.__setitem__("formatVersion", v), [0, True, "2", 3, 2.0, None, -1, 1, 2]),
        ("import", lambda v: doc.__setitem__("import", v), [[], "x", None, 5]),
        ("import.chunks", lambda v: doc["import"].__setitem__("chunks", v), [list(chunks.values()), None, "x", {}]),
        ("chunkRecords", lambda v: doc["import"].__setitem__("chunkRecords", v), [{}, 0, 1001, "2", True, 2.0, 2]),
        ("chunk", lambda v: chunks.__setitem__(rng.choice(sorted(chunks)), v), [7, "completed", [], None]),
        ("chunk status", lambda v: chunk.__setitem__("status", v),
         [7, True, [], None, "done", "COMPLETED", "pending", "failed", "submitted", "split"]),
        ("incremental.pending", lambda v: doc.__setitem__("incremental", {"pending": v}),
         [{"start": good_time}, {"start": good_time, "end": "yesterday"}, {"start": good_time, "end": 5},
          {"start": good_time, "end": "2026-13-01T00:00:00Z"}, [good_time, later], {"start": good_time, "end": later}]),
        ("exports", lambda v: doc.__setitem__("exports", v), [[], {"w": 5}, {"w": []}, {"w": {"jobId": "x"}}]),
        ("analytics", lambda v: doc.__setitem__("analytics", v), ["x", {"w": None}, {}]),
        ("orgs", lambda v: doc.__setitem__("orgs", v), [[], "target", {"destination": "target"},
                                                        {"destination": {"id": 5, "name": "target"}}]),
    ]
    name, apply, values = rng.choice(edits)
    value = copy.deepcopy(rng.choice(values))
    apply(value)
    return f"{name} = {json.dumps(value)[:40]}"


def manifest_edit(doc, rng, pick):
    """Entry fields of the right and of the wrong shape."""
    entries = doc["entries"]
    entry = rng.choice(entries)
    choice = rng.randrange(7)
    if choice == 0:
        field = rng.choice(["kind", "name", "state", "type", "sourceId"])
        entry.pop(field, None)
        return f"entry without {field}"
    if choice == 1:
        value = rng.choice(["widgets", "Queues", 5, None, "queue", "flows", "skills"])
        entry["kind"] = value
        return f"kind = {value!r}"
    if choice == 2:
        value = rng.choice([42, None, [], "", "Renamed"])
        entry["name"] = value
        return f"name = {value!r}"
    if choice == 3:
        value = rng.choice([7, [], {"id": "x"}, True, None, "", str(uuid.UUID(int=rng.getrandbits(128), version=4))])
        entry["targetId"] = value
        return f"targetId = {value!r}"
    if choice == 4:
        value = rng.choice([None, 3, "created", "creating", "odd"])
        entry["state"] = value
        return f"state = {value!r}"
    if choice == 5:
        value = rng.choice(["flows Fuzz", 5, [], None])
        entries[entries.index(entry)] = value
        return f"entry = {value!r}"
    value = rng.choice([{}, None, "x"])
    doc["entries"] = value
    return f"entries = {value!r}"


def mapping_edit(doc, rng, pick):
    """Edits that keep the documented shape (or break it in one named way)."""
    kinds = [kind for kind in MAPPING_KINDS if doc.get(kind)]
    kind = rng.choice(kinds)
    source = rng.choice(sorted(doc[kind]))
    fresh = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    choice = rng.randrange(8)
    if choice == 0:
        doc[kind][source] = fresh
        return f"{kind}: another target id"
    if choice == 1:
        del doc[kind][source]
        return f"{kind}: entry removed"
    if choice == 2:
        doc[kind][fresh] = doc[kind][source]
        return f"{kind}: an extra entry"
    if choice == 3:
        doc[kind][source] = doc[kind][source].upper()
        return f"{kind}: target id in upper case"
    if choice == 4:
        key = rng.choice(["_note", "_", "_generated"])
        doc[key] = rng.choice(WRONG_VALUES + ["text"])
        return f"{key} added"
    if choice == 5:
        doc["fallbacks"] = {rng.choice(MAPPING_KINDS): fresh}
        return "a fallback"
    if choice == 6:
        doc["timeZones"] = {"America/New_York": rng.choice(["America/Chicago", "UTC", 5, None])}
        return "timeZones changed"
    other = rng.choice([k for k in MAPPING_KINDS if k != kind])
    doc.setdefault(other, {})
    return f"{other} present"


@dataclasses.dataclass
class Mutation:
    family: str
    index: int
    op: str
    data: bytes
    verdict: Verdict
    subprocess: bool
    base: str = ""

    @property
    def file_name(self):
        return {"export": f"m{self.index:03d}.json.gz", "mapping": f"m{self.index:03d}-mapping.json",
                "state": f"m{self.index:03d}-state.json", "manifest": f"m{self.index:03d}-rollback.json"}[self.family]


def needed_references(records):
    return [leaf for record in records for leaf in reference_leaves(record)[0]]


def build_mutations(world):
    """The corpus: random.Random(8) draws one seed per family, so a family's mutations do not depend on
    the size of another family's base file (a state written by another version, say)."""
    master = random.Random(SEED)
    seeds = {family: master.getrandbits(64) for family in FAMILY_SIZES}
    mutations, index = [], 0
    for family, count in FAMILY_SIZES.items():
        rng = random.Random(seeds[family])
        for _ in range(count):
            if family == "export":
                doc = copy.deepcopy(world.records)
            elif family == "mapping":
                doc = copy.deepcopy(world.mapping)
            elif family == "state":
                base = rng.choice(["complete", "partial"])
                doc = json.loads(world.states[base][0])
            else:
                doc = copy.deepcopy(world.manifest)
            ops = ["bytes"] * 4 + [op.__name__ for op in STRUCTURED]
            ops += {"state": ["state_edit"] * 3, "manifest": ["manifest_edit"] * 3,
                    "mapping": ["mapping_edit"] * 4}.get(family, [])
            op = rng.choice(ops)
            if family == "export":
                record = rng.choice(doc)
                candidates = [(doc, doc.index(record))] + slots(record)
            else:
                candidates = slots(doc)

            def pick(candidates=candidates):
                return rng.choice(candidates)

            if op == "bytes":
                text = ("[" + ",\n".join(dump(r) for r in doc) + "]") if family == "export" else dump(doc)
                data = text.encode("utf-8")
                layer = "text"
                if family == "export" and rng.random() < 0.35:
                    data, layer = gz(data), "gzip"
                data, what = byte_mutation(data, rng)
                if family == "export" and layer == "text":
                    data = gz(data)
                what = f"{layer}: {what}"
            else:
                function = {f.__name__: f for f in STRUCTURED + [state_edit, manifest_edit, mapping_edit]}[op]
                what = function(doc, rng, pick)
                text = ("[" + ",\n".join(dump(r) for r in doc) + "]") if family == "export" else dump(doc)
                data = text.encode("utf-8")
                if family == "export":
                    data = gz(data)
            if family == "export":
                verdict = check_export(data, world.mapping)
            elif family == "mapping":
                verdict = check_mapping(data, needed_references(world.records))
            elif family == "state":
                verdict = check_state(data)
                what = f"{base} state, {what}"
            else:
                verdict = check_manifest(data)
            mutations.append(Mutation(family, index, f"{op}: {what}", data, verdict,
                                      index % SUBPROCESS_EVERY == SUBPROCESS_AT, base if family == "state" else ""))
            index += 1
    return mutations


@pytest.fixture(scope="module")
def mutations(world):
    return build_mutations(world)


def mutation_argv(world, mutation, folder):
    name = mutation.file_name
    if mutation.family == "manifest":
        return ["rollback", "--manifest", name, "--state", "state.json", "--yes", *SPEEDS], "state.json"
    export = name if mutation.family == "export" else "../base/in.json.gz"
    mapping = name if mutation.family == "mapping" else "../base/mapping.json"
    state = name if mutation.family == "state" else "state.json"
    return import_argv(export, mapping, state), state


def judge(world, mutation, folder, run, before, after, state_name):
    """The problems with one run, as text (empty when the run behaved)."""
    verdict, problems = mutation.verdict, []
    extra = (mutation.file_name,) if mutation.family == "manifest" and not verdict.strict else ()
    stray = changed_files(before, after, owned_by(folder, state_name, extra))
    if run.traceback:
        problems.append("traceback")
    if stray:
        problems.append(f"changed files it does not own: {[Path(p).name for p in stray]}")
    if verdict.strict:
        if run.code not in verdict.exits:
            problems.append(f"exit {run.code}, expected {verdict.exits}")
        if len(run.errors) != 1:
            problems.append(f"{len(run.errors)} Error: lines")
        elif verdict.kind == "reject":
            named = f"{mutation.file_name}.bak" if mutation.family == "state" else mutation.file_name
            if named not in run.errors[0]:
                problems.append(f"the Error line does not name {named}")
        if run.writes:
            problems.append(f"{len(run.writes)} writing requests")
        if verdict.kind == "reject" and mutation.family == "export" and run.requests:
            problems.append(f"{len(run.requests)} requests for a bad export file (checked in the first pass)")
        if (folder / mutation.file_name).read_bytes() != mutation.data:
            problems.append("the refused file was changed")
    else:
        if run.code not in (0, 1, 2, 3):
            problems.append(f"exit {run.code}")
        elif run.code in (1, 2) and len(run.errors) != 1:
            problems.append(f"exit {run.code} with {len(run.errors)} Error: lines")
        if run.effective_writes and run.code != 0 and not (run.code == 1 and run.failed_jobs):
            problems.append(f"{len(run.effective_writes)} writes but exit {run.code}")
    return problems


STATS = {}


def run_family(world, mutations, family):
    started = time.monotonic()
    failures, chosen, exits = [], [m for m in mutations if m.family == family], {}
    for mutation in chosen:
        folder = world.folder(f"m{mutation.index:03d}")
        (folder / mutation.file_name).write_bytes(mutation.data)
        if mutation.family == "state":
            spool = world.states[mutation.base][1]
            if spool:
                (folder / f"{mutation.file_name}.spool").mkdir(mode=0o700)
                for name, content in spool.items():
                    (folder / f"{mutation.file_name}.spool" / name).write_bytes(content)
        argv, state_name = mutation_argv(world, mutation, folder)
        reset_target(world)
        before = snapshot(folder, world.base)
        run = run_tool(world, argv, folder, subprocess=mutation.subprocess)
        after = snapshot(folder, world.base)
        problems = judge(world, mutation, folder, run, before, after, state_name)
        outcome = f"{mutation.verdict.kind} exit {run.code}"
        exits[outcome] = exits.get(outcome, 0) + 1
        if problems:
            failures.append(f"#{mutation.index} {mutation.family} [{mutation.op[:90]}] checker: {mutation.verdict.kind} "
                            f"({mutation.verdict.reason[:60]}){' subprocess' if mutation.subprocess else ''}: "
                            f"{'; '.join(problems)}\n    {run.describe()}")
    STATS[family] = {"mutations": len(chosen), "rejected": sum(m.verdict.kind == "reject" for m in chosen),
                     "unmapped": sum(m.verdict.kind == "unmapped" for m in chosen),
                     "subprocess": sum(m.subprocess for m in chosen), "seconds": round(time.monotonic() - started, 1),
                     "outcomes": dict(sorted(exits.items()))}
    print(f"\nfuzz {family}: {STATS[family]}")
    assert not failures, f"{len(failures)} of {len(chosen)} {family} mutations misbehaved:\n" + "\n".join(failures[:12])


def test_fuzz_corpus_is_large_and_mixed(world, mutations):
    """At least 200 mutations, each family with a fair share of files the checker refuses and accepts."""
    assert len(mutations) >= 300
    assert sum(m.subprocess for m in mutations) == 10
    for family in FAMILY_SIZES:
        verdicts = [m.verdict.kind for m in mutations if m.family == family]
        assert verdicts.count("reject") >= 20, (family, verdicts)
        assert len(verdicts) - verdicts.count("reject") >= 10, (family, verdicts)
    summary = {family: {kind: sum(m.verdict.kind == kind for m in mutations if m.family == family)
                        for kind in ("reject", "unmapped", "accept")} for family in FAMILY_SIZES}
    print(f"\nfuzz corpus: {len(mutations)} mutations, {summary}")


@pytest.mark.parametrize("family", list(FAMILY_SIZES))
def test_fuzz(world, mutations, family):
    run_family(world, mutations, family)
