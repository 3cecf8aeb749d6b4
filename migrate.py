#!/usr/bin/env python3
"""migrate.py: move a Genesys Cloud contact centre between orgs and regions.

Two jobs, one tool::

    interaction migration                          configuration clone
    ---------------------                          -------------------
    source org                                     source org ──extract──┐
      │ export jobs: interaction/export (design)                         │
      │   or analytics conversation-detail (real)  target org ──extract──┤
      │ poll (backoff, Retry-After, deadline)                            ▼
      │ download / page (no token to other hosts)      match by name; flows' dependencies,
      │                                                export their YAML, read relations;
      ▼                                                plan (--plan stops)           │
    exports/<start>_<end>.json.gz  (+ .meta.json)   apply level by level, in parallel:
      │ stream records (never all in memory)          divisions → skills, wrap-up codes,
      │ transform: strip, rewrite ids via mapping     schedules, trunks, prompts, tables,
      │ chunk: ≤1,000 records, ≤10 MB, sha256 key     flow shells → schedule groups, queues,
      │                                                agents' skills → IVRs, members →
      │                                                emergency groups → flow content
      ▼                                                (names rewritten)             │
    target org: interaction/import jobs             verify; mapping.json, rollback.json
      state: pending → submitting → submitted → completed   (exactly once)
                                                    rollback: undo what the manifest lists

Every request to an org goes through one client per org: a cached OAuth token
(client credentials), a rate governor shared by all threads of that org (paced
requests, adaptive to the rate-limit headers, one shared pause on 429), and
tenacity retries for transient failures only.  Progress lives in a JSON state
file written atomically, bound to the orgs it was made for, guarded by a lock
file so two cron runs never overlap.  A first SIGINT/SIGTERM stops new work and
gives requests in flight a few seconds; the state is then final before the lock
is released, and the same command resumes.

The interaction export/import endpoints are those of the design documents; the
public Genesys Cloud API has no such endpoints (see README.md).  The analytics
export and everything clone uses are the public API.
"""

import argparse
import base64
import contextlib
import copy
import datetime as dt
import errno
import fcntl
import gzip
import hashlib
import io
import ipaddress
import json
import logging
import os
import math
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from pathlib import Path

try:
    import requests
    import tenacity
    import urllib3.util
    from requests.adapters import HTTPAdapter
    from requests.auth import AuthBase
except ImportError as missing:  # a fresh machine: say what to install, not a traceback
    sys.stderr.write(f"Error: migrate.py needs the package {missing.name!r}. "
                     f"Install its requirements: pip install -r requirements.txt\n")
    sys.exit(2)

__version__ = "0.1.0"
log = logging.getLogger("migrate")

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

REGIONS = {
    "us-east-1": "mypurecloud.com",
    "us-east-2": "use2.us-gov-pure.cloud",
    "us-west-2": "usw2.pure.cloud",
    "ca-central-1": "cac1.pure.cloud",
    "sa-east-1": "sae1.pure.cloud",
    "mx-central-1": "mxc1.pure.cloud",
    "eu-west-1": "mypurecloud.ie",
    "eu-west-2": "euw2.pure.cloud",
    "eu-central-2": "euc2.pure.cloud",
    "ap-south-1": "aps1.pure.cloud",
    "ap-northeast-1": "mypurecloud.jp",
    "ap-northeast-2": "apne2.pure.cloud",
    "ap-northeast-3": "apne3.pure.cloud",
    "ap-southeast-1": "apse1.pure.cloud",
    "ap-southeast-2": "mypurecloud.com.au",
    "me-central-1": "mec1.pure.cloud",
    "eu-central-1": "mypurecloud.de",
    "eusc-de-east-1": "edee1.eusc-pure.cloud",
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION, EXIT_LOCKED = 0, 1, 2, 3, 4
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

STATE_FORMAT_VERSION = 2  # 2: the state names the orgs it belongs to
MANIFEST_FORMAT_VERSION = 2  # 2: the manifest names its source org too
TOKEN_REFRESH_MARGIN_S = 300
DEFAULT_MAX_RPS = 5.0  # the platform allows 300 requests/min per token
DEFAULT_STATUS_RPS = 100 / 60  # job-status reads share 100/min
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
RETRY_ATTEMPTS = 10
RETRY_MAX_SECONDS = 600.0
HTTP_TIMEOUT_S = (10, 120)
MAX_SERVER_WAIT_S = 120.0  # the longest Retry-After honoured; the platform sends up to about 60 s
STOP_GRACE_S = 10.0  # after a first signal, how long requests in flight get for their answer
RESUBMITS_OF_UNKNOWN_JOB = 3
EARLIEST_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST_TIME = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)
LONGEST_DURATION_S = 10 * 366 * 86400.0
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

SCHEMA_VERSION = "v2.1"
INTERACTION_TYPES = ("voice", "chat", "email")
IMPORT_MAX_RECORDS = 1000
IMPORT_MAX_BYTES = 10_000_000
DOWNLOAD_URL_REFRESHES = 3

# Fields the destination computes itself or must never receive, and the fields a v2.1 record may hold.
IMPORT_STRIPPED_FIELDS = ("id", "createdDate", "lastUpdatedDate", "version", "selfUri", "media", "transcripts")
RECORD_FIELDS = frozenset(IMPORT_STRIPPED_FIELDS) | {
    "interactionType", "direction", "startTime", "endTime", "routing", "wrapupCode", "userId", "participants",
    "attributes"}

# Mapping file: one table per kind of object, source id -> target id.
MAPPING_KINDS = (
    "divisions", "skills", "languages", "wrapupCodes", "schedules", "scheduleGroups",
    "queues", "flows", "users", "trunkBaseSettings", "prompts", "dataTables", "ivrs", "emergencyGroups",
)
MAPPING_EXTRA_KEYS = ("fallbacks", "timeZones")

# Where an interaction record refers to objects of the source org; "*" walks a list.
INTERACTION_REFERENCES = (
    (("routing", "queue", "id"), "queues"),
    (("routing", "flow", "id"), "flows"),
    (("routing", "skills", "*", "id"), "skills"),
    (("routing", "languageId"), "languages"),
    (("wrapupCode", "id"), "wrapupCodes"),
    (("userId",), "users"),
    (("participants", "*", "userId"), "users"),
)

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class MigrateError(Exception):
    """A failure the operator can act on: printed as one line, never a traceback."""

    exit_code = EXIT_FAILED


class UsageError(MigrateError):
    exit_code = EXIT_USAGE


class LockHeld(MigrateError):
    exit_code = EXIT_LOCKED


class ApiError(MigrateError):
    """An error answer from an org, carrying the platform's ErrorBody."""

    def __init__(self, org, method, path, status, body=None, retry_after=None):
        body = body if isinstance(body, dict) else {}
        self.org, self.method, self.path, self.status = org, method, path, status
        self.code = body.get("code") or body.get("error") or ""
        self.message = body.get("message") or body.get("description") or ""
        self.context_id = body.get("contextId") or ""
        self.body = body
        self.retry_after = retry_after
        super().__init__(self._describe())

    @property
    def transient(self):
        return self.status in TRANSIENT_STATUSES

    def _describe(self):
        text = f"{self.org} org: {self.method} {self.path} answered {self.status}"
        if self.code:
            text += f" {self.code}"
        if self.message:
            text += f": {self.message}"
        if self.context_id:
            text += f" (contextId {self.context_id})"
        return text


class TransportError(MigrateError):
    """The connection failed or timed out: worth another try."""

    transient = True


class ServerWaitTooLong(MigrateError):
    """The org asked for a pause longer than we honour: stop cleanly rather than shorten it."""

    def __init__(self, label, value):
        super().__init__(f"the {label} org asks to wait {value} s before the next request, more than the "
                         f"{MAX_SERVER_WAIT_S:.0f} s this tool waits; run again later: the state is saved.")


class DiskFull(MigrateError):
    def __init__(self, path, exc):
        super().__init__(f"no space left writing {path} ({exc.strerror or exc}). Free space (or raise the file "
                         f"size limit) and run the same command again.")


class Stopped(MigrateError):
    """A signal asked the run to stop: every worker unwinds, the state stays resumable."""

    def __init__(self):
        super().__init__("stopped by a signal")
        self.exit_code = STOP.exit_code


def is_transient(exc):
    return getattr(exc, "transient", False)


@contextlib.contextmanager
def disk_errors(path):
    """A full disk (or a file size limit) is one line naming the file, never a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFull(path, exc) from None
        raise


# ---------------------------------------------------------------------------
# Stopping on a signal
# ---------------------------------------------------------------------------


class StopSignal:
    """What SIGINT/SIGTERM asked for, seen by every thread.

    The first signal stops new work at once: waits (polls, pacing, retry
    pauses) end in `Stopped`, and requests in flight get `STOP_GRACE_S` for
    their answer to be recorded.  A second signal means now.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.event = threading.Event()
        self.signum = None
        self.forced = False
        self.deadline = None
        self.prompting = False

    @property
    def requested(self):
        return self.event.is_set()

    @property
    def exit_code(self):
        return EXIT_SIGNAL.get(self.signum, 130)

    def request(self, signum):
        if self.event.is_set():
            self.forced = True
        else:
            self.signum = signum
            self.deadline = time.monotonic() + STOP_GRACE_S
            self.event.set()

    def check(self):
        if self.event.is_set():
            raise Stopped()

    def sleep(self, seconds):
        """time.sleep that a signal ends early, with Stopped."""
        if self.event.wait(max(0.0, seconds)):
            raise Stopped()


STOP = StopSignal()


class WriteGate:
    """Counts the file writes in progress, so a stopping run can close the gate once they are done:
    after that nothing writes the state, the manifest or the spool (an abandoned worker gets Stopped),
    and the lock can be released last.  Partial files registered here are removed then."""

    def __init__(self):
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False
        self._partials = set()

    def reset(self):
        with self._cond:
            self._active, self._closed, self._partials = 0, False, set()

    @contextlib.contextmanager
    def writing(self):
        with self._cond:
            if self._closed:
                raise Stopped()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def partial(self, path):
        """A file only worth keeping once complete (a download's .part): removed when writing it fails,
        or when a stopping run abandons it."""
        with self._cond:
            self._partials.add(Path(path))
        try:
            yield
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            with self._cond:
                self._partials.discard(Path(path))

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0, timeout=5.0)
            for path in self._partials:
                with contextlib.suppress(OSError):
                    os.unlink(path)


WRITES = WriteGate()


# ---------------------------------------------------------------------------
# Logging: text for people, JSON for cron, secrets never printed
# ---------------------------------------------------------------------------


class SecretRedactor(logging.Filter):
    """Masks every registered secret (client secrets, tokens) in every log line."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._secrets = frozenset()

    def add(self, secret):
        """Replaces the set rather than changing it: a redact() running meanwhile iterates its own copy."""
        if secret and len(secret) >= 6:
            with self._lock:
                self._secrets = self._secrets | {secret}

    def redact(self, text):
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record):
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        return True


REDACTOR = SecretRedactor()


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbosity, log_format):
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class Progress:
    """A single self-overwriting status line, shown only to a person at a terminal."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0
        self._lock = threading.Lock()

    def show(self, text, force=False):
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if force or now - self._last >= 0.2:
                self._last = now
                sys.stderr.write("\r\033[K" + text)
                sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


# ---------------------------------------------------------------------------
# Small helpers: time, sizes, files
# ---------------------------------------------------------------------------


def parse_time(text, flag):
    """Reads an ISO-8601 instant; a time without a zone is refused rather than guessed."""
    try:
        value = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not an ISO-8601 time. Use e.g. {flag} 2026-01-01T00:00:00Z.") from None
    if value.tzinfo is None:
        raise UsageError(f"{flag} {text!r} has no time zone. Add Z for UTC, e.g. 2026-01-01T00:00:00Z.")
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:
        value = None
    if value is None or not EARLIEST_TIME <= value < LATEST_TIME:
        raise UsageError(f"{flag} {text!r} is out of range: use a time from {EARLIEST_TIME.year} to "
                         f"{LATEST_TIME.year - 1}.")
    return value


def iso_utc(moment):
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact_stamp(moment):
    return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def parse_duration(text):
    """'90', '90s', '30m', '1h', '2d' -> seconds (zero allowed, e.g. --lag 0)."""
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*([smhd]?)\s*", text or "")
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; use e.g. 90s, 30m, 1h or 2d")
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds > LONGEST_DURATION_S:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than ten years")
    return seconds


def positive_duration(text):
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return seconds


def canonical_json(record):
    """The form the destination compares records in (contract section 7)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compact_json_bytes(value, errors="strict"):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", errors)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_directory(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def private_folder(path):
    """Creates a folder for files holding records or ids: each level we create is 0700."""
    path = Path(path)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def private_open(path, mode="wb"):
    """Opens a file for writing, created 0600: it holds customer records or ids."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def write_json_atomically(path, value, mode=0o600, keep_backup=False):
    """Temp file in the same folder, fsync, rename: a crash leaves the old or the new file, never half.
    Goes through the write gate, so nothing is written once a stopping run has closed it."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    text = json.dumps(value, indent=1, ensure_ascii=False) + "\n"
    with WRITES.writing(), disk_errors(path):
        private_folder(folder)
        temp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8", "backslashreplace"))  # a lone surrogate stays a \\u escape
                handle.flush()
                os.fsync(handle.fileno())
            if keep_backup and path.exists():
                backup_temp = folder / f".{path.name}.bak.tmp"
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(backup_temp)
                    os.link(path, backup_temp)
                    os.chmod(backup_temp, mode)  # a state of the previous version may have been 0644
                    os.replace(backup_temp, folder / f"{path.name}.bak")
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(backup_temp)
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        fsync_directory(folder)


def read_json_file(path, what, hint=""):
    """Loads a JSON file the operator gave us; a broken one is a one-line error naming the line."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid UTF-8 (byte {exc.start}).{hint}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}).{hint}") from None
    except (ValueError, RecursionError) as exc:  # a number too long to read, or nesting too deep
        raise UsageError(f"{what} {path} cannot be read as JSON ({type(exc).__name__}).{hint}") from None


# ---------------------------------------------------------------------------
# State file and run lock
# ---------------------------------------------------------------------------


CHUNK_STATUSES = ("pending", "submitting", "submitted", "completed", "failed", "split")
INT, TEXT, OPTIONAL_TEXT, FLAG, LIST, OBJECT = "a count", "a string", "a string or null", "true or false", "a list", \
    "an object"
TEXTS, COUNTS, TIME = "a list of strings", "an object of counts", "a time"
LARGEST_COUNT = 2 ** 53  # a byte length or a count beyond this is no state this tool wrote
# The typed fields of each kind of state entry: a state file is checked against these, not trusted.
STATE_ENTRY_FIELDS = {
    "export": {"jobId": OPTIONAL_TEXT, "status": TEXT, "sha256": TEXT, "records": INT, "file": TEXT, "start": TEXT,
               "end": TEXT, "interactionTypes": LIST, "error": OPTIONAL_TEXT},
    "analytics": {"sha256": TEXT, "records": INT, "file": TEXT, "parts": OBJECT},
    "part": {"jobId": OPTIONAL_TEXT, "cursor": OPTIONAL_TEXT, "rawBytes": INT, "v21Bytes": INT, "v21Count": INT,
             "kept": INT, "received": INT, "dropped": INT, "done": FLAG, "lastStart": TIME, "idsAtLastStart": TEXTS,
             "unconverted": COUNTS, "unconvertedIds": TEXTS},
    "chunk": {"status": TEXT, "file": TEXT, "index": INT, "records": INT, "sent": INT, "skipped": TEXTS,
              "importId": OPTIONAL_TEXT, "error": OBJECT, "confirmedBy": TEXT},
}


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value):
    return is_int(value) and 0 <= value < LARGEST_COUNT


def is_time(value):
    """An ISO-8601 instant with a zone, in the range parse_time accepts."""
    if not isinstance(value, str):
        return False
    try:
        parse_time(value, "time")
    except UsageError:
        return False
    return True


FIELD_CHECKS = {
    INT: is_count, TEXT: lambda value: isinstance(value, str),
    OPTIONAL_TEXT: lambda value: value is None or isinstance(value, str), FLAG: lambda value: isinstance(value, bool),
    LIST: lambda value: isinstance(value, list), OBJECT: lambda value: isinstance(value, dict),
    TEXTS: lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
    COUNTS: lambda value: isinstance(value, dict) and all(is_count(count) for count in value.values()),
    TIME: is_time,
}


def entry_problem(entry, kind, where):
    for name, expected in STATE_ENTRY_FIELDS[kind].items():
        if name in entry and not FIELD_CHECKS[expected](entry[name]):
            return f"{where}: {name} is not {expected}"
    return None


def state_problem(data):
    """What is wrong with a state file's shape, or None: its fields are checked, not trusted."""
    def objects_of_objects(value):
        return isinstance(value, dict) and all(isinstance(item, dict) for item in value.values())

    if not isinstance(data, dict):
        return "it is not a JSON object"
    version = data.get("formatVersion")
    if not is_int(version) or not 1 <= version <= STATE_FORMAT_VERSION:
        if is_int(version) and version > STATE_FORMAT_VERSION:
            return (f"its format {version} is newer than this migrate.py understands ({STATE_FORMAT_VERSION}); "
                    f"upgrade migrate.py")
        return f"formatVersion is {version!r}, not 1 to {STATE_FORMAT_VERSION}"
    orgs = data.get("orgs", {})
    if not isinstance(orgs, dict) or any(
            role not in ("source", "destination") or not isinstance(org, dict) or not isinstance(org.get("id"), str)
            for role, org in orgs.items()):
        return "orgs is not an object of source/destination orgs with an id"
    for name in ("exports", "analytics"):
        if not objects_of_objects(data.get(name, {})):
            return f"{name} is not an object of windows"
    for key, entry in data.get("exports", {}).items():
        problem = entry_problem(entry, "export", f"export {key}")
        if problem:
            return problem
    for key, entry in data.get("analytics", {}).items():
        problem = entry_problem(entry, "analytics", f"analytics {key}")
        if problem:
            return problem
        if not objects_of_objects(entry.get("parts", {})):
            return f"analytics {key}: parts is not an object of parts"
        for part_key, part in entry.get("parts", {}).items():
            problem = entry_problem(part, "part", f"analytics part {part_key}")
            if problem:
                return problem
    incremental = data.get("incremental", {})
    if not isinstance(incremental, dict):
        return "incremental is not an object"
    if incremental.get("lastEnd") is not None and not is_time(incremental["lastEnd"]):
        return "incremental.lastEnd is not a time"
    pending = incremental.get("pending")
    if pending is not None:
        if not isinstance(pending, dict):
            return "incremental.pending is not a window"
        for edge in ("start", "end"):
            if not is_time(pending.get(edge)):
                return f"incremental.pending.{edge} is not a time"
    imports = data.get("import", {})
    if not isinstance(imports, dict):
        return "import is not an object"
    records = imports.get("chunkRecords")
    if records is not None and not (is_int(records) and 1 <= records <= IMPORT_MAX_RECORDS):
        return f"import.chunkRecords is {records!r}, not 1 to {IMPORT_MAX_RECORDS}"
    chunks = imports.get("chunks", {})
    if not isinstance(chunks, dict):
        return "import.chunks is not an object of chunks"
    for key, chunk in chunks.items():
        if not isinstance(chunk, dict):
            return f"chunk {key[:12]} is not an object"
        problem = entry_problem(chunk, "chunk", f"chunk {key[:12]}")
        if problem:
            return problem
        if chunk.get("status", "pending") not in CHUNK_STATUSES:
            return f"chunk {key[:12]} has status {chunk.get('status')!r}"
    return None


class StateFile:
    """The run's memory: JSON, atomic writes, previous copy as .bak, mode 0600.

    Worker threads change it concurrently, so every change goes through
    `update`, which applies it and writes the file under one mutex: what is on
    disk is always a state the run really passed through.  It belongs to the
    orgs it was made with (`bind`).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.lock_path = Path(f"{path}.lock")
        self.data = {"formatVersion": STATE_FORMAT_VERSION}
        self._mutex = threading.RLock()
        self._lock_fd = None
        self._lock_mutex = threading.Lock()

    def load(self):
        if not self.path.exists():
            return self
        restore = f" Restore {self.path}.bak or use --state to choose another file."
        data = read_json_file(self.path, "state file", hint=restore)
        problem = state_problem(data)
        if problem:
            raise UsageError(f"state file {self.path} is damaged: {problem}.{restore}")
        self.data = data
        return self

    def bind(self, role, org):
        """Refuses a state made for another org; a state of the previous format is bound with a warning.
        Called right after GET /organizations/me, before anything else is read, sent or written."""
        org_id, name = org.get("id"), org.get("name")
        recorded = (self.data.get("orgs") or {}).get(role)
        if recorded and recorded.get("id") != org_id:
            raise UsageError(f"{self.path} belongs to the {role} org {recorded.get('name')!r} ({recorded.get('id')}), "
                             f"not {name!r} ({org_id}). Use another --state for this org.")
        if recorded:
            return
        holds_work = any(self.data.get(key) for key in ("exports", "analytics", "incremental", "import"))
        if holds_work and self.data.get("formatVersion", STATE_FORMAT_VERSION) < STATE_FORMAT_VERSION:
            log.warning("%s was written by an earlier migrate.py; it is now bound to the %s org %r (%s).",
                        self.path, role, name, org_id)

        def change(data):
            data["formatVersion"] = STATE_FORMAT_VERSION
            data.setdefault("orgs", {})[role] = {"id": org_id, "name": name}
        self.update(change)

    def section(self, name):
        with self._mutex:
            return self.data.setdefault(name, {})

    def update(self, change):
        """Applies `change(data)` and persists the result atomically (nothing once the write gate closed)."""
        with self._mutex:
            change(self.data)
            write_json_atomically(self.path, self.data, keep_backup=True)

    def acquire_lock(self):
        """Exclusive flock on <state>.lock; its content names the holder for the error message."""
        private_folder(self.lock_path.parent)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            os.close(fd)
            try:
                info = json.loads(holder)
                who = f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            except (ValueError, AttributeError):
                who = "another process"
            raise LockHeld(f"another run ({who}) holds {self.lock_path}. Wait for it to finish; "
                           f"the lock is released when that process ends.") from None
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": iso_utc(dt.datetime.now(dt.timezone.utc))}
        os.write(fd, json.dumps(holder).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def release_lock(self):
        """Idempotent and thread-safe: a stopping run may release it from the main thread."""
        with self._lock_mutex:
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._lock_fd, 0)
                os.close(self._lock_fd)
                self._lock_fd = None


# ---------------------------------------------------------------------------
# HTTP core: endpoints, auth, rate governor, client
# ---------------------------------------------------------------------------


def is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connection_target(url):
    """(scheme, host, port, path) as the HTTP library will really connect, or None for a URL whose
    reading could differ between parsers (userinfo, backslashes, spaces, control characters)."""
    if not isinstance(url, str) or re.search(r"[\\\s\x00-\x1f\x7f]", url):
        return None
    try:
        parsed = urllib3.util.parse_url(url)
        split = urllib.parse.urlsplit(url)
        split_port = split.port
    except ValueError:
        return None
    scheme, host = (parsed.scheme or "").lower(), (parsed.host or "").lower().strip("[]")
    if (scheme not in ("http", "https") or not host or parsed.auth or "@" in split.netloc
            or host != (split.hostname or "").strip("[]")):
        return None
    port = parsed.port or (443 if scheme == "https" else 80)
    if port != (split_port or (443 if scheme == "https" else 80)):
        return None
    return scheme, host, port, parsed.path or ""


def check_base_url(url, setting):
    """Only https, except plain http to this machine (the local fake, a tunnel)."""
    target = connection_target(url)
    if target is None:
        raise UsageError(f"{setting} {url!r} is not a plain http(s) URL (no user info, spaces or backslashes). "
                         f"Use e.g. https://api.mypurecloud.ie.")
    if target[0] == "http" and not is_loopback_host(target[1]):
        raise UsageError(f"{setting} {url!r} uses plain http to a host that is not this machine; "
                         f"credentials would cross the network unencrypted. Use https://.")
    return url.rstrip("/")


def check_presigned_url(url, what):
    """A pre-signed URL from the org: https (plain http only to this machine); never shown in errors."""
    target = connection_target(url)
    if target is None or (target[0] == "http" and not is_loopback_host(target[1])):
        raise MigrateError(f"the org gave a {what} URL that is not https; refusing to use it.")


def region_domain(region):
    value = region.strip().lower()
    if value in REGIONS:
        return REGIONS[value]
    if value in REGIONS.values():
        return value
    raise UsageError(f"unknown region {region!r}. Use a region name or domain, one of: "
                     + ", ".join(sorted(REGIONS)) + ".")


KNOWN_API_HOSTS = frozenset(f"api.{domain}" for domain in REGIONS.values())


@dataclass
class OrgSettings:
    """Where an org lives and how to log in to it; the secret is never shown."""

    label: str
    client_id: str
    client_secret: str = field(repr=False)
    login_url: str
    api_url: str
    api_url_overridden: bool = False


def org_settings(label, args, env=None):
    """Reads one org's credentials (environment only) and endpoints (flags, then environment)."""
    env = os.environ if env is None else env
    prefix = f"GENESYS_{label.upper()}_"

    def setting(name, flag=None):
        value = getattr(args, flag, None) if flag else None
        return (value or env.get(prefix + name) or "").strip()

    client_id, client_secret = setting("CLIENT_ID"), setting("CLIENT_SECRET")
    for name, value in (("CLIENT_ID", client_id), ("CLIENT_SECRET", client_secret)):
        if not value:
            raise UsageError(f"{prefix}{name} is not set. Export the {label} org's OAuth client "
                             f"(client credentials grant) in {prefix}CLIENT_ID and {prefix}CLIENT_SECRET.")
    REDACTOR.add(client_secret)
    region = setting("REGION", f"{label}_region")
    login_url = setting("LOGIN_URL", f"{label}_login_url")
    api_url = setting("API_URL", f"{label}_api_url")
    if region:
        domain = region_domain(region)
        login_url = login_url or f"https://login.{domain}"
        api_url_from_region = f"https://api.{domain}"
    else:
        api_url_from_region = ""
    if not login_url or not (api_url or api_url_from_region):
        raise UsageError(f"no region for the {label} org. Use --{label}-region or {prefix}REGION "
                         f"(e.g. eu-west-1 or mypurecloud.ie), or both --{label}-login-url and --{label}-api-url.")
    return OrgSettings(
        label=label,
        client_id=client_id,
        client_secret=client_secret,
        login_url=check_base_url(login_url, f"--{label}-login-url"),
        api_url=check_base_url(api_url or api_url_from_region, f"--{label}-api-url"),
        api_url_overridden=bool(api_url),
    )


def accepted_api_domain(api_domain, settings):
    """The API base an `api_domain` from a token answer may move us to, or None.

    Only https://api.<a Genesys domain> (no user info, port 443, no path), or exactly the configured
    override's scheme, host and port; judged by the host the HTTP library will connect to, so a URL
    that one parser reads one way and another differently is refused.
    """
    if not isinstance(api_domain, str) or not api_domain:
        return None
    candidate = api_domain if "://" in api_domain else f"https://{api_domain}"
    target = connection_target(candidate)
    if target is None or target[3] not in ("", "/") or urllib.parse.urlsplit(candidate)[3:] != ("", ""):
        return None
    scheme, host, port, _ = target
    if scheme == "https" and host in KNOWN_API_HOSTS and port == 443:
        return f"https://{host}"
    override = connection_target(settings.api_url) if settings.api_url_overridden else None
    if override and override[:3] == target[:3]:
        return settings.api_url
    return None


class BasicAuth(AuthBase):
    """The login's client credentials; as an auth handler, so requests never reads ~/.netrc instead."""

    def __init__(self, client_id, client_secret):
        self._header = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    def __call__(self, request):
        request.headers["Authorization"] = self._header
        return request


class BearerAuth(AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class TokenProvider:
    """One OAuth token per org, shared by every thread, fetched once however many ask.

    The lock only guards who fetches: the fetch itself, with its retry pauses,
    runs outside it, and the other threads wait on a condition meanwhile.
    """

    def __init__(self, settings, session):
        self.settings = settings
        self._session = session
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._fetching = False
        self._token = None
        self._expires_at = 0.0
        self.api_url = settings.api_url
        self.requests_made = 0

    def token(self):
        with self._lock:
            while True:
                if self._token is not None and time.monotonic() < self._expires_at:
                    return self._token
                if not self._fetching:
                    self._fetching = True
                    break
                self._changed.wait(0.5)
                STOP.check()
        fetched = None
        try:
            fetched = self._fetch()
            self._adopt_api_domain(fetched[2])
        finally:
            with self._lock:
                if fetched:
                    self._token, self._expires_at = fetched[0], fetched[1]
                self._fetching = False
                self._changed.notify_all()
        return fetched[0]

    def invalidate(self, token):
        """Drops `token` unless another thread already replaced it (one refresh, not fifty)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self):
        settings = self.settings
        url = f"{settings.login_url}/oauth/token"
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(is_transient),
                wait=WaitRetryAfter(tenacity.wait_random_exponential(multiplier=0.5, max=10)),
                stop=tenacity.stop_after_attempt(5),
                sleep=STOP.sleep,
                reraise=True,
            ):
                with attempt:
                    STOP.check()
                    try:
                        with in_flight():
                            response = self._session.post(url, data={"grant_type": "client_credentials"},
                                                          auth=BasicAuth(settings.client_id, settings.client_secret),
                                                          timeout=HTTP_TIMEOUT_S, allow_redirects=False)
                    except requests.RequestException as exc:
                        raise TransportError(f"cannot reach {url}: {type(exc).__name__}") from None
                    self.requests_made += 1
                    if response.status_code in TRANSIENT_STATUSES:
                        raise ApiError(settings.label, "POST", "/oauth/token", response.status_code,
                                       safe_json(response), server_wait(response, settings.label))
        except TransportError as exc:
            raise MigrateError(f"{settings.label} org: {exc}. Check --{settings.label}-region and the network.") from None
        if response.status_code in (400, 401):
            raise UsageError(f"the {settings.label} org refused its client credentials "
                             f"({safe_json(response).get('error', response.status_code)}). Check "
                             f"GENESYS_{settings.label.upper()}_CLIENT_ID/_CLIENT_SECRET and the region.")
        if response.status_code >= 300:
            raise ApiError(settings.label, "POST", "/oauth/token", response.status_code, safe_json(response))
        body = safe_json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise MigrateError(f"{settings.label} org: the token answer has no access_token.")
        REDACTOR.add(token)
        lifetime = body.get("expires_in", 3600)
        if isinstance(lifetime, str):
            with contextlib.suppress(ValueError):
                lifetime = float(lifetime)
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or not 0 < lifetime < math.inf:
            raise MigrateError(f"{settings.label} org: the token answer's expires_in {body.get('expires_in')!r} "
                               f"is not a number of seconds; try again later or ask Genesys support.")
        lifetime = float(lifetime)
        expires_at = time.monotonic() + lifetime - min(TOKEN_REFRESH_MARGIN_S, lifetime / 2)
        return token, expires_at, body.get("api_domain")

    def _adopt_api_domain(self, api_domain):
        """Follows the token's api_domain only to a Genesys host or the configured override."""
        if not api_domain:
            return
        accepted = accepted_api_domain(api_domain, self.settings)
        if accepted:
            if accepted != self.api_url:
                log.info("%s org: using api_domain %s from the token answer", self.settings.label, accepted)
            self.api_url = accepted
        else:
            log.warning("%s org: ignoring api_domain %r from the token answer: not a Genesys Cloud API host",
                        self.settings.label, api_domain)


def answer_id(answer, field="id"):
    """The id a create answer carries, or None when the answer is not an object with a string id."""
    value = answer.get(field) if isinstance(answer, dict) else None
    return value if isinstance(value, str) and value else None


def text_or_none(value):
    """A server-given message as the state may keep it."""
    return None if value is None else str(value)


def safe_json(response):
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def server_wait(response, label):
    """The wait a Retry-After asks for, in seconds (None when absent).  A wait longer than
    MAX_SERVER_WAIT_S, infinite or unreadable is never shortened: the run stops instead."""
    value = response.headers.get("Retry-After")
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - dt.datetime.now(dt.timezone.utc)).total_seconds()
        except (TypeError, ValueError, OverflowError, IndexError):
            raise ServerWaitTooLong(label, repr(value)) from None
    if not seconds <= MAX_SERVER_WAIT_S:  # also nan
        raise ServerWaitTooLong(label, value.strip())
    return max(0.0, seconds)


class InFlight:
    """How many requests are on the wire, for the stop message."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            self.count += 1
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1


in_flight = InFlight()


class WaitRetryAfter(tenacity.wait.wait_base):
    """Waits what the server asked for (Retry-After), else falls back to backoff with jitter."""

    def __init__(self, fallback):
        self.fallback = fallback

    def __call__(self, retry_state):
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after + random.uniform(0, 0.1)
        return self.fallback(retry_state)


def stop_retrying(retry_state):
    """The retry budget: attempts, and the time spent including the wait about to start."""
    upcoming = retry_state.upcoming_sleep or 0.0
    return (retry_state.attempt_number >= RETRY_ATTEMPTS
            or retry_state.seconds_since_start + upcoming > RETRY_MAX_SECONDS)


class RateGovernor:
    """Paces all requests of one org so the platform's limits are met before, not after.

    Two lanes, each a token bucket without burst: every API request takes a slot
    of the `api` lane; job-status reads also take one of the `status` lane
    (they share a 100/min window).  The rate-limit headers of each answer can
    only slow a lane down, spreading what remains of the window over its reset
    time; a 429 pauses every thread of the org until its Retry-After.
    """

    def __init__(self, rps, status_rps):
        self._lock = threading.Lock()
        self._base = {"api": 1.0 / rps, "status": 1.0 / status_rps}
        self._interval = dict(self._base)
        self._last = {"api": -1e9, "status": -1e9}
        self._paused_until = 0.0
        self.throttled = 0

    def acquire(self, lane="api"):
        """Blocks until this request may go: its lanes' spacing has passed and no pause is on."""
        lanes = ("api", "status") if lane == "status" else ("api",)
        while True:
            with self._lock:
                now = time.monotonic()
                ready_at = max([self._paused_until] + [self._last[name] + self._interval[name] for name in lanes])
                if now >= ready_at:
                    for name in lanes:
                        self._last[name] = now
                    return
                delay = ready_at - now
            STOP.sleep(min(delay, 0.25))

    def spacing(self, lane):
        """Seconds between two requests of a lane, as the governor now paces it."""
        with self._lock:
            return self._interval[lane]

    def observe(self, lane, headers):
        """Adapts a lane to what the window has left: as it runs low, spread the rest over its reset.
        The headers are hints, not orders: values that are not finite are ignored, and the reset is
        clamped to MAX_SERVER_WAIT_S so a wild value cannot stall a lane."""
        def number(name):
            try:
                value = float(headers.get(name, ""))
            except (TypeError, ValueError):
                return None
            return value if math.isfinite(value) else None

        allowed = number("inin-ratelimit-allowed") or 0.0
        count = number("inin-ratelimit-count")
        remaining = number("X-RateLimit-Remaining")
        if remaining is None:
            if count is None:
                return
            remaining = allowed - count
        reset = min(max(number("inin-ratelimit-reset") or 0.0, 0.0), MAX_SERVER_WAIT_S)
        low_water = max(2.0, 0.02 * allowed) if allowed else 5.0
        if count is not None and remaining < allowed - count - 0.5:
            # What remains is another, smaller window's (job-status reads share 100/min): allowed and
            # reset describe the client window, so only the last few requests slow this lane.
            low_water = 2.0
        with self._lock:
            if remaining <= low_water and reset > 0:
                self._interval[lane] = max(self._base[lane], reset / (max(remaining, 0.0) + 1.0))
            else:
                self._interval[lane] = self._base[lane]

    def limit_api_rate(self, rps):
        """Lowers the api lane to `rps` (the org's own limit, read at start)."""
        with self._lock:
            self._base["api"] = max(self._base["api"], 1.0 / rps)
            self._interval["api"] = max(self._interval["api"], self._base["api"])

    def pause(self, seconds):
        with self._lock:
            self.throttled += 1
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


class ApiClient:
    """All calls to one org: auth, pacing, retries, errors as ApiError."""

    def __init__(self, settings, workers=8, max_rps=DEFAULT_MAX_RPS, status_rps=DEFAULT_STATUS_RPS):
        self.settings = settings
        self.label = settings.label
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(4, workers + 2))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.auth = TokenProvider(settings, self.session)
        self.governor = RateGovernor(max_rps, status_rps)
        self.request_count = 0

    def request(self, method, path, *, body=None, data=None, params=None, lane="api", on_retry=None, text=False):
        """One logical call; transient failures are retried, others raise ApiError at once.
        The answer is decoded JSON, or with `text` the body as it came (to keep records byte for byte)."""

        def before_sleep(retry_state):
            exc = retry_state.outcome.exception()
            log.debug("%s %s: %s; retry %d", method, path, exc, retry_state.attempt_number)
            if on_retry:
                on_retry(exc)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=WaitRetryAfter(tenacity.wait_random_exponential(multiplier=0.5, max=30)),
            stop=stop_retrying,
            before_sleep=before_sleep,
            sleep=STOP.sleep,
            reraise=True,
        )
        if body is not None:
            data = compact_json_bytes(body)
        return retrying(self._attempt, method, path, data, params, lane, text)

    def _attempt(self, method, path, data, params, lane, text=False):
        for auth_attempt in (1, 2):
            self.governor.acquire(lane)
            token = self.auth.token()
            STOP.check()  # a stopping run sends nothing new
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            try:
                with in_flight():
                    response = self.session.request(method, self.auth.api_url + path, data=data, params=params,
                                                    headers=headers, auth=BearerAuth(token), timeout=HTTP_TIMEOUT_S,
                                                    allow_redirects=False)
            except requests.RequestException as exc:
                raise TransportError(f"{self.label} org: {method} {path}: connection failed ({type(exc).__name__})") from None
            self.request_count += 1
            self.governor.observe(lane, response.headers)
            if response.status_code == 401 and auth_attempt == 1:
                self.auth.invalidate(token)
                continue
            break
        if response.status_code == 429:
            retry_after = server_wait(response, self.label)
            self.governor.pause(retry_after if retry_after is not None else 1.0)
            raise ApiError(self.label, method, path, 429, safe_json(response), retry_after or 0.0)
        if response.status_code >= 400:
            retry_after = server_wait(response, self.label) if response.status_code in TRANSIENT_STATUSES else None
            raise ApiError(self.label, method, path, response.status_code, safe_json(response), retry_after)
        if response.status_code >= 300:
            raise ApiError(self.label, method, path, response.status_code,
                           {"message": "the org answered with a redirect, which this tool does not follow"})
        if text:
            response.encoding = "utf-8"
            return response.text
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(self.label, method, path, response.status_code,
                           {"message": "the answer is not JSON"}) from None

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)

    def paginate(self, path, page_size, params=None, identity="id"):
        """Yields every entity of a paged list (contract section 4), each once.  A page of entities all
        seen before (a list going round in circles) or entities that are not objects with an id are an
        error, not an endless loop; an entity that moved to a later page while we read is yielded once.
        `identity` names the field that tells entities apart (a data table row's is its key)."""
        page, seen = 1, set()
        while True:
            answer = self.get(path, params={**(params or {}), "pageSize": page_size, "pageNumber": page}) or {}
            entities = answer.get("entities") if isinstance(answer, dict) else None
            if entities is None:
                entities = []
            page_count = answer.get("pageCount") if isinstance(answer, dict) else 0
            if not isinstance(entities, list) or not all(isinstance(item, dict) and isinstance(item.get(identity), str)
                                                         and item[identity] for item in entities) \
                    or not isinstance(page_count, (int, type(None))) or isinstance(page_count, bool):
                raise MigrateError(f"{self.label} org: GET {path} page {page} is not a list of objects with ids. "
                                   f"Run again later; if it persists, report the answer to Genesys support.")
            fresh = [item for item in entities if item[identity] not in seen]
            if entities and not fresh:
                raise MigrateError(f"{self.label} org: GET {path} answered page {page} with entities of earlier "
                                   f"pages only. Run again later; if it persists, report it to Genesys support.")
            seen.update(item[identity] for item in fresh)
            yield from fresh
            if not entities:
                return
            if not (page < page_count if page_count is not None else bool(answer.get("nextUri"))):
                return  # some listings (queue members) have no pageCount: only whether a next page exists
            page += 1

    def organization(self):
        return self.get("/api/v2/organizations/me")


def strip_authorization(request):
    """Auth hook for pre-signed URLs: no Authorization header, not even one from ~/.netrc."""
    request.headers.pop("Authorization", None)
    return request


class PresignedTransfer:
    """Downloads from (and uploads to) pre-signed URLs on other hosts, never with our token.
    Only https (plain http to this machine), and never a redirect: a signed URL is the whole grant."""

    def __init__(self):
        self.session = requests.Session()

    def get(self, url, **kwargs):
        check_presigned_url(url, "download")
        STOP.check()
        try:
            with in_flight():
                return self.session.get(url, auth=strip_authorization, timeout=HTTP_TIMEOUT_S,
                                        allow_redirects=False, **kwargs)
        except requests.RequestException as exc:  # its text holds the signed URL: name only the kind
            raise TransportError(f"download from a pre-signed URL failed ({type(exc).__name__})") from None

    def put(self, url, data, headers):
        check_presigned_url(url, "upload")
        STOP.check()
        clean = {name: value for name, value in (headers or {}).items() if name.lower() != "authorization"}
        try:
            with in_flight():
                return self.session.put(url, data=data, headers=clean, auth=strip_authorization,
                                        timeout=HTTP_TIMEOUT_S, allow_redirects=False)
        except requests.RequestException as exc:
            raise TransportError(f"upload to a pre-signed URL failed ({type(exc).__name__})") from None


class Backoff:
    """Capped exponential polling delays with jitter; the first one may be a learned estimate."""

    def __init__(self, first, cap, factor=1.6, jitter=0.1):
        self.delay, self.cap, self.factor, self.jitter = max(0.05, first), cap, factor, jitter

    def next(self):
        delay = min(self.delay, self.cap)
        self.delay = min(self.cap, self.delay * self.factor)
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)


def poll_job(client, path, *, finished, first_delay, then_delay, cap, deadline, describe, lane="status"):
    """Reads a job until `finished(job)`: one look near the expected end, then capped backoff.

    Returns the final job, how many reads it took, and when a read last saw it
    unfinished (None if the first read found it done).  Stops at `deadline` (a
    monotonic time) with an error that tells the operator how to resume.
    """
    STOP.sleep(max(0.0, min(first_delay, deadline - time.monotonic())))
    backoff = Backoff(then_delay, cap)
    polls, last_pending = 0, None
    while True:
        job = client.get(path, lane=lane) or {}
        if not isinstance(job, dict):
            raise MigrateError(f"{describe}: the org answered its status with something that is not an object. "
                               f"Run the same command again later: it resumes the same job.")
        polls += 1
        if finished(job):
            return job, polls, last_pending
        last_pending = time.monotonic()
        delay = backoff.next()
        if last_pending + delay > deadline:
            raise MigrateError(f"{describe} is still {job.get('status') or job.get('state') or 'running'} at the "
                               f"polling deadline. Run the same command again later: it resumes the same job.")
        STOP.sleep(delay)


@dataclass
class PollSettings:
    initial: float = 1.0
    cap: float = 15.0
    deadline_s: float = 6 * 3600.0


# ---------------------------------------------------------------------------
# Export: source org -> exports/<start>_<end>.json.gz
# ---------------------------------------------------------------------------

EXPORT_PATH = "/api/v2/interaction/export"
EXPORT_DONE = ("completed", "failed", "canceled")


def iter_json_array(stream, what, read_size=1 << 16):
    """Yields (object, its text) for each element of a JSON array from a text stream, holding one
    record at a time; anything but whitespace after the closing bracket is an error."""
    decoder = json.JSONDecoder()
    buffer, pos, eof = "", 0, False
    started, expect_value, first = False, True, True
    whitespace = " \t\r\n"
    size = read_size

    def fill():
        nonlocal buffer, pos, eof
        data = stream.read(size)
        eof = not data
        buffer, pos = buffer[pos:] + data, 0

    while True:
        while True:
            while pos < len(buffer) and buffer[pos] in whitespace:
                pos += 1
            if pos < len(buffer) or eof:
                break
            fill()
        if pos >= len(buffer):
            raise UsageError(f"{what} ends before its JSON array does (truncated file?).")
        char = buffer[pos]
        if not started:
            if char != "[":
                raise UsageError(f"{what} is not a JSON array of records.")
            started, pos = True, pos + 1
            continue
        if char == "]" and (first or not expect_value):
            rest = buffer[pos + 1:]
            while not rest.strip(whitespace):
                rest = stream.read(size)
                if not rest:
                    return
            raise UsageError(f"{what} holds text after the closing ] of its JSON array.")
        if not expect_value:
            if char != ",":
                raise UsageError(f"{what} is not a valid JSON array (unexpected {char!r} between records).")
            pos, expect_value = pos + 1, True
            continue
        try:
            value, end = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError as exc:
            if eof:
                raise UsageError(f"{what} holds invalid JSON ({exc.msg}).") from None
            size = min(size * 2, 1 << 24)
            fill()
            continue
        except (ValueError, RecursionError) as exc:  # a number too long to read, or nesting too deep
            raise UsageError(f"{what} holds a record that cannot be read as JSON ({type(exc).__name__}).") from None
        if not isinstance(value, dict):
            raise UsageError(f"{what} holds a {type(value).__name__} where a record (JSON object) belongs.")
        size = read_size
        yield value, buffer[pos:end]
        pos, expect_value, first = end, False, False


def open_text(path):
    """Opens an export file as text, gzip or not (by its magic bytes, not its name)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "rt", encoding="utf-8")


def iter_records_with_text(path):
    """(record, its text as in the file) for each record of an export file; a damaged file is one line."""
    try:
        with open_text(path) as stream:
            yield from iter_json_array(stream, str(path))
    except EOFError:
        raise UsageError(f"{path} is truncated: its gzip stream ends early. Export that window again.") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise UsageError(f"{path} is not a readable gzip file ({exc}). Export that window again.") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not valid UTF-8 (byte {exc.start} of a block). Export that window again.") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}.") from None


def iter_records(path):
    for record, _ in iter_records_with_text(path):
        yield record


@dataclass
class ExportWindow:
    start: dt.datetime
    end: dt.datetime

    @property
    def key(self):
        return f"{compact_stamp(self.start)}_{compact_stamp(self.end)}"


class Exporter:
    """Runs one export job per window, resumable at every step through the state file."""

    def __init__(self, client, state, out_dir, types, poll, progress):
        self.client, self.state, self.out_dir = client, state, Path(out_dir)
        self.types, self.poll, self.progress = list(types), poll, progress
        self.downloads = PresignedTransfer()

    def _entry(self, key):
        return self.state.section("exports").get(key) or {}

    def _save(self, key, **values):
        def change(data):
            data.setdefault("exports", {}).setdefault(key, {}).update(values)
        self.state.update(change)

    def run(self, window, source_org):
        key = window.key
        target = self.out_dir / f"{key}.json.gz"
        entry = self._entry(key)
        if entry.get("sha256") and target.exists() and sha256_file(target) == entry["sha256"]:
            log.info("Already exported: %s (%d records); nothing to do.", target, entry.get("records", 0))
            return {"file": str(target), "records": entry.get("records", 0), "resumed": True}
        job_id = entry.get("jobId")
        if job_id:
            log.info("Resuming export job %s for %s .. %s", job_id, iso_utc(window.start), iso_utc(window.end))
        else:
            job_id = self._start_job(window, key)
        job = self._wait(job_id, key)
        records = self._download(job, job_id, target)
        sha = sha256_file(target)
        meta = {
            "sourceOrg": {"id": source_org.get("id"), "name": source_org.get("name")},
            "start": iso_utc(window.start), "end": iso_utc(window.end), "interactionTypes": self.types,
            "schemaVersion": SCHEMA_VERSION, "records": records, "sha256": sha, "jobId": job_id,
            "exportedAt": iso_utc(dt.datetime.now(dt.timezone.utc)),
        }
        write_json_atomically(self.out_dir / f"{key}.meta.json", meta)
        self._save(key, status="downloaded", sha256=sha, records=records, file=str(target))
        log.info("Wrote %s: %d records.", target, records, extra={"fields": {"file": str(target), "records": records}})
        return {"file": str(target), "records": records, "resumed": False}

    def _start_job(self, window, key):
        schemas = self.client.get(f"{EXPORT_PATH}/schemas") or {}
        entities = schemas.get("entities") if isinstance(schemas, dict) else None
        versions = [item.get("version") for item in entities or [] if isinstance(item, dict)] \
            if isinstance(entities, list) else []
        if SCHEMA_VERSION not in versions:
            raise MigrateError(f"the source org offers export schemas {', '.join(map(str, versions)) or 'none'}, "
                               f"not {SCHEMA_VERSION}, which import needs. Ask Genesys to enable {SCHEMA_VERSION}.")
        body = {
            "startDate": iso_utc(window.start), "endDate": iso_utc(window.end), "schemaVersion": SCHEMA_VERSION,
            "interactionTypes": self.types, "includeTranscripts": True, "includeMedia": False, "format": "json",
        }
        job = self.client.post(EXPORT_PATH, body)
        if not answer_id(job):
            raise MigrateError("the source org accepted the export but returned no job id. Run the command again; "
                               "if it persists, report it to Genesys support.")
        self._save(key, jobId=job["id"], status="running", start=body["startDate"], end=body["endDate"],
                   interactionTypes=self.types)
        log.info("Started export job %s for %s .. %s", job["id"], body["startDate"], body["endDate"])
        return job["id"]

    def _wait(self, job_id, key):
        try:
            job, _, _ = poll_job(
                self.client, f"{EXPORT_PATH}/{job_id}", finished=lambda job: job.get("status") in EXPORT_DONE,
                first_delay=self.poll.initial, then_delay=self.poll.initial, cap=self.poll.cap,
                deadline=time.monotonic() + self.poll.deadline_s, describe=f"export job {job_id}",
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            self._save(key, jobId=None, status="unknown to the org")
            raise MigrateError(f"export job {job_id} is unknown to the source org now. Run the command again "
                               f"to start a new export job for this window.") from None
        if job["status"] != "completed":
            self._save(key, jobId=None, status=str(job["status"]), error=text_or_none(job.get("errorMessage")))
            raise MigrateError(f"export job {job_id} ended {job['status']}: {job.get('errorMessage') or 'no reason given'}. "
                               f"Run the command again to start a new export job for this window.")
        return job

    def _download(self, job, job_id, target):
        """Streams the pre-signed URL to .part, checks it, renames; a 403 asks the job for a fresh URL."""
        private_folder(self.out_dir)
        part = target.with_name(target.name + ".part")
        with WRITES.partial(part):
            return self._download_to(job, job_id, target, part)

    def _download_to(self, job, job_id, target, part):
        for refresh in range(DOWNLOAD_URL_REFRESHES + 1):
            url = job.get("downloadUrl")
            if not url:
                raise MigrateError(f"export job {job_id} is completed but has no downloadUrl.")
            status = self._stream_to(url, part)
            if status == 200:
                break
            if status == 403 and refresh < DOWNLOAD_URL_REFRESHES:
                log.info("Download URL of export job %s expired; asking the job for a fresh one.", job_id)
                job = self.client.get(f"{EXPORT_PATH}/{job_id}", lane="status") or {}
                continue
            raise MigrateError(f"download of export job {job_id} answered {status}. Run the command again; "
                               f"it asks the job for a fresh URL.")
        try:
            records = sum(1 for _ in iter_records(part))
        except UsageError as exc:
            raise MigrateError(f"the download of export job {job_id} is damaged ({exc}). Run the command again "
                               f"to download it again.") from None
        expected = job.get("recordCount")
        if expected is not None and expected != records:
            raise MigrateError(f"the download of export job {job_id} holds {records} records, the job says "
                               f"{expected}. Run the command again to download it again.")
        os.replace(part, target)
        fsync_directory(target.parent)
        return records

    def _stream_to(self, url, part):
        for attempt in tenacity.Retrying(retry=tenacity.retry_if_exception(is_transient),
                                         wait=tenacity.wait_random_exponential(multiplier=0.5, max=20),
                                         stop=tenacity.stop_after_attempt(5), sleep=STOP.sleep, reraise=True):
            with attempt:
                try:
                    with self.downloads.get(url, stream=True) as response:
                        if response.status_code in TRANSIENT_STATUSES:
                            raise ApiError("download", "GET", "(pre-signed URL)", response.status_code)
                        if response.status_code != 200:
                            return response.status_code
                        received = 0
                        with disk_errors(part), private_open(part) as handle:
                            for block in response.iter_content(1 << 20):
                                STOP.check()  # a stopping run drops the transfer; its .part goes
                                handle.write(block)
                                received += len(block)
                                self.progress.show(f"downloading {part.name}: {received / 1e6:.1f} MB")
                            handle.flush()
                            os.fsync(handle.fileno())
                        self.progress.done()
                        return 200
                except requests.RequestException as exc:
                    raise TransportError(f"download interrupted ({type(exc).__name__})") from None


def incremental_window(state, args, ceiling=None):
    """The next nightly window: from where the last export ended to now minus --lag (and no later
    than `ceiling`, the analytics data availability date, when given).

    A window, once chosen, is kept in the state until it is exported, so a
    killed run resumes the same window and windows can never overlap.
    """
    inc = state.section("incremental")
    if inc.get("pending"):
        pending = inc["pending"]
        return ExportWindow(parse_time(pending["start"], "state"), parse_time(pending["end"], "state"))
    if inc.get("lastEnd"):
        start = parse_time(inc["lastEnd"], "state")
        if args.start and parse_time(args.start, "--start") != start:
            log.warning("--start is ignored: incremental exports continue from %s", inc["lastEnd"])
    elif args.start:
        start = parse_time(args.start, "--start")
    else:
        raise UsageError("the first --incremental run needs a starting point. Use --start 2026-01-01T00:00:00Z; "
                         "later runs continue from where the last one ended.")
    end = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=args.lag)).replace(microsecond=0)
    if ceiling is not None:
        end = min(end, ceiling.replace(microsecond=0))
    if end <= start:
        return None
    window = ExportWindow(start, end)
    state.update(lambda data: data.setdefault("incremental", {}).update(
        pending={"start": iso_utc(start), "end": iso_utc(end)}))
    return window


def finish_incremental(state, window):
    def change(data):
        inc = data.setdefault("incremental", {})
        inc["lastEnd"] = iso_utc(window.end)
        inc.pop("pending", None)
    state.update(change)


# ---------------------------------------------------------------------------
# Export through the real API: analytics conversation-detail jobs -> v2.1 records
# ---------------------------------------------------------------------------

ANALYTICS_JOBS = "/api/v2/analytics/conversations/details/jobs"
ANALYTICS_DONE = ("FULFILLED", "FAILED", "CANCELLED", "EXPIRED")
ANALYTICS_PAGE_SIZE = 1000
ANALYTICS_PARALLEL_JOBS = 3
ANALYTICS_RESUBMITS = 3


def analytics_to_interaction(conversation):
    """One AnalyticsConversation as a v2.1 interaction record (the table in README.md), or None when its
    first session's media type has no v2.1 interactionType."""
    participants = conversation.get("participants") or []
    sessions = [(p, s) for p in participants for s in p.get("sessions") or []]
    if not sessions:
        return None
    media = sessions[0][1].get("mediaType")
    if media not in INTERACTION_TYPES:
        return None
    record = {"id": conversation.get("conversationId"), "interactionType": media}
    for target, source in (("direction", "originatingDirection"), ("startTime", "conversationStart"),
                           ("endTime", "conversationEnd")):
        if conversation.get(source):
            record[target] = conversation[source]
    segments = [(p, s, seg) for p, s in sessions for seg in s.get("segments") or []]
    routing = {}
    acd = next((seg for p, _, seg in segments if p.get("purpose") == "acd" and seg.get("queueId")), None) \
        or next((seg for _, _, seg in segments if seg.get("queueId")), None)
    if acd:
        routing["queue"] = {"id": acd["queueId"]}
    ivr_flow = next((s["flow"]["flowId"] for p, s in sessions if p.get("purpose") == "ivr"
                     and (s.get("flow") or {}).get("flowId")), None)
    if ivr_flow:
        routing["flow"] = {"id": ivr_flow}
    skills = next((seg["requestedRoutingSkillIds"] for _, _, seg in segments if seg.get("requestedRoutingSkillIds")), None)
    if skills:
        routing["skills"] = [{"id": skill} for skill in skills]
    language = next((seg["requestedLanguageId"] for _, _, seg in segments if seg.get("requestedLanguageId")), None)
    if language:
        routing["languageId"] = language
    if routing:
        record["routing"] = routing
    agents = [p for p in participants if p.get("purpose") == "agent" and p.get("userId")]
    handler = next((p for p in reversed(agents) if any(seg.get("segmentType") == "interact"
                                                      for s in p.get("sessions") or [] for seg in s.get("segments") or [])),
                   agents[-1] if agents else None)
    wrapup = next((seg["wrapUpCode"] for p, _, seg in segments if p is handler and seg.get("wrapUpCode")), None) \
        or next((seg["wrapUpCode"] for p, _, seg in segments if p.get("purpose") == "agent" and seg.get("wrapUpCode")), None)
    if wrapup:
        record["wrapupCode"] = {"id": wrapup}
    if handler:
        record["userId"] = handler["userId"]
    record["participants"] = []
    for participant in participants:
        entry = {"purpose": participant.get("purpose")}
        if participant.get("userId"):
            entry["userId"] = participant["userId"]
        if participant.get("purpose") == "customer":
            address = next((s.get("ani") for s in participant.get("sessions") or [] if s.get("ani")), None)
            if address:
                entry["address"] = address
        record["participants"].append(entry)
    return record


def millisecond_stamp(moment, up):
    """An ISO instant in whole milliseconds, rounded down (or up), as the analytics API takes it."""
    moment = moment.astimezone(dt.timezone.utc)
    extra = moment.microsecond % 1000
    if extra:
        moment += dt.timedelta(microseconds=(1000 - extra) if up else -extra)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def conversation_problem(conversation):
    """Why a conversation of a results page cannot be read, or None (the API's answer is checked, not trusted)."""
    if not isinstance(conversation, dict):
        return f"a {type(conversation).__name__} where a conversation belongs"
    if not isinstance(conversation.get("conversationId"), str):
        return "a conversation without a string conversationId"
    begun = conversation.get("conversationStart")
    if begun is not None and not is_time(begun):
        return f"conversation {conversation['conversationId']} with a conversationStart that is not a time"
    participants = conversation.get("participants", [])
    sessions = [s for p in participants if isinstance(p, dict) for s in p.get("sessions", [])] \
        if isinstance(participants, list) else None
    if (sessions is None or not all(isinstance(p, dict) and isinstance(p.get("sessions", []), list)
                                    for p in participants)
            or not all(isinstance(s, dict) and isinstance(s.get("segments", []), list)
                       and isinstance(s.get("mediaType", ""), str) for s in sessions)
            or not all(isinstance(seg, dict) for s in sessions for seg in s.get("segments", []))):
        return f"conversation {conversation['conversationId']} whose participants, sessions or segments are not lists of objects"
    return None


def split_json_page(text, field, each):
    """Calls `each(value, raw)` for every element of the top-level array `field` of a JSON object,
    `raw` being the element's own text; returns the object's other fields.  The records are kept as
    the API wrote them (lossless, and no second serialization), one element decoded at a time."""
    decoder, space = json.JSONDecoder(), re.compile(r"[ \t\n\r]*")

    def skip(pos, expected=None):
        pos = space.match(text, pos).end()
        if expected is not None:
            if text[pos:pos + 1] != expected:
                raise ValueError(f"expected {expected!r} at character {pos}")
            pos = space.match(text, pos + 1).end()
        return pos

    others, pos = {}, skip(0, "{")
    while text[pos:pos + 1] != "}":
        key, pos = decoder.raw_decode(text, pos)
        pos = skip(pos, ":")
        if key == field and text[pos:pos + 1] == "[":
            pos = skip(pos, "[")
            while text[pos:pos + 1] != "]":
                value, end = decoder.raw_decode(text, pos)
                each(value, text[pos:end])
                pos = skip(end)
                if text[pos:pos + 1] == ",":
                    pos = skip(pos, ",")
            pos = skip(pos, "]")
        else:
            others[key], pos = decoder.raw_decode(text, pos)
            pos = skip(pos)
        if text[pos:pos + 1] == ",":
            pos = skip(pos, ",")
    return others


class AnalyticsExporter:
    """Exports a window through analytics conversation-detail jobs, one job per sub-interval.

    Every page of results is appended to the sub-interval's part files and its
    cursor saved with their lengths, so a killed run truncates the parts to the
    saved lengths and goes on from the saved cursor.  A conversation belongs to
    the sub-interval holding its conversationStart (the API answers every
    conversation with any activity in the interval); the others are dropped
    there and counted.  When every sub-interval is done, the parts become
    `<key>.analytics.json.gz` (the raw records) and `<key>.json.gz` (v2.1).
    """

    def __init__(self, client, state, out_dir, types, poll, progress, job_interval):
        self.client, self.state, self.out_dir = client, state, Path(out_dir)
        self.types, self.poll, self.progress, self.job_interval = list(types), poll, progress, job_interval
        self._lock = threading.Lock()

    def run(self, window, source_org):
        key = window.key
        target = self.out_dir / f"{key}.json.gz"
        raw_target = self.out_dir / f"{key}.analytics.json.gz"
        entry = self.state.section("analytics").get(key) or {}
        if entry.get("sha256") and target.exists() and sha256_file(target) == entry["sha256"]:
            log.info("Already exported: %s (%d records); nothing to do.", target, entry.get("records", 0))
            return {"file": str(target), "records": entry.get("records", 0), "resumed": True}
        parts_dir = self.out_dir / ".parts" / key
        private_folder(self.out_dir)
        private_folder(parts_dir)
        subs = self._sub_intervals(window)
        paging = threading.Semaphore(ANALYTICS_PARALLEL_JOBS)
        with ThreadPoolExecutor(max_workers=2 * ANALYTICS_PARALLEL_JOBS, thread_name_prefix="analytics") as pool:
            for future in [pool.submit(self._export_part, key, start, end, parts_dir, paging) for start, end in subs]:
                future.result()
        parts = [self._part(key, self._part_key(start, end)) for start, end in subs]
        records = self._assemble(target, [(parts_dir / f"{self._part_key(s, e)}.v21.gz", part.get("v21Count", 0))
                                          for (s, e), part in zip(subs, parts)])
        self._assemble(raw_target, [(parts_dir / f"{self._part_key(s, e)}.raw.gz", part.get("kept", 0))
                                    for (s, e), part in zip(subs, parts)])
        totals = {name: sum(part.get(name, 0) for part in parts) for name in ("received", "dropped", "kept")}
        unconverted = {}
        for part in parts:
            for media, count in (part.get("unconverted") or {}).items():
                unconverted[media] = unconverted.get(media, 0) + count
        sha = sha256_file(target)
        write_json_atomically(self.out_dir / f"{key}.meta.json", {
            "sourceOrg": {"id": source_org.get("id"), "name": source_org.get("name")}, "api": "analytics",
            "start": iso_utc(window.start), "end": iso_utc(window.end), "interactionTypes": self.types,
            "schemaVersion": SCHEMA_VERSION, "records": records, "sha256": sha, "rawFile": raw_target.name,
            "conversationsKept": totals["kept"], "droppedOutsideWindow": totals["dropped"],
            "unconvertedByMediaType": unconverted,
            "unconvertedIds": [cid for part in parts for cid in part.get("unconvertedIds") or []],
            "exportedAt": iso_utc(dt.datetime.now(dt.timezone.utc))})
        self.state.update(lambda data: data.setdefault("analytics", {}).setdefault(key, {}).update(
            sha256=sha, records=records, file=str(target)))
        for path in parts_dir.iterdir():
            path.unlink()
        parts_dir.rmdir()
        log.info("Wrote %s: %d records (and %s: %d conversations); %d conversations belonged to neighbouring "
                 "windows.", target, records, raw_target, totals["kept"], totals["dropped"],
                 extra={"fields": {"file": str(target), "records": records, "raw": totals["kept"],
                                   "dropped": totals["dropped"], "unconverted": unconverted}})
        if unconverted:
            log.warning("%d conversations have a media type v2.1 has no interactionType for (%s); they are in %s "
                        "and listed in the .meta.json, not in %s.", sum(unconverted.values()),
                        ", ".join(f"{count} {media}" for media, count in sorted(unconverted.items())),
                        raw_target.name, target.name)
        return {"file": str(target), "records": records, "resumed": False}

    def _sub_intervals(self, window):
        subs, start = [], window.start
        while start < window.end:
            end = min(window.end, start + dt.timedelta(seconds=self.job_interval))
            subs.append((start, end))
            start = end
        return subs

    @staticmethod
    def _part_key(start, end):
        return f"{compact_stamp(start)}_{compact_stamp(end)}"

    def _part(self, key, part_key):
        """A private copy: the worker changes it during a page, the state sees it only when saved."""
        with self.state._mutex:
            return copy.deepcopy(self.state.section("analytics").get(key, {}).get("parts", {}).get(part_key) or {})

    def _save_part(self, key, part_key, part):
        """The part as this worker holds it replaces the saved one whole (a reset part leaves nothing stale)."""
        part = copy.deepcopy(part)

        def change(data):
            data.setdefault("analytics", {}).setdefault(key, {}).setdefault("parts", {})[part_key] = part
        self.state.update(change)

    def _submit(self, start, end):
        """A job for [start, end) in whole milliseconds, widened outwards: what it answers beyond the
        sub-interval is dropped by conversationStart, never a conversation inside it lost."""
        interval = f"{millisecond_stamp(start, up=False)}/{millisecond_stamp(end, up=True)}"
        body = {"interval": interval,
                "order": "asc", "orderBy": "conversationStart",
                "segmentFilters": [{"type": "or", "predicates": [{"dimension": "mediaType", "value": media}
                                                                 for media in self.types]}]}
        answer = self.client.post(ANALYTICS_JOBS, body)
        if not answer_id(answer, "jobId"):
            raise MigrateError("the source org accepted the analytics job but returned no jobId.")
        return answer["jobId"]

    def _export_part(self, key, start, end, parts_dir, paging):
        """One sub-interval: its job runs ahead, its pages are read while fewer than a few others page."""
        part_key = self._part_key(start, end)
        part = self._part(key, part_key)
        if part.get("done"):
            return
        raw_path, v21_path = parts_dir / f"{part_key}.raw.gz", parts_dir / f"{part_key}.v21.gz"
        lengths = ((raw_path, part.get("rawBytes", 0)), (v21_path, part.get("v21Bytes", 0)))
        if any(length and (not path.exists() or path.stat().st_size < length) for path, length in lengths):
            log.warning("The pages already written for %s are missing from %s (another --out, or a deleted folder); "
                        "exporting that part again.", part_key, parts_dir)
            part = {}
            lengths = ((raw_path, 0), (v21_path, 0))
        for path, length in lengths:
            with private_open(path, "ab") as handle:
                handle.truncate(length)
        resubmits = 0
        while True:
            if not part.get("jobId"):
                resume_at = parse_time(part["lastStart"], "state") if part.get("lastStart") else start
                part.update(jobId=self._submit(resume_at, end), cursor=None)
                self._save_part(key, part_key, part)
                log.info("Started analytics job %s for %s .. %s", part["jobId"], iso_utc(resume_at), iso_utc(end))
            try:
                job, _, _ = poll_job(
                    self.client, f"{ANALYTICS_JOBS}/{part['jobId']}",
                    finished=lambda job: job.get("state") in ANALYTICS_DONE,
                    first_delay=self.poll.initial, then_delay=self.poll.initial, cap=self.poll.cap,
                    deadline=time.monotonic() + self.poll.deadline_s, describe=f"analytics job {part['jobId']}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                job = {"state": "EXPIRED"}  # the org no longer knows the job: as good as expired
            if job["state"] in ("FAILED", "CANCELLED"):
                part.update(jobId=None, cursor=None)
                self._save_part(key, part_key, part)
                raise MigrateError(f"analytics job {part['jobId']} for {part_key} ended {job['state']}: "
                                   f"{job.get('errorMessage') or 'no reason given'}. Run the command again to submit "
                                   f"a new job; pages already written are kept.")
            if job["state"] == "FULFILLED":
                with paging:
                    if self._read_results(key, part_key, part, start, end, raw_path, v21_path):
                        return
            resubmits += 1
            if resubmits > ANALYTICS_RESUBMITS:
                raise MigrateError(f"analytics jobs for {part_key} keep expiring before their results are read. "
                                   f"Run the command again, or use a shorter --job-interval.")
            log.info("Analytics job %s expired; submitting a new one for the rest of %s.", part["jobId"], part_key)
            part.update(jobId=None, cursor=None)
            self._save_part(key, part_key, part)

    def _read_results(self, key, part_key, part, start, end, raw_path, v21_path):
        """Pages through a fulfilled job; False when it expired meanwhile (then the caller resubmits)."""
        seen_at_last = set(part.get("idsAtLastStart") or [])
        cursors_seen = set()
        while True:
            params = {"pageSize": ANALYTICS_PAGE_SIZE}
            if part.get("cursor"):
                params["cursor"] = part["cursor"]
            try:
                page = self.client.get(f"{ANALYTICS_JOBS}/{part['jobId']}/results", params=params, text=True)
            except ApiError as exc:
                if exc.status in (404, 410):
                    return False
                raise
            raw_lines, v21_lines = [], []
            damaged = (f"a results page of analytics job {part['jobId']} for {part_key}", "Run the command again "
                       "later: it resumes from the last saved page; if it persists, report it to Genesys support.")

            def take(conversation, raw):
                nonlocal seen_at_last
                problem = conversation_problem(conversation)
                if problem:
                    raise MigrateError(f"{damaged[0]} holds {problem}. {damaged[1]}")
                part["received"] = part.get("received", 0) + 1
                begun = conversation.get("conversationStart") or ""
                begun_at = parse_time(begun, "conversationStart") if begun else None
                if begun_at is None or not (start <= begun_at < end):
                    part["dropped"] = part.get("dropped", 0) + 1
                    return
                if part.get("lastStart") and (begun < part["lastStart"] or (
                        begun == part["lastStart"] and conversation.get("conversationId") in seen_at_last)):
                    return  # written before the job it came from expired
                if begun != part.get("lastStart"):
                    part["lastStart"], seen_at_last = begun, set()
                seen_at_last.add(conversation.get("conversationId"))
                part["kept"] = part.get("kept", 0) + 1
                raw_lines.append(raw.encode("utf-8"))
                record = analytics_to_interaction(conversation)
                if record is None:
                    media = next((s.get("mediaType") for p in conversation.get("participants") or []
                                  for s in p.get("sessions") or []), None) or "none"
                    part.setdefault("unconverted", {})[media] = part.get("unconverted", {}).get(media, 0) + 1
                    part.setdefault("unconvertedIds", []).append(conversation.get("conversationId"))
                else:
                    v21_lines.append(compact_json_bytes(record, "backslashreplace"))

            if not (page or "").strip():
                raise MigrateError(f"{damaged[0]} is empty. {damaged[1]}")
            try:
                page = split_json_page(page, "conversations", take)
            except (ValueError, RecursionError) as exc:
                raise MigrateError(f"{damaged[0]} is not valid JSON ({exc}). {damaged[1]}") from None
            cursors_seen.add(params.get("cursor"))
            if page.get("cursor") is not None and (not isinstance(page["cursor"], str)
                                                   or page["cursor"] in cursors_seen):
                raise MigrateError(f"{damaged[0]} answered a cursor it had already answered (or one that is not a "
                                   f"string), which would page forever. {damaged[1]}")
            part["rawBytes"] = self._append(raw_path, raw_lines, part.get("kept", 0) > len(raw_lines))
            part["v21Bytes"] = self._append(v21_path, v21_lines, part.get("v21Count", 0) > 0)
            part["v21Count"] = part.get("v21Count", 0) + len(v21_lines)
            part["cursor"] = page.get("cursor")
            part["idsAtLastStart"] = sorted(seen_at_last)
            part["done"] = not page.get("cursor")
            self._save_part(key, part_key, part)
            self.progress.show(f"analytics {part_key}: {part.get('kept', 0):,} conversations")
            if part["done"]:
                return True

    @staticmethod
    def _append(path, lines, after_records):
        """Appends a page as one gzip member of comma-joined records: the parts then concatenate
        into the final file byte for byte, and a saved length always ends on a whole member."""
        with WRITES.writing(), disk_errors(path), private_open(path, "ab") as handle:
            if lines:
                handle.write(gzip.compress((b",\n" if after_records else b"") + b",\n".join(lines),
                                           compresslevel=3, mtime=0))
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()

    @staticmethod
    def _assemble(target, parts):
        """The parts, in order, as one gzip JSON array (a multi-member gzip), copied not recompressed."""
        temp = target.with_name(target.name + ".part")
        count = 0
        with WRITES.partial(temp), disk_errors(temp), private_open(temp) as out:
            out.write(gzip.compress(b"[", mtime=0))
            for path, records in parts:
                if not records:
                    continue
                if count:
                    out.write(gzip.compress(b",\n", mtime=0))
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        out.write(block)
                count += records
            out.write(gzip.compress(b"]", mtime=0))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
        fsync_directory(target.parent)
        return count


# ---------------------------------------------------------------------------
# Transform: strip what the destination refuses, rewrite ids through the mapping
# ---------------------------------------------------------------------------


class Mapping:
    """Source id -> target id, per kind of object; written by clone, read by import."""

    def __init__(self, tables=None, fallbacks=None, time_zones=None):
        self.tables = {kind: dict((tables or {}).get(kind) or {}) for kind in MAPPING_KINDS}
        self.fallbacks = dict(fallbacks or {})
        self.time_zones = dict(time_zones or {})

    @classmethod
    def load(cls, path):
        data = read_json_file(path, "mapping file")
        text = Path(path).read_text(encoding="utf-8")

        def where(key):
            offset = text.find(json.dumps(key))
            return f" (line {text.count(chr(10), 0, offset) + 1})" if offset >= 0 else ""

        def fail(problem, key):
            raise UsageError(f"mapping file {path}: {problem}{where(key)}. See mapping.example.json for the format.")

        if not isinstance(data, dict):
            raise UsageError(f"mapping file {path} must hold a JSON object of kinds. See mapping.example.json.")
        unknown = [key for key in data if key not in MAPPING_KINDS + MAPPING_EXTRA_KEYS and not key.startswith("_")]
        if unknown:
            fail(f"unknown key {unknown[0]!r}; the kinds are {', '.join(MAPPING_KINDS + MAPPING_EXTRA_KEYS)}", unknown[0])
        for kind in MAPPING_KINDS:
            table = data.get(kind, {})
            if not isinstance(table, dict):
                fail(f"{kind!r} must be an object of source id -> target id", kind)
            for source, target in table.items():
                if not UUID_RE.match(source):
                    fail(f"{kind}: key {source!r} is not a UUID", source)
                if not isinstance(target, str) or not UUID_RE.match(target):
                    fail(f"{kind}: {source} maps to {target!r}, which is not a UUID", source)
        fallbacks = data.get("fallbacks", {})
        if not isinstance(fallbacks, dict):
            fail("'fallbacks' must be an object of kind -> target id", "fallbacks")
        for kind, target in fallbacks.items():
            if kind not in MAPPING_KINDS:
                fail(f"fallbacks: unknown kind {kind!r}", kind)
            if not isinstance(target, str) or not UUID_RE.match(target):
                fail(f"fallbacks: {kind} is {target!r}, which is not a UUID", kind)
        zones = data.get("timeZones", {})
        if not isinstance(zones, dict) or not all(isinstance(v, str) for v in zones.values()):
            fail("'timeZones' must be an object of source zone -> target zone", "timeZones")
        return cls(data, fallbacks, zones)

    def lookup(self, kind, source_id):
        return self.tables[kind].get(source_id) if isinstance(source_id, str) else None

    def to_json(self):
        document = {kind: dict(sorted(self.tables[kind].items())) for kind in MAPPING_KINDS}
        document["fallbacks"] = self.fallbacks
        document["timeZones"] = self.time_zones
        return document


def reference_slots(node, path):
    """The (container, key) pairs holding a value at `path` ("*" walks a list); a value that is not a
    string is a reference no mapping can resolve."""
    level = [(None, None, node)]
    for head in path:
        deeper = []
        for _, _, value in level:
            if head == "*":
                if isinstance(value, list):
                    deeper.extend((value, index, item) for index, item in enumerate(value))
            elif isinstance(value, dict) and head in value:
                deeper.append((value, head, value[head]))
        if not deeper:
            return ()
        level = deeper
    return [(container, key) for container, key, _ in level]


def reference_label(value):
    """How an unmapped reference is named in counts and reports."""
    if isinstance(value, str):
        return value
    return f"(not a string: {json.dumps(value, ensure_ascii=True)[:60]})"


def unmapped_references(record, mapping):
    return [(kind, reference_label(container[key])) for path, kind in INTERACTION_REFERENCES
            for container, key in reference_slots(record, path) if mapping.lookup(kind, container[key]) is None]


def reference_count(record):
    return sum(len(reference_slots(record, path)) for path, _ in INTERACTION_REFERENCES)


def transform_interaction(record, mapping, policy):
    """The record as the destination must receive it, or None when --unmapped skip leaves it out."""
    for name in IMPORT_STRIPPED_FIELDS:
        record.pop(name, None)
    for path, kind in INTERACTION_REFERENCES:
        for container, key in reference_slots(record, path):
            target = mapping.lookup(kind, container[key])
            if target is None:
                if policy == "skip":
                    return None
                target = mapping.fallbacks[kind]
            container[key] = target
    return record


def source_record_id(record):
    """The record's own id; a record without one is known by its content digest."""
    return record.get("id") or hashlib.sha256(canonical_json(record).encode()).hexdigest()


def export_files(path):
    """One file, or every export file (*.json.gz) of a folder in name order (so, in time order); the
    folder's other files (metadata, analytics originals, unfinished .part downloads) are named and left."""
    path = Path(path)
    if path.is_dir():
        files = []
        for entry in sorted(path.iterdir()):
            if entry.is_dir():
                continue
            if (entry.is_file() and entry.name.endswith(".json.gz") and not entry.name.startswith(".")
                    and not entry.name.endswith(".analytics.json.gz")):
                files.append(entry)
            else:
                log.info("Passing over %s: not an export file (*.json.gz, not *.analytics.json.gz).", entry.name)
        if not files:
            raise UsageError(f"{path} holds no export files (*.json.gz). Use --input with a file or an export folder.")
        return files
    if not path.exists():
        raise UsageError(f"--input {path} does not exist.")
    return [path]


@dataclass
class UnmappedScan:
    records: int = 0
    affected_records: int = 0
    counts: dict = field(default_factory=dict)  # (kind, source id) -> records using it
    skipped: list = field(default_factory=list)  # (file, index, source id) of records --unmapped skip leaves out

    def kinds(self):
        return sorted({kind for kind, _ in self.counts})


LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def record_problem(record, text, room):
    """Why a record cannot be sent as it is, or None: checked in the first pass, before any request."""
    unknown = sorted(set(record) - RECORD_FIELDS)
    if unknown:
        return f"holds the field {unknown[0]!r}, which schema {SCHEMA_VERSION} does not know"
    if "id" in record and not isinstance(record["id"], str):
        return "has an id that is not a string"
    if LONE_SURROGATE_ESCAPE.search(text):
        try:
            canonical_json(record).encode("utf-8")
        except UnicodeEncodeError:
            return "holds a lone surrogate escape (\\ud800-\\udfff), which is not text"
    # A record's compact form is at most 4 bytes per character of its text, and a reference (at least
    # four characters of it) grows to at most a UUID: only a record near the limit is measured exactly.
    if 13 * len(text) > room:
        stripped = {key: value for key, value in record.items() if key not in IMPORT_STRIPPED_FIELDS}
        size = len(compact_json_bytes(stripped)) + 36 * reference_count(record)
        if size > room:
            return (f"is about {size} bytes, more than one import request may carry ({IMPORT_MAX_BYTES}); "
                    f"remove it from the export to go on")
    return None


def scan_unmapped(files, mapping, keep_skipped):
    """First pass, before anything is sent: every record is one the destination can take, and every
    reference the mapping cannot resolve is counted."""
    scan = UnmappedScan()
    room = IMPORT_MAX_BYTES - len(IMPORT_ENVELOPE[0]) - len(IMPORT_ENVELOPE[1])
    for path in files:
        for index, (record, text) in enumerate(iter_records_with_text(path)):
            problem = record_problem(record, text, room)
            if problem:
                raise UsageError(f"record {index} of {path} {problem}. Nothing was sent.")
            scan.records += 1
            missing = unmapped_references(record, mapping)
            if missing:
                scan.affected_records += 1
                for ref in set(missing):
                    scan.counts[ref] = scan.counts.get(ref, 0) + 1
                if keep_skipped:
                    scan.skipped.append((str(path), index, record.get("id")))
    return scan


def write_unmapped_report(path, scan, policy):
    report = {
        "generated": iso_utc(dt.datetime.now(dt.timezone.utc)),
        "policy": policy,
        "recordsRead": scan.records,
        "recordsWithUnmapped": scan.affected_records,
        "unmapped": [{"kind": kind, "sourceId": source, "records": count}
                     for (kind, source), count in sorted(scan.counts.items())],
    }
    if policy == "skip":
        report["skippedRecords"] = [{"file": file, "index": index, "sourceId": sid} for file, index, sid in scan.skipped]
    write_json_atomically(path, report)


# ---------------------------------------------------------------------------
# Import: chunks of transformed records -> destination import jobs, exactly once
# ---------------------------------------------------------------------------

IMPORT_PATH = "/api/v2/interaction/import"
IMPORT_ENVELOPE = (b'{"schemaVersion":"' + SCHEMA_VERSION.encode() + b'","allowDuplicates":false,"interactions":[', b"]}")
IMPORT_HINTS = {
    "QUEUE_NOT_FOUND": "The mapping points at a queue the destination does not have: fix the mapping file (or run clone)",
    "INVALID_REFERENCE": "The mapping points at an object the destination does not have: fix the mapping file (or run clone)",
    "DUPLICATE_INTERACTION": "The destination already holds these records (an overlapping export, or another import): "
                             "remove the overlapping file",
    "IMMUTABLE_FIELD": "The input holds fields the destination sets itself: was it written by migrate.py export?",
    "UNKNOWN_FIELD": f"The input holds fields schema {SCHEMA_VERSION} does not know: was it exported with {SCHEMA_VERSION}?",
    "SCHEMA_INCOMPATIBLE": f"The destination does not accept schema {SCHEMA_VERSION}",
}


@dataclass
class Chunk:
    """A run of up to 1,000 source records in file order, and the transformed ones to send.

    Its boundaries and its key (the sha256 of the source ids it spans) do not
    depend on the mapping: ids are rewritten UUID for UUID, so sizes do not
    change, and records that --unmapped skip leaves out still count.  A re-run
    with a mended mapping therefore finds the same chunks, and sends what an
    earlier run left out as a follow-up chunk of its own.
    """

    file: str
    first_index: int
    source_ids: list  # every record the chunk spans
    parts: list  # compact JSON bytes of each record to send
    sent_ids: list  # their source ids
    skipped_ids: list = field(default_factory=list)
    key_prefix: str = ""
    parent_key: str = None

    @property
    def key(self):
        return hashlib.sha256((self.key_prefix + "\n".join(self.source_ids)).encode()).hexdigest()

    @property
    def count(self):
        return len(self.parts)

    def body(self):
        return IMPORT_ENVELOPE[0] + b",".join(self.parts) + IMPORT_ENVELOPE[1]

    def halves(self):
        middle = (self.count + 1) // 2
        prefix = f"half\n{self.key}\n"
        return tuple(Chunk(self.file, self.first_index, ids, parts, ids, key_prefix=prefix, parent_key=self.parent_key)
                     for ids, parts in ((self.sent_ids[:middle], self.parts[:middle]),
                                        (self.sent_ids[middle:], self.parts[middle:])))

    def refreshed(self, current):
        """This part of a split with each record as `current` (its chunk as built now) has it: a part
        whose job never landed follows a mended mapping; a record no longer sent keeps its bytes."""
        now = dict(zip(current.sent_ids, current.parts))
        return replace(self, parts=[now.get(sid, part) for sid, part in zip(self.sent_ids, self.parts)])

    def follow_up(self, left_out):
        """The records an earlier run left out that can be sent now, as a chunk of their own."""
        left_out = set(left_out)
        picked = [(sid, part) for sid, part in zip(self.sent_ids, self.parts) if sid in left_out]
        if not picked:
            return None
        ids = [sid for sid, _ in picked]
        return Chunk(self.file, self.first_index, ids, [part for _, part in picked], ids,
                     key_prefix="follow-up\n", parent_key=self.key)

    def describe(self):
        last = self.first_index + len(self.source_ids) - 1
        return f"chunk {self.key[:12]} ({Path(self.file).name}, records {self.first_index}-{last})"


def build_chunks(files, mapping, policy, max_records=IMPORT_MAX_RECORDS, max_bytes=IMPORT_MAX_BYTES, stats=None):
    """Deterministic chunks in file order: the same input always gives the same keys."""
    room = max_bytes - len(IMPORT_ENVELOPE[0]) - len(IMPORT_ENVELOPE[1])
    for path in files:
        chunk, size = None, 0
        for index, record in enumerate(iter_records(path)):
            if stats:
                stats.records_read += 1
            source_id = source_record_id(record)
            transformed = transform_interaction(record, mapping, policy)
            part = compact_json_bytes(transformed if transformed is not None else record)
            if len(part) > room:
                raise MigrateError(f"record {index} of {path} is {len(part)} bytes, more than one import "
                                   f"request may carry ({max_bytes}). Remove it from the export to go on.")
            if chunk and (len(chunk.source_ids) >= max_records or size + len(part) + 1 > room):
                yield chunk
                chunk = None
            if chunk is None:
                chunk, size = Chunk(str(path), index, [], [], []), 0
            chunk.source_ids.append(source_id)
            size += len(part) + 1
            if transformed is None:
                chunk.skipped_ids.append(source_id)
                if stats:
                    stats.records_skipped += 1
            else:
                chunk.parts.append(part)
                chunk.sent_ids.append(source_id)
        if chunk:
            yield chunk


class ChunkFailed(MigrateError):
    pass


@dataclass
class ImportStats:
    records_read: int = 0
    records_skipped: int = 0
    records_sent: int = 0
    records_already: int = 0
    chunks_done: int = 0
    chunks_resumed: int = 0
    chunks_confirmed: int = 0
    chunks_split: int = 0
    jobs: int = 0
    polls: int = 0


class JobPacer:
    """Learns how long an import job takes per record, so the first poll lands near its end.

    Each finished job brackets its true duration between the last read that saw
    it running and the read that saw it done; the estimate follows the middle
    of that bracket (a job done at the first read pulls the estimate down a
    little, to probe for a shorter duration).  The job-status window (100/min)
    is the scarce resource this saves.
    """

    def __init__(self, initial):
        self.initial = initial
        self._per_record = None
        self._lock = threading.Lock()

    def first_delay(self, records):
        with self._lock:
            return self.initial if self._per_record is None else self._per_record * records

    def observe(self, records, submitted_at, done_at, last_pending_at):
        if last_pending_at is None:
            duration = 0.9 * (done_at - submitted_at)
        else:
            duration = (last_pending_at + done_at) / 2 - submitted_at
        sample = duration / max(records, 1)
        with self._lock:
            self._per_record = sample if self._per_record is None else 0.7 * self._per_record + 0.3 * sample


def import_job_errors(job):
    """A failed import job's errors as {code, message, index} with those types (index None when absent)."""
    errors = job.get("errors") if isinstance(job.get("errors"), list) else []
    return [{"code": str(error.get("code") or "failed"), "message": str(error.get("message") or ""),
             "index": error.get("index") if is_int(error.get("index")) else None}
            for error in errors if isinstance(error, dict)]


class ImportRun:
    """Submits chunks as import jobs, several at once, each exactly once across crashes.

    Per chunk the state goes pending -> submitting (written before the POST) ->
    submitted(importId) -> completed.  A chunk whose POST may have reached the
    org before (it was left `submitting`, or a POST was retried) and whose new
    job fails only because every record is a DUPLICATE_INTERACTION is already
    in the org: it is marked completed instead of failed.
    """

    def __init__(self, client, state, workers, poll, progress, stats):
        self.client, self.state, self.workers, self.poll = client, state, workers, poll
        self.progress, self.stats = progress, stats
        self.pacer = JobPacer(poll.initial)
        self.stop = threading.Event()
        self.failure = None
        self._stats_lock = threading.Lock()
        self.started = time.monotonic()

    def _entry(self, key):
        with self.state._mutex:
            return dict(self.state.section("import").get("chunks", {}).get(key) or {})

    def _record(self, chunk, **values):
        def change(data):
            chunks = data.setdefault("import", {}).setdefault("chunks", {})
            entry = chunks.setdefault(chunk.key, {"file": chunk.file, "index": chunk.first_index, "records": chunk.count})
            entry.update(values)
        self.state.update(change)

    def _count(self, **increments):
        with self._stats_lock:
            for name, value in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)
            done = self.stats.chunks_done + self.stats.chunks_resumed + self.stats.chunks_confirmed
        rate = self.stats.records_sent / max(time.monotonic() - self.started, 1e-6)
        self.progress.show(f"import: chunks {done}, records sent {self.stats.records_sent:,}, {rate:,.0f} rec/s")

    def run(self, chunks):
        pending, seen = set(), set()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="import") as pool:
            for chunk in chunks:
                if self.stop.is_set() or STOP.requested:
                    break
                entry = self._entry(chunk.key)
                if entry.get("status") == "completed" and chunk.follow_up(entry.get("skipped") or []) is None:
                    self._count(chunks_resumed=1, records_already=chunk.count)
                    continue
                if chunk.key in seen:
                    log.warning("%s appears twice in the input (the same records in two files?); sent once.",
                                chunk.describe())
                    continue
                seen.add(chunk.key)
                while len(pending) >= self.workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    self._collect(done)
                if self.stop.is_set() or STOP.requested:
                    break
                pending.add(pool.submit(self._import, chunk))
            self._collect(wait(pending)[0])
        self.progress.done()
        STOP.check()
        if self.failure:
            raise self.failure

    def _collect(self, futures):
        for future in futures:
            exc = future.exception()
            if exc is not None and self.failure is None:
                self.failure = exc if isinstance(exc, MigrateError) else MigrateError(f"import worker failed: {exc!r}")
                self.stop.set()
                if not isinstance(exc, Stopped):
                    log.error("Stopping new submissions: %s", self.failure)

    def _import(self, chunk):
        """One chunk to completion, then whatever an earlier run of it left out and can be sent now."""
        entry = self._entry(chunk.key)
        status = entry.get("status", "pending")
        if status == "failed":  # its job stored nothing: rebuild it from the input and mapping as they are now
            self._drop_spool(chunk)
            status = "pending"
        if status == "completed":
            late = chunk.follow_up(entry.get("skipped") or [])
            self._count(chunks_resumed=1, records_already=chunk.count - (late.count if late else 0))
        elif status == "split":
            sent = self._spooled(chunk, entry)  # the boundaries the halves were made with
            for half in sent.halves():
                if self._entry(half.key).get("status", "pending") not in ("submitting", "submitted", "completed"):
                    half = half.refreshed(chunk)
                self._import(half)
            self._complete(chunk)
        elif status == "pending" and chunk.count == 0:
            self._complete(chunk, skipped=chunk.skipped_ids)
            self._count(chunks_done=1)
        elif not self._send(chunk, entry, status):
            return
        late = chunk.follow_up(self._entry(chunk.key).get("skipped") or [])
        if late is not None:
            log.info("%s: sending %d records an earlier run left out.", chunk.describe(), late.count)
            self._import(late)

    def _send(self, chunk, entry, status):
        """Submits (or resumes) the chunk's job and waits for it; False when the run is stopping."""
        may_exist = status in ("submitting", "submitted")
        if may_exist:
            chunk = self._spooled(chunk, entry)  # exactly what may already have landed, whatever the mapping now
        job_id = entry.get("importId") if status == "submitted" else None
        if job_id:
            log.info("Resuming import job %s for %s", job_id, chunk.describe())
        unknown_jobs = 0
        while True:
            if job_id is None:
                if self.stop.is_set():
                    return False
                STOP.check()
                job_id, retried = self._submit(chunk)
                if job_id is None:
                    return True  # split in two, both halves done
                may_exist = may_exist or retried
            submitted_at = time.monotonic()
            expected = self.pacer.first_delay(chunk.count)
            try:
                job, polls, last_pending = poll_job(
                    self.client, f"{IMPORT_PATH}/{job_id}",
                    finished=lambda job: job.get("status") in ("completed", "failed"),
                    first_delay=expected, then_delay=max(0.05, expected * 0.1), cap=self.poll.cap,
                    deadline=time.monotonic() + self.poll.deadline_s, describe=f"import job {job_id}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                unknown_jobs += 1
                if unknown_jobs > RESUBMITS_OF_UNKNOWN_JOB:
                    self._record(chunk, status="submitting", importId=None)
                    raise MigrateError(f"import job {job_id} for {chunk.describe()} is unknown to the org, the "
                                       f"{unknown_jobs}th job in a row for it; it may have landed. Run the same "
                                       f"command again later: the chunk is resent from its spool, and what "
                                       f"already landed is recognised.") from None
                log.warning("Import job %s is unknown to the org now; sending %s again.", job_id, chunk.describe())
                job_id, may_exist = None, True
                continue
            break
        self._count(polls=polls)
        log.debug("import job %s: %s after %.2f s and %d reads (first read at %.2f s)", job_id, job["status"],
                  time.monotonic() - submitted_at, polls, expected)
        if job["status"] == "completed":
            self.pacer.observe(chunk.count, submitted_at, time.monotonic(), last_pending)
            self._complete(chunk)
            self._count(chunks_done=1, records_sent=chunk.count)
            return True
        errors = import_job_errors(job)
        if may_exist and self._all_duplicates(errors, chunk.count):
            log.info("%s was already imported by an earlier attempt (job %s found every record present).",
                     chunk.describe(), job_id)
            self._complete(chunk, confirmedBy=job_id)
            self._count(chunks_confirmed=1, records_already=chunk.count)
            return True
        first = min(errors, key=lambda error: math.inf if error["index"] is None else error["index"], default={})
        self._record(chunk, status="failed", error={"importId": job_id, **first})
        self._drop_spool(chunk)
        raise self._failure(chunk, f"import job {job_id}", first.get("code", "failed"),
                            first.get("message", ""), first.get("index"))

    def _spool_path(self, chunk):
        return Path(f"{self.state.path}.spool") / f"{chunk.key}.jsonl"

    def _spool(self, chunk):
        """Keeps the exact records of a chunk about to be sent: a re-run resends these bytes, so what
        may already be in the org is recognised as duplicate even if the mapping changed since.
        The file and its folder are fsynced before the state may say `submitting`."""
        path = self._spool_path(chunk)
        temp = path.with_name(path.name + ".tmp")
        with WRITES.writing(), disk_errors(path):
            if not path.parent.exists():
                private_folder(path.parent)
                fsync_directory(path.parent.parent)
            try:
                with private_open(temp) as handle:
                    handle.write(compact_json_bytes(chunk.sent_ids) + b"\n" + b"\n".join(chunk.parts) + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            fsync_directory(path.parent)

    def _drop_spool(self, chunk):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._spool_path(chunk))

    def _spooled(self, chunk, entry):
        """The chunk as it was sent before (from its spool), or as built now when none was kept."""
        path = self._spool_path(chunk)
        try:
            lines = path.read_bytes().split(b"\n")
            sent_ids, parts = json.loads(lines[0]), [line for line in lines[1:] if line]
        except FileNotFoundError:
            return chunk
        except ValueError:
            raise MigrateError(f"spool file {path} is damaged; it holds what {chunk.describe()} sent before it may "
                               f"have landed. Restore it from a backup, or delete it to send the chunk as built "
                               f"now (a duplicate then fails the job instead of being recognised).") from None
        return Chunk(chunk.file, chunk.first_index, chunk.source_ids, parts, sent_ids,
                     list(entry.get("skipped") or []), chunk.key_prefix, chunk.parent_key)

    def _complete(self, chunk, **values):
        """Marks a chunk completed; a follow-up also takes its records off its parent's left-out list."""
        def change(data):
            chunks = data.setdefault("import", {}).setdefault("chunks", {})
            chunks.setdefault(chunk.key, {"file": chunk.file, "index": chunk.first_index, "records": chunk.count})
            chunks[chunk.key].update(status="completed", **values)
            chunks[chunk.key].pop("error", None)
            if chunk.parent_key and chunk.parent_key in chunks:
                sent = set(chunk.sent_ids)
                parent = chunks[chunk.parent_key]
                parent["skipped"] = [sid for sid in parent.get("skipped") or [] if sid not in sent]
        self.state.update(change)
        self._drop_spool(chunk)

    def _submit(self, chunk):
        """POSTs the chunk; its records are spooled and the state says `submitting` (and what it leaves
        out) before the request leaves."""
        self._spool(chunk)
        self._record(chunk, status="submitting", skipped=chunk.skipped_ids, sent=chunk.count)
        retried = []
        try:
            answer = self.client.request("POST", IMPORT_PATH, data=chunk.body(), on_retry=retried.append) or {}
        except ApiError as exc:
            if exc.status == 413 and chunk.count > 1:
                log.info("%s is too large for one request (413); splitting it in two.", chunk.describe())
                self._record(chunk, status="split")
                self._count(chunks_split=1)
                for half in chunk.halves():
                    self._import(half)
                self._complete(chunk)
                return None, False
            if exc.transient:
                raise
            self._record(chunk, status="failed", error={"status": exc.status, "code": exc.code, "message": exc.message})
            self._drop_spool(chunk)  # refused outright: these bytes never landed, in this attempt or before
            raise self._failure(chunk, "the import request", exc.code or exc.status, exc.message, None) from None
        if not answer_id(answer):
            raise MigrateError(f"the org accepted the import request for {chunk.describe()} but answered no job id; "
                               f"the chunk may have landed. Run the same command again: it is resent from its "
                               f"spool, and what already landed is recognised.")
        self._count(jobs=1)
        self._record(chunk, status="submitted", importId=answer["id"])
        return answer["id"], bool(retried)

    @staticmethod
    def _all_duplicates(errors, count):
        indexes = {error.get("index") for error in errors if error.get("code") == "DUPLICATE_INTERACTION"}
        return len(errors) > 0 and all(e.get("code") == "DUPLICATE_INTERACTION" for e in errors) \
            and indexes == set(range(count))

    @staticmethod
    def _failure(chunk, what, code, message, index):
        at = ""
        if isinstance(index, int) and 0 <= index < chunk.count:
            source_id = chunk.sent_ids[index]
            at = f" at the record with source id {source_id}"
            if not chunk.key_prefix:
                at += f" (record {chunk.first_index + chunk.source_ids.index(source_id)} of {Path(chunk.file).name})"
        hint = IMPORT_HINTS.get(code, "Fix the cause")
        return ChunkFailed(f"{what} for {chunk.describe()} failed: {code}{at}: {str(message).rstrip('.')}. {hint}, "
                           f"then run the same command again: completed chunks are skipped, and this one is "
                           f"rebuilt from the input and the mapping.")


# ---------------------------------------------------------------------------
# Clone: configuration from the source org to the target org
# ---------------------------------------------------------------------------

CREATE_READ_ONLY_FIELDS = ("id", "selfUri", "version", "state", "dateCreated", "dateModified", "createdBy",
                           "modifiedBy", "memberCount", "userMemberCount", "joinedMemberCount")
TRUNK_CREDENTIAL_PROPERTIES = ("trunk_sip_authentication_credentials_realm",
                               "trunk_sip_authentication_credentials_username",
                               "trunk_sip_authentication_credentials_password")
FLOW_EXPORT_JOBS = "/api/v2/flows/export/jobs"
FLOW_IMPORT_JOBS = "/api/v2/flows/jobs"
FLOW_EXPORT_BATCH = 20
FLOW_EXPORT_RETRIES = 3  # a Failure "... exit code 107" for a flow that exists is the platform under load
FLOW_EXPORT_TRANSIENT = "exit code 107"
FLOW_DOCUMENT_MAX_BYTES = 64 << 20
FLOW_JOB_DONE = ("Success", "Failure")
CONSUMED_RESOURCES = "/api/v2/architect/dependencytracking/consumedresources"
EVERY_ORG_HAS = ("SYSTEMPROMPT",)  # dependencies every org has under the same name (PromptSystem.on_hold_music)
# Archy's top-level key of a flow document -> the flow's type (real exports spell `inqueueCall`).
ARCHY_FLOW_TYPES = {flow_type.lower(): flow_type for flow_type in (  # every Flow.type of the SDK
    "BOT", "BUSINESSPROCESS", "COMMONMODULE", "DIGITALBOT", "EMAILSEND", "INBOUNDCALL", "INBOUNDCHAT", "INBOUNDEMAIL",
    "INBOUNDSHORTMESSAGE", "INQUEUECALL", "INQUEUEEMAIL", "INQUEUESHORTMESSAGE", "OUTBOUNDCALL", "SECURECALL",
    "SPEECH", "SURVEYINVITE", "VOICE", "VOICEMAIL", "VOICESURVEY", "WORKFLOW", "WORKITEM")}
MANIFEST_FLUSH_S = 0.25
STAMP_FIELDS = ("version", "dateModified")  # what tells that someone changed an object after clone
TIMED_WRAPUP_PROMPTS = ("AGENT_REQUESTED", "MANDATORY_TIMEOUT", "MANDATORY_FORCED_TIMEOUT")


class KindHooks:
    """What a kind needs beyond its row, the way datadog-sync-cli pairs a resource with its hooks.
    The base changes nothing; each method is called for every planned object of its kind."""

    syncs = False  # whether sync copies anything: an object an earlier run created is then synced again
    kept_on_undo = ()  # fields an update may change that the API never lets a client take back
    words = ""  # a relation's changes to objects the target had, for the confirmation line
    change = ""  # the name of the changes its sync records (members, rows ...)

    def prepare(self, run, items):
        """Reads, before anything is written, what planning this kind's objects needs (a relation's two
        sides), and sets each item's `changes`."""

    def count(self, item):
        """How many changes the item brings (a relation's members, skills ...), for the plan."""
        return 0

    def shape(self, run, item, body):
        """The settings clone sends for this object (a rule a field list cannot say)."""
        return self.writable(body)

    def writable(self, body):
        """A body as the API takes it: what the org answers is not always what it accepts back."""
        return body

    def pending_change(self, run, item):
        """The change sync is about to make to what the target had ({kind, change, targetId, name, added,
        before, after}), recorded for a whole level in one manifest write before its requests leave."""
        return None

    def sync(self, run, item):
        """Copies what the object holds besides its settings, once it exists in the target; adds what
        is missing, and corrects what differs, so a re-run after a kill finishes the job."""

    def verify(self, run, item):
        """Mismatches in what sync copied."""
        return []

    def notes(self, run, item):
        """(topic, text, needs attention) lines for the summary: work left for a person."""
        return []

    def undo(self, client, kind, entry, force, manifest):
        """Takes back a recorded change of an object the target had (what clone added goes, what it
        replaced comes back); answers why not, when someone changed it since and not `force`."""
        raise MigrateError(f"{kind.key} has no recorded changes of kind {entry.get('change')!r} to undo")

    def extras(self, client, kind, entry):
        """What an object clone created holds now that clone did not add (someone else's members)."""
        return []


NO_HOOKS = KindHooks()


@dataclass(frozen=True)
class ObjectKind:
    """One kind of configuration object: where it lives and how it is copied.

    `level` is its place in the dependency order of apply (a level refers only
    to lower levels); `delete_rank` is its place in rollback (lower first: an
    object named in a flow cannot go while the flow exists).
    """

    key: str  # the mapping file's name for the kind
    path: str
    page_size: int
    level: int
    delete_rank: int
    fields: tuple  # settings copied to the target
    match: str = "name"  # name | name+type | category+name | email | "" (read, never matched)
    division_field: str = "division"  # division ({"id"}), divisionId (a string), or "" (none)
    version: str = ""  # "int": PUT must carry the current version
    updatable: bool = True
    creatable: bool = True
    list_params: tuple = ()
    skip_when: tuple = ()  # (field, value): source objects never copied
    drop_properties: tuple = ()  # keys of `properties` never copied
    members: str = ""  # sub-resource listing objects of another kind, e.g. a queue's wrap-up codes
    members_kind: str = ""
    defaults: tuple = ()  # (field, value): what the API requires even where the source has nothing
    dependency: str = ""  # its type in Architect's dependency tracking (a flow's: its type + "FLOW")
    name_chars: str = ""  # the characters its names may hold, where the API restricts them (a regex class)
    name_pattern: str = ""  # what a whole name must be, where the API restricts it
    delete_params: tuple = ()  # what DELETE needs to remove the object with what it holds
    archy_content: bool = False  # its content moves by Architect export and import jobs (flows)
    org_own: tuple = ()  # (field, value): the one object of its kind every org has (the home division)
    string_lists: tuple = ()  # fields that must be lists of strings, checked as the org lists them
    relation_of: str = ""  # a relation (members, skills) of the objects of this kind, not objects of its own
    hooks: KindHooks = NO_HOOKS  # what a row cannot say: sub-resources, bodies, notes


class QueueSettings(KindHooks):
    def writable(self, body):
        """acwSettings.timeoutMs goes only with a wrap-up prompt that times out (SDK 269's AcwSettings);
        the platform refuses it with any other, though it may answer one."""
        acw = body.get("acwSettings")
        if isinstance(acw, dict) and "timeoutMs" in acw and acw.get("wrapupPrompt") not in TIMED_WRAPUP_PROMPTS:
            body["acwSettings"] = {name: value for name, value in acw.items() if name != "timeoutMs"}
        return body

    def undo(self, client, kind, entry, force, manifest):
        """Wrap-up codes clone added to a queue the target had are removed from its list."""
        for member in entry["added"]:
            delete_if_there(client, f"{kind.path}/{entry['targetId']}/{kind.members}/{path_segment(member)}")
        return None

    def extras(self, client, kind, entry):
        listed = {member["id"] for member in client.paginate(f"{kind.path}/{entry['targetId']}/{kind.members}", 100)}
        return sorted(listed - set(entry["added"]))

    def shape(self, run, item, body):
        body = self.writable(body)
        rings = (body.get("bullseye") or {}).get("rings") if isinstance(body.get("bullseye"), dict) else None
        if isinstance(rings, list):  # groups are not copied: their members come with them
            rings = [{name: value for name, value in ring.items() if name != "memberGroups"} if isinstance(ring, dict)
                     else ring for ring in rings]
            if item.action == "update" and rings:
                self._keep_target_groups(run, item, rings)
            body["bullseye"] = {**body["bullseye"], "rings": rings}
        return body

    @staticmethod
    def _keep_target_groups(run, item, rings):
        """An update never takes the target queue's own groups away: each ring's groups stay on the ring
        of the same place (the last, where the source has fewer).  Their ids are the target's own."""
        held = ((item.target or {}).get("bullseye") or {}).get("rings") or []
        for index, ring in enumerate(held):
            groups = [{"id": group["id"], **({"type": group["type"]} if "type" in group else {})}
                      for group in (ring.get("memberGroups") or []) if isinstance(ring, dict)
                      and isinstance(group, dict) and isinstance(group.get("id"), str)]
            if groups and isinstance(rings[min(index, len(rings) - 1)], dict):
                rings[min(index, len(rings) - 1)].setdefault("memberGroups", []).extend(groups)
                run.id_map.update({group["id"]: group["id"] for group in groups})  # a target id is its own


class QueueMembership(KindHooks):
    """A queue's direct members (memberBy user), users matched by email, with their ring numbers and
    `joined`.  Group members come with their group, which clone does not copy."""

    syncs = True
    change = "members"
    words = "add {changes} members to {objects} existing queues"

    def prepare(self, run, items):
        """Reads the source's member lists, and the target's for queues it already has, in parallel."""
        def members(client, queue_id):
            return list(client.paginate(f"{QUEUES_PATH}/{queue_id}/members", QUEUE_MEMBERS_PAGE))

        with ThreadPoolExecutor(max_workers=run.args.workers, thread_name_prefix="members") as pool:
            reads = [(item, pool.submit(members, run.source, item.source["id"]),
                      pool.submit(members, run.target, item.target_id) if item.parent.target else None)
                     for item in items]
            for item, source_read, target_read in reads:
                self._plan(run, item, source_read.result(), target_read.result() if target_read else [])

    def _plan(self, run, item, source_members, target_members):
        queue = item.parent.desired if item.parent.action in ("create", "update") else item.parent.target
        rings = len(((queue or {}).get("bullseye") or {}).get("rings") or []) or 1
        present = {member["id"]: member for member in target_members}
        ours = set(run.manifest.added(item.kind.key, "members", item.target_id)) if item.target_id else set()
        wanted, unmatched, clamped, by_group = {}, [], [], 0
        for member in source_members:
            if member.get("memberBy") == "group":
                by_group += 1
                continue
            user = run.by_source_id.get(member["id"])
            if user is None or not user.target_id:
                unmatched.append(member.get("name") or member["id"])
                continue
            ring = member.get("ringNumber") if is_int(member.get("ringNumber")) and member["ringNumber"] >= 1 else 1
            if ring > rings:
                if user.target_id not in present:
                    who = (user.target or {}).get("email") or user.source.get("email") or member.get("name")
                    clamped.append(f"{item.target_name}: {who} ring {ring} -> {rings}")
                ring = rings
            wanted[user.target_id] = {"ringNumber": ring, "joined": member.get("joined") is not False}
        item.changes = {user_id: state for user_id, state in wanted.items() if user_id not in present or (
            user_id in ours and any(present[user_id].get(name) != value for name, value in state.items()))}
        item.context = {"unmatched": unmatched, "clamped": clamped, "byGroup": by_group, "present": set(present)}

    def count(self, item):
        return len(item.changes or {})

    def pending_change(self, run, item):
        if not item.changes:
            return None
        return {"kind": item.kind.key, "change": "members", "targetId": item.parent.target_id,
                "name": item.target_name, "after": item.changes,
                "added": self._added(item)}

    @staticmethod
    def _added(item):
        """The members its sync adds (the others it only moves to their ring)."""
        return [user_id for user_id in item.changes if user_id not in item.context["present"]]

    def sync(self, run, item):
        if not item.changes:
            return
        queue_id = item.parent.target_id
        path = f"{QUEUES_PATH}/{queue_id}/members"
        added = self._added(item)
        for start in range(0, len(added), QUEUE_MEMBERS_PER_CALL):  # each joins on ring 1, joined
            run.target.post(path, [{"id": user_id} for user_id in added[start:start + QUEUE_MEMBERS_PER_CALL]])
            run.wrote()
        patches = [(user_id, state) for user_id, state in item.changes.items()
                   if state != ADDED_MEMBER or user_id in item.context["present"]]

        def patch(user_id, state):
            run.target.request("PATCH", f"{path}/{path_segment(user_id)}", body=state)
            run.wrote()

        run.in_parallel(patch, patches, f"members of queue {item.target_name!r}")
        run.manifest.record_done(item.kind.key, "members", queue_id)
        item.copied = item.changes
        item.parent.touched = True

    def verify(self, run, item):
        present = {member["id"]: member for member in run.target.paginate(
            f"{QUEUES_PATH}/{item.parent.target_id}/members", QUEUE_MEMBERS_PAGE)}
        return [f"member {user_id} " + ("missing" if user_id not in present else "has another ring or joined")
                for user_id, state in item.copied.items() if user_id not in present
                or any(present[user_id].get(name) != value for name, value in state.items())]

    def undo(self, client, kind, entry, force, manifest):
        path = f"{QUEUES_PATH}/{entry['targetId']}/members"
        present = {member["id"]: member for member in client.paginate(path, QUEUE_MEMBERS_PAGE)}
        moved = [user_id for user_id, state in entry["after"].items() if user_id in present
                 and not any(all(present[user_id].get(name) == value for name, value in left.items())
                             for left in (state, ADDED_MEMBER))]  # as clone left it, or as its POST did
        if moved and not force:
            return f"{len(moved)} members clone added have another ring or joined now, e.g. {moved[0]}"
        added = [user_id for user_id in entry["added"] if user_id in present]
        for start in range(0, len(added), QUEUE_MEMBERS_PER_CALL):  # each joins on ring 1, joined
            client.request("POST", path, params={"delete": "true"},
                           body=[{"id": user_id} for user_id in added[start:start + QUEUE_MEMBERS_PER_CALL]])
        return None

    def extras(self, client, kind, entry):
        present = client.paginate(f"{QUEUES_PATH}/{entry['targetId']}/members", QUEUE_MEMBERS_PAGE)
        return sorted(member["id"] for member in present if member["id"] not in entry["added"])

    def notes(self, run, item):
        context = item.context or {}
        lines = [(NOTE_RING_CLAMPED, text, False) for text in context.get("clamped", [])]
        groups = [group.get("name") or group.get("id") for ring in (item.source.get("bullseye") or {}).get("rings") or []
                  for group in ring.get("memberGroups") or [] if isinstance(group, dict)]
        if groups or context.get("byGroup"):
            lines.append((NOTE_GROUPS_DROPPED, f"{item.target_name}: {', '.join(map(str, groups)) or 'groups'} "
                                               f"({context.get('byGroup', 0)} members)", False))
        return lines


class UserRouting(KindHooks):
    """What a matched user routes by (skills or languages, with proficiency): added to the target user,
    never removed; where both hold one, --on-conflict update sets the source's proficiency."""

    syncs = True

    def __init__(self, sub_path, expanded, value_kind):
        self.sub_path, self.expanded, self.value_kind = sub_path, expanded, value_kind
        self.words = f"add or change {{changes}} {expanded} on {{objects}} existing users"
        self.change = expanded

    def prepare(self, run, items):
        """The lists come with the user list (expand); where the platform left a user's out, one read."""
        def routing(client, user):
            listed = user.get(self.expanded)
            if isinstance(listed, list) and all(isinstance(entry, dict) and isinstance(entry.get("id"), str)
                                                for entry in listed):
                return listed
            try:
                return list(client.paginate(f"/api/v2/users/{user['id']}/{self.sub_path}", USER_ROUTING_PAGE))
            except ApiError as exc:
                if exc.status != 404:
                    raise
                return None  # the user went between the list and this read: nothing to copy to or from

        with ThreadPoolExecutor(max_workers=run.args.workers, thread_name_prefix="routing") as pool:
            reads = [(item, pool.submit(routing, run.source, item.source), pool.submit(routing, run.target, item.target))
                     for item in items]
            for item, source_read, target_read in reads:
                if source_read.result() is None or target_read.result() is None:
                    item.changes, item.context = {}, {"before": {}}
                    continue
                self._plan(run, item, source_read.result(), target_read.result())

    def _plan(self, run, item, source_list, target_list):
        present = {entry["id"]: entry.get("proficiency") for entry in target_list}
        changes, before = {}, {}
        for entry in source_list:
            mapped = run.by_source_id.get(entry["id"])
            if mapped is None or mapped.kind.key != self.value_kind or mapped.action in ("skip", "conflict"):
                continue
            proficiency = entry.get("proficiency", 0)
            target_id = mapped.target_id or entry["id"]  # a value created by this run gets its id at apply
            if target_id not in present:
                changes[target_id] = proficiency
            elif run.args.on_conflict == "update" and present[target_id] != proficiency:
                changes[target_id], before[target_id] = proficiency, present[target_id]
        item.changes, item.context = changes, {"before": before}

    def count(self, item):
        return len(item.changes or {})

    def pending_change(self, run, item):
        if not item.changes:
            return None
        resolved = self._resolved(run, item)
        before = {run.id_map.get(value_id, value_id): value for value_id, value in item.context["before"].items()}
        return {"kind": item.kind.key, "change": self.expanded, "targetId": item.target_id,
                "name": item.target.get("email") or item.target_name, "before": before, "after": resolved,
                "added": [value for value in resolved if value not in before]}

    @staticmethod
    def _resolved(run, item):
        """Its changes by the target's ids: a skill or language this run created has one only now."""
        return {run.id_map.get(value_id, value_id): proficiency for value_id, proficiency in item.changes.items()}

    def sync(self, run, item):
        if not item.changes:
            return
        resolved = self._resolved(run, item)
        body = [{"id": value_id, "proficiency": proficiency} for value_id, proficiency in resolved.items()]
        for start in range(0, len(body), USER_ROUTING_PER_CALL):
            answer = run.target.request("PATCH", f"/api/v2/users/{item.target_id}/{self.sub_path}/bulk",
                                        body=body[start:start + USER_ROUTING_PER_CALL])
            run.wrote()
        listed = answer.get("entities") if isinstance(answer, dict) else None
        item.context["answered"] = {value["id"]: value.get("proficiency") for value in listed
                                    if isinstance(value, dict) and isinstance(value.get("id"), str)} \
            if isinstance(listed, list) and not answer.get("nextUri") else None
        run.manifest.record_done(item.kind.key, self.expanded, item.target_id)
        item.copied = resolved

    def undo(self, client, kind, entry, force, manifest):
        path = f"/api/v2/users/{entry['targetId']}/{self.sub_path}"
        present = {value["id"]: value.get("proficiency") for value in client.paginate(path, USER_ROUTING_PAGE)}
        moved = [value_id for value_id, proficiency in entry["after"].items() if value_id in present
                 and present[value_id] not in (proficiency, entry["before"].get(value_id, proficiency))]
        if moved and not force:
            return f"{len(moved)} {self.expanded} have another proficiency now, e.g. {moved[0]}"
        for value_id in entry["added"]:
            if value_id in present:
                delete_if_there(client, f"{path}/{path_segment(value_id)}")
        back = [{"id": value_id, "proficiency": proficiency} for value_id, proficiency in entry["before"].items()
                if value_id in present]  # one someone removed since stays removed
        for start in range(0, len(back), USER_ROUTING_PER_CALL):
            client.request("PATCH", f"{path}/bulk", body=back[start:start + USER_ROUTING_PER_CALL])
        return None

    def verify(self, run, item):
        """Checked against the whole list the last bulk PATCH answered (a read only where it did not)."""
        present = item.context.get("answered")
        if present is None:
            present = {entry["id"]: entry.get("proficiency") for entry in run.target.paginate(
                f"/api/v2/users/{item.target_id}/{self.sub_path}", USER_ROUTING_PAGE)}
        return [f"{self.expanded} {value_id} " + ("missing" if value_id not in present else "has another proficiency")
                for value_id, proficiency in item.copied.items() if present.get(value_id) != proficiency]


class MatchedUsers(KindHooks):
    def notes(self, run, item):
        if item.action == "skip" and any(kind.relation_of == item.kind.key for kind in run.kinds):
            return [(NOTE_UNMATCHED_USERS, item.source.get("email") or item.source.get("name") or item.source["id"],
                     False)]
        return []


def delete_if_there(client, path, **kwargs):
    """DELETE that counts an object already gone as deleted."""
    try:
        client.request("DELETE", path, **kwargs)
    except ApiError as exc:
        if exc.status != 404:
            raise


class TrunkCredentials(KindHooks):
    def notes(self, run, item):
        if item.action in ("create", "ours") and set(item.kind.drop_properties) & set(item.source.get("properties") or {}):
            return [(NOTE_TRUNK_CREDENTIALS, item.target_name, False)]
        return []


class FlowShells(KindHooks):
    def notes(self, run, item):
        if item.action in ("create", "ours") and not published_version(item.source):
            return [(NOTE_UNPUBLISHED_FLOWS, item.target_name, False)]
        return []


class PromptResources(KindHooks):
    """A prompt's language resources: TTS text, and audio moved through pre-signed URLs."""

    syncs = True
    change = "resources"

    def sync(self, run, item):
        source_path = f"{item.kind.path}/{item.source['id']}/resources"
        path = f"{item.kind.path}/{item.target_id}/resources"
        wanted = list(run.source.paginate(source_path, 100))
        present = {} if item.action == "create" else {
            resource.get("language"): resource for resource in run.target.paginate(path, 100)}
        item.copied = {}
        for resource in wanted:
            language = resource.get("language")
            if not isinstance(language, str) or not language:
                raise MigrateError(f"the source's prompt {item.source.get('name')!r} has a resource without a language.")
            texts = {name: resource[name] for name in PROMPT_TEXT_FIELDS if resource.get(name) is not None}
            audio = download_bytes(resource["mediaUri"], f"the audio of prompt {item.source.get('name')!r} "
                                   f"({language})") if resource.get("mediaUri") else None
            item.copied[language] = (texts, hashlib.sha256(audio).hexdigest() if audio is not None else None)
            current = present.get(language)
            held = download_bytes(current["mediaUri"], "the target's audio") \
                if audio is not None and current and current.get("mediaUri") else None
            resource_path = f"{path}/{path_segment(language)}"
            if item.action == "update":
                self._record(run, item, language, current, texts, audio, held)
            if current is None:
                run.target.post(path, {"language": language, **texts})
                run.wrote()
            elif any(current.get(name) != value for name, value in texts.items()):
                run.target.request("PUT", resource_path, body={"language": language, **texts})
                run.wrote()
            if audio is not None and held != audio:
                self._upload(run.target, resource_path, audio, f"prompt {item.target_name!r} ({language})", run.poll)
                run.wrote()
        run.manifest.record_done(item.kind.key, "resources", item.target_id)

    @staticmethod
    def _record(run, item, language, current, texts, audio, held):
        """Before a prompt the target had is changed: the resource it gains, or the texts and audio (`held`)
        it loses (the audio kept beside the manifest, private; `"audio": None` when it had none), for rollback."""
        if current is None:
            run.manifest.record_change(item.kind.key, "resources", item.target_id, item.target_name,
                                       added=[language], after={language: PromptResources._after(texts, audio)})
            return
        changes_texts = any(current.get(name) != value for name, value in texts.items())
        before = {name: current.get(name) for name in PROMPT_TEXT_FIELDS}
        if audio is not None and held is None:
            before["audio"] = None
        elif audio is not None and held != audio:
            before["audio"] = run.manifest.keep_audio(item.target_id, language, held)
        if not changes_texts and "audio" not in before:
            return
        run.manifest.record_change(item.kind.key, "resources", item.target_id, item.target_name,
                                   before={language: before}, after={language: PromptResources._after(texts, audio)})

    @staticmethod
    def _after(texts, audio):
        return {**texts, "audio": hashlib.sha256(audio).hexdigest() if audio is not None else None}

    @staticmethod
    def _upload(client, resource_path, audio, describe, poll):
        """Uploads audio to a resource through the pre-signed URL the target grants, and waits for it to
        be transcoded."""
        grant = client.post(f"{resource_path}/uploads") or {}
        if not isinstance(grant.get("url"), str):
            raise MigrateError(f"the target gave no upload URL for the audio of {describe}. Run again.")
        answer = PresignedTransfer().put(grant["url"], audio, grant.get("headers") or {})
        if answer.status_code >= 300:
            raise MigrateError(f"upload of the audio of {describe} answered {answer.status_code}. Run again.")
        state, _, _ = poll_job(client, resource_path, lane="api",
                               finished=lambda state: state.get("uploadStatus") in ("transcoded", "transcodeFailed"),
                               first_delay=PROMPT_TRANSCODE_FIRST_LOOK_S, then_delay=PROMPT_TRANSCODE_FIRST_LOOK_S,
                               cap=poll.cap, deadline=time.monotonic() + poll.deadline_s,
                               describe=f"transcoding of the audio of {describe}")
        if state.get("uploadStatus") != "transcoded":
            raise MigrateError(f"the target could not transcode the audio of {describe}; the file may not be "
                               f"WAV. Replace it in the source and run again.")

    def undo(self, client, kind, entry, force, manifest):
        path = f"{kind.path}/{entry['targetId']}/resources"
        present = {resource.get("language"): resource for resource in client.paginate(path, 100)}

        digests = {}

        def holds(current, values, audio):
            """Whether a resource has these texts, and `audio`: the digest its audio must have, NO_AUDIO,
            or None where the audio is not in question."""
            if any(current.get(name) != values.get(name) for name in PROMPT_TEXT_FIELDS if name in values):
                return False
            if audio is None:
                return True
            if current["language"] not in digests:
                digests[current["language"]] = audio_digest(current)
            return digests[current["language"]] == (None if audio is NO_AUDIO else audio)

        moved, restored = [], set()
        for language, after in entry["after"].items():
            current = present.get(language)
            before = entry["before"].get(language)
            if current is None or holds(current, after, after.get("audio")):
                continue
            if before is not None and holds(current, before, None if "audio" not in before else NO_AUDIO
                                            if before["audio"] is None
                                            else hashlib.sha256(manifest.kept_audio(before["audio"])).hexdigest()):
                restored.add(language)  # put back by a rollback stopped before it could say so
                continue
            moved.append(language)
        if moved and not force:
            return f"{len(moved)} resources differ from what clone wrote, e.g. {moved[0]}"
        for language in entry["added"]:
            if language in present:
                delete_if_there(client, f"{path}/{path_segment(language)}")
        for language, before in entry["before"].items():
            if language in restored:
                continue
            resource_path = f"{path}/{path_segment(language)}"
            texts = {name: before[name] for name in PROMPT_TEXT_FIELDS if before.get(name) is not None}
            if "audio" in before and before["audio"] is None:  # it had no audio: only a new resource has none
                delete_if_there(client, resource_path)
                client.post(path, {"language": language, **texts})
                continue
            client.request("PUT", resource_path, body={"language": language, **texts})
            if before.get("audio"):
                self._upload(client, resource_path, manifest.kept_audio(before["audio"]),
                             f"prompt {entry['name']!r} ({language})", PollSettings())
        return None

    def verify(self, run, item):
        if item.copied is None:
            return []
        path = f"{item.kind.path}/{item.target_id}/resources"
        present = {resource.get("language"): resource for resource in run.target.paginate(path, 100)}
        problems = []
        for language, (texts, audio_hash) in item.copied.items():
            current = present.get(language)
            if current is None:
                problems.append(f"resource {language} missing")
                continue
            problems += [f"resource {language} {name} differs" for name, value in texts.items()
                         if current.get(name) != value]
            if audio_hash and audio_digest(current) != audio_hash:
                problems.append(f"resource {language} audio differs")
        return problems


class TableRows(KindHooks):
    """A data table's rows: each one request, in parallel under the governor."""

    syncs = True
    change = "rows"
    kept_on_undo = ("schema",)  # a table's columns can be added, never dropped

    def shape(self, run, item, body):
        """An update adds the source's columns the target's table lacks and never drops one."""
        current = (item.target or {}).get("schema")
        if item.action == "update" and isinstance(current, dict) and isinstance(body.get("schema"), dict):
            columns = dict(current.get("properties") or {})
            for name, column in (body["schema"].get("properties") or {}).items():
                columns.setdefault(name, column)
            body["schema"] = {**current, "properties": columns}
        return body

    def sync(self, run, item):
        rows_path = f"{item.kind.path}/{item.target_id}/rows"
        rows = list(run.source.paginate(f"{item.kind.path}/{item.source['id']}/rows", TABLE_ROWS_PAGE,
                                        {"showbrief": "false"}, identity="key"))
        present = {} if item.action == "create" else {
            row["key"]: row for row in run.target.paginate(rows_path, TABLE_ROWS_PAGE, {"showbrief": "false"},
                                                            identity="key")}
        item.copied = rows
        changes = [(row, present.get(row["key"])) for row in rows
                   if row["key"] not in present or any(present[row["key"]].get(name) != value
                                                       for name, value in row.items())]
        if changes and item.action == "update":  # a table the target had: rollback puts its rows back
            run.manifest.record_change(item.kind.key, "rows", item.target_id, item.target_name,
                                       added=[row["key"] for row, current in changes if current is None],
                                       before={row["key"]: current for row, current in changes if current is not None},
                                       after={row["key"]: row for row, _ in changes})

        def write(row, current):
            if current is None:
                retried = []
                try:
                    run.target.request("POST", rows_path, body=row, on_retry=retried.append)
                except ApiError as exc:
                    if not (exc.status == 409 and retried):  # our own earlier attempt landed
                        raise
            else:
                run.target.request("PUT", f"{rows_path}/{path_segment(row['key'])}", body={**current, **row})
            run.wrote()

        run.in_parallel(write, changes, f"table {item.target_name!r}")
        run.manifest.record_done(item.kind.key, "rows", item.target_id)

    def undo(self, client, kind, entry, force, manifest):
        rows_path = f"{kind.path}/{entry['targetId']}/rows"
        present = {row["key"]: row for row in client.paginate(rows_path, TABLE_ROWS_PAGE, {"showbrief": "false"},
                                                               identity="key")}
        moved = [key for key, row in entry["after"].items() if key in present
                 and any(present[key].get(name) != value for name, value in row.items())
                 and present[key] != entry["before"].get(key)]
        if moved and not force:
            return f"{len(moved)} rows differ from what clone wrote, e.g. {moved[0]!r}"
        for key in entry["added"]:
            if key in present:
                delete_if_there(client, f"{rows_path}/{path_segment(key)}")
        for key, row in entry["before"].items():
            client.request("PUT", f"{rows_path}/{path_segment(key)}", body=row)
        return None

    def verify(self, run, item):
        if item.copied is None:
            return []
        present = {row["key"]: row for row in run.target.paginate(
            f"{item.kind.path}/{item.target_id}/rows", TABLE_ROWS_PAGE, {"showbrief": "false"}, identity="key")}
        return [f"row {row['key']!r} " + ("missing" if row["key"] not in present else "differs")
                for row in item.copied if row["key"] not in present
                or any(present[row["key"]].get(name) != value for name, value in row.items())]


class IvrNumbers(KindHooks):
    """An IVR's numbers: only those inside the target's DID pools can be configured before porting."""

    def numbers(self, run, item):
        """(copyable, awaiting porting, {number: target IVR holding it}) of the source's numbers."""
        pools = [(pool.get("startPhoneNumber"), pool.get("endPhoneNumber")) for pool in run.target_objects["didPools"]]
        held = {number: ivr.get("name") for ivr in run.target_objects["ivrs"] if ivr.get("id") != item.target_id
                for number in ivr.get("dnis") or []}
        copyable, porting, elsewhere = [], [], {}
        for number in item.source.get("dnis") or []:
            if not any(number_in_pool(number, start, end) for start, end in pools):
                porting.append(number)
            elif number in held:
                elsewhere[number] = held[number]
            else:
                copyable.append(number)
        return copyable, porting, elsewhere

    syncs = True

    def sync(self, run, item):
        """An IVR an earlier run created gains the numbers that have since come into the target's pools
        (their porting is done): a re-run finishes what waited."""
        if item.action != "ours":
            return
        copyable, _, _ = self.numbers(run, item)
        if all(number in ((item.target or {}).get("dnis") or []) for number in copyable):
            return
        path = f"{item.kind.path}/{item.target_id}"
        current = run.target.get(path) or {}
        present = list(current.get("dnis") or []) if isinstance(current.get("dnis"), list) else []
        body = updated_body(item.kind, current, {"dnis": present + [n for n in copyable if n not in present]})
        run.target.request("PUT", path, body=body)
        run.wrote()
        item.copied = copyable

    def verify(self, run, item):
        current = run.target.get(f"{item.kind.path}/{item.target_id}") or {}
        return [f"number {number} missing" for number in item.copied if number not in (current.get("dnis") or [])]

    def shape(self, run, item, body):
        copyable, _, _ = self.numbers(run, item)
        if item.action == "update":
            current = list((item.target or {}).get("dnis") or [])
            copyable = current + [number for number in copyable if number not in current]
        body["dnis"] = copyable
        return body

    def notes(self, run, item):
        if item.action not in ("create", "ours", "update"):
            return []
        _, porting, elsewhere = self.numbers(run, item)
        return ([(NOTE_AWAITING_PORTING, f"{number} ({item.target_name})", False) for number in porting]
                + [(NOTE_NUMBER_HELD, f"{number} ({item.target_name}; held by IVR {holder!r})", True)
                   for number, holder in elsewhere.items()])


class EmergencySwitch(KindHooks):
    """An emergency group is copied switched off: enabled, it would send the target's calls to emergency
    routing as soon as its IVRs get numbers.  An update leaves the target's switch as it is."""

    def shape(self, run, item, body):
        if item.action == "update":
            body.pop("enabled", None)
        else:
            body["enabled"] = False
        return body

    def notes(self, run, item):
        if item.action in ("create", "ours", "update") and item.source.get("enabled") is True:
            return [(NOTE_ENABLE_AT_CUTOVER, item.target_name, False)]
        return []


NOTE_TRUNK_CREDENTIALS = "Trunks awaiting SIP credentials, to be entered by hand in the target"
NOTE_UNPUBLISHED_FLOWS = "Flows not published in the source, created as unpublished shells"
NOTE_AWAITING_PORTING = "IVR numbers awaiting porting (outside the target's DID pools)"
NOTE_NUMBER_HELD = "IVR numbers left off because another IVR of the target holds them"
NOTE_ENABLE_AT_CUTOVER = "Emergency groups created disabled: enable by hand at cutover"
NOTE_MISSING_ACTIONS = "Data actions the target lacks (create the integration and action by hand)"
NOTE_RING_CLAMPED = "Queue members whose ring number is beyond the target queue's rings, put on its last ring"
NOTE_GROUPS_DROPPED = "Queues copied without their group members (groups are not copied)"
NOTE_UNMATCHED_USERS = "Users with no email match in the target (their memberships, skills and languages are not copied)"
QUEUES_PATH = "/api/v2/routing/queues"
QUEUE_MEMBERS_PAGE = 100
QUEUE_MEMBERS_PER_CALL = 100
ADDED_MEMBER = {"ringNumber": 1, "joined": True}  # how the platform adds a member
USER_ROUTING_PAGE = 100
USER_ROUTING_PER_CALL = 50
PROMPT_TEXT_FIELDS = ("ttsString", "text")
NO_AUDIO = object()  # a resource that must have no audio at all
PROMPT_TRANSCODE_FIRST_LOOK_S = 0.2
TABLE_ROWS_PAGE = 500

CLONE_KINDS = (
    ObjectKind("divisions", "/api/v2/authorization/divisions", 100, 0, 9, ("name", "description"), division_field="",
               defaults=(("description", ""),), org_own=("homeDivision", True)),
    ObjectKind("skills", "/api/v2/routing/skills", 500, 1, 8, ("name",), division_field="divisionId", updatable=False,
               dependency="ACDSKILL"),
    ObjectKind("languages", "/api/v2/routing/languages", 100, 1, 8, ("name",), division_field="", updatable=False,
               dependency="ACDLANGUAGE"),
    ObjectKind("wrapupCodes", "/api/v2/routing/wrapupcodes", 100, 1, 8, ("name", "description"),
               dependency="ACDWRAPUPCODE"),
    ObjectKind("schedules", "/api/v2/architect/schedules", 100, 1, 7,
               ("name", "description", "start", "end", "rrule"), version="int"),
    ObjectKind("trunkBaseSettings", "/api/v2/telephony/providers/edges/trunkbasesettings", 100, 1, 8,
               ("name", "description", "trunkType", "trunkMetabase", "properties"), version="int",
               list_params=(("expand", "properties"),), skip_when=("managed", True),
               drop_properties=TRUNK_CREDENTIAL_PROPERTIES, hooks=TrunkCredentials()),
    ObjectKind("flows", "/api/v2/flows", 500, 1, 0, ("name", "description", "type"), match="name+type",
               updatable=False, dependency="FLOW", archy_content=True, hooks=FlowShells()),
    ObjectKind("prompts", "/api/v2/architect/prompts", 100, 1, 6, ("name", "description"), division_field="",
               dependency="USERPROMPT", name_chars="A-Za-z0-9_", name_pattern="[A-Za-z][A-Za-z0-9_]*",
               delete_params=(("allResources", "true"),),
               hooks=PromptResources()),
    ObjectKind("dataTables", "/api/v2/flows/datatables", 100, 1, 5, ("name", "description", "schema"),
               list_params=(("expand", "schema"),), dependency="DATATABLE", delete_params=(("force", "true"),),
               hooks=TableRows()),
    ObjectKind("scheduleGroups", "/api/v2/architect/schedulegroups", 100, 2, 4,
               ("name", "description", "timeZone", "openSchedules", "closedSchedules", "holidaySchedules"),
               version="int", dependency="SCHEDULEGROUP"),
    ObjectKind("queues", QUEUES_PATH, 500, 2, 3,
               ("name", "description", "mediaSettings", "routingRules", "acwSettings", "skillEvaluationMethod",
                "bullseye", "queueFlow", "emailInQueueFlow", "messageInQueueFlow", "whisperPrompt", "onHoldPrompt"),
               members="wrapupcodes", members_kind="wrapupCodes", dependency="QUEUE", hooks=QueueSettings()),
    ObjectKind("ivrs", "/api/v2/architect/ivrs", 100, 3, 2,
               ("name", "description", "dnis", "openHoursFlow", "closedHoursFlow", "holidayHoursFlow",
                "scheduleGroup"), version="int", string_lists=("dnis",), hooks=IvrNumbers()),
    ObjectKind("emergencyGroups", "/api/v2/architect/emergencygroups", 100, 4, 1,
               ("name", "description", "enabled", "emergencyCallFlows"), version="int", dependency="EMERGENCYGROUP",
               hooks=EmergencySwitch()),
    ObjectKind("users", "/api/v2/users", 500, -1, -1, (), match="email", creatable=False, updatable=False,
               dependency="USER", list_params=(("expand", "skills,languages"),), hooks=MatchedUsers()),
    ObjectKind("queueMembers", QUEUES_PATH, 100, 3, 2, (), relation_of="queues", hooks=QueueMembership()),
    ObjectKind("userSkills", "/api/v2/users", 100, 2, 2, (), relation_of="users",
               hooks=UserRouting("routingskills", "skills", "skills")),
    ObjectKind("userLanguages", "/api/v2/users", 100, 2, 2, (), relation_of="users",
               hooks=UserRouting("routinglanguages", "languages", "languages")),
    ObjectKind("dataActions", "/api/v2/integrations/actions", 100, -1, -1, (), match="category+name",
               creatable=False, updatable=False, dependency="DATAACTION"),
    ObjectKind("didPools", "/api/v2/telephony/providers/edges/didpools", 100, -1, -1, (), match="",
               creatable=False, updatable=False),
)
KINDS_BY_KEY = {kind.key: kind for kind in CLONE_KINDS}
KINDS_BY_DEPENDENCY = {kind.dependency: kind for kind in CLONE_KINDS if kind.dependency}
CLONABLE_KINDS = tuple(kind.key for kind in CLONE_KINDS if kind.creatable)
LISTED_KINDS = tuple(kind for kind in CLONE_KINDS if not kind.relation_of)
FLOW_CONTENT_LEVEL = 1 + max(kind.level for kind in CLONE_KINDS)


def match_key(kind, obj):
    if kind.match == "email":
        return (obj.get("email") or "").strip().lower() or None
    if kind.match == "name+type":
        return obj.get("name"), (obj.get("type") or "").upper()
    if kind.match == "category+name":
        return obj.get("category"), obj.get("name")
    return obj.get("name")


def prefixed_name(kind, prefix, name):
    """The name of a prefixed copy; where the kind's names allow only some characters (a prompt's are
    letters, digits and _), the prefix's others become _ (cmd_clone has checked that the result is a
    name the kind allows)."""
    if kind.name_chars:
        prefix = re.sub(f"[^{kind.name_chars}]", "_", prefix)
    return prefix + name


def dependency_kind(dependency_type):
    """The kind a consumed resource's type names (every flow type + FLOW is a flow), or None."""
    return KINDS_BY_DEPENDENCY.get("FLOW" if dependency_type.endswith("FLOW") else dependency_type)


def dependency_flow_type(dependency_type):
    """The flow type a dependency type names: INBOUNDCALLFLOW is an INBOUNDCALL flow; WORKFLOW stays."""
    return dependency_type if dependency_type == "WORKFLOW" else dependency_type[:-len("FLOW")]


def published_version(obj):
    """The id of a flow's published version, or None for a flow never published."""
    published = obj.get("publishedVersion")
    return str(published["id"]) if isinstance(published, dict) and published.get("id") else None


def number_in_pool(number, start, end):
    """Whether an E.164 number lies in a DID pool's range (inclusive; numbers of one length compare as
    integers)."""
    digits = [re.sub(r"\D", "", value) if isinstance(value, str) else "" for value in (number, start, end)]
    if not all(digits) or len({len(value) for value in digits}) != 1:
        return False
    return int(digits[1]) <= int(digits[0]) <= int(digits[2])


def path_segment(value):
    """A value as one segment of a URL path: percent-encoded, dots too, so that a key such as `..` can
    never turn into a dot segment that HTTP libraries resolve to another resource."""
    return urllib.parse.quote(value, safe="").replace(".", "%2E")


def audio_digest(resource):
    """The SHA-256 of a prompt resource's audio as its mediaUri serves it, or None where it has none."""
    if not resource.get("mediaUri"):
        return None
    return hashlib.sha256(download_bytes(resource["mediaUri"], "the target's audio")).hexdigest()


def download_bytes(url, describe):
    """The bytes a pre-signed URL serves (never with our token)."""
    response = PresignedTransfer().get(url)
    if response.status_code != 200:
        raise MigrateError(f"download of {describe} answered {response.status_code}. Run clone again.")
    return response.content


# How Archy YAML names the objects a flow uses (contract section 8): under these keys, `lit:` then
# `name: <name>`; or `name: <name>` directly; or the name as the key of a mapping.
ARCHY_LIT_NAMES = {"targetQueue": "queues", "queue": "queues", "skills": "skills", "languageSkill": "languages",
                   "defaultLanguageSkill": "languages", "scheduleGroup": "scheduleGroups",
                   "emergencyGroup": "emergencyGroups", "wrapupCode": "wrapupCodes"}
ARCHY_PLAIN_NAMES = {"targetFlow": "flows"}
ARCHY_KEY_NAMES = {"commonModule": ("flows", "COMMONMODULE"), "dataTable": ("dataTables", None)}
ARCHY_TEXT_KEYS = ("tts",)  # text to speak: what it says names nothing
ARCHY_PROMPT = re.compile(r"(?<![\w.])Prompt\.([A-Za-z][A-Za-z0-9_]*)")
YAML_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
                "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028",
                "P": "\u2029"}
YAML_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
YAML_LINE_BREAKS = "\n\r\x85\u2028\u2029"
PLAIN_SCALAR_END = re.compile(r"[ \t]+#|[ \t]*$")  # a plain scalar ends before a comment or the line's end


def yaml_printable(char):
    """Whether a single-quoted YAML scalar can hold the character as itself (YAML 1.1's printable set,
    less the line breaks a single-quoted scalar would fold)."""
    code = ord(char)
    return char not in YAML_LINE_BREAKS and (code == 9 or 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF
                                             or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF)


def yaml_quoted(name):
    """A name as a quoted YAML scalar: single-quoted, or double-quoted with escapes where it holds
    characters a single-quoted scalar cannot carry (a line break, a control character)."""
    if all(yaml_printable(char) for char in name):
        return "'" + name.replace("'", "''") + "'"
    escaped = []
    for char in name:
        if char in '"\\':
            escaped.append("\\" + char)
        elif yaml_printable(char):
            escaped.append(char)
        else:
            code = ord(char)
            escaped.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(escaped) + '"'


def yaml_scalar_end(line, start):
    """Where the scalar starting at `start` ends: a quoted one at its closing quote (None when it goes
    on to the next line), a plain one before a comment or the end of the line."""
    quote = line[start:start + 1]
    if quote == "'":
        at = start + 1
        while True:
            at = line.find("'", at)
            if at < 0:
                return None
            if line[at + 1:at + 2] != "'":
                return at + 1
            at += 2
    if quote == '"':
        at = start + 1
        while at < len(line):
            if line[at] == "\\":
                at += 2
            elif line[at] == '"':
                return at + 1
            else:
                at += 1
        return None
    return PLAIN_SCALAR_END.search(line, start).start()


def yaml_scalar_value(token):
    """The string a scalar token stands for ('...', "..." or plain)."""
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    if token.startswith('"'):
        def unescape(match):
            code = match.group(1)
            return chr(int(code[1:], 16)) if code[0] in "xuU" and len(code) > 1 else YAML_ESCAPES.get(code, code)
        return YAML_ESCAPE.sub(unescape, token[1:-1])
    return token


@dataclass
class YamlLine:
    """One entry of a flow document as the name scanner sees it: a key (and the span of its token), the
    key's ancestors, and its scalar value: the text it stands for and the (line, column) span it takes,
    which may run over several lines."""

    index: int
    column: int
    ancestors: tuple
    key: str = None
    key_span: tuple = None
    value: str = None
    value_start: tuple = None  # (line index, column)
    value_end: tuple = None  # (line index, column)


def yaml_folded(pieces):
    """A multi-line flow scalar's text: each line break between two lines of text becomes a space, each
    empty line a line break (YAML's line folding)."""
    text, pending_breaks = pieces[0].rstrip(" \t"), 0
    for piece in pieces[1:]:
        piece = piece.strip(" \t")
        if not piece:
            pending_breaks += 1
            continue
        text += ("\n" * pending_breaks if pending_breaks else " ") + piece
        pending_breaks = 0
    return text


def scan_flow_lines(lines):
    """The entries of a block-style YAML document, each with its ancestors' keys.  A scalar may run over
    several lines (a plain one continues on deeper lines; a quoted one to its closing quote); block
    scalars (`|`, `>`) are passed over as text."""
    stack, scanned, index = [], [], 0
    while index < len(lines):
        line = lines[index]
        content = line.lstrip(" ")
        indent = len(line) - len(content)
        if not content.strip() or content.startswith("#") or (indent == 0 and content.startswith(("---", "..."))):
            index += 1
            continue
        dashes = re.match(r"(?:-[ \t]+)*", content).end()
        column = indent + dashes
        rest = line[column:]
        while stack and (stack[-1][0] >= column if not dashes else stack[-1][0] > indent):
            stack.pop()
        key, value_column = None, column
        if rest[:1] in ("'", '"'):
            end = yaml_scalar_end(line, column)
            after = re.match(r"[ \t]*:(?=[ \t]|$)", line[end:]) if end is not None else None
            if after:
                key, key_end = yaml_scalar_value(line[column:end]), end
                value_column = end + after.end()
        elif rest[:1] not in ("{", "[", "#", "|", ">", "&", "*", "!", "%", "@", "`"):
            found = re.compile(r":(?=[ \t]|$)").search(line, column)
            if found and not re.search(r"[ \t]#", line[column:found.start()]):
                key = line[column:found.start()].rstrip()
                key_end = column + len(key)
                value_column = found.end()
        entry = YamlLine(index, column, tuple(name for _, name in stack))
        if key is not None:
            entry.key, entry.key_span = key, (column, key_end)
            value_column = len(line) - len(line[value_column:].lstrip(" \t"))
            value_column += re.match(r"(?:[&!]\S*[ \t]+)*", line[value_column:]).end()  # an anchor or a tag
        head = line[value_column:value_column + 1]
        index += 1
        if head in ("|", ">"):
            while index < len(lines) and (not lines[index].strip()
                                          or len(lines[index]) - len(lines[index].lstrip(" ")) > indent):
                index += 1
        elif head and head != "#":
            index = read_flow_scalar(lines, entry, value_column, indent)
        scanned.append(entry)
        if key is not None and entry.value is None and head not in ("|", ">"):
            stack.append((column, key))
    return scanned


def read_flow_scalar(lines, entry, start, parent_indent):
    """Reads the scalar that starts at (entry.index, start) into entry, over as many lines as it takes;
    answers the index of the line after it."""
    line = lines[entry.index]
    quote = line[start] if line[start] in "'\"" else ""
    end = yaml_scalar_end(line, start)
    pieces, index = [line[start:end if end is not None else len(line)]], entry.index + 1
    if quote and end is None:
        while index < len(lines):
            end = yaml_scalar_end(quote + lines[index], 0)
            index += 1
            if end is not None:
                pieces.append(lines[index - 1][:end - 1])
                break
            pieces.append(lines[index - 1])
        else:
            end = len(lines[-1]) + 1
        end -= 1
    elif not quote:
        while index < len(lines):
            ahead = next((later for later in lines[index:] if later.strip()), "")
            if len(ahead) - len(ahead.lstrip(" ")) <= parent_indent or ahead.lstrip().startswith("#"):
                break
            following = lines[index]
            piece_end = PLAIN_SCALAR_END.search(following, len(following) - len(following.lstrip(" "))).start()
            pieces.append(following[:piece_end])
            index += 1
            if piece_end < len(following.rstrip()):  # a comment ends a plain scalar
                break
        end = len(pieces[-1]) if len(pieces) > 1 else end
    last = entry.index + len(pieces) - 1
    entry.value_start, entry.value_end = (entry.index, start), (last, end)
    if len(pieces) == 1:
        entry.value = yaml_scalar_value(pieces[0])
    elif quote == "'":
        entry.value = yaml_folded([pieces[0][1:]] + pieces[1:-1] + [pieces[-1][:-1]]).replace("''", "'")
    elif quote == '"':
        entry.value = yaml_scalar_value('"' + yaml_folded([pieces[0][1:]] + pieces[1:-1] + [pieces[-1][:-1]]) + '"')
    else:
        entry.value = yaml_folded(pieces)
    return last + 1


def flow_name_slots(document):
    """Every place a flow document names an object: (start, end, kind key, name, detail), in order, with
    start and end as (line index, column).

    The kinds and forms are contract section 8's table; detail is the flow type a flow reference means,
    or a data action's category.  `name` at the first level (the flow's own) is reported as kind
    "self".  System prompts (PromptSystem.x), literals and TTS text name nothing."""
    lines = document.splitlines()
    flow_type = None
    slots = []
    for entry in scan_flow_lines(lines):
        ancestors, key, value = entry.ancestors, entry.key, entry.value
        parent = ancestors[-1] if ancestors else None
        value_slot = (entry.value_start, entry.value_end)
        key_slot = ((entry.index, entry.key_span[0]), (entry.index, entry.key_span[1])) if key is not None else None
        if not ancestors and key:
            flow_type = ARCHY_FLOW_TYPES.get(key.lower())
            continue
        if len(ancestors) == 1 and key in ("name", "division") and value is not None:
            kind = "self" if key == "name" else "divisions"
            if not (kind == "self" and any(slot[2] == "self" for slot in slots)):
                slots.append((*value_slot, kind, value, flow_type if kind == "self" else None))
            continue
        if key == "name" and value is not None and len(ancestors) >= 3 and parent == "lit" \
                and ancestors[-2] in ARCHY_LIT_NAMES:
            slots.append((*value_slot, ARCHY_LIT_NAMES[ancestors[-2]], value, None))
        elif key == "name" and value is not None and parent in ARCHY_PLAIN_NAMES and len(ancestors) >= 2:
            slots.append((*value_slot, ARCHY_PLAIN_NAMES[parent], value, flow_type))
        elif key is not None and len(ancestors) >= 2 and parent in ARCHY_KEY_NAMES:
            kind, detail = ARCHY_KEY_NAMES[parent]
            slots.append((*key_slot, kind, key, detail))
        elif key is not None and len(ancestors) >= 4 and parent == "dataAction" and ancestors[-3] == "category":
            slots.append((*key_slot, "dataActions", key, ancestors[-2]))
        elif value is not None and key not in ARCHY_TEXT_KEYS:
            (first, start), (last, end) = value_slot
            for index in range(first, last + 1):
                line = lines[index]
                for found in ARCHY_PROMPT.finditer(line, start if index == first else 0, end if index == last else len(line)):
                    slots.append(((index, found.start(1)), (index, found.end(1)), "prompts", found.group(1), None))
    return slots


def flow_document_identity(text):
    """(flow type, flow name) of an Archy document, read from its content: the top-level type key and
    the `name:` one level under it.  The file names inside an export zip are not documented."""
    own = next((slot for slot in flow_name_slots(text) if slot[2] == "self"), None)
    return (own[4], own[3]) if own and own[4] else None  # the flow's own slot carries its type


def flow_name_references(document):
    """Every object a flow document names, in order, as (kind key, name, detail)."""
    return [(kind, name, detail) for _, _, kind, name, detail in flow_name_slots(document) if kind != "self"]


def rewrite_flow_names(document, rename, own_name=None):
    """The document naming the target's objects: each name `rename(kind, name, detail)` changes is
    replaced, quoted; the flow's own name becomes `own_name`.  Every other byte is left as it was."""
    lines = document.splitlines(keepends=True)
    edits = []
    for start, end, kind, name, detail in flow_name_slots(document):
        if kind == "dataActions":
            continue
        new = own_name if kind == "self" else rename(kind, name, detail)
        if new is not None and new != name:
            edits.append((start, end, new if kind == "prompts" else yaml_quoted(new)))
    for (first, start), (last, end), text in sorted(edits, reverse=True):
        lines[first] = lines[first][:start] + text + lines[last][end:]
        lines[first + 1:last + 1] = [""] * (last - first)
    return "".join(lines)


def flow_export_documents(content, describe):
    """The YAML documents of a flow export download: the document itself for one flow, every text
    member of a zip for several (the zip recognised by its signature, not a header or a name; a member
    that is not UTF-8 text is no flow document, and one larger than any flow is refused unread)."""
    try:
        if content[:4] == b"PK\x03\x04":
            texts = []
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                for info in archive.infolist():
                    if info.file_size > FLOW_DOCUMENT_MAX_BYTES:
                        raise MigrateError(f"{describe} downloaded a zip whose member {info.filename!r} would unpack "
                                           f"to {info.file_size} bytes, more than any flow. Run clone again.")
                    if not info.is_dir():
                        with contextlib.suppress(UnicodeDecodeError):
                            texts.append(archive.read(info).decode("utf-8"))
        else:
            texts = [content.decode("utf-8")]
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as exc:
        raise MigrateError(f"{describe} downloaded something that is not YAML text or a zip of it ({exc}). "
                           f"Run clone again.") from None
    return [document for text in texts for document in re.split(r"(?m)^---[ \t]*\r?$\n?", text)
            if document.strip()]


def rewrite_uuids(value, id_map, unresolved):
    """Every UUID, in any field, is rewritten through the global id map (a UUID names one object)."""
    if isinstance(value, dict):
        return {key: rewrite_uuids(item, id_map, unresolved) for key, item in value.items()}
    if isinstance(value, list):
        return [rewrite_uuids(item, id_map, unresolved) for item in value]
    if isinstance(value, str) and UUID_RE.match(value):
        if value in id_map:
            return id_map[value]
        unresolved.add(value)
    return value


def as_references(value):
    """Reduces every nested {id, name, selfUri} to {id}: names and URIs are the source org's, ids get mapped."""
    if isinstance(value, dict):
        if "id" in value and set(value) <= {"id", "name", "selfUri"}:
            return {"id": value["id"]}
        return {key: as_references(item) for key, item in value.items() if key != "selfUri"}
    if isinstance(value, list):
        return [as_references(item) for item in value]
    return value


def updated_body(kind, current, copied):
    """The PUT body of an update: the object as the target holds it now, less its read-only fields, with
    the copied fields set.  Inside `properties` only the copied keys change, so what clone never copies
    (a trunk's SIP credentials) keeps the target's value."""
    if not isinstance(current, dict) or not current.get("id"):
        raise MigrateError(f"could not read {kind.key} {copied.get('name')!r} from the target before updating it.")
    if kind.drop_properties and not isinstance(current.get("properties"), dict):
        raise MigrateError(f"the target's {kind.key} {copied.get('name')!r} was read without its properties; not "
                           f"updating it, which would drop its credentials.")
    body = {name: value for name, value in current.items()
            if name not in CREATE_READ_ONLY_FIELDS or (name == "version" and kind.version)}
    if isinstance(body.get("division"), dict):
        body["division"] = {"id": body["division"].get("id")}
    for name, value in copied.items():
        if name == "properties" and isinstance(value, dict) and isinstance(body.get("properties"), dict):
            body["properties"] = {**body["properties"], **value}
        else:
            body[name] = value
    return body


def replaced_values(current, copied):
    """The values an update replaces ({field: value before}) and the fields it adds (absent before): what
    rollback puts back.  Inside `properties` only the keys clone copies count, so a trunk's SIP
    credentials are never recorded."""
    before, absent = {}, []
    for name, value in copied.items():
        old = current.get(name)
        if name not in current:
            absent.append(name)
        elif name == "properties" and isinstance(value, dict) and isinstance(old, dict):
            replaced = {key: old[key] for key in value if key in old and old[key] != value[key]}
            if replaced:
                before[name] = replaced
        elif old != value:  # even a reference written back shorter: rollback puts back what was there
            before[name] = old
    return before, absent


def flow_export_entry(flow):
    """A RegisterArchitectExportJob entry: the flow's published version, under its name."""
    ref = {"id": flow["id"]}
    if published_version(flow):
        ref["version"] = published_version(flow)
    return {"flow": ref, "fileName": flow.get("name") or flow["id"], "exportType": "Yaml"}


def flow_job_messages(state):
    """An Architect job's messages as one line."""
    messages = state.get("messages") if isinstance(state.get("messages"), list) else []
    return "; ".join(f"{m.get('type')}: {m.get('text')}" for m in messages if isinstance(m, dict))


def differences(sent, actual, path=""):
    """Fields of `sent` that `actual` does not hold the same (what the org answers may hold more)."""
    if isinstance(sent, dict):
        if not isinstance(actual, dict):
            return [path or "(object)"]
        return [diff for key, item in sent.items()
                for diff in differences(item, actual.get(key), f"{path}.{key}" if path else key)]
    if isinstance(sent, list):
        if not isinstance(actual, list) or len(actual) != len(sent):
            return [path]
        return [diff for index, (a, b) in enumerate(zip(sent, actual)) for diff in differences(a, b, f"{path}[{index}]")]
    return [] if sent == actual else [path]


@dataclass
class PlanItem:
    """What clone does with one source object."""

    kind: ObjectKind
    source: dict
    action: str  # create | reuse | update | ours | skip
    target_id: str = None
    target_name: str = None
    reason: str = ""
    target: dict = None
    desired: dict = None  # the settings sent, after mapping: what verify compares
    needs_content: bool = False  # a flow whose content must be imported and published
    members_wanted: list = None  # target ids of its member list (a queue's wrap-up codes)
    members_present: set = None  # the member list as the target last answered it
    copied: object = None  # what its hooks' sync copied (rows, resources), for verify
    left_out: bool = False  # planned, then left out for what it needs
    parent: object = None  # a relation's object: the queue of its members, the user of his skills
    changes: dict = None  # a relation's planned changes
    context: dict = None  # what its hooks learnt while planning, for notes
    touched: bool = False  # this run changed what it holds (codes, members): its stamp is taken again

    @property
    def label(self):
        return f"{self.kind.key[:-1] if self.kind.key.endswith('s') else self.kind.key} {self.source.get('name')!r}"


MANIFEST_ENTRY_FIELDS = (  # (field, types, required)
    ("name", (str,), True), ("targetId", (str, type(None)), True), ("state", (str,), True),
    ("type", (str, type(None)), False), ("sourceId", (str, type(None)), False),
    ("change", (str,), False), ("added", (list,), False), ("before", (dict,), False), ("after", (dict,), False),
    ("absent", (list,), False), ("stamp", (dict,), False),
)


def manifest_problem(data):
    """What is wrong with a manifest's shape, or None."""
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return "it has no list of entries"
    version = data.get("formatVersion", 1)
    if not is_int(version) or not 1 <= version <= MANIFEST_FORMAT_VERSION:
        return f"formatVersion is {version!r}, not 1 to {MANIFEST_FORMAT_VERSION}"
    for role in ("source", "target"):
        org = data.get(role)
        if org is not None and not (isinstance(org, dict) and isinstance(org.get("id"), str)):
            return f"its {role} is not an org with an id"
    for index, entry in enumerate(data["entries"]):
        if not isinstance(entry, dict):
            return f"entry {index} is not an object"
        kind = entry.get("kind")
        if not isinstance(kind, str) or kind not in KINDS_BY_KEY or not KINDS_BY_KEY[kind].creatable:
            return f"entry {index} has the kind {kind!r}"
        for name, types, required in MANIFEST_ENTRY_FIELDS:
            if required and name not in entry:
                return f"entry {index} has no {name}"
            if (required or name in entry) and not isinstance(entry.get(name), types):
                return f"entry {index} has a {name} of the wrong type"
        problem = change_problem(entry, KINDS_BY_KEY[kind]) if "change" in entry else None
        if problem:
            return f"entry {index} {problem}"
    return None


def is_proficiency(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 5


def is_member_state(value):
    return (isinstance(value, dict) and set(value) <= {"ringNumber", "joined"} and is_int(value.get("ringNumber", 1))
            and value.get("ringNumber", 1) >= 1 and isinstance(value.get("joined", True), bool))


# What the values of a change entry must be, by the change's name: (before, after).
CHANGE_VALUE_CHECKS = {
    "fields": (lambda value: True, lambda value: True),
    "members": (lambda value: False, is_member_state),
    "skills": (is_proficiency, is_proficiency),
    "languages": (is_proficiency, is_proficiency),
    "wrapupcodes": (lambda value: False, lambda value: False),
    "rows": (lambda value: isinstance(value, dict), lambda value: isinstance(value, dict)),
    "resources": (lambda value: isinstance(value, dict), lambda value: isinstance(value, dict)),
}


def change_problem(entry, kind):
    """What is wrong with a change entry (what rollback would set back), or None: a damaged one must
    stop rollback before it writes, not halfway."""
    allowed = {name for name in ("fields", kind.members, kind.hooks.change) if name}
    change = entry["change"]
    if change not in allowed or change not in CHANGE_VALUE_CHECKS:
        return f"records a change {change!r}, which {kind.key} does not have"
    if not isinstance(entry.get("targetId"), str) or not entry["targetId"]:
        return "records a change without a target id"
    for name, types in (("added", list), ("before", dict), ("after", dict), ("absent", list)):
        if not isinstance(entry.get(name), types):
            return f"records a change without its {name}"
    if not all(isinstance(value, str) for value in entry["added"] + entry["absent"]):
        return "records added values that are not ids"
    check_before, check_after = CHANGE_VALUE_CHECKS[change]
    if not all(check_before(value) for value in entry["before"].values()) \
            or not all(check_after(value) for value in entry["after"].values()):
        return f"records {change} values of the wrong shape"
    return None


class Manifest:
    """What this clone created, in order, so rollback can delete exactly that.

    An object is listed (state `creating`, by kind and name) before its POST
    leaves, and gets its id once created; a crash in between leaves an entry
    that rollback and the next clone resolve by name, since clone only ever
    creates a name the target did not have.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.data = {"formatVersion": MANIFEST_FORMAT_VERSION, "entries": []}
        self._mutex = threading.Lock()
        self._dirty_since = None
        self._changes = None  # (kind, change, target id) -> change entry, built when first needed

    def load(self, required=False):
        if self.path.exists():
            data = read_json_file(self.path, "rollback manifest")
            problem = manifest_problem(data)
            if problem:
                raise UsageError(f"{self.path} is not a rollback manifest written by migrate.py clone: {problem}. "
                                 f"Restore it from a backup, or use another --manifest-out.")
            self.data = data
        elif required:
            raise UsageError(f"rollback manifest {self.path} does not exist. Use --manifest with the file clone wrote.")
        return self

    @property
    def entries(self):
        return self.data["entries"]

    def bind(self, source, target):
        """A manifest lists what a clone from one source created in one target; another pair is refused.
        One written by the previous version (no source) is bound to this clone's source, with a warning."""
        recorded = self.data.get("target")
        if recorded and recorded.get("id") != target["id"]:
            raise UsageError(f"{self.path} lists objects of org {recorded.get('name')!r} ({recorded.get('id')}), "
                             f"not of the target {target['name']!r} ({target['id']}). Use another --manifest-out.")
        made_from = self.data.get("source")
        if made_from and made_from.get("id") != source["id"]:
            raise UsageError(f"{self.path} was made by a clone from {made_from.get('name')!r} ({made_from.get('id')}), "
                             f"not from the source {source['name']!r} ({source['id']}). Use another --manifest-out.")
        if not made_from and self.entries:
            log.warning("%s was written by an earlier migrate.py; it is now bound to the source org %r (%s).",
                        self.path, source["name"], source["id"])
        self.data.update(formatVersion=MANIFEST_FORMAT_VERSION, source=dict(source), target=dict(target))

    def ours(self, kind_key):
        """Target ids (or names still being created) this manifest owns, for one kind."""
        with self._mutex:
            return [entry for entry in self.entries if entry["kind"] == kind_key and not entry.get("change")]

    def intend(self, items):
        """Lists objects about to be created; one still `creating` from a run stopped before its POST left
        (nothing of that name exists) keeps its entry, so no object is ever listed twice."""
        with self._mutex:
            for item in items:
                if self._pending_entry(item) is None:
                    self.entries.append({"kind": item.kind.key, "name": item.target_name,
                                         "type": item.source.get("type"), "sourceId": item.source.get("id"),
                                         "targetId": None, "state": "creating"})
            self._write()

    def _pending_entry(self, item):
        for entry in reversed(self.entries):
            if (not entry.get("change") and entry["kind"] == item.kind.key and entry["name"] == item.target_name and entry["targetId"] is None
                    and entry.get("type") == item.source.get("type")):
                return entry
        return None

    def _change_entry(self, kind_key, change, target_id):
        if self._changes is None:
            self._changes = {(entry["kind"], entry["change"], entry["targetId"]): entry for entry in self.entries
                             if entry.get("change")}
        return self._changes.get((kind_key, change, target_id))

    def record_change(self, kind_key, change, target_id, name, *, added=(), before=None, after=None, absent=()):
        """Lists a change to an object clone did not create (or a relation of one it did), before the
        request that makes it leaves: what it adds, and the values it replaces.  A value recorded once
        is never replaced: a re-run, or a second update, keeps the first, which is what rollback restores."""
        self.record_changes([{"kind": kind_key, "change": change, "targetId": target_id, "name": name,
                              "added": added, "before": before, "after": after, "absent": absent}])

    def record_changes(self, changes):
        """record_change for many changes, in one write of the manifest."""
        if not changes:
            return
        with self._mutex:
            for change in changes:
                self._merge_change(change["kind"], change["change"], change["targetId"], change["name"],
                                   change.get("added") or (), change.get("before"), change.get("after"),
                                   change.get("absent") or ())
            self._write()

    def _merge_change(self, kind_key, change, target_id, name, added, before, after, absent):
        entry = self._change_entry(kind_key, change, target_id)
        if entry is None:
            entry = {"kind": kind_key, "change": change, "name": str(name), "targetId": target_id,
                     "state": "changing", "added": [], "before": {}, "after": {}, "absent": []}
            self.entries.append(entry)
            self._changes[(kind_key, change, target_id)] = entry
        for value in added:
            if value not in entry["added"] and value not in entry["before"]:
                entry["added"].append(value)
        for key, value in (before or {}).items():
            if key not in entry["before"] and key not in entry["added"] and key not in entry["absent"]:
                entry["before"][key] = value
        for key in absent:
            if key not in entry["before"] and key not in entry["absent"]:
                entry["absent"].append(key)
        entry["after"].update(after or {})
        entry["state"] = "changing"

    def added(self, kind_key, change, target_id):
        """What an earlier run recorded adding to one object (members clone put in a queue ...)."""
        with self._mutex:
            entry = self._change_entry(kind_key, change, target_id)
            return list(entry["added"]) if entry else []

    def record_done(self, kind_key, change, target_id):
        """The change was answered: its after-values are what the target holds."""
        with self._mutex:
            entry = self._change_entry(kind_key, change, target_id)
            if entry is not None:
                entry["state"] = "changed"
                self._dirty_since = self._dirty_since or time.monotonic()

    def keep_audio(self, prompt_id, language, audio):
        """Keeps audio an update replaces beside the manifest (`<manifest>.audio/`, private); answers its
        file name there."""
        folder = Path(f"{self.path}.audio")
        private_folder(folder)
        digest = hashlib.sha256(audio).hexdigest()[:16]  # by content: audio kept by another clone is another file
        name = f"{prompt_id}.{hashlib.sha256(language.encode()).hexdigest()[:12]}.{digest}.wav"
        if not (folder / name).exists():
            with WRITES.writing(), private_open(folder / f"{name}.part") as handle:
                handle.write(audio)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(folder / f"{name}.part", folder / name)
            fsync_directory(folder)
        return name

    def kept_audio(self, name):
        path = Path(f"{self.path}.audio") / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MigrateError(f"the audio clone kept in {path} cannot be read ({exc.strerror}); restore it from a "
                               f"backup and run rollback again.") from None

    def stamp(self, kind_key, target_id, obj):
        """What a created object looked like when clone last wrote it, so that rollback can tell whether
        someone changed it since."""
        with self._mutex:
            for entry in self.entries:
                if not entry.get("change") and entry["kind"] == kind_key and entry["targetId"] == target_id:
                    entry["stamp"] = {name: obj.get(name) for name in STAMP_FIELDS if name in obj}
                    self._dirty_since = self._dirty_since or time.monotonic()

    def forget(self, item):
        """Drops the entry of a create the org refused: nothing of that name was made by us."""
        with self._mutex:
            entry = self._pending_entry(item)
            if entry is not None:
                self.entries.remove(entry)
                self._write()

    def created(self, item, target_id):
        with self._mutex:
            entry = self._pending_entry(item)
            if entry is not None:
                entry.update(targetId=target_id, state="created")
            now = time.monotonic()
            self._dirty_since = self._dirty_since or now
            if now - self._dirty_since >= MANIFEST_FLUSH_S:
                self._write()

    def resolve(self, entry, target_id):
        with self._mutex:
            entry.update(targetId=target_id, state="created")
            self._dirty_since = self._dirty_since or time.monotonic()

    def remove(self, entry):
        """Drops an entry that is undone; written at most every MANIFEST_FLUSH_S (undoing it again after a
        crash finds it undone), and at the end by flush()."""
        with self._mutex:
            self.entries.remove(entry)
            if entry.get("change") and self._changes is not None:
                self._changes.pop((entry["kind"], entry["change"], entry["targetId"]), None)
            now = time.monotonic()
            self._dirty_since = self._dirty_since or now
            if now - self._dirty_since >= MANIFEST_FLUSH_S:
                self._write()

    def flush(self):
        with self._mutex:
            if self._dirty_since is not None:
                self._write()

    def _write(self):
        self._dirty_since = None
        write_json_atomically(self.path, self.data)


class CloneRun:
    """Extract, match, plan, apply level by level, verify, record."""

    def __init__(self, source, target, orgs, args, seed_mapping, manifest, progress):
        self.source, self.target, self.orgs, self.args = source, target, orgs, args
        self.poll = poll_settings(args)
        self.manifest, self.progress = manifest, progress
        self.kinds = [KINDS_BY_KEY[key] for key in args.kinds]
        self.time_zones = seed_mapping.time_zones
        self.seed_tables = seed_mapping.tables
        self.source_objects, self.target_objects, self.source_members = {}, {}, {}
        self._background = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="source")
        self.id_map = {}
        self.plan = []
        self.by_source_id = {}  # source id -> its plan item
        self._by_name = None  # (kind key, source name) -> plan items, built once the plan is
        self.flow_dependencies = {}  # source flow id -> what its published version consumes
        self.unresolved = []  # (item label, reasons)
        self.missing_actions = set()  # (category, name) of data actions the target lacks
        self.failures = []
        self.flow_content = {}
        self.verify_mismatches = []
        self.writes = 0
        self._lock = threading.Lock()

    # --- extract ---------------------------------------------------------------------

    def extract(self):
        """Every kind from both orgs, in parallel."""
        def listing(client, kind):
            return list(client.paginate(kind.path, kind.page_size, dict(kind.list_params)))

        with ThreadPoolExecutor(max_workers=self.args.workers, thread_name_prefix="extract") as pool:
            jobs = {(side, kind.key): pool.submit(listing, client, kind)
                    for side, client in (("source", self.source), ("target", self.target))
                    for kind in LISTED_KINDS}
            for (side, key), future in jobs.items():
                objects = future.result()
                for obj in objects:
                    wrong = [name for name in ("name", "type", "email", "category")
                             if not isinstance(obj.get(name), (str, type(None)))]
                    wrong += [name for name in KINDS_BY_KEY[key].string_lists if name in obj and not (
                        isinstance(obj[name], list) and all(isinstance(value, str) for value in obj[name]))]
                    if wrong:
                        raise MigrateError(f"the {side} org listed {key} {obj['id']} with a {wrong[0]} of the wrong "
                                           f"type. Run again later; if it persists, report it to Genesys support.")
                (self.source_objects if side == "source" else self.target_objects)[key] = objects
        counts = ", ".join(f"{len(self.source_objects[k.key])} {k.key}" for k in LISTED_KINDS if k.match)
        log.info("Extracted from the source: %s.", counts)

    def load_members_in_background(self):
        """The source's member lists (a queue's wrap-up codes) are needed only when queues are
        applied: they load meanwhile, on the source's own rate budget."""
        def listing(path):
            return list(self.source.paginate(path, 100))

        self.source_members = {obj["id"]: self._background.submit(listing, f"{kind.path}/{obj['id']}/{kind.members}")
                               for kind in self.kinds if kind.members for obj in self.source_objects[kind.key]}

    def close(self):
        self._background.shutdown(wait=False, cancel_futures=True)

    # --- match and plan --------------------------------------------------------------

    def build_plan(self):
        policy, prefix = self.args.on_conflict, self.args.prefix
        selected = {kind.key for kind in self.kinds}
        for kind in LISTED_KINDS:
            if not kind.match:
                continue
            ours = self._owned_ids(kind)
            existing = {}
            for obj in self.target_objects[kind.key]:
                existing.setdefault(match_key(kind, obj), obj)
            for source in self.source_objects[kind.key]:
                item = self._plan_one(kind, source, existing, ours, kind.key in selected, policy, prefix)
                self.plan.append(item)
                self.by_source_id[source["id"]] = item
                if item.target_id:
                    self.id_map[source["id"]] = item.target_id
        self.unresolved += [(item.label, [item.reason]) for item in self.plan if item.left_out]
        for item in self.plan:
            if item.action == "create":
                self.id_map.setdefault(item.source["id"], f"(new {item.kind.key})")
        for item in self.plan:
            if item.action in ("create", "update"):
                item.desired = self._desired(item, set())

    def plan_relations(self):
        """Once the objects are planned: the relations (members, skills, languages) of those that will be
        in the target, each read on both sides now, so the plan can say what will change."""
        for kind in self.kinds:
            if not kind.relation_of:
                continue
            items = [PlanItem(kind, parent.source, "relate", parent.target_id, parent.target_name, target=parent.target,
                              parent=parent)
                     for parent in self.plan if parent.kind.key == kind.relation_of
                     and parent.action in ("create", "reuse", "update", "ours")]
            kind.hooks.prepare(self, items)
            for item in items:
                if not item.changes and item.target_id:  # a change a stopped run made and could not mark
                    self.manifest.record_done(kind.key, kind.hooks.change, item.target_id)
            self.plan += items

    def _owned_ids(self, kind):
        """Ids this clone created before (its manifest), resolving entries left `creating` by name."""
        by_name = {}
        for obj in self.target_objects[kind.key]:
            by_name.setdefault((obj.get("name"), obj.get("type")) if kind.match == "name+type" else obj.get("name"), obj)
        owned = set()
        for entry in self.manifest.ours(kind.key):
            if entry["targetId"] is None:
                found = by_name.get((entry["name"], entry.get("type")) if kind.match == "name+type" else entry["name"])
                if found:
                    self.manifest.resolve(entry, found["id"])
            if entry["targetId"]:
                owned.add(entry["targetId"])
        return owned

    def _plan_one(self, kind, source, existing, ours, selected, policy, prefix):
        content = kind.archy_content and bool(published_version(source))
        seeded = self.seed_tables.get(kind.key, {}).get(source.get("id"))
        if seeded:
            mapped = next((obj for obj in self.target_objects[kind.key] if obj.get("id") == seeded), None)
            if mapped is None:
                return PlanItem(kind, source, "skip", reason=f"the input mapping maps it to {seeded}, which the "
                                                             f"target does not have", left_out=True)
            return PlanItem(kind, source, "reuse", seeded, mapped.get("name"), "mapped by the input mapping",
                            target=mapped)
        if kind.skip_when and source.get(kind.skip_when[0]) == kind.skip_when[1]:
            return PlanItem(kind, source, "skip", reason=f"{kind.skip_when[0]} objects are the platform's own")
        if kind.org_own and source.get(kind.org_own[0]) == kind.org_own[1]:
            own = next((obj for obj in self.target_objects[kind.key] if obj.get(kind.org_own[0]) == kind.org_own[1]),
                       None)
            if own:
                return PlanItem(kind, source, "reuse", own["id"], own.get("name"), f"the org's own ({kind.org_own[0]})")
        key = match_key(kind, source)
        found = existing.get(key)
        if not kind.creatable:
            if found:
                return PlanItem(kind, source, "reuse", found["id"], found.get("name"), f"matched by {kind.match}",
                                target=found)
            return PlanItem(kind, source, "skip", reason=f"no {kind.match} match in the target")
        if found and found["id"] in ours and selected:
            return PlanItem(kind, source, "ours", found["id"], found.get("name"), "created by an earlier clone",
                            target=found, needs_content=content and not published_version(found))
        if not selected:
            if found:
                return PlanItem(kind, source, "reuse", found["id"], found.get("name"), "kind not selected; matched by name",
                                target=found)
            return PlanItem(kind, source, "skip", reason="kind not selected and no object of that name in the target")
        if not found:
            return PlanItem(kind, source, "create", target_name=source.get("name"), needs_content=content)
        if policy == "reuse" or (policy == "update" and not kind.updatable):
            return PlanItem(kind, source, "reuse", found["id"], found.get("name"), "exists in the target", target=found)
        if policy == "update":
            return PlanItem(kind, source, "update", found["id"], found.get("name"), "exists; settings copied over it",
                            target=found)
        if policy == "prefix":
            renamed = prefixed_name(kind, prefix, source.get("name", ""))
            again = existing.get((renamed, key[1]) if kind.match == "name+type" else renamed)
            if again:
                return PlanItem(kind, source, "ours" if again["id"] in ours else "reuse", again["id"], renamed,
                                "prefixed copy exists", target=again,
                                needs_content=content and again["id"] in ours and not published_version(again))
            return PlanItem(kind, source, "create", target_name=renamed, reason=f"{source.get('name')!r} exists",
                            needs_content=content)
        return PlanItem(kind, source, "conflict", found["id"], found.get("name"), "exists in the target")

    def _desired(self, item, unresolved):
        """The settings to send for one object, ids rewritten; `unresolved` collects ids with no match."""
        kind, source = item.kind, item.source
        body = {name: as_references(source[name]) for name in kind.fields if name in source}
        body["name"] = item.target_name or source.get("name")
        if kind.drop_properties and isinstance(body.get("properties"), dict):
            body["properties"] = {key: value for key, value in body["properties"].items()
                                  if key not in kind.drop_properties}
        if "timeZone" in body:
            body["timeZone"] = self.time_zones.get(body["timeZone"], body["timeZone"])
        if kind.division_field and isinstance(source.get("division"), dict) and source["division"].get("id"):
            body["division"] = {"id": source["division"]["id"]}
        for name, value in kind.defaults:
            if body.get(name) is None:
                body[name] = value
        body = kind.hooks.shape(self, item, body)
        return rewrite_uuids(body, self.id_map, unresolved)

    def request_body(self, item, desired):
        body = dict(desired)
        if item.kind.division_field == "divisionId" and "division" in body:
            body["divisionId"] = body.pop("division")["id"]
        return body

    def conflicts(self):
        return [item for item in self.plan if item.action == "conflict"]

    def notes(self):
        """Work left for a person, by topic: [(text, needs attention)], in plan order."""
        topics = {}
        for item in self.plan:
            for topic, text, attention in item.kind.hooks.notes(self, item):
                topics.setdefault(topic, []).append((text, attention))
        for category, name in sorted(self.missing_actions):
            topics.setdefault(NOTE_MISSING_ACTIONS, []).append((f"{category} / {name}", True))
        return topics

    def plan_document(self):
        levels = sorted({kind.level for kind in CLONE_KINDS if kind.creatable})
        return {
            "source": self.orgs["source"], "target": self.orgs["target"],
            "onConflict": self.args.on_conflict, "kinds": [kind.key for kind in self.kinds],
            "order": [[kind.key for kind in CLONE_KINDS if kind.level == level and kind.creatable] for level in levels]
            + [["flow contents"]],
            "actions": [{"kind": item.kind.key, "sourceId": item.source.get("id"), "name": item.source.get("name"),
                         "action": item.action, "targetId": item.target_id, "targetName": item.target_name,
                         "reason": item.reason} for item in self.plan],
            "unresolved": [{"object": label, "reasons": reasons} for label, reasons in self.unresolved],
            "notes": {topic: [text for text, _ in lines] for topic, lines in self.notes().items()},
            "counts": self.summary_counts(),
            "changesToExisting": {key: {"changes": changes, "objects": objects}
                                  for key, (changes, objects) in self.changes_to_existing().items()},
            "idMap": {source_id: target_id for source_id, target_id in sorted(self.id_map.items())},
        }

    def summary_counts(self):
        counts = {}
        for item in self.plan:
            per_kind = counts.setdefault(item.kind.key, {})
            if item.kind.relation_of:
                changes = item.kind.hooks.count(item)
                per_kind["changes"] = per_kind.get("changes", 0) + changes
                per_kind[f"on {item.kind.relation_of}"] = per_kind.get(f"on {item.kind.relation_of}", 0) + bool(changes)
            else:
                per_kind[item.action] = per_kind.get(item.action, 0) + 1
        return counts

    def changes_to_existing(self):
        """What the run changes on objects the target already had, by kind: (changes, objects)."""
        totals = {}
        for item in self.plan:
            changes = item.kind.hooks.count(item) if item.kind.relation_of else 0
            if changes and item.parent.action not in ("create", "ours"):
                done = totals.setdefault(item.kind.key, [0, 0])
                done[0], done[1] = done[0] + changes, done[1] + 1
        return totals

    # --- flow content ------------------------------------------------------------------

    def read_flow_dependencies(self):
        """What each flow to publish consumes, typed, from Architect's dependency tracking of its
        published version in the source: known before anything is written."""
        flows = [item for item in self.plan if item.needs_content]

        def consumed(item):
            version = published_version(item.source)
            flow_type = (item.source.get("type") or "").upper()
            params = {"id": item.source["id"], "version": version,
                      "objectType": flow_type if flow_type.endswith("FLOW") else flow_type + "FLOW"}
            dependencies = list(self.source.paginate(CONSUMED_RESOURCES, 100, params))
            if not all(isinstance(dependency.get("type"), str) and isinstance(dependency.get("name"), str)
                       and isinstance(dependency.get("deleted", False), bool) for dependency in dependencies):
                raise MigrateError(f"the source's dependency tracking answered something for {item.label} that is "
                                   f"not a list of typed dependencies. Run again later; if it persists, report it "
                                   f"to Genesys support.")
            return dependencies

        with ThreadPoolExecutor(max_workers=self.args.workers, thread_name_prefix="dependencies") as pool:
            for item, future in [(item, pool.submit(consumed, item)) for item in flows]:
                self.flow_dependencies[item.source["id"]] = future.result()

    def export_flow_content(self):
        """Reads the YAML of every flow whose content must be published, through source export jobs of
        the published versions (the batches in parallel); each document is matched to its flow by its
        content (type and name)."""
        flows = [item for item in self.plan if item.needs_content and item.source["id"] not in self.flow_content]
        batches = [flows[start:start + FLOW_EXPORT_BATCH] for start in range(0, len(flows), FLOW_EXPORT_BATCH)]
        with ThreadPoolExecutor(max_workers=max(1, min(len(batches), self.args.workers)),
                                thread_name_prefix="export") as pool:
            unmatched = [item for future in [pool.submit(self._export_batch, batch) for batch in batches]
                         for item in future.result()]
        for item in unmatched:
            self.leave_out(item, ["its export holds no document of its type and name (an Archy type key this "
                                  "tool does not know?)"])

    def _export_batch(self, batch):
        job_id, done = self._export_flows(batch)
        describe = f"flow export job {job_id}"
        if not isinstance(done.get("downloadUrl"), str):
            raise MigrateError(f"{describe} succeeded without a downloadUrl. Run clone again.")
        content = download_bytes(done["downloadUrl"], describe)
        wanted = {((item.source.get("type") or "").upper(), item.source.get("name")): item for item in batch}
        for document in flow_export_documents(content, describe):
            item = wanted.pop(flow_document_identity(document), None)
            if item is not None:
                with self._lock:
                    self.flow_content[item.source["id"]] = document
        return list(wanted.values())

    def _export_flows(self, batch):
        """Registers an export job for a batch of flows and waits for it; a transient Failure (the platform
        fails jobs of flows that exist under load, 'exit code 107') registers it again after a pause."""
        body = {"flows": [flow_export_entry(item.source) for item in batch]}
        backoff = Backoff(self.poll.initial, 30.0, factor=2.0)
        for attempt in range(FLOW_EXPORT_RETRIES + 1):
            job = self.source.post(FLOW_EXPORT_JOBS, body)
            if not answer_id(job):
                raise MigrateError("the source org registered a flow export job but answered no id. Run clone again.")
            done = self._flow_job_state(self.source, f"{FLOW_EXPORT_JOBS}/{job['id']}?expand=messages",
                                        f"flow export job {job['id']} in the source")
            if done.get("status") == "Success":
                return job["id"], done
            messages = flow_job_messages(done)
            if FLOW_EXPORT_TRANSIENT in messages and attempt < FLOW_EXPORT_RETRIES:
                log.info("Flow export job %s failed as the platform does under load (%s); registering it again.",
                         job["id"], messages)
                STOP.sleep(backoff.next())
                continue
            names = ", ".join(repr(item.source.get("name")) for item in batch[:5]) + (" ..." if len(batch) > 5 else "")
            raise MigrateError(f"flow export job {job['id']} in the source for {names} failed"
                               f"{' again' if attempt else ''}: {messages or 'no message'}. Run clone again.")

    def target_name(self, kind_key, name, detail):
        """The name the target's object has, for an object the source's flow names: what the YAML must say."""
        kind = KINDS_BY_KEY.get(kind_key)
        for item in self._items_named(kind, name, detail):
            if item.target_name:
                return item.target_name
        return None

    def _items_named(self, kind, name, detail):
        if kind is None:
            return []
        if self._by_name is None:
            self._by_name = {}
            for item in self.plan:
                self._by_name.setdefault((item.kind.key, item.source.get("name")), []).append(item)
        return [item for item in self._by_name.get((kind.key, name), [])
                if kind.match != "name+type" or detail is None or (item.source.get("type") or "").upper() == detail]

    def flow_document(self, item):
        """The flow's YAML for the target: the names of the target's objects where they differ."""
        return rewrite_flow_names(self.flow_content[item.source["id"]], self.target_name, own_name=item.target_name)

    def _dependency_problem(self, dependency):
        """Why a consumed object cannot be named in the target, or None when it can."""
        kind_type = str(dependency.get("type") or "")
        name = dependency.get("name")
        if kind_type in EVERY_ORG_HAS:
            return None
        kind = dependency_kind(kind_type)
        if kind is None:
            return f"uses {kind_type} {name!r}, which clone neither copies nor can find in the target"
        if dependency.get("deleted") is True:
            return f"uses {kind_type} {name!r}, which was deleted in the source"
        item = self.by_source_id.get(dependency.get("id"))
        if kind.match == "category+name":
            if item is not None and item.action == "reuse":
                return None
            category = (item.source.get("category") if item else None) or "?"
            self.missing_actions.add((category, name))
            return f"uses data action {category} / {name}, which the target lacks"
        if item is not None and item.kind is kind:
            if item.action in ("create", "reuse", "update", "ours"):
                return None
            return f"uses {item.label}, which is " + (f"left out: {item.reason}" if item.left_out
                                                      else f"not copied ({item.reason})")
        key = (name, dependency_flow_type(kind_type)) if kind.match == "name+type" else name
        if any(match_key(kind, obj) == key for obj in self.target_objects[kind.key]):
            return None
        return f"uses {kind_type} {name!r}, which is neither in the source's lists nor in the target"

    def _division_problem(self, item):
        """The YAML's division must exist in the target by name (or be created by this clone)."""
        named = next((name for kind, name, _ in flow_name_references(self.flow_content[item.source["id"]])
                      if kind == "divisions"), None)
        if named is None or self.target_name("divisions", named, None):
            return None
        if any(obj.get("name") == named for obj in self.target_objects["divisions"]):
            return None
        return f"its division {named!r} is not in the target (use --create-divisions to create it)"

    def _describe_id(self, source_id):
        item = self.by_source_id.get(source_id)
        return f"{item.label} ({source_id})" if item else source_id

    def _names_out_of_reach(self, item):
        """A consumed object whose name must change in the YAML but which the document names in a form
        this tool does not rewrite (flow style, say): publishing it would fail, so it is not tried."""
        named = {(kind, name) for kind, name, _ in flow_name_references(self.flow_content[item.source["id"]])}
        problems = []
        for dependency in self.flow_dependencies.get(item.source["id"], []):
            kind_type = str(dependency.get("type") or "")
            kind = dependency_kind(kind_type)
            name = dependency.get("name")
            if kind is None or not kind.creatable or (kind.key, name) in named:
                continue
            renamed = self.target_name(kind.key, name, dependency_flow_type(kind_type) if kind.archy_content else None)
            if renamed and renamed != name:
                problems.append(f"names {kind_type} {name!r} in a form clone cannot rewrite to {renamed!r}")
        return problems

    def check_unresolved(self):
        """Before any write: objects whose settings name ids with no match, and flows that use an object
        the target will not have under a known name, are left out; and so, in turn, is everything that
        needs those."""
        changed = True
        while changed:
            changed = False
            planned = {item.source["id"] for item in self.plan if item.action == "create"}
            for item in self.plan:
                if item.action not in ("create", "update") and not item.needs_content:
                    continue
                reasons = []
                if item.action in ("create", "update"):
                    missing = set()
                    self._desired(item, missing)
                    if missing - planned:
                        reasons.append("refers to " + ", ".join(sorted(map(self._describe_id, missing - planned)))
                                       + ", with no match in the target")
                if item.needs_content:
                    reasons += [problem for problem in map(self._dependency_problem,
                                                           self.flow_dependencies.get(item.source["id"], []))
                                if problem]
                    if item.source["id"] in self.flow_content:
                        reasons += [problem for problem in [self._division_problem(item)] if problem]
                        reasons += self._names_out_of_reach(item)
                if reasons:
                    self.leave_out(item, reasons)
                    changed = True

    def leave_out(self, item, reasons):
        """Plans an object as not copied, for what it needs; what needs it in turn follows."""
        self.unresolved.append((item.label, reasons))
        item.reason, item.left_out = reasons[0], True
        if item.action == "create":
            self.id_map.pop(item.source["id"], None)
        item.action, item.needs_content = "skip", False

    # --- apply -------------------------------------------------------------------------

    def apply(self):
        for level in sorted({kind.level for kind in CLONE_KINDS if kind.creatable}):
            items = [item for item in self.plan if item.kind.level == level
                     and (item.action in ("create", "update") or (item.action == "relate" and item.changes))]
            items += [item for item in self.plan if item.kind.level == level and item.action == "ours"
                      and (item.kind.members or item.kind.hooks.syncs)]
            self.manifest.intend([item for item in items if item.action == "create"])
            self.manifest.record_changes([change for change in (item.kind.hooks.pending_change(self, item)
                                                                for item in items) if change])
            if items:
                log.info("Applying level %d: %d objects (%s).", level, len(items),
                         ", ".join(sorted({item.kind.key for item in items})))
            self._run_parallel(self._apply_one, items)
            self.manifest.flush()
            if self.failures:
                return
        flows = [item for item in self.plan if item.needs_content]
        if flows:
            log.info("Publishing the content of %d flows.", len(flows))
        self._run_parallel(self._publish_flow, flows)

    def _run_parallel(self, work, items):
        if not items:
            return
        with ThreadPoolExecutor(max_workers=self.args.workers, thread_name_prefix="clone") as pool:
            for item, future in [(item, pool.submit(work, item)) for item in items]:
                exc = future.exception()
                if isinstance(exc, Stopped):
                    continue
                if exc is not None:
                    if not isinstance(exc, MigrateError):
                        exc = MigrateError(f"{item.label}: {exc!r}")
                    with self._lock:
                        self.failures.append(f"{item.label}: {exc}")
        STOP.check()

    def in_parallel(self, work, arguments, describe):
        """Runs work(*each) for many small writes of one object (a table's rows) on the workers; the
        governor paces them.  The first failure is raised once all have ended."""
        if not arguments:
            return
        with ThreadPoolExecutor(max_workers=self.args.workers, thread_name_prefix="rows") as pool:
            futures = [pool.submit(work, *each) for each in arguments]
            errors = [future.exception() for future in futures if future.exception() is not None]
        STOP.check()
        if errors:
            raise MigrateError(f"{describe}: {len(errors)} of {len(arguments)} writes failed, the first: {errors[0]}")

    def _apply_one(self, item):
        kind = item.kind
        if item.action == "create":
            item.desired = self._desired(item, set())
            retried = []
            try:
                created = self.target.request("POST", kind.path, body=self.request_body(item, item.desired),
                                              on_retry=retried.append) or {}
            except ApiError as exc:
                created = self._find_by_name(item) if exc.status == 409 and retried else None
                if not created:  # a 409 without a retry is someone else's object: never adopt it
                    if not exc.transient:
                        self.manifest.forget(item)
                    raise
            self.wrote()
            item.target_id, item.target = created["id"], created
            with self._lock:
                self.id_map[item.source["id"]] = created["id"]
            self.manifest.created(item, created["id"])
        elif item.action == "update":
            item.desired = self._desired(item, set())
            if not differences(item.desired, item.target):
                self.manifest.record_done(kind.key, "fields", item.target_id)
            else:
                current = self.target.get(f"{kind.path}/{item.target_id}", params=dict(kind.list_params) or None) or {}
                copied = self.request_body(item, item.desired)
                body = updated_body(kind, current, copied)
                before, absent = replaced_values(current, {name: value for name, value in copied.items()
                                                           if name not in kind.hooks.kept_on_undo})
                self.manifest.record_change(kind.key, "fields", item.target_id, item.target_name, before=before,
                                            absent=absent, after={name: copied[name] for name in list(before) + absent})
                self.target.request("PUT", f"{kind.path}/{item.target_id}", body=body)
                self.manifest.record_done(kind.key, "fields", item.target_id)
                self.wrote()
        if kind.members and item.action in ("create", "update", "ours"):
            self._sync_members(item)
        if item.action in ("create", "update", "ours", "relate"):
            kind.hooks.sync(self, item)
        self.progress.show(f"clone: {self.writes} writes")

    def _find_by_name(self, item):
        for obj in self.target.paginate(item.kind.path, item.kind.page_size, {"name": item.target_name}):
            if obj.get("name") == item.target_name and (item.kind.match != "name+type"
                                                        or obj.get("type") == item.source.get("type")):
                return obj
        return None

    def _sync_members(self, item):
        """Adds the source's member list (a queue's wrap-up codes) that the target lacks.

        The POST answers the whole list as it now stands, which is what verify compares.
        """
        kind = item.kind
        members = self.source_members[item.source["id"]].result() if item.source["id"] in self.source_members else []
        wanted = [self.id_map.get(member["id"]) for member in members]
        item.members_wanted = [member for member in wanted if member and not member.startswith("(")]
        path = f"{kind.path}/{item.target_id}/{kind.members}"
        present = set() if item.action == "create" else {member["id"] for member in self.target.paginate(path, 100)}
        missing = [member for member in item.members_wanted if member not in present]
        if not missing:
            self.manifest.record_done(kind.key, kind.members, item.target_id)
        else:
            self.manifest.record_change(kind.key, kind.members, item.target_id, item.target_name, added=missing)
        for start in range(0, len(missing), 100):
            answer = self.target.post(path, [{"id": member} for member in missing[start:start + 100]]) or []
            present |= {member.get("id") for member in answer if isinstance(member, dict)}
            self.wrote()
        if missing:
            self.manifest.record_done(kind.key, kind.members, item.target_id)
            item.touched = True
        item.members_present = present

    def _publish_flow(self, item):
        """Fills the target's flow shell with the source's content and publishes it, through an import job."""
        document = self.flow_document(item)
        job = self.target.post(FLOW_IMPORT_JOBS, {}) or {}
        if not answer_id(job) or not isinstance(job.get("presignedUrl"), str):
            raise MigrateError("the target registered a flow import job without an id or upload URL. Run clone again.")
        self.wrote()
        upload = PresignedTransfer().put(job["presignedUrl"], document.encode("utf-8"), job.get("headers") or {})
        if upload.status_code >= 300:
            raise MigrateError(f"upload of the flow's content answered {upload.status_code}")
        self._wait_flow_job(self.target, f"{FLOW_IMPORT_JOBS}/{job['id']}?expand=messages", f"flow import job {job['id']}")

    def _flow_job_state(self, client, path, describe):
        """Polls an Architect job to its end and answers its final state."""
        state, _, _ = poll_job(client, path, finished=lambda state: state.get("status") in FLOW_JOB_DONE,
                               first_delay=self.poll.initial, then_delay=self.poll.initial, cap=self.poll.cap,
                               deadline=time.monotonic() + self.poll.deadline_s, describe=describe)
        return state

    def _wait_flow_job(self, client, path, describe):
        """Polls an Architect job to its end; a Failure is an error carrying the job's messages."""
        state = self._flow_job_state(client, path, describe)
        if state.get("status") != "Success":
            raise MigrateError(f"{describe} failed: {flow_job_messages(state) or 'no message'}")
        return state

    def wrote(self):
        with self._lock:
            self.writes += 1

    # --- verify ------------------------------------------------------------------------

    def verify(self):
        """Re-reads what was written (by list pages, not one GET per object) and compares what was sent;
        member lists are checked against the platform's answer to the POST that set them, and what a
        kind's hooks copied (rows, audio) by the hooks themselves."""
        written = [item for item in self.plan if item.action in ("create", "update") and item.target_id]
        synced = [item for item in self.plan if item.action in ("create", "update", "ours", "relate")
                  and item.copied is not None]
        published = [item for item in self.plan if item.needs_content]
        stamped = [item for item in self.plan if item.target_id and (item.action == "create" or (
            item.action == "ours" and (item.copied is not None or item.needs_content or item.touched)))]
        kinds = {item.kind.key: item.kind for item in written + published + stamped}
        fresh = {}
        with ThreadPoolExecutor(max_workers=self.args.workers, thread_name_prefix="verify") as pool:
            lists = {key: pool.submit(lambda k: list(self.target.paginate(k.path, k.page_size, dict(k.list_params))),
                                      kind) for key, kind in kinds.items()}
            hooked = [(item, pool.submit(item.kind.hooks.verify, self, item)) for item in synced]
            for key, future in lists.items():
                fresh[key] = {obj["id"]: obj for obj in future.result()}
            for item, future in hooked:
                self.verify_mismatches += [f"{item.label}: {problem}" for problem in future.result()]
        for item in written:
            actual = fresh[item.kind.key].get(item.target_id)
            if actual is None:
                self.verify_mismatches.append(f"{item.label}: not found in the target")
                continue
            for path in differences(item.desired, actual):
                self.verify_mismatches.append(f"{item.label}: {path} differs")
            if item.kind.members and not set(item.members_wanted or []) <= (item.members_present or set()):
                self.verify_mismatches.append(f"{item.label}: {item.kind.members} list incomplete")
        for item in published:
            target_id = item.target_id or self.id_map.get(item.source["id"])
            if not (fresh["flows"].get(target_id) or {}).get("publishedVersion"):
                self.verify_mismatches.append(f"{item.label}: not published")
        for item in stamped:
            if item.target_id in fresh[item.kind.key]:
                self.manifest.stamp(item.kind.key, item.target_id, fresh[item.kind.key][item.target_id])
        self.manifest.flush()

    # --- record ------------------------------------------------------------------------

    def mapping(self, seed_mapping):
        tables = {key: {} for key in MAPPING_KINDS}
        for item in self.plan:
            target_id = self.id_map.get(item.source.get("id"))
            if item.kind.key in tables and target_id and not target_id.startswith("("):
                tables[item.kind.key][item.source["id"]] = target_id
        return Mapping(tables, seed_mapping.fallbacks, seed_mapping.time_zones)


# ---------------------------------------------------------------------------
# Rollback: delete exactly what a clone created
# ---------------------------------------------------------------------------


def current_holds(current, values):
    """Whether an object holds these values, as the org answers it (a reference it answers with its name
    and URI too, a dict with more keys: what was set is what counts)."""
    return not differences(values, current)


class Rollback:
    """Takes back what a clone did, from its manifest: first the changes to objects the target had (their
    fields set back, what was added to them removed), so no updated object still uses a created one; then
    the created objects, deleted in reverse dependency order.  An object someone else changed since is
    left alone and reported (unless --force), its entry kept."""

    def __init__(self, client, manifest, workers, force, progress):
        self.client, self.manifest, self.workers, self.force, self.progress = client, manifest, workers, force, progress
        self.deleted, self.gone, self.restored, self.skipped, self.failures = [], [], [], [], []
        self._lock = threading.Lock()

    def run(self):
        created = {entry["targetId"] for entry in self.manifest.entries if not entry.get("change")}
        changes = [entry for entry in self.manifest.entries if entry.get("change")]
        fields = [entry for entry in changes if entry["change"] == "fields"]
        relations = [entry for entry in changes if entry["change"] != "fields" and entry["targetId"] not in created]
        self._parallel(self._undo_fields, fields)
        if not self.failures:
            self._parallel(self._undo_relation, relations)
        if not self.failures:
            self._delete_created()
        self.progress.done()

    def _parallel(self, work, entries):
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rollback") as pool:
            futures = [(entry, pool.submit(work, entry)) for entry in entries]
            for entry, future in futures:
                exc = future.exception()
                if exc is not None and not isinstance(exc, Stopped):
                    self.failures.append(f"{entry['kind']} {entry['name']!r} ({entry.get('targetId')}): {exc}")
        STOP.check()

    def _skip(self, entry, why):
        with self._lock:
            self.skipped.append(f"{entry['kind']} {entry['name']!r} ({entry['targetId']}): {why}")

    def _undo_fields(self, entry):
        kind = KINDS_BY_KEY[entry["kind"]]
        path = f"{kind.path}/{entry['targetId']}"
        try:
            current = self.client.get(path, params=dict(kind.list_params) or None) or {}
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.manifest.remove(entry)
            return
        if current_holds(current, entry["before"]) and not any(name in current for name in entry["absent"]):
            self._done(entry, self.restored)  # undone by a run stopped before it could say so
            return
        if not current_holds(current, entry["after"]) and not self.force:
            self._skip(entry, "its settings were changed after the clone")
            return
        body = updated_body(kind, current, entry["before"])
        for name in entry["absent"]:
            body.pop(name, None)
        self.client.request("PUT", path, body=kind.hooks.writable(body))
        self._done(entry, self.restored)

    def _undo_relation(self, entry):
        kind = KINDS_BY_KEY[entry["kind"]]
        try:
            why = kind.hooks.undo(self.client, kind, entry, self.force, self.manifest)
        except ApiError as exc:
            if exc.status != 404:
                raise
            why = None  # the object is gone, and what clone added to it with it
        if why:
            self._skip(entry, why)
            return
        self._done(entry, self.restored)

    def _done(self, entry, outcome):
        self.manifest.remove(entry)
        with self._lock:
            outcome.append(entry)
        self.progress.show(f"rollback: {len(self.restored)} restored, {len(self.deleted)} deleted")

    def _changed_since(self, entry, kind, listed):
        """Why a created object must be left alone, or None: its stamp differs from what clone last saw,
        or it holds members or codes clone did not add."""
        if self.force or not entry.get("targetId"):
            return None
        current = listed.get(entry["targetId"])
        if current is None:
            return None  # gone already: its DELETE answers 404
        stamp = entry.get("stamp") or {}
        recorded = [change for change in self.manifest.entries
                    if change.get("change") and change["targetId"] == entry["targetId"]]
        if not stamp and not recorded:
            return None  # listed by an earlier version, or by a run stopped before verify: nothing to compare
        if any(current.get(name) != value for name, value in stamp.items()):
            return "it was changed after the clone (" + ", ".join(
                name for name, value in stamp.items() if current.get(name) != value) + " differs)"
        lists = [(other, other.key) for other in CLONE_KINDS if other.relation_of == kind.key]
        lists += [(kind, kind.key)] if kind.members else []
        for holder, key in lists:
            recorded = next((change for change in self.manifest.entries if change.get("change") and change["kind"] == key
                             and change["targetId"] == entry["targetId"] and change["change"] != "fields"),
                            {"targetId": entry["targetId"], "added": [], "after": {}})
            extra = holder.hooks.extras(self.client, holder, recorded)
            if extra:
                return f"it holds {len(extra)} {holder.members or holder.key} clone did not add, e.g. {extra[0]}"
        return None

    def _delete_created(self):
        by_rank = {}
        for entry in self.manifest.entries:
            if not entry.get("change"):
                by_rank.setdefault(KINDS_BY_KEY[entry["kind"]].delete_rank, []).append(entry)
        for rank in sorted(by_rank):
            kinds = {KINDS_BY_KEY[entry["kind"]] for entry in by_rank[rank]}
            listed = {obj["id"]: obj for kind in kinds if not self.force
                      for obj in self.client.paginate(kind.path, kind.page_size, dict(kind.list_params))}
            self._parallel(lambda entry: self._delete(entry, listed), by_rank[rank])
            if self.failures:
                return

    def _delete(self, entry, listed):
        kind = KINDS_BY_KEY[entry["kind"]]
        if not entry.get("targetId"):
            found = next((obj for obj in self.client.paginate(kind.path, kind.page_size, {"name": entry["name"]})
                          if obj.get("name") == entry["name"] and obj.get("type") == entry.get("type", obj.get("type"))),
                         None)
            if not found:
                self._done(entry, self.gone)
                return
            entry["targetId"] = found["id"]
        why = self._changed_since(entry, kind, listed)
        if why:
            self._skip(entry, why)
            return
        try:
            self.client.request("DELETE", f"{kind.path}/{entry['targetId']}", params=dict(kind.delete_params) or None)
            outcome = self.deleted
        except ApiError as exc:
            if exc.status == 409 and self.skipped:
                self._skip(entry, "still in use, by an object left alone (see above)")
                return
            if exc.status != 404:
                raise
            outcome = self.gone
        for change in [change for change in self.manifest.entries
                       if change.get("change") and change["targetId"] == entry["targetId"]]:
            self.manifest.remove(change)  # what clone added to it went with it
        self._done(entry, outcome)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def confirm_write(args, org, what):
    """Writes to an org need a yes: --yes, or an answer typed at a terminal."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"not writing to the {org.get('name')!r} org without confirmation: standard input is not "
                         f"a terminal. Use --yes to confirm (as cron jobs must).")
    sys.stderr.write(f"{what} Proceed? [y/N] ")
    sys.stderr.flush()
    STOP.prompting = True  # a signal at the prompt stops at once: nothing is in flight
    try:
        answer = sys.stdin.readline()
    finally:
        STOP.prompting = False
    STOP.check()
    if answer.strip().lower() not in ("y", "yes"):
        raise MigrateError("cancelled at the prompt; nothing was written.")


def describe_org(label, org, client):
    return f"{label} org: {org.get('name')} (id {org.get('id')}) at {client.auth.api_url}"


def make_client(label, args):
    return ApiClient(org_settings(label, args), workers=args.workers, max_rps=args.max_rps,
                     status_rps=args.max_status_rps)


HELD_STATES = []  # states whose lock this process holds, for a stopping main thread to release


@contextlib.contextmanager
def locked_state(path):
    """Holds the state's lock for a run.  A stopping run closes the write gate on the way out, before
    the lock goes, so a worker still unwinding never writes the state (or the manifest) once another
    run may hold the lock; a run that ends normally has joined its workers already."""
    state = StateFile(path)
    state.acquire_lock()
    HELD_STATES.append(state)
    try:
        yield state.load()
    finally:
        if STOP.requested:
            WRITES.close()
        state.release_lock()
        HELD_STATES.remove(state)


def poll_settings(args):
    return PollSettings(initial=args.poll_initial, cap=args.poll_max, deadline_s=args.poll_deadline)


def parse_types(text):
    types = [item.strip().lower() for item in (text or "").split(",") if item.strip()]
    unknown = [item for item in types if item not in INTERACTION_TYPES]
    if unknown or not types:
        raise UsageError(f"--types {text!r}: use a comma-separated list of {', '.join(INTERACTION_TYPES)}.")
    return types


def cmd_export(args):
    types = parse_types(args.types)
    if args.incremental and args.end:
        raise UsageError("--end does not go with --incremental, whose window ends at now minus --lag.")
    if not args.incremental:
        if not (args.start and args.end):
            raise UsageError("export needs a window: use --start and --end (ISO-8601, UTC), or --incremental.")
        window = ExportWindow(parse_time(args.start, "--start"), parse_time(args.end, "--end"))
        if window.end <= window.start:
            raise UsageError("--end must be later than --start (the window is [start, end)).")
    client = make_client("source", args)
    progress = Progress(not args.quiet and args.log_format == "text")
    with locked_state(args.state) as state:
        org = organization(client)
        state.bind("source", org)
        log.info(describe_org("Source", org, client))
        pace_to_org_limit(client, args.max_rps)
        if args.incremental:
            ceiling = None
            if args.api == "analytics":
                available = (client.get(f"{ANALYTICS_JOBS}/availability") or {}).get("dataAvailabilityDate")
                ceiling = parse_time(available, "dataAvailabilityDate") if available else None
            window = incremental_window(state, args, ceiling)
            if window is None:
                log.info("Nothing to export yet: the last export ended less than --lag ago"
                         + (" (or after the data availability date)." if args.api == "analytics" else "."))
                return EXIT_OK
        started = time.monotonic()
        if args.api == "analytics":
            exporter = AnalyticsExporter(client, state, args.out, types, poll_settings(args), progress,
                                         args.job_interval)
        else:
            exporter = Exporter(client, state, args.out, types, poll_settings(args), progress)
        result = exporter.run(window, org)
        if args.incremental:
            finish_incremental(state, window)
    log.info("Export finished: %s, %d records, %.1f s, %d requests, %d throttled (429).", result["file"],
             result["records"], time.monotonic() - started, client.request_count, client.governor.throttled,
             extra={"fields": {"file": result["file"], "records": result["records"],
                               "throttled": client.governor.throttled}})
    return EXIT_OK


def export_source_org(path):
    """The source org id an export's .meta.json records, or None (a missing or odd file tells nothing)."""
    name = path.name
    stem = name[: -len(".json.gz")] if name.endswith(".json.gz") else path.stem
    meta = path.with_name(f"{stem}.meta.json")
    try:
        document = json.loads(meta.read_bytes().decode("utf-8"))
    except (ValueError, OSError, RecursionError):
        return None
    org = document.get("sourceOrg") if isinstance(document, dict) else None
    org_id = org.get("id") if isinstance(org, dict) else None
    return org_id if isinstance(org_id, str) else None


def check_unmapped(scan, policy, mapping, report_path):
    """Stops before any write when references cannot be resolved the way --unmapped asks."""
    if not scan.counts:
        return
    write_unmapped_report(report_path, scan, policy)
    per_kind = {}
    for (kind, _), _count in scan.counts.items():
        per_kind[kind] = per_kind.get(kind, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(per_kind.items()))
    log.warning("Unmapped references: %s, in %d of %d records; report: %s",
                summary, scan.affected_records, scan.records, report_path)
    if policy == "fail":
        raise MigrateError(f"{len(scan.counts)} source ids ({summary}) have no entry in the mapping; nothing was "
                           f"sent. Add them to the mapping (see {report_path}), or use --unmapped fallback or skip.")
    if policy == "fallback":
        missing = [kind for kind in scan.kinds() if kind not in mapping.fallbacks]
        if missing:
            raise MigrateError(f"--unmapped fallback needs a fallback for {', '.join(missing)}; the mapping's "
                               f"'fallbacks' has none. Add one per kind, or use --unmapped skip. Report: {report_path}")


def import_summary(stats, files, client, elapsed):
    rate = stats.records_sent / elapsed if elapsed > 0 else 0.0
    fields = {**stats.__dict__, "files": files, "elapsed_s": round(elapsed, 2), "records_per_s": round(rate, 1)}
    if client:
        fields["throttled"] = client.governor.throttled
        fields["requests"] = client.request_count
    log.info("Import %s: %d files; records %d read, %d sent, %d skipped, %d already imported; chunks %d done, "
             "%d resumed, %d confirmed, %d split; %d jobs; %d throttled (429); %.1f s; %.0f records/s.",
             "summary", files, stats.records_read, stats.records_sent, stats.records_skipped, stats.records_already,
             stats.chunks_done, stats.chunks_resumed, stats.chunks_confirmed, stats.chunks_split, stats.jobs,
             fields.get("throttled", 0), elapsed, rate, extra={"fields": fields})


def dry_run_import(args, files, mapping, scan):
    """Writes what would be sent, chunk by chunk, and talks to no org."""
    out = Path(args.dry_run_out)
    private_folder(out)
    for old in out.glob("chunk-*.json"):
        old.unlink()
    stats = ImportStats()
    chunks = 0
    for chunk in build_chunks(files, mapping, args.unmapped, args.chunk_records, stats=stats):
        if chunk.count:
            chunks += 1
            path = out / f"chunk-{chunks:05d}-{chunk.key[:12]}.json"
            with disk_errors(path), private_open(path) as handle:
                handle.write(chunk.body())
            stats.records_sent += chunk.count
    log.info("Dry run: %d files, %d records read, %d would be sent in %d chunks, %d skipped; %d unmapped source "
             "ids. Chunks written to %s/. Nothing was sent.", len(files), stats.records_read, stats.records_sent,
             chunks, stats.records_skipped, len(scan.counts), out,
             extra={"fields": {**stats.__dict__, "chunks": chunks, "unmapped": len(scan.counts)}})
    return EXIT_ATTENTION if stats.records_skipped else EXIT_OK


def cmd_import(args):
    if not 1 <= args.chunk_records <= IMPORT_MAX_RECORDS:
        raise UsageError(f"--chunk-records must be between 1 and {IMPORT_MAX_RECORDS}.")
    mapping = Mapping.load(args.mapping)
    files = export_files(args.input)
    scan = scan_unmapped(files, mapping, keep_skipped=args.unmapped == "skip")
    check_unmapped(scan, args.unmapped, mapping, args.report)
    if args.dry_run:
        return dry_run_import(args, files, mapping, scan)
    client = make_client("target", args)
    stats = ImportStats()
    progress = Progress(not args.quiet and args.log_format == "text")
    with locked_state(args.state) as state:
        org = organization(client)
        state.bind("destination", org)
        log.info(describe_org("Destination", org, client))
        pace_to_org_limit(client, args.max_rps)
        pinned = state.section("import").get("chunkRecords")
        if pinned and pinned != args.chunk_records:
            raise UsageError(f"{args.state} holds an import made with --chunk-records {pinned}; chunk keys depend on "
                             f"it. Use --chunk-records {pinned}, or another --state for a new import.")
        sources = {export_source_org(path) for path in files} - {None}
        if org.get("id") in sources and not args.allow_same_org:
            raise UsageError(f"the input was exported from the destination org itself ({org.get('id')}). "
                             f"Use --allow-same-org if that is really intended.")
        confirm_write(args, org, f"Import up to {scan.records - len(scan.skipped):,} records from {len(files)} "
                                 f"file(s) into {org.get('name')!r} ({org.get('id')}).")
        if not pinned:
            state.update(lambda data: data.setdefault("import", {}).update(chunkRecords=args.chunk_records))
        started = time.monotonic()
        run = ImportRun(client, state, args.workers, poll_settings(args), progress, stats)
        try:
            run.run(build_chunks(files, mapping, args.unmapped, args.chunk_records, stats=stats))
        finally:
            import_summary(stats, len(files), client, time.monotonic() - started)
    if stats.records_skipped:
        log.warning("%d records were skipped for unmapped references; they are listed in %s.",
                    stats.records_skipped, args.report)
        return EXIT_ATTENTION
    return EXIT_OK


def parse_kinds(text, create_divisions):
    """--kinds: which kinds clone writes (divisions only with --create-divisions)."""
    default = [key for key in CLONABLE_KINDS if key != "divisions"]
    kinds = [item.strip() for item in text.split(",") if item.strip()] if text else default
    unknown = [key for key in kinds if key not in CLONABLE_KINDS]
    if unknown or not kinds:
        raise UsageError(f"--kinds {text!r}: use a comma-separated list of {', '.join(default)}.")
    if "divisions" in kinds:
        raise UsageError("divisions are created only with --create-divisions; leave them out of --kinds.")
    return (["divisions"] if create_divisions else []) + kinds


def organization(client):
    """GET /organizations/me, checked: every binding of a state or manifest rests on its id."""
    org = client.organization()
    if not answer_id(org):
        raise MigrateError(f"the {client.label} org answered GET /api/v2/organizations/me without an id. "
                           f"Check the region and the credentials, then run again.")
    return org


ORG_LIMITS_PATH = "/api/v2/organizations/limits/namespaces/platform.api"
CLIENT_RATE_LIMIT_KEY = "client.credentials.token.rate.per.minute"


def pace_to_org_limit(client, max_rps):
    """Paces at the org's own client limit when it is below --max-rps: support may have raised or
    lowered it from the usual 300/min, and the org says so (contract section 3)."""
    try:
        answer = client.get(ORG_LIMITS_PATH)
    except ApiError as exc:
        log.info("%s org: its rate limit could not be read (%s); pacing at --max-rps %g.", client.label,
                 exc.status, max_rps)
        return
    entities = answer.get("entities") if isinstance(answer, dict) else None
    per_minute = next((item.get("value") for item in entities or [] if isinstance(item, dict)
                       and item.get("key") == CLIENT_RATE_LIMIT_KEY), None) if isinstance(entities, list) else None
    if not isinstance(per_minute, (int, float)) or isinstance(per_minute, bool) or not 0 < per_minute < math.inf:
        log.info("%s org: no client rate limit among its limits; pacing at --max-rps %g.", client.label, max_rps)
    elif per_minute / 60.0 < max_rps:
        client.governor.limit_api_rate(per_minute / 60.0)
        log.info("%s org: pacing at its client limit, %.0f requests/min (%.2f/s), below --max-rps %g.",
                 client.label, per_minute, per_minute / 60.0, max_rps)
    else:
        log.info("%s org: pacing at --max-rps %g (its client limit is %.0f requests/min).", client.label, max_rps,
                 per_minute)


def org_summary(client):
    org = organization(client)
    return {"id": org.get("id"), "name": org.get("name"), "apiUrl": client.auth.api_url}


def existing_changes(run):
    """The changes to queues and users the target already had, as words ("add 340 members to 12 existing
    queues; ..."), or ""."""
    return "; ".join(KINDS_BY_KEY[key].hooks.words.format(changes=changes, objects=objects)
                     for key, (changes, objects) in run.changes_to_existing().items())


def log_clone_plan(run):
    for key, counts in run.summary_counts().items():
        log.info("  %-18s %s", key, ", ".join(f"{count} {action}" for action, count in sorted(counts.items())))
    if existing_changes(run):
        log.info("Changes to what the target already had: %s.", existing_changes(run))
    for label, reasons in run.unresolved:
        log.warning("Left out: %s %s; it is not copied.", label, "; ".join(reasons))


def log_notes(notes):
    """Work left for a person, one line per topic."""
    for topic, lines in notes.items():
        (log.warning if any(attention for _, attention in lines) else log.info)(
            "%s: %s.", topic, ", ".join(text for text, _ in lines))


def cmd_clone(args):
    args.kinds = parse_kinds(args.kinds, args.create_divisions)
    if args.on_conflict == "prefix" and not args.prefix:
        raise UsageError("--on-conflict prefix needs a non-empty --prefix.")
    for kind in (KINDS_BY_KEY[key] for key in args.kinds):
        if args.on_conflict == "prefix" and kind.name_pattern \
                and not re.fullmatch(kind.name_pattern, prefixed_name(kind, args.prefix, "A")):
            raise UsageError(f"--prefix {args.prefix!r} cannot begin the name of {kind.key} (a name must match "
                             f"{kind.name_pattern}). Use a --prefix that starts with a letter.")
    seed = Mapping.load(args.mapping) if args.mapping else Mapping()
    Manifest(args.manifest_out).load()  # a damaged manifest is found before any request, read again once locked
    source, target = make_client("source", args), make_client("target", args)
    progress = Progress(not args.quiet and args.log_format == "text")
    with locked_state(args.state):
        orgs = {"source": org_summary(source), "target": org_summary(target)}
        for label, org in (("Source", orgs["source"]), ("Target", orgs["target"])):
            log.info("%s org: %s (id %s) at %s", label, org["name"], org["id"], org["apiUrl"])
        if orgs["source"]["id"] == orgs["target"]["id"]:
            raise UsageError("the source and the target are the same org; clone copies between two orgs. "
                             "Check the GENESYS_SOURCE_* and GENESYS_TARGET_* credentials.")
        manifest = Manifest(args.manifest_out).load()
        manifest.bind(orgs["source"], orgs["target"])
        for client in (source, target):
            pace_to_org_limit(client, args.max_rps)
        run = CloneRun(source, target, orgs, args, seed, manifest, progress)
        started = time.monotonic()
        try:
            return finish_clone(args, run, seed, manifest, orgs, source, target, started)
        finally:
            run.close()


def finish_clone(args, run, seed, manifest, orgs, source, target, started):
    """The clone proper, from extraction to the summary, once both orgs are known and the lock held."""
    run.extract()
    run.build_plan()
    run.read_flow_dependencies()
    run.check_unresolved()
    run.export_flow_content()
    run.check_unresolved()
    run.plan_relations()
    log.info("Plan (%s on conflict):", args.on_conflict)
    log_clone_plan(run)
    log_notes(run.notes())
    if args.plan:
        write_json_atomically(args.plan_out, run.plan_document())
        log.info("Plan written to %s; nothing was written to the target.", args.plan_out)
        for item in run.conflicts():
            log.warning("Conflict: %s exists in the target; --on-conflict fail stops the run there.", item.label)
        return EXIT_ATTENTION if run.unresolved or run.conflicts() or needs_attention(run.notes()) else EXIT_OK
    conflicts = run.conflicts()
    if conflicts:
        names = ", ".join(item.label for item in conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise MigrateError(f"{len(conflicts)} objects already exist in the target ({names}); nothing was "
                           f"written. Choose --on-conflict reuse, prefix or update.")
    run.load_members_in_background()
    writes = [item for item in run.plan if item.action in ("create", "update") or item.needs_content
              or (item.action == "relate" and item.changes)]
    if writes:
        creates = sum(item.action == "create" for item in writes)
        updates = sum(item.action == "update" or item.needs_content for item in writes)
        existing = existing_changes(run)
        confirm_write(args, orgs["target"], f"Create {creates} and update up to {updates} objects"
                                            f"{'; ' + existing if existing else ''} "
                                            f"in {orgs['target']['name']!r} ({orgs['target']['id']}).")
    run.apply()
    manifest.flush()
    write_json_atomically(args.mapping_out, run.mapping(seed).to_json())
    if run.failures:
        raise MigrateError(f"{len(run.failures)} objects failed, the first: {run.failures[0]}. What was created "
                           f"is in {args.manifest_out}; fix the cause and run clone again to finish.")
    run.verify()
    for mismatch in run.verify_mismatches:
        log.warning("Verify: %s", mismatch)
    notes = run.notes()
    log_notes(notes)
    log.info("Clone finished: %d writes, %d verify mismatches, %d unresolved; mapping in %s, rollback manifest in "
             "%s; %d requests to the source, %d to the target, %d throttled (429); %.1f s.", run.writes,
             len(run.verify_mismatches), len(run.unresolved), args.mapping_out, args.manifest_out,
             source.request_count, target.request_count, source.governor.throttled + target.governor.throttled,
             time.monotonic() - started, extra={"fields": {"writes": run.writes, "counts": run.summary_counts(),
                                                           "mismatches": run.verify_mismatches,
                                                           "unresolved": dict(run.unresolved),
                                                           "notes": {topic: [text for text, _ in lines]
                                                                     for topic, lines in notes.items()}}})
    return EXIT_ATTENTION if run.verify_mismatches or run.unresolved or needs_attention(notes) else EXIT_OK


def needs_attention(notes):
    return any(attention for lines in notes.values() for _, attention in lines)


def cmd_rollback(args):
    Manifest(args.manifest).load(required=True)  # a missing or damaged manifest is found before any request
    target = make_client("target", args)
    progress = Progress(not args.quiet and args.log_format == "text")
    with locked_state(args.state):
        manifest = Manifest(args.manifest).load(required=True)  # as it is now that no clone can change it
        org = org_summary(target)
        log.info("Target org: %s (id %s) at %s", org["name"], org["id"], org["apiUrl"])
        recorded = manifest.data.get("target") or {}
        if recorded.get("id") and recorded["id"] != org["id"]:
            raise UsageError(f"{args.manifest} lists objects of org {recorded.get('name')!r} ({recorded['id']}), "
                             f"not of {org['name']!r}. Point GENESYS_TARGET_* at that org.")
        pace_to_org_limit(target, args.max_rps)
        if not manifest.entries:
            log.info("Nothing to undo: %s lists no objects.", args.manifest)
            return EXIT_OK
        counts = {}
        for entry in manifest.entries:
            key = f"{entry['kind']} {'changed' if entry.get('change') else 'created'}"
            counts[key] = counts.get(key, 0) + 1
        listing = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
        confirm_write(args, org, f"Undo {len(manifest.entries)} changes ({listing}) that clone made in "
                                 f"{org['name']!r} ({org['id']}).")
        rollback = Rollback(target, manifest, args.workers, args.force, progress)
        try:
            rollback.run()
        finally:
            with contextlib.suppress(Stopped):  # a stopping run's gate may be closed: the next run redoes it
                manifest.flush()
    for line in rollback.skipped:
        log.warning("Left alone: %s. Use --force to undo it anyway.", line)
    log.info("Rollback: %d restored, %d deleted, %d already gone, %d left alone, %d left in %s.",
             len(rollback.restored), len(rollback.deleted), len(rollback.gone), len(rollback.skipped),
             len(manifest.entries), args.manifest)
    if rollback.failures:
        raise MigrateError(f"{len(rollback.failures)} changes could not be undone, the first: {rollback.failures[0]}. "
                           f"The manifest keeps them; fix the cause and run rollback again.")
    return EXIT_ATTENTION if rollback.skipped else EXIT_OK


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

EPILOG = """\
examples:
  python migrate.py export --start 2026-01-01T00:00:00Z --end 2026-02-01T00:00:00Z --source-region us-east-1
  python migrate.py export --incremental --lag 1h --source-region us-east-1 --yes      # nightly cron
  python migrate.py export --api analytics --start 2026-01-01T00:00:00Z --end 2026-01-08T00:00:00Z --source-region us-east-1
  python migrate.py import --input exports/ --mapping mapping.json --dry-run
  python migrate.py import --input exports/ --mapping mapping.json --target-region eu-west-1 --yes
  python migrate.py clone --plan --source-region us-east-1 --target-region eu-west-1
  python migrate.py clone --on-conflict prefix --source-region us-east-1 --target-region eu-west-1 --yes
  python migrate.py rollback --manifest rollback.json --target-region eu-west-1 --yes

credentials come from the environment only (never the command line, which ps shows):
  GENESYS_SOURCE_CLIENT_ID, GENESYS_SOURCE_CLIENT_SECRET, GENESYS_TARGET_CLIENT_ID, GENESYS_TARGET_CLIENT_SECRET
  regions/URLs: --source-region or GENESYS_SOURCE_REGION, --source-login-url/--source-api-url
  (GENESYS_SOURCE_LOGIN_URL/_API_URL), and the same for TARGET.

exit codes:
  0 done   1 failed   2 usage or configuration error   3 done but needs attention
  (records skipped, mismatches, unresolved references)   4 another run holds the lock
  130/143 stopped by SIGINT/SIGTERM: the state is saved, the same command resumes
"""


def add_org_options(parser, label):
    group = parser.add_argument_group(f"{label} org (credentials from GENESYS_{label.upper()}_CLIENT_ID/_SECRET)")
    group.add_argument(f"--{label}-region", metavar="REGION",
                       help=f"region name or domain, e.g. eu-west-1 or mypurecloud.ie (env GENESYS_{label.upper()}_REGION)")
    group.add_argument(f"--{label}-login-url", metavar="URL", help="override the login host (proxies, the local fake)")
    group.add_argument(f"--{label}-api-url", metavar="URL", help="override the API host (proxies, the local fake)")


def add_poll_options(parser):
    group = parser.add_argument_group("job polling")
    group.add_argument("--poll-initial", type=positive_duration, default=1.0, metavar="DURATION",
                       help="first look at a new job after this long (default 1s)")
    group.add_argument("--poll-max", type=positive_duration, default=15.0, metavar="DURATION",
                       help="longest wait between two looks at a job (default 15s)")
    group.add_argument("--poll-deadline", type=positive_duration, default=6 * 3600.0, metavar="DURATION",
                       help="give up waiting for one job after this long; a re-run resumes it (default 6h)")


class OneLineParser(argparse.ArgumentParser):
    """A usage mistake is one line that says what to do, like every other error."""

    def error(self, message):
        sys.stderr.write(f"Error: {message}. See {self.prog} --help.\n")
        sys.exit(EXIT_USAGE)


def build_parser():
    common = OneLineParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more detail (debug)")
    group.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only; no progress")
    group.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one object a line, for cron")
    group.add_argument("--state", default="migration_state.json", metavar="PATH",
                       help="state file that makes runs resumable (default migration_state.json; lock: PATH.lock)")
    group.add_argument("--workers", type=int, default=8, metavar="N", help="parallel requests or jobs (default 8)")
    group.add_argument("--max-rps", type=float, default=DEFAULT_MAX_RPS, metavar="R",
                       help=f"requests per second per org at most (default {DEFAULT_MAX_RPS:g}: the platform's 300/min)")
    group.add_argument("--max-status-rps", type=float, default=DEFAULT_STATUS_RPS, metavar="R",
                       help="job-status reads per second per org at most (default 100/min)")
    group.add_argument("--yes", action="store_true", help="confirm writes without a prompt (needed without a terminal)")

    parser = OneLineParser(
        prog="migrate.py", description="Move interactions and configuration between Genesys Cloud orgs and regions.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"migrate.py {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    export = commands.add_parser("export", parents=[common], epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 help="export interactions of a time window from the source org to local files")
    window = export.add_argument_group("window")
    window.add_argument("--start", help="window start, ISO-8601 with zone (inclusive)")
    window.add_argument("--end", help="window end, ISO-8601 with zone (exclusive)")
    window.add_argument("--incremental", action="store_true",
                        help="continue from where the last export ended, up to now minus --lag (for cron)")
    window.add_argument("--lag", type=parse_duration, default=3600.0, metavar="DURATION",
                        help="with --incremental: leave out the most recent DURATION (default 1h)")
    export.add_argument("--types", default=",".join(INTERACTION_TYPES), help="interaction types (default voice,chat,email)")
    export.add_argument("--api", choices=("interaction", "analytics"), default="interaction",
                        help="interaction: the design's export jobs (default); analytics: the real API's "
                             "conversation-detail jobs, converted to v2.1 records")
    export.add_argument("--job-interval", type=positive_duration, default=86400.0, metavar="DURATION",
                        help="with --api analytics: one job per this much of the window (default 1d)")
    export.add_argument("--out", default="exports", metavar="DIR", help="folder for export files (default exports/)")
    add_poll_options(export)
    add_org_options(export, "source")
    export.set_defaults(handler=cmd_export)

    imp = commands.add_parser("import", parents=[common], epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              help="import exported interactions into the destination org, exactly once")
    imp.add_argument("--input", required=True, metavar="PATH", help="an export file, or a folder of them")
    imp.add_argument("--mapping", required=True, metavar="FILE", help="source id -> target id per kind (see mapping.example.json)")
    imp.add_argument("--unmapped", choices=("fail", "fallback", "skip"), default="fail",
                     help="a reference missing from the mapping: stop before sending (fail, default), use the "
                          "mapping's fallbacks entry, or leave the record out (skip, exit 3)")
    imp.add_argument("--report", default="unmapped_report.json", metavar="FILE",
                     help="where unmapped ids and skipped records are listed (default unmapped_report.json)")
    imp.add_argument("--dry-run", action="store_true", help="send nothing; write the chunks that would be sent")
    imp.add_argument("--dry-run-out", default="dry_run_chunks", metavar="DIR", help="folder for --dry-run chunks")
    imp.add_argument("--chunk-records", type=int, default=IMPORT_MAX_RECORDS, metavar="N",
                     help=f"records per import job, 1 to {IMPORT_MAX_RECORDS} (default {IMPORT_MAX_RECORDS})")
    imp.add_argument("--allow-same-org", action="store_true", help="allow importing into the org the input came from")
    add_poll_options(imp)
    add_org_options(imp, "target")
    imp.set_defaults(handler=cmd_import)

    clone = commands.add_parser("clone", parents=[common], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                help="copy routing and architect configuration to the target org")
    what = clone.add_argument_group("what to copy")
    what.add_argument("--kinds", metavar="LIST",
                      help="kinds to write (default all: " + ",".join(k for k in CLONABLE_KINDS if k != "divisions") + ")")
    what.add_argument("--create-divisions", action="store_true",
                      help="create divisions missing in the target (default: match by name only)")
    what.add_argument("--on-conflict", choices=("reuse", "prefix", "update", "fail"), default="reuse",
                      help="an object of the same name exists: map to it (reuse, default), create a prefixed copy, "
                           "PUT the source's settings over it (update; never skills), or stop (fail)")
    what.add_argument("--prefix", default="SRC_", help="name prefix for --on-conflict prefix (default SRC_)")
    what.add_argument("--mapping", metavar="FILE",
                      help="optional mapping file: its ids are used as given, its timeZones map schedule groups")
    out = clone.add_argument_group("plan and records")
    out.add_argument("--plan", action="store_true", help="write the plan and stop; nothing is written to the target")
    out.add_argument("--plan-out", default="plan.json", metavar="FILE", help="where --plan writes (default plan.json)")
    out.add_argument("--mapping-out", default="mapping.json", metavar="FILE",
                     help="the id map, in the format import reads (default mapping.json)")
    out.add_argument("--manifest-out", default="rollback.json", metavar="FILE",
                     help="what this clone created, for rollback (default rollback.json; re-runs add to it)")
    add_poll_options(clone)
    add_org_options(clone, "source")
    add_org_options(clone, "target")
    clone.set_defaults(handler=cmd_clone)

    rollback = commands.add_parser("rollback", parents=[common], epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   help="undo exactly what a clone did, from its manifest")
    rollback.add_argument("--manifest", default="rollback.json", metavar="FILE",
                          help="the manifest clone wrote (default rollback.json)")
    rollback.add_argument("--force", action="store_true",
                          help="undo changes and delete objects even where someone changed them after the clone")
    add_org_options(rollback, "target")
    rollback.set_defaults(handler=cmd_rollback)
    return parser


@contextlib.contextmanager
def signal_handlers():
    """SIGINT and SIGTERM ask the run to stop (see StopSignal); only the main thread can set them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, _frame):
        first = not STOP.requested
        STOP.request(signum)
        if STOP.prompting:
            sys.stderr.write("\n")  # end the prompt's line
        if first:
            count = in_flight.count
            log.warning("Stopping: finishing %d request%s (at most %.0f s); Ctrl-C again to stop now",
                        count, "" if count == 1 else "s", STOP_GRACE_S)

    previous = {signum: signal.signal(signum, on_signal) for signum in EXIT_SIGNAL}
    try:
        yield
    finally:
        if not STOP.requested:  # a stopping process keeps ignoring further signals until it has exited
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run_command(args):
    """Runs the command in a worker thread while the main thread watches for signals: after a first
    signal the run gets STOP_GRACE_S to unwind; after a second, or at the prompt, it is abandoned at
    once, once the writes in progress are done, and its lock released."""
    outcome = {}

    def work():
        try:
            outcome["code"] = args.handler(args)
        except MigrateError as exc:
            outcome["error"] = exc
        except BaseException as exc:  # a bug: shown with its traceback by the main thread
            outcome["crash"] = exc

    runner = threading.Thread(target=work, name="run", daemon=True)
    runner.start()
    while runner.is_alive():
        runner.join(0.1)
        if STOP.requested and (STOP.forced or STOP.prompting or time.monotonic() > STOP.deadline):
            break
    if runner.is_alive():
        WRITES.close()
        for state in list(HELD_STATES):
            state.release_lock()
        outcome = {"error": Stopped()}
    if "crash" in outcome:
        raise outcome["crash"]
    error = outcome.get("error")
    if STOP.requested and "code" not in outcome:
        if error is not None and not isinstance(error, Stopped):
            log.error("Error: %s", error)
        log.error("Stopped by %s; the state is saved. Run the same command again to resume.",
                  signal.Signals(STOP.signum).name)
        return STOP.exit_code
    if error is not None:
        log.error("Error: %s", error)
        return error.exit_code
    return outcome["code"]


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    setup_logging(args.verbose - args.quiet, args.log_format)
    if args.workers < 1 or args.max_rps <= 0 or args.max_status_rps <= 0:
        log.error("Error: --workers, --max-rps and --max-status-rps must be positive.")
        return EXIT_USAGE
    STOP.reset()
    WRITES.reset()
    with signal_handlers():
        return run_command(args)


if __name__ == "__main__":
    exit_code = main()
    if STOP.requested:  # threads may still wait on the network: leave without joining them
        logging.shutdown()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(exit_code)
