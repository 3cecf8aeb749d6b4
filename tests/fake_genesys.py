"""A local fake of the Genesys Cloud API that migrate.py speaks (stdlib only).

Implements ../shared/api-contract.md sections 1-7 over real loopback HTTP: one port per org
(serving both /oauth/token and /api/v2) and one separate "download host" for pre-signed export URLs.
The interface is fixed in tests/FAKE_SPEC.md; read that first.

Run standalone: python tests/fake_genesys.py --orgs source,target  (prints one JSON line, serves until SIGTERM)
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import math
import random
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "FakeGenesys",
    "FakeOrg",
    "LoggedRequest",
    "InteractionSource",
    "populate_reference_objects",
    "generate_interactions",
    "canonical_json",
    "main",
]

KINDS = ("divisions", "skills", "languages", "wrapupcodes", "schedules", "schedulegroups",
         "queues", "flows", "trunkbasesettings", "users")

_SELF_URI_BASE = {
    "divisions": "/api/v2/authorization/divisions",
    "skills": "/api/v2/routing/skills",
    "languages": "/api/v2/routing/languages",
    "wrapupcodes": "/api/v2/routing/wrapupcodes",
    "schedules": "/api/v2/architect/schedules",
    "schedulegroups": "/api/v2/architect/schedulegroups",
    "queues": "/api/v2/routing/queues",
    "flows": "/api/v2/flows",
    "trunkbasesettings": "/api/v2/telephony/providers/edges/trunkbasesettings",
    "users": "/api/v2/users",
}

MAX_BODY_BYTES = 10 * 1024 * 1024          # 10 MiB: larger request bodies -> 413 (org.max_body_bytes)
MAX_IMPORT_RECORDS = 1000
IMMUTABLE_FIELDS = frozenset({"id", "createdDate", "lastUpdatedDate", "version", "selfUri"})
KNOWN_IMPORT_FIELDS = frozenset({"interactionType", "direction", "startTime", "endTime", "routing",
                                 "wrapupCode", "userId", "participants", "attributes"})
DEFAULT_TYPES = ("voice", "chat", "email")


def canonical_json(record) -> str:
    """The canonical form the import's duplicate detection compares (contract section 7)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _parse_ts(value) -> datetime:
    """ISO-8601 -> aware UTC datetime (naive means UTC). Raises ValueError/TypeError."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _to_ms(value) -> int:
    dt = _parse_ts(value) if isinstance(value, str) else value
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _rng_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _error_body(status: int, code: str, message: str, details=None, params=None):
    """An ErrorBody. With params, message is a template ("... in [{retryAfter}] seconds")."""
    params = {k: str(v) for k, v in (params or {}).items()}
    return {
        "message": message.format(**params) if params else message,
        "code": code,
        "status": status,
        "messageWithParams": message,
        "messageParams": params,
        "contextId": str(uuid.uuid4()),
        "details": details or [],
        "errors": [],
    }


@dataclass
class LoggedRequest:
    time: float
    method: str
    path: str
    query: dict
    headers: dict
    status: int | None = None
    client_id: str | None = None
    response_headers: dict = field(default_factory=dict)     # lower-case keys; empty for a dropped connection


@dataclass
class _Fault:
    status: int
    retry_after: object
    drop: bool
    method: str | None
    path_prefix: str | None
    times: int

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path_prefix is None:
            return path.startswith("/api/v2/")
        return path.startswith(self.path_prefix)


class _ExportJob:
    def __init__(self, org, start_dt, end_dt, types, include_media, include_transcripts):
        self.id = str(uuid.uuid4())
        self.created = time.monotonic()
        self.duration = float(org.export_job_seconds)
        self.start_dt = start_dt
        self.end_dt = end_dt
        self.start_iso = _iso(start_dt)
        self.end_iso = _iso(end_dt)
        self.types = tuple(types)
        self.include_media = include_media
        self.include_transcripts = include_transcripts
        self.fail_message = None
        self.snapshot = None            # list of matching records (org.interactions mode)
        self.source = None              # org.export_source at creation (source mode)
        self.count = None               # recordCount once known
        self.count_error = None


class _ImportJob:
    def __init__(self, seq, records, canonicals, allow_duplicates):
        self.id = str(uuid.uuid4())
        self.seq = seq
        self.records = records
        self.canonicals = canonicals
        self.record_count = len(records)
        self.allow_duplicates = allow_duplicates
        self.status = "queued"
        self.errors = []
        self.created = time.monotonic()
        self.started = None
        self.ends = None
        self.finished = None


class _Download:
    __slots__ = ("org", "job", "path", "expires", "expired")

    def __init__(self, org, job, path, expires):
        self.org = org
        self.job = job
        self.path = path
        self.expires = expires
        self.expired = False


class _Reply(Exception):
    """Raised inside routing to answer with an ErrorBody."""

    def __init__(self, status, code, message, details=None, params=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.params = params
        self.headers = headers or {}


# --------------------------------------------------------------------------------------------
# One org
# --------------------------------------------------------------------------------------------

class FakeOrg:
    KNOB_DEFAULTS = {
        "token_lifetime": 86399,
        "api_domain": None,
        "rate_limit": 300,
        "rate_window": 60.0,
        "status_rate_limit": 100,
        "status_rate_window": 60.0,
        "latency": 0.0,
        "export_job_seconds": 0.5,
        "schemas": ("v2.0", "v2.1"),
        "download_ttl": 300.0,
        "max_running_import_jobs": 4,
        "import_seconds_per_record": 0.0005,
        "max_body_bytes": MAX_BODY_BYTES,
    }

    def __init__(self, fake, name, **knobs):
        unknown = set(knobs) - set(self.KNOB_DEFAULTS)
        if unknown:
            raise TypeError("unknown knob(s): %s" % ", ".join(sorted(unknown)))
        self.fake = fake
        self.name = name
        self.org_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = secrets.token_urlsafe(32)
        for k, v in self.KNOB_DEFAULTS.items():
            setattr(self, k, knobs.get(k, v))
        self.login_url = None
        self.api_url = None

        self.lock = threading.RLock()
        self.requests: list[LoggedRequest] = []
        self.token_requests = 0
        self.objects = {kind: {} for kind in KINDS}
        self.interactions = []
        self.export_source = None
        self.fail_next_export = None
        self.imported = []
        self.imported_canonical = set()
        self.import_posts = 0

        self._tokens = {}                       # token -> (client_id, expires monotonic)
        self._faults: list[_Fault] = []
        self._rl_lock = threading.Lock()
        self._windows = {}                      # (client_id, bucket) -> deque of monotonic times
        self._export_jobs = {}
        self._import_jobs = {}
        self._import_queue = collections.deque()
        self._import_running = []
        self._import_seq = 0

    # ---- public helpers -----------------------------------------------------------------
    def revoke_tokens(self):
        with self.lock:
            self._tokens.clear()

    def inject_fault(self, status=503, retry_after=None, drop=False, method=None, path_prefix=None, times=1):
        with self.lock:
            self._faults.append(_Fault(status, retry_after, drop, method, path_prefix, times))

    def expire_download_urls(self):
        self.fake._expire_downloads(self)

    def add_object(self, kind, name, **fields) -> str:
        if kind not in self.objects:
            raise KeyError("unknown kind %r (kinds: %s)" % (kind, ", ".join(KINDS)))
        obj_id = fields.pop("id", None) or str(uuid.uuid4())
        obj = {"id": obj_id, "name": name}
        if kind == "users" and "email" not in fields:
            fields["email"] = ".".join(name.lower().split()) + "@example.com"
        obj.update(fields)
        obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE[kind], obj_id)
        with self.lock:
            self.objects[kind][obj_id] = obj
        return obj_id

    def export_job(self, job_id):
        """The internal export job (for tests)."""
        return self._export_jobs.get(job_id)

    def import_job(self, job_id):
        """The internal import job (for tests): .status, .errors, .started, .finished ..."""
        return self._import_jobs.get(job_id)

    # ---- request entry -------------------------------------------------------------------
    def _take_fault(self, method, path):
        with self.lock:
            for f in self._faults:
                if f.matches(method, path):
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
        return None

    def _handle(self, h, rec, body, too_large):
        with self.lock:
            self.requests.append(rec)
        path = rec.path
        is_api = path.startswith("/api/v2/")
        fault = self._take_fault(rec.method, path)
        if fault is not None:
            if fault.drop:
                h.drop(rec)
                return
            headers = self._rl_headers(self.client_id, self._is_status(rec.method, path)) if is_api else {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            h.send_error_body(rec, fault.status, _fault_code(fault.status),
                              "Injected fault %d." % fault.status, headers=headers)
            return
        if path == "/oauth/token":
            self._token(h, rec, body)
            return
        if not is_api:
            h.send_error_body(rec, 404, "not.found", "The requested resource was not found.")
            return

        status_get = self._is_status(rec.method, path)
        client_id = self._authenticate(rec.headers)
        if client_id is None:
            h.send_error_body(rec, 401, "bad.credentials", "Invalid login credentials.",
                              headers=self._rl_headers(self.client_id, status_get))
            return
        rec.client_id = client_id
        ok, rl_headers = self._admit(client_id, status_get)
        if not ok:
            retry = rl_headers["Retry-After"]
            h.send_error_body(rec, 429, "too.many.requests",
                              "Rate limit exceeded the maximum. Retry the request in [{retryAfter}] seconds",
                              params={"retryAfter": retry}, headers=rl_headers)
            return
        if self.latency:
            time.sleep(self.latency)
        try:
            if too_large:
                raise _Reply(413, "payload.too.large", "The request body exceeds %d bytes." % self.max_body_bytes)
            status, obj = self._route(rec, body)
        except _Reply as r:
            rl_headers.update(r.headers)
            h.send_error_body(rec, r.status, r.code, r.message, details=r.details, params=r.params,
                              headers=rl_headers)
            return
        h.send_json(rec, status, obj, rl_headers)

    @staticmethod
    def _is_status(method, path):
        if method != "GET":
            return False
        parts = path.split("/")
        # /api/v2/interaction/{export|import}/{id}
        return (len(parts) == 6 and parts[3] == "interaction" and parts[4] in ("export", "import")
                and parts[5] not in ("", "schemas"))

    # ---- auth ----------------------------------------------------------------------------
    def _token(self, h, rec, body):
        if rec.method != "POST":
            h.send_error_body(rec, 405, "method.not.allowed", "Use POST.")
            return
        cid = secret = None
        auth = rec.headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                cid, _, secret = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                cid = secret = None
        rec.client_id = cid
        if cid != self.client_id or secret != self.client_secret:
            h.send_json(rec, 400, {"error": "invalid_client", "description": "client is invalid or not found"})
            return
        form = dict(parse_qsl((body or b"").decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            h.send_json(rec, 400, {"error": "unsupported_grant_type",
                                   "description": "grant_type must be client_credentials"})
            return
        token = secrets.token_urlsafe(48)
        lifetime = self.token_lifetime
        with self.lock:
            self._tokens[token] = (cid, time.monotonic() + lifetime)
            self.token_requests += 1
        answer = {"access_token": token, "token_type": "bearer", "expires_in": int(lifetime)}
        if self.api_domain is not None:
            answer["api_domain"] = self.api_domain
        h.send_json(rec, 200, answer)

    def _authenticate(self, headers):
        auth = headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        token = auth[7:].strip()
        with self.lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if time.monotonic() >= entry[1]:
                del self._tokens[token]
                return None
            return entry[0]

    # ---- rate limits ---------------------------------------------------------------------
    def _admit(self, client_id, status_get):
        """Sliding windows. Returns (admitted, headers)."""
        now = time.monotonic()
        with self._rl_lock:
            buckets = self._buckets(client_id, status_get, now)
            waits = []
            for dq, limit, window in buckets:
                if len(dq) >= limit:
                    idx = len(dq) - limit
                    wait = (dq[idx] + window - now) if idx < len(dq) else window
                    waits.append((wait, dq, limit))
            if waits:
                wait, dq, limit = max(waits, key=lambda w: w[0])
                retry = max(1, math.ceil(wait))
                return False, {
                    "Retry-After": str(retry),
                    "inin-ratelimit-count": str(len(dq)),
                    "inin-ratelimit-allowed": str(limit),
                    "inin-ratelimit-reset": str(retry),
                    "X-RateLimit-Remaining": "0",
                }
            for dq, _, _ in buckets:
                dq.append(now)
            return True, self._headers_locked(buckets, now)

    def _buckets(self, client_id, status_get, now):
        """[(deque, limit, window)] for the general window and, for a job-status GET, the status window.
        Call with _rl_lock held; drops timestamps that left their window."""
        specs = [("all", self.rate_limit, self.rate_window)]
        if status_get:
            specs.append(("status", self.status_rate_limit, self.status_rate_window))
        buckets = []
        for name, limit, window in specs:
            dq = self._windows.get((client_id, name))
            if dq is None:
                dq = self._windows[(client_id, name)] = collections.deque()
            cutoff = now - window
            while dq and dq[0] <= cutoff:
                dq.popleft()
            buckets.append((dq, limit, window))
        return buckets

    def _rl_headers(self, client_id, status_get):
        """Headers describing the windows without counting a request."""
        now = time.monotonic()
        with self._rl_lock:
            return self._headers_locked(self._buckets(client_id, status_get, now), now)

    @staticmethod
    def _headers_locked(buckets, now):
        dq, limit, window = buckets[0]
        reset = max(1, math.ceil(dq[0] + window - now)) if dq else 0
        remaining = min(max(0, lim - len(d)) for d, lim, _ in buckets)
        return {
            "inin-ratelimit-count": str(len(dq)),
            "inin-ratelimit-allowed": str(limit),
            "inin-ratelimit-reset": str(reset),
            "X-RateLimit-Remaining": str(remaining),
        }

    # ---- routing -------------------------------------------------------------------------
    def _route(self, rec, body):
        m, parts = rec.method, rec.path.rstrip("/").split("/")[3:]   # after /api/v2
        if parts == ["organizations", "me"] and m == "GET":
            return 200, {"id": self.org_id, "name": self.name, "domain": self.name, "state": "active",
                         "selfUri": "/api/v2/organizations/%s" % self.org_id}
        if len(parts) >= 2 and parts[0] == "interaction":
            if parts[1] == "export":
                if len(parts) == 2 and m == "POST":
                    return self._export_create(_json_body(body))
                if parts[2:] == ["schemas"] and m == "GET":
                    return 200, {"entities": [{"version": v} for v in self.schemas]}
                if len(parts) == 3 and m == "GET":
                    return self._export_status(parts[2])
            if parts[1] == "import":
                if len(parts) == 2 and m == "POST":
                    return self._import_create(_json_body(body))
                if len(parts) == 3 and m == "GET":
                    return self._import_status(parts[2])
        raise _Reply(404, "not.found", "The requested resource was not found.")

    # ---- export --------------------------------------------------------------------------
    def _export_create(self, payload):
        if not isinstance(payload, dict):
            raise _Reply(400, "bad.request", "The request body must be a JSON object.")
        try:
            start_dt = _parse_ts(payload["startDate"])
            end_dt = _parse_ts(payload["endDate"])
        except (KeyError, TypeError, ValueError):
            raise _Reply(400, "bad.request", "startDate and endDate must be ISO-8601 date-times.")
        if start_dt >= end_dt:
            raise _Reply(400, "bad.request", "startDate must be before endDate.")
        if payload.get("schemaVersion") not in self.schemas:
            raise _Reply(400, "SCHEMA_INCOMPATIBLE",
                         "Unknown schemaVersion %r; supported: %s" % (payload.get("schemaVersion"),
                                                                        ", ".join(self.schemas)))
        types = payload.get("interactionTypes", list(DEFAULT_TYPES))
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise _Reply(400, "bad.request", "interactionTypes must be a non-empty list of strings.")
        if payload.get("format", "json") != "json":
            raise _Reply(400, "bad.request", "Only format 'json' is supported.")
        include_media = payload.get("includeMedia", False) is True
        include_transcripts = payload.get("includeTranscripts", False) is True
        job = _ExportJob(self, start_dt, end_dt, types, include_media, include_transcripts)
        with self.lock:
            job.fail_message, self.fail_next_export = self.fail_next_export, None
            source = self.export_source
            if source is None:
                wanted = set(types)
                job.snapshot = [r for r in self.interactions if _in_window(r, start_dt, end_dt, wanted)]
                job.count = len(job.snapshot)
            job.source = source
            self._export_jobs[job.id] = job
        if source is not None:
            threading.Thread(target=self._count_source, args=(job,), daemon=True,
                             name="fake-export-count").start()
        return 202, {"id": job.id, "status": "queued", "selfUri": "/api/v2/interaction/export/%s" % job.id}

    def _count_source(self, job):
        try:
            counter = getattr(job.source, "count", None)
            if callable(counter):
                job.count = int(counter(job.start_iso, job.end_iso, job.types))
            else:
                job.count = sum(1 for _ in self._export_records(job))
        except Exception:                                           # pragma: no cover - diagnostics
            job.count_error = "export source failed"
            self.fake.server_errors.append(traceback.format_exc())

    def _export_records(self, job):
        """The records of a job, filtered and trimmed, in order (a generator)."""
        drop = set()
        if not job.include_media:
            drop.add("media")
        if not job.include_transcripts:
            drop.add("transcripts")
        if job.snapshot is not None:
            records = job.snapshot
        else:
            wanted = set(job.types)
            records = (r for r in job.source(job.start_iso, job.end_iso, job.types)
                       if _in_window(r, job.start_dt, job.end_dt, wanted))
        for r in records:
            if drop and not drop.isdisjoint(r):
                r = {k: v for k, v in r.items() if k not in drop}
            yield r

    def _export_state(self, job):
        elapsed = time.monotonic() - job.created
        if elapsed < job.duration:
            return "queued" if elapsed < job.duration * 0.2 else "running"
        if job.fail_message is not None or job.count_error is not None:
            return "failed"
        if job.count is None:
            return "running"
        return "completed"

    def _export_status(self, job_id):
        job = self._export_jobs.get(job_id)
        if job is None:
            raise _Reply(404, "not.found", "Export job %s not found." % job_id)
        status = self._export_state(job)
        answer = {"id": job.id, "status": status}
        if status == "completed":
            url, expires_at = self.fake._mint_download(self, job)
            answer.update(recordCount=job.count, downloadUrl=url, expiresAt=expires_at)
        elif status == "failed":
            answer["errorMessage"] = job.fail_message or job.count_error
        return 200, answer

    # ---- import --------------------------------------------------------------------------
    def _import_create(self, payload):
        if not isinstance(payload, dict) or not isinstance(payload.get("interactions"), list):
            raise _Reply(400, "bad.request", "The body must be an object with a list 'interactions'.")
        records = payload["interactions"]
        if len(records) > MAX_IMPORT_RECORDS:
            raise _Reply(413, "payload.too.large",
                         "At most %d interactions per request; got %d." % (MAX_IMPORT_RECORDS, len(records)))
        if not records:
            raise _Reply(400, "bad.request", "'interactions' must not be empty.")
        schema = payload.get("schemaVersion")
        if schema not in self.schemas:
            raise _Reply(400, "SCHEMA_INCOMPATIBLE",
                         "Unknown schemaVersion %r; supported: %s" % (schema, ", ".join(self.schemas)))
        allow = payload.get("allowDuplicates", False)
        if not isinstance(allow, bool):
            raise _Reply(400, "bad.request", "allowDuplicates must be a boolean.")
        immutable, unknown = [], []
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise _Reply(400, "bad.request", "interactions[%d] is not an object." % i)
            keys = r.keys()
            for k in IMMUTABLE_FIELDS.intersection(keys):
                immutable.append((i, k))
            for k in keys - KNOWN_IMPORT_FIELDS - IMMUTABLE_FIELDS:
                unknown.append((i, k))
        for found, code, what in ((immutable, "IMMUTABLE_FIELD", "is read-only"),
                                  (unknown, "UNKNOWN_FIELD", "is not a field of schema %s" % schema)):
            if found:
                found.sort()
                i, k = found[0]
                raise _Reply(400, code, "interactions[%d].%s %s." % (i, k, what),
                             details=[{"errorCode": code, "fieldName": "interactions[%d].%s" % (i, k)}
                                      for i, k in found])
        canonicals = [canonical_json(r) for r in records]
        with self.lock:
            self._import_seq += 1
            job = _ImportJob(self._import_seq, records, canonicals, allow)
            self._import_jobs[job.id] = job
            self._import_queue.append(job)
            self.import_posts += 1
        self.fake._wake.set()
        return 202, {"id": job.id, "status": "queued"}

    def _import_status(self, job_id):
        job = self._import_jobs.get(job_id)
        if job is None:
            raise _Reply(404, "not.found", "Import job %s not found." % job_id)
        with self.lock:
            return 200, {"id": job.id, "status": job.status, "recordCount": job.record_count,
                         "errors": list(job.errors)}

    def _step_imports(self, now):
        """Finish due jobs (in order of completion), start queued ones. Returns next due time or None."""
        with self.lock:
            due = sorted((j for j in self._import_running if j.ends <= now), key=lambda j: (j.ends, j.seq))
            for job in due:
                self._import_running.remove(job)
                self._finish_import(job, now)
            while self._import_queue and len(self._import_running) < max(1, int(self.max_running_import_jobs)):
                job = self._import_queue.popleft()
                job.status = "running"
                job.started = now
                job.ends = now + self.import_seconds_per_record * job.record_count
                self._import_running.append(job)
            return min((j.ends for j in self._import_running), default=None)

    def _finish_import(self, job, now):
        errors = []
        seen = set()
        stored = self.imported_canonical
        for i, (rec, canon) in enumerate(zip(job.records, job.canonicals)):
            err = self._check_refs(rec)
            if err is None and not job.allow_duplicates and (canon in stored or canon in seen):
                err = ("DUPLICATE_INTERACTION", "interactions[%d] equals an interaction already imported." % i)
            seen.add(canon)
            if err is not None:
                errors.append({"code": err[0], "message": err[1], "index": i})
        if errors:
            job.status = "failed"
            job.errors = errors
        else:
            self.imported.extend(job.records)
            stored.update(job.canonicals)
            job.status = "completed"
        job.finished = now
        job.records = job.canonicals = None

    def _check_refs(self, rec):
        objs = self.objects
        routing = rec.get("routing")
        refs = []                                                   # (kind, field, value)
        if isinstance(routing, dict):
            queue = routing.get("queue")
            if queue is not None:
                qid = queue.get("id") if isinstance(queue, dict) else None
                if not isinstance(qid, str) or qid not in objs["queues"]:
                    return "QUEUE_NOT_FOUND", "Queue %s (routing.queue.id) not found." % (qid,)
            flow = routing.get("flow")
            if flow is not None:
                refs.append(("flows", "routing.flow.id", flow.get("id") if isinstance(flow, dict) else None))
            skills = routing.get("skills")
            if skills is not None:
                for n, s in enumerate(skills if isinstance(skills, list) else [None]):
                    refs.append(("skills", "routing.skills[%d].id" % n, s.get("id") if isinstance(s, dict) else None))
            if "languageId" in routing:
                refs.append(("languages", "routing.languageId", routing["languageId"]))
        elif routing is not None:
            return "INVALID_REFERENCE", "routing is not an object."
        wrapup = rec.get("wrapupCode")
        if wrapup is not None:
            refs.append(("wrapupcodes", "wrapupCode.id", wrapup.get("id") if isinstance(wrapup, dict) else None))
        if "userId" in rec:
            refs.append(("users", "userId", rec["userId"]))
        participants = rec.get("participants")
        if isinstance(participants, list):
            for n, p in enumerate(participants):
                if isinstance(p, dict) and "userId" in p:
                    refs.append(("users", "participants[%d].userId" % n, p["userId"]))
        for kind, fld, value in refs:
            if not isinstance(value, str) or value not in objs[kind]:
                return "INVALID_REFERENCE", "%s %s does not exist in this org." % (fld, value)
        return None


def _fault_code(status):
    return {400: "bad.request", 401: "bad.credentials", 403: "not.authorized", 404: "not.found",
            408: "request.timeout", 409: "general.conflict", 429: "too.many.requests",
            500: "internal.server.error", 502: "bad.gateway", 503: "service.unavailable",
            504: "gateway.timeout"}.get(status, "error")


def _json_body(body):
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        raise _Reply(400, "bad.request", "The request body is not valid JSON.")


def _in_window(rec, start_dt, end_dt, wanted_types):
    if rec.get("interactionType") not in wanted_types:
        return False
    try:
        st = _parse_ts(rec["startTime"])
    except (KeyError, TypeError, ValueError):
        return False
    return start_dt <= st < end_dt


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, fake, org):
        self.fake = fake
        self.org = org                       # None: the download host
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def track(self, conn, add):
        with self.conns_lock:
            (self.conns.add if add else self.conns.discard)(conn)

    def close_connections(self):
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):   # quiet
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            self.fake.server_errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGenesys/1.0"
    sys_version = ""

    def log_message(self, format, *args):     # quiet
        pass

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        # No Nagle: with delayed ACKs on the client, a small second write would wait ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    # ---- plumbing --------------------------------------------------------------------------
    def _read_body(self, limit):
        """Reads the whole request body (so keep-alive stays in sync); keeps it only up to limit bytes.
        Returns (bytes | None, too_large)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            buf, total = bytearray(), 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                self.rfile.readline(65537)
                total += size
                if total <= limit:
                    buf += data
            return (None, True) if total > limit else (bytes(buf), False)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            return None, True
        return (self.rfile.read(length) if length else b""), False

    def _dispatch(self):
        now = time.monotonic()
        split = urlsplit(self.path)
        rec = LoggedRequest(time=now, method=self.command, path=split.path,
                            query=dict(parse_qsl(split.query, keep_blank_values=True)),
                            headers={k.lower(): v for k, v in self.headers.items()})
        try:
            org = self.server.org
            body, too_large = self._read_body(org.max_body_bytes if org is not None else MAX_BODY_BYTES)
        except (ValueError, OSError):
            self.close_connection = True
            self.send_error_body(rec, 400, "bad.request", "Malformed request body.")
            return
        try:
            if self.server.org is None:
                self.server.fake._handle_download(self, rec)
            else:
                self.server.org._handle(self, rec, body, too_large)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception:
            self.server.fake.server_errors.append(traceback.format_exc())
            if rec.status is None:
                self.send_error_body(rec, 500, "internal.server.error", "The fake failed; see fake.server_errors.")
            else:
                self.close_connection = True

    def send_header(self, keyword, value):
        rec = getattr(self, "_rec", None)
        if rec is not None:
            rec.response_headers[keyword.lower()] = value
        super().send_header(keyword, value)

    def send_json(self, rec, status, obj, headers=None):
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        rec.status = status
        self._rec = rec
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        if isinstance(obj, dict) and "contextId" in obj:
            self.send_header("inin-correlation-id", obj["contextId"])
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n")       # headers and body leave in one write
        self._headers_buffer.append(data)
        self._rec = None
        self.flush_headers()

    def send_error_body(self, rec, status, code, message, details=None, params=None, headers=None):
        self.send_json(rec, status, _error_body(status, code, message, details, params), headers)

    def drop(self, rec):
        rec.status = None
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send_chunked(self, rec, status, content_type, chunks):
        rec.status = status
        self._rec = rec
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self._rec = None
        self.end_headers()
        write = self.wfile.write
        for data in chunks:
            if data:
                write(b"%X\r\n%s\r\n" % (len(data), data))
        write(b"0\r\n\r\n")


def _gzip_json_array(records, chunk_size=64 * 1024, batch=200):
    """Yields gzip-compressed pieces of a JSON array of records, compressed as they are generated."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)          # wbits 31: gzip container
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    out, size, pending, sep = [comp.compress(b"[")], 0, [], ""
    for rec in records:
        pending.append(rec)
        if len(pending) >= batch:
            piece = comp.compress((sep + encode(pending)[1:-1]).encode("utf-8"))
            pending, sep = [], ","
            out.append(piece)
            size += len(piece)
            if size >= chunk_size:
                yield b"".join(out)
                out, size = [], 0
    if pending:
        out.append(comp.compress((sep + encode(pending)[1:-1]).encode("utf-8")))
    out.append(comp.compress(b"]"))
    out.append(comp.flush())
    yield b"".join(out)


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------

class FakeGenesys:
    def __init__(self, orgs=("source", "target"), **org_knobs):
        self.orgs = {name: FakeOrg(self, name, **org_knobs) for name in orgs}
        self.download_url = None
        self.download_log: list[LoggedRequest] = []
        self.server_errors: list[str] = []            # tracebacks of fake bugs (tests may assert empty)
        self.refuse_next_downloads = 0                # the next N downloads answer 403 before expiresAt
        self._lock = threading.Lock()
        self._downloads = {}                          # signature -> _Download
        self._servers = []
        self._threads = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler = None
        self._started = False

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self):
        if self._started:
            return self
        self._started = True
        for org in self.orgs.values():
            srv = _Server(self, org)
            org.login_url = org.api_url = srv.url
            self._servers.append(srv)
        dl = _Server(self, None)
        self.download_url = dl.url
        self._servers.append(dl)
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02},
                                 daemon=True, name="fake-genesys-http")
            t.start()
            self._threads.append(t)
        self._scheduler = threading.Thread(target=self._run_scheduler, daemon=True, name="fake-genesys-jobs")
        self._scheduler.start()
        return self

    def stop(self):
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        stoppers = [threading.Thread(target=srv.shutdown, daemon=True) for srv in self._servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(5)
        for srv in self._servers:
            srv.close_connections()
            srv.server_close()
        for t in self._threads:
            t.join(5)
        if self._scheduler is not None:
            self._scheduler.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- import scheduler ----------------------------------------------------------------------
    def _run_scheduler(self):
        while not self._stopping.is_set():
            self._wake.clear()
            next_due = None
            for org in self.orgs.values():
                try:
                    due = org._step_imports(time.monotonic())
                except Exception:                              # pragma: no cover - diagnostics
                    self.server_errors.append(traceback.format_exc())
                    due = None
                if due is not None and (next_due is None or due < next_due):
                    next_due = due
            timeout = 1.0 if next_due is None else max(0.0, next_due - time.monotonic())
            if timeout > 0:
                self._wake.wait(timeout)

    # ---- download host ----------------------------------------------------------------------------
    def _mint_download(self, org, job):
        sig = secrets.token_hex(20)
        ttl = float(org.download_ttl)
        path = "/exports/%s/%s.json.gz" % (org.org_id, job.id)
        with self._lock:
            self._downloads[sig] = _Download(org, job, path, time.monotonic() + ttl)
        expires_at = _iso(datetime.now(timezone.utc) + timedelta(seconds=ttl))
        url = "%s%s?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=%d&X-Amz-Signature=%s" % (
            self.download_url, path, int(ttl), sig)
        return url, expires_at

    def _expire_downloads(self, org):
        with self._lock:
            for d in self._downloads.values():
                if d.org is org:
                    d.expired = True

    def _handle_download(self, h, rec):
        with self._lock:
            self.download_log.append(rec)
            d = self._downloads.get(rec.query.get("X-Amz-Signature", ""))
        if rec.method != "GET":
            h.send_error_body(rec, 405, "method.not.allowed", "Only GET is supported.")
            return
        if "authorization" in rec.headers:
            h.send_error_body(rec, 400, "InvalidArgument",
                              "Only one auth mechanism allowed; a pre-signed URL takes no Authorization header.")
            return
        with self._lock:
            refuse = self.refuse_next_downloads > 0
            if refuse:
                self.refuse_next_downloads -= 1
        if refuse or d is None or d.path != rec.path or d.expired or time.monotonic() >= d.expires:
            h.send_error_body(rec, 403, "AccessDenied", "Request has expired or the signature does not match.")
            return
        h.send_chunked(rec, 200, "application/gzip", _gzip_json_array(d.org._export_records(d.job)))


# --------------------------------------------------------------------------------------------
# Data generators
# --------------------------------------------------------------------------------------------

_QUEUE_NAMES = ["Billing", "Support EN", "Support DE", "Sales", "Retention", "Technical Support",
                "Claims", "VIP Care", "Collections", "Onboarding", "Support FR", "Escalations"]
_FLOW_NAMES = [("Main IVR", "INBOUNDCALL"), ("Web Chat Entry", "INBOUNDCHAT"),
               ("Email Router", "INBOUNDEMAIL"), ("Default In-Queue", "INQUEUECALL"),
               ("After Hours IVR", "INBOUNDCALL"), ("SMS Entry", "INBOUNDSHORTMESSAGE")]
_SKILL_NAMES = ["English", "German", "French", "Billing Expert", "Technical L2", "Complaints",
                "Spanish", "Sales Closing", "Insurance Claims", "Premium Accounts"]
_LANGUAGE_NAMES = ["English", "German", "French", "Spanish", "Dutch", "Italian", "Portuguese"]
_WRAPUP_NAMES = ["Resolved", "Follow-up required", "Callback scheduled", "Transferred", "No answer",
                 "Sale completed", "Complaint logged", "Wrong number", "Escalated", "Information given"]
_FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Katrin",
          "Lukas", "Maria", "Niklas", "Olivia", "Paul", "Rosa", "Stefan", "Tara", "Umar"]
_LAST = ["Schmidt", "Miller", "Dubois", "Rossi", "Novak", "Garcia", "Jensen", "Kowalski", "Murphy",
         "Okafor", "Larsen", "Weber", "Silva", "Tanaka", "Fischer", "Brown"]
_LINES = {
    "voice": ["Customer: Hi, I have a question about my last invoice.",
              "Agent: Of course, let me pull up your account.",
              "Customer: The amount looks higher than usual.",
              "Agent: I can see a one-off charge; I will explain it.",
              "Customer: My internet connection keeps dropping.",
              "Agent: Let me run a line test for you."],
    "chat": ["Visitor: Hello, is anyone there?", "Agent: Hi! How can I help you today?",
             "Visitor: I cannot log in to my account.", "Agent: I have sent you a password reset link.",
             "Visitor: Thanks, that worked."],
    "email": ["Subject: Order status", "Subject: Request for refund", "Subject: Change of address",
              "Dear support team, please update my contact details.",
              "Hello, I have not received my parcel yet."],
}


def _names(pool, n):
    out = []
    for i in range(n):
        base = pool[i % len(pool)]
        out.append(base if i < len(pool) else "%s %d" % (base, i // len(pool) + 1))
    return out


def populate_reference_objects(org, seed=0, queues=8, flows=4, skills=6, languages=3, wrapupcodes=6, users=10):
    """Adds realistic reference objects to org; returns {kind: [ids]}.

    Names depend only on the seed and the counts (so two orgs populated with the same seed hold the
    same names, like a cloned org); ids depend on the seed and the org's name (so they differ)."""
    rng_names = random.Random("%s:names" % seed)
    rng_ids = random.Random("%s:%s:ids" % (seed, org.name))
    refs = {}

    def add(kind, name, **fields):
        oid = org.add_object(kind, name, id=_rng_uuid(rng_ids), **fields)
        refs.setdefault(kind, []).append(oid)
        return oid

    with org.lock:
        home = next((d for d in org.objects["divisions"].values() if d.get("homeDivision")), None)
        if home is None:
            home_id = add("divisions", "Home", description="Home division", homeDivision=True)
            home = org.objects["divisions"][home_id]
        else:
            refs["divisions"] = [home["id"]]
    division = {"id": home["id"], "name": home["name"], "selfUri": home["selfUri"]}

    for name in _names(_SKILL_NAMES, skills):
        add("skills", name, division=division, state="active", version="1")
    for name in _names(_LANGUAGE_NAMES, languages):
        add("languages", name, state="active", version="1")
    for name in _names(_WRAPUP_NAMES, wrapupcodes):
        add("wrapupcodes", name, division=division, description="%s (wrap-up)" % name)
    flow_names = _names([n for n, _ in _FLOW_NAMES], flows)
    for i, name in enumerate(flow_names):
        add("flows", name, division=division, description="%s flow" % name, type=_FLOW_NAMES[i % len(_FLOW_NAMES)][1],
            active=True, system=False, deleted=False, publishedVersion={"id": "1.0"})
    for name in _names(_QUEUE_NAMES, queues):
        add("queues", name, division=division, description="%s queue" % name,
            skillEvaluationMethod="ALL", acwSettings={"wrapupPrompt": "OPTIONAL", "timeoutMs": 30000})
    emails = set()
    for _ in range(users):
        first, last = rng_names.choice(_FIRST), rng_names.choice(_LAST)
        email = "%s.%s@example.com" % (first.lower(), last.lower())
        n = 2
        while email in emails:
            email = "%s.%s%d@example.com" % (first.lower(), last.lower(), n)
            n += 1
        emails.add(email)
        add("users", "%s %s" % (first, last), email=email, username=email, state="active",
            division=division, version=1)
    for kind in ("skills", "languages", "wrapupcodes", "flows", "queues", "users"):
        refs.setdefault(kind, [])
    return refs


def _skeleton(n, start, end, seed, types):
    """(index, startTime ms, type) for n records, strictly increasing in time, within [start, end)."""
    t0, t1 = _to_ms(start), _to_ms(end)
    span = t1 - t0
    if n > span:
        raise ValueError("window too short for %d distinct millisecond start times" % n)
    types = tuple(types)
    step = span / n if n else 0
    rnd = random.Random("%s:skeleton" % seed).random
    ntypes = len(types)
    prev = t0 - 1
    for i in range(n):
        t = t0 + int((i + rnd() * 0.9) * step)
        if t <= prev:
            t = prev + 1
        prev = t
        yield i, t, types[int(rnd() * ntypes)]


_DAY_MS = 86400000
_day_prefix_cache = {}


def _iso_ms(ms: int) -> str:
    """Epoch milliseconds -> '2026-01-01T00:00:00.000Z' (fast path for the generators)."""
    day, rest = divmod(ms, _DAY_MS)
    prefix = _day_prefix_cache.get(day)
    if prefix is None:
        prefix = _day_prefix_cache[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    sec, milli = divmod(rest, 1000)
    minute, sec = divmod(sec, 60)
    return "%s%02d:%02d:%02d.%03dZ" % (prefix, minute // 60, minute % 60, sec, milli)


_DURATIONS = {"voice": (30, 1800), "chat": (120, 2400), "email": (60, 900)}
_TIERS = ("bronze", "silver", "gold", "platinum")
_EXT = {"voice": "opus", "email": "eml"}


def _make_record(refs, seed, i, t_ms, itype):
    rng = random.Random("%s:%d" % (seed, i))     # one rng per record: a window can start anywhere
    rnd = rng.random

    def pick(seq):
        return seq[int(rnd() * len(seq))]

    rid = _rng_uuid(rng)
    lo, hi = _DURATIONS.get(itype, (60, 900))
    end_ms = t_ms + int((lo + rnd() * (hi - lo)) * 1000)
    created_ms = end_ms + int((1 + rnd() * 119) * 1000)
    updated_ms = created_ms + int(rnd() * 3600) * 1000
    direction = "inbound" if itype == "chat" or rnd() < 0.85 else "outbound"
    agent = pick(refs["users"])
    skills_pool = refs["skills"]
    skills = [pick(skills_pool)]
    if len(skills_pool) > 1 and rnd() < 0.5:
        second = pick(skills_pool)
        if second != skills[0]:
            skills.append(second)
    first, last = pick(_FIRST), pick(_LAST)
    if itype == "voice":
        address = "tel:+1555%07d" % int(rnd() * 10 ** 7)
    elif itype == "email":
        address = "mailto:%s.%s%d@example.net" % (first.lower(), last.lower(), int(rnd() * 1000))
    else:
        address = "%s:%s.%s" % (itype, first.lower(), last.lower())
    lines = _LINES.get(itype, _LINES["chat"])
    k = 1 + int(rnd() * 3)
    start_line = int(rnd() * len(lines))
    transcripts = [{"text": lines[(start_line + j) % len(lines)]} for j in range(min(k, len(lines)))]
    return {
        "id": rid,
        "createdDate": _iso_ms(created_ms),
        "lastUpdatedDate": _iso_ms(updated_ms),
        "version": 1 + int(rnd() * 4),
        "selfUri": "/api/v2/interactions/" + rid,
        "interactionType": itype,
        "direction": direction,
        "startTime": _iso_ms(t_ms),
        "endTime": _iso_ms(end_ms),
        "routing": {"queue": {"id": pick(refs["queues"])}, "flow": {"id": pick(refs["flows"])},
                    "skills": [{"id": s} for s in skills], "languageId": pick(refs["languages"])},
        "wrapupCode": {"id": pick(refs["wrapupcodes"])},
        "userId": agent,
        "participants": [{"purpose": "agent", "userId": agent}, {"purpose": "customer", "address": address}],
        "attributes": {"customerTier": pick(_TIERS), "caseNumber": "CS-%06d" % int(rnd() * 10 ** 6)},
        "transcripts": transcripts,
        "media": {"recordingUri": "https://recordings.example.com/interactions/%s.%s"
                                  % (rid, _EXT.get(itype, "json"))},
    }


def generate_interactions(refs, n, start="2026-01-01T00:00:00Z", end="2026-02-01T00:00:00Z", seed=0,
                          types=DEFAULT_TYPES):
    """Yields n full v2.1 records (contract section 6), startTime increasing over [start, end)."""
    for i, t, itype in _skeleton(n, start, end, seed, types):
        yield _make_record(refs, seed, i, t, itype)


class InteractionSource:
    """A ready-made org.export_source over generate_interactions(refs, n, ...): yields only the
    records of the requested window and types (records outside it are never built), and has a cheap
    .count(start, end, types) that the fake uses for recordCount."""

    def __init__(self, refs, n, start="2026-01-01T00:00:00Z", end="2026-02-01T00:00:00Z", seed=0,
                 types=DEFAULT_TYPES):
        self.refs, self.n, self.start, self.end, self.seed, self.types = refs, n, start, end, seed, tuple(types)

    def _select(self, start_iso, end_iso, types):
        lo, hi, wanted = _to_ms(start_iso), _to_ms(end_iso), set(types)
        for i, t, itype in _skeleton(self.n, self.start, self.end, self.seed, self.types):
            if t >= hi:
                break
            if t >= lo and itype in wanted:
                yield i, t, itype

    def __call__(self, start_iso, end_iso, types):
        for i, t, itype in self._select(start_iso, end_iso, types):
            yield _make_record(self.refs, self.seed, i, t, itype)

    def count(self, start_iso, end_iso, types):
        return sum(1 for _ in self._select(start_iso, end_iso, types))

    def __iter__(self):
        return generate_interactions(self.refs, self.n, self.start, self.end, self.seed, self.types)


# --------------------------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Local fake Genesys Cloud orgs (see tests/FAKE_SPEC.md).")
    ap.add_argument("--orgs", default="source,target", help="comma-separated org names")
    ap.add_argument("--rate-limit", type=int)
    ap.add_argument("--rate-window", type=float)
    ap.add_argument("--status-rate-limit", type=int)
    ap.add_argument("--status-rate-window", type=float)
    ap.add_argument("--latency", type=float)
    ap.add_argument("--import-seconds-per-record", type=float)
    ap.add_argument("--export-job-seconds", type=float)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.orgs.split(",") if n.strip()]
    if not names:
        ap.error("--orgs needs at least one name")
    knobs = {k: v for k, v in vars(args).items() if k != "orgs" and v is not None}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake = FakeGenesys(orgs=names, **knobs).start()
    try:
        info = {"download_url": fake.download_url,
                "orgs": {o.name: {"login_url": o.login_url, "api_url": o.api_url, "client_id": o.client_id,
                                  "client_secret": o.client_secret, "org_id": o.org_id}
                         for o in fake.orgs.values()}}
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
