"""A local fake of the Genesys Cloud API that migrate.py speaks (stdlib only).

Implements ../shared/api-contract.md sections 1-9 over real loopback HTTP: one port per org
(serving both /oauth/token and /api/v2) and one separate "download host" for pre-signed export URLs.
The interface is fixed in tests/FAKE_SPEC.md; read that first.

Run standalone: python tests/fake_genesys.py --orgs source,target  (prints one JSON line, serves until SIGTERM)
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import functools
import hashlib
import io
import itertools
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = [
    "FakeGenesys",
    "FakeOrg",
    "LoggedRequest",
    "InteractionSource",
    "ConversationSource",
    "populate_reference_objects",
    "populate_config_org",
    "populate_clone_demo",
    "populate_people",
    "copy_some_names",
    "parse_flow_yaml",
    "FlowYamlError",
    "REFERENCE_KINDS",
    "flow_dependency_type",
    "make_wav",
    "REMOVE",
    "UUID_RE",
    "FLOW_TYPES",
    "FLOW_TYPE_KEYS",
    "generate_interactions",
    "generate_conversations",
    "canonical_json",
    "main",
]

KINDS = ("divisions", "skills", "languages", "wrapupcodes", "schedules", "schedulegroups",
         "queues", "flows", "trunkbasesettings", "users",
         "prompts", "datatables", "ivrs", "emergencygroups", "didpools", "dataactions")

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
    "prompts": "/api/v2/architect/prompts",
    "datatables": "/api/v2/flows/datatables",
    "ivrs": "/api/v2/architect/ivrs",
    "emergencygroups": "/api/v2/architect/emergencygroups",
    "didpools": "/api/v2/telephony/providers/edges/didpools",
    "dataactions": "/api/v2/integrations/actions",
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


@dataclass
class _Answer:
    """An injected answer (org.inject_answer): replaces the real handling of matching requests."""
    status: int
    body: object
    headers: dict
    raw: bytes | None
    method: str | None
    path_prefix: str | None
    path_suffix: str | None
    times: int

    def matches(self, method: str, path: str) -> bool:
        if self.path_suffix is not None and not path.endswith(self.path_suffix):
            return False
        return _Fault.matches(self, method, path)


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


_UPLOAD_KINDS = frozenset({"upload", "prompt-upload"})


class _Download:
    __slots__ = ("org", "job", "path", "expires", "expired", "kind")

    def __init__(self, org, job, path, expires, kind="export"):
        self.org = org
        self.job = job
        self.path = path
        self.expires = expires
        self.expired = False
        self.kind = kind                # "export" (interactions, gzip), "flows" (YAML), "upload" (flow job PUT),
        #                                 "prompt-upload" (prompt audio PUT), "prompt-media" (a prompt's mediaUri)


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
# Section 8: configuration objects (the request handlers; FakeOrg inherits them)
# --------------------------------------------------------------------------------------------

FLOW_TYPE_KEYS = {          # Flow.type -> Archy's top-level YAML key (camelCase)
    "BOT": "bot", "BUSINESSPROCESS": "businessProcess", "COMMONMODULE": "commonModule", "DIGITALBOT": "digitalBot",
    "EMAILSEND": "emailSend", "INBOUNDCALL": "inboundCall", "INBOUNDCHAT": "inboundChat",
    "INBOUNDEMAIL": "inboundEmail", "INBOUNDSHORTMESSAGE": "inboundShortMessage", "INQUEUECALL": "inqueueCall",
    "INQUEUEEMAIL": "inqueueEmail", "INQUEUESHORTMESSAGE": "inqueueShortMessage", "OUTBOUNDCALL": "outboundCall",
    "SECURECALL": "secureCall", "SPEECH": "speech", "SURVEYINVITE": "surveyInvite", "VOICE": "voice",
    "VOICEMAIL": "voicemail", "VOICESURVEY": "voiceSurvey", "WORKFLOW": "workflow", "WORKITEM": "workitem",
}
FLOW_TYPES = tuple(FLOW_TYPE_KEYS)
_FLOW_KEY_TYPES = {v: k for k, v in FLOW_TYPE_KEYS.items()}

_CONFIG_ROUTES = {
    ("authorization", "divisions"): "divisions",
    ("routing", "skills"): "skills",
    ("routing", "languages"): "languages",
    ("routing", "wrapupcodes"): "wrapupcodes",
    ("architect", "schedules"): "schedules",
    ("architect", "schedulegroups"): "schedulegroups",
    ("routing", "queues"): "queues",
    ("flows",): "flows",
    ("telephony", "providers", "edges", "trunkbasesettings"): "trunkbasesettings",
    ("users",): "users",
    ("architect", "prompts"): "prompts",
    ("flows", "datatables"): "datatables",
    ("architect", "ivrs"): "ivrs",
    ("architect", "emergencygroups"): "emergencygroups",
    ("telephony", "providers", "edges", "didpools"): "didpools",
    ("integrations", "actions"): "dataactions",
}
MAX_PAGE_SIZE = {"queues": 500, "skills": 500, "users": 500, "flows": 500}     # every other list: 100
DEFAULT_PAGE_SIZE = 25
MAX_QUEUE_WRAPUPCODES_POST = 100
_INT_VERSIONED = frozenset({"schedules", "schedulegroups", "trunkbasesettings", "ivrs", "emergencygroups"})
_READ_ONLY_KINDS = frozenset({"users", "didpools", "dataactions"})     # listed and read, never written by the API
_NO_PUT = frozenset({"skills", "languages"}) | _READ_ONLY_KINDS
MAX_TABLE_ROWS_PAGE_SIZE = 500
CONSUMED_RESOURCES_PATH = "/api/v2/architect/dependencytracking/consumedresources"
_PROMPT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_LANGUAGE_TAG_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")
_COLUMN_TYPES = ("string", "integer", "number", "boolean")
_READ_ONLY_FIELDS = frozenset({"selfUri", "state", "dateCreated", "dateModified", "createdBy", "modifiedBy",
                               "memberCount", "userMemberCount", "joinedMemberCount"})
_QUEUE_WRITABLE = frozenset({
    "name", "division", "description", "mediaSettings", "routingRules", "conditionalGroupRouting",
    "conditionalGroupActivation", "bullseye", "scoringMethod", "lastAgentRoutingMode", "acwSettings",
    "skillEvaluationMethod", "memberGroups", "queueFlow", "emailInQueueFlow", "messageInQueueFlow",
    "whisperPrompt", "onHoldPrompt", "defaultMediaLanguage", "autoAnswerOnly", "cannedResponseLibraries",
    "enableTranscription", "enableAudioMonitoring", "enableManualAssignment", "agentOwnedRouting", "directRouting",
    "callingPartyName", "callingPartyNumber", "defaultScripts", "outboundMessagingAddresses",
    "outboundEmailAddress", "peerId", "suppressInQueueCallRecording"})
_WRITABLE = {                   # fields a create/update body may set (the SDK's request models)
    "divisions": frozenset({"name", "description"}),
    "skills": frozenset({"name", "divisionId"}),
    "languages": frozenset({"name"}),
    "wrapupcodes": frozenset({"name", "division", "description"}),
    "schedules": frozenset({"name", "division", "description", "start", "end", "rrule"}),
    "schedulegroups": frozenset({"name", "division", "description", "timeZone", "openSchedules",
                                 "closedSchedules", "holidaySchedules"}),
    "queues": _QUEUE_WRITABLE,
    "flows": frozenset({"name", "type", "description", "division"}),
    "trunkbasesettings": frozenset({"name", "description", "division", "trunkMetabase", "properties", "trunkType",
                                    "site", "inboundSite"}),
    "prompts": frozenset({"name", "description"}),
    "datatables": frozenset({"name", "description", "division", "schema"}),
    "ivrs": frozenset({"name", "description", "division", "dnis", "openHoursFlow", "closedHoursFlow",
                       "holidayHoursFlow", "scheduleGroup"}),
    "emergencygroups": frozenset({"name", "description", "division", "enabled", "emergencyCallFlows"}),
}
_IGNORED = {                    # further read-only fields of the models: accepted and ignored
    "divisions": frozenset({"homeDivision", "objectCounts"}),
    "schedules": frozenset({"modifiedByApp", "createdByApp"}),
    "schedulegroups": frozenset({"modifiedByApp", "createdByApp"}),
    "trunkbasesettings": frozenset({"modifiedByApp", "createdByApp", "managed"}),
    "queues": frozenset({"sourceQueueId"}),
    "prompts": frozenset({"resources", "currentOperation"}),
    "ivrs": frozenset({"modifiedByApp", "createdByApp"}),
    "emergencygroups": frozenset({"modifiedByApp", "createdByApp"}),
    "flows": frozenset({"lockedUser", "lockedClient", "active", "system", "deleted", "publishedVersion",
                        "savedVersion", "inputSchema", "outputSchema", "checkedInVersion", "debugVersion",
                        "publishedBy", "currentOperation", "nluInfo", "supportedLanguages", "compatibleFlowTypes",
                        "worktypeId", "virtualAgentEnabled"}),
}
_KEEP_ON_UPDATE = frozenset({"dateCreated", "createdBy", "memberCount", "userMemberCount", "joinedMemberCount",
                             "state", "version", "homeDivision", "objectCounts", "createdByApp", "managed", "active",
                             "system", "deleted", "publishedVersion", "savedVersion", "checkedInVersion",
                             "debugVersion", "publishedBy", "type"})
def _initial_fields(kind):
    """What the platform sets on a new object of a kind: its state and first version."""
    if kind in ("skills", "languages"):
        return {"state": "active", "version": "1"}
    if kind in _INT_VERSIONED:
        return {"state": "active", "version": 1}
    if kind == "divisions":
        return {"homeDivision": False}
    return {}


_HAS_DATE_CREATED = frozenset({"wrapupcodes", "schedules", "schedulegroups", "queues", "trunkbasesettings", "ivrs",
                               "emergencygroups"})
_HAS_DATE_MODIFIED = _HAS_DATE_CREATED | {"skills", "languages"}
_QUEUE_ENUMS = {"skillEvaluationMethod": ("NONE", "BEST", "ALL"),
                "scoringMethod": ("TimestampAndPriority", "PriorityOnly"),
                "lastAgentRoutingMode": ("Disabled", "QueueMembersOnly", "AnyAgent")}
_WRAPUP_PROMPTS = ("MANDATORY", "OPTIONAL", "MANDATORY_TIMEOUT", "MANDATORY_FORCED_TIMEOUT", "AGENT_REQUESTED")
_TIMED_WRAPUP_PROMPTS = ("AGENT_REQUESTED", "MANDATORY_TIMEOUT", "MANDATORY_FORCED_TIMEOUT")  # SDK 269 AcwSettings
_RULE_OPERATORS = ("MEETS_THRESHOLD", "ANY")
_TRUNK_TYPES = ("EXTERNAL", "PHONE", "EDGE")
_QUEUE_FLOW_FIELDS = ("queueFlow", "emailInQueueFlow", "messageInQueueFlow")
_SCHEDULE_LISTS = ("openSchedules", "closedSchedules", "holidaySchedules")
_QUEUE_DEFAULTS = {             # what the platform fills in when a queue body leaves them out
    "mediaSettings": {m: {"enableAutoAnswer": False, "alertingTimeoutSeconds": t,
                          "serviceLevel": {"percentage": 0.8, "durationMs": d}}
                      for m, t, d in (("call", 8, 20000), ("callback", 30, 20000), ("chat", 30, 20000),
                                      ("email", 300, 86400000), ("message", 30, 20000))},
    "acwSettings": {"wrapupPrompt": "OPTIONAL"},
    "skillEvaluationMethod": "ALL",
    "scoringMethod": "TimestampAndPriority",
    "lastAgentRoutingMode": "Disabled",
    "autoAnswerOnly": False,
    "enableTranscription": False,
    "enableAudioMonitoring": False,
    "enableManualAssignment": False,
    "suppressInQueueCallRecording": True,
}
_LOCAL_DT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REMOVE = object()               # tamper_next_write(kind, field, REMOVE) stores the object without field
_TIME_ZONES = None


def _known_time_zones():
    global _TIME_ZONES
    if _TIME_ZONES is None:
        try:
            import zoneinfo
            _TIME_ZONES = frozenset(zoneinfo.available_timezones())
        except Exception:                                           # pragma: no cover - no tz database
            _TIME_ZONES = frozenset()
    return _TIME_ZONES


def _now_iso():
    return _iso(datetime.now(timezone.utc))


def _name_key(obj):
    name = obj.get("name") or ""
    return (name.casefold(), name, obj.get("id", ""))


def _name_matcher(pattern):
    """The `name` list filter: case-insensitive, `*` matches any run of characters, otherwise exact."""
    rx = re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.IGNORECASE | re.DOTALL)
    return lambda name: isinstance(name, str) and rx.fullmatch(name) is not None


def _bad(message, field=None, entity_id=None):
    details = None
    if field is not None or entity_id is not None:
        d = {"errorCode": "bad.request"}
        if field is not None:
            d["fieldName"] = field
        if entity_id is not None:
            d["entityId"] = str(entity_id)
        details = [d]
    return _Reply(400, "bad.request", message, details=details)


def _expand(query):
    return {x.strip() for x in (query or {}).get("expand", "").split(",") if x.strip()}


def _method_not_allowed(method, path_desc):
    return _Reply(405, "method.not.allowed", "%s is not supported on %s." % (method, path_desc))


# ---- Archy YAML: names, not ids (contract section 8) ----------------------------------------------
#
# The fake writes flow documents with _flow_yaml (a tree emitted by _emit_yaml) and reads them with
# parse_flow_yaml (PyYAML, YAML 1.1, imported lazily so `import fake_genesys` works without it).

REFERENCE_KINDS = {             # reference kind (as parse_flow_yaml names it) -> (org.objects kind, Dependency type)
    "queue": ("queues", "QUEUE"),
    "skill": ("skills", "ACDSKILL"),
    "language": ("languages", "ACDLANGUAGE"),
    "schedule group": ("schedulegroups", "SCHEDULEGROUP"),
    "emergency group": ("emergencygroups", "EMERGENCYGROUP"),
    "wrap-up code": ("wrapupcodes", "ACDWRAPUPCODE"),
    "flow": ("flows", None),                    # <FLOWTYPE>FLOW of the document's own type
    "common module": ("flows", "COMMONMODULEFLOW"),
    "data table": ("datatables", "DATATABLE"),
    "data action": ("dataactions", "DATAACTION"),
    "prompt": ("prompts", "USERPROMPT"),
}
_LIT_NAME_KEYS = {"targetQueue": "queue", "queue": "queue", "languageSkill": "language",
                  "defaultLanguageSkill": "language", "scheduleGroup": "schedule group",
                  "emergencyGroup": "emergency group", "wrapupCode": "wrap-up code"}
_PROMPT_RE = re.compile(r"(?<![A-Za-z0-9_.])Prompt\.([A-Za-z][A-Za-z0-9_]*)")
_MISSING = object()
_YAML_UNSAFE_START = tuple("'\"[]{}*&-@!|>%#,?:`")


def flow_dependency_type(ftype):
    """The Dependency type (and consumedresources objectType) of a flow type: INBOUNDCALL -> INBOUNDCALLFLOW,
    WORKFLOW stays WORKFLOW."""
    return "WORKFLOW" if ftype == "WORKFLOW" else "%sFLOW" % ftype


def _yaml():
    import yaml                                     # lazily: only flow documents need PyYAML
    return yaml


@functools.lru_cache(maxsize=16384)
def _yaml_str(s):
    """A string as a YAML scalar: plain when a YAML 1.1 parser (PyYAML) reads the plain text back as the same
    string, both as a value and as a key, and it avoids the contract's risky starts and sequences; otherwise
    single-quoted ('' for ') or, with line breaks or control characters, double-quoted."""
    yaml = _yaml()
    s = str(s)
    if (s and s == s.strip() and s.isprintable() and not s.startswith(_YAML_UNSAFE_START)
            and ": " not in s and " #" not in s and not s.endswith(":")):
        try:
            if yaml.safe_load("k: %s\n" % s) == {"k": s} and yaml.safe_load("%s: v\n" % s) == {s: "v"}:
                return s
        except yaml.YAMLError:
            pass
    if s.isprintable():
        quoted = "'%s'" % s.replace("'", "''")
    else:
        quoted = json.dumps(s, ensure_ascii=False)
    if yaml.safe_load("k: %s\n" % quoted) != {"k": s}:          # pragma: no cover - a bug in the rules above
        raise ValueError("cannot write %r as a YAML scalar" % s)
    return quoted


def _yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if v is None:
        return "null"
    return _yaml_str(v)


def _emit_yaml(tree, indent=2):
    """Block YAML in Archy's style: `indent` spaces a level; a sequence's dashes one level in from their key;
    the mapping under `- key:` four columns right of the dash (as Archy exports and hand-written flows do)."""
    lines = []

    def pair(key, value, col, text_col, child_col, seq_col):
        head = " " * col + ("- " if text_col != col else "") + _yaml_str(key) + ":"
        if isinstance(value, dict):
            if not value:
                lines.append(head + " {}")
            else:
                lines.append(head)
                mapping(value, child_col)
        elif isinstance(value, list):
            if not value:
                lines.append(head + " []")
            else:
                lines.append(head)
                sequence(value, seq_col)
        else:
            lines.append(head + " " + _yaml_value(value))

    def mapping(d, col):
        for k, v in d.items():
            pair(k, v, col, col, col + indent, col + indent)

    def sequence(items, col):
        for item in items:
            if isinstance(item, dict) and item:
                for n, (k, v) in enumerate(item.items()):
                    if n == 0:
                        pair(k, v, col, col + 2, col + 4, col + 4)
                    else:
                        pair(k, v, col + 2, col + 2, col + 4, col + 4)
            elif isinstance(item, (dict, list)):
                lines.append(" " * col + "- " + ("{}" if isinstance(item, dict) else "[]"))
            else:
                lines.append(" " * col + "- " + _yaml_value(item))

    mapping(tree, 0)
    return "\n".join(lines) + "\n"


_CALL_LIKE = frozenset({"INBOUNDCALL", "INQUEUECALL", "OUTBOUNDCALL", "SECURECALL", "VOICEMAIL", "VOICESURVEY",
                        "COMMONMODULE", "VOICE"})


def _lit_name(name):
    return {"lit": {"name": name}}


def _flow_yaml(ftype, name, description=None, division=None, refs=None, indent=2):
    """An Archy-layout YAML document that names what it uses (contract section 8; FAKE_SPEC.md has an example).

    division: the division's name (None: no `division:` key, i.e. the home division; a (name, id) pair is
    accepted and only its name is written). refs (all optional lists of names): "scheduleGroups",
    "emergencyGroups", "queues" (targetQueue of transferToAcd, and the last also as `queue:` of
    createCallback), "skills", "languages" (the first as defaultLanguageSkill, the last as languageSkill),
    "wrapupCodes", "flows" (targetFlow; flows of this document's type), "modules" (commonModule),
    "dataTables" (names or (name, [output columns])), "dataActions" ((category, name) pairs), "prompts"
    (Prompt.<name> in exp: blocks). indent: 2 or 4."""
    refs = refs or {}
    if isinstance(division, (tuple, list)):
        division = division[0]
    key = FLOW_TYPE_KEYS[ftype]
    call_like = ftype in _CALL_LIKE
    head = {"name": name}
    if description:
        head["description"] = description
    if division:
        head["division"] = division
    block, unit = ("tasks", "task") if call_like else ("states", "state")
    label = "Main Task" if call_like else "Initial State"
    head["startUpRef"] = "/%s/%s/%s[%s_10]" % (key, block, unit, label)
    head["defaultLanguage"] = "en-us"
    languages = list(refs.get("languages", ()))
    head["supportedLanguages"] = {"en-us": {"defaultLanguageSkill": _lit_name(languages[0]) if languages
                                            else {"noValue": True}}}
    prompts = list(refs.get("prompts", ()))
    if ftype == "INBOUNDCALL":
        head["initialGreeting"] = ({"exp": "ToAudio(Prompt.%s)" % prompts[0]} if prompts
                                   else {"tts": "Welcome to %s." % name})
    if ftype == "INQUEUECALL":
        head["settingsInQueueCall"] = {"holdMusic": _lit_name("PromptSystem.on_hold_music")}
    head["settingsActionDefaults"] = {
        "playAudioOnSilence": {"timeout": {"lit": {"seconds": 40}}},
        "callData": {"processingPrompt": _lit_name("PromptSystem.on_hold_music")},
        "collectInput": {"interDigitTimeout": {"lit": {"ms": 1500}}},
    }
    head["settingsErrorHandling"] = {"errorHandling": {"disconnect": {"none": True}},
                                     "preHandlingAudio": {"tts": "Sorry, an error occurred. Please try again."}}
    actions = []

    def action(kind, label, **body):
        actions.append({kind: dict({"name": label}, **body)})

    for n, pname in enumerate(prompts[1:] if ftype == "INBOUNDCALL" else prompts):
        action("playAudio", "Play %s" % pname,
               audio={"exp": "AudioPlaybackOptions(ToAudio(Prompt.%s), true)" % pname if n % 2 else
                      "ToAudio(Prompt.%s)" % pname})
    groups = list(refs.get("scheduleGroups", ()))
    emergency = list(refs.get("emergencyGroups", ()))
    for n in range(max(len(groups), len(emergency))):
        body = {}
        if n < len(emergency):
            body["emergencyGroup"] = _lit_name(emergency[n])
        if n < len(groups):
            body["scheduleGroup"] = _lit_name(groups[n])
        action("evaluateScheduleGroup", "Check hours %d" % (n + 1), **body)
    for entry in refs.get("dataTables", ()):
        tname, columns = (entry, None) if isinstance(entry, str) else (entry[0], list(entry[1]))
        found = {c: {"noValue": True} for c in (columns or ["value"])}
        action("dataTableLookup", "Look up %s" % tname, lookupValue={"exp": "Call.Ani"},
               dataTable={tname: {"foundOutputs": found,
                                  "failureOutputs": {"errorType": {"noValue": True},
                                                     "errorMessage": {"noValue": True}}}})
    for category, aname in refs.get("dataActions", ()):
        action("callData", "Call %s" % aname, timeout={"lit": {"minutes": 1}},
               category={category: {"dataAction": {aname: {
                   "inputs": {"customerId": {"exp": "Call.Ani"}},
                   "successOutputs": {"result": {"noValue": True}},
                   "failureOutputs": {"errorType": {"noValue": True}, "errorMessage": {"noValue": True}}}}}})
    skills = list(refs.get("skills", ()))
    queues = list(refs.get("queues", ()))
    for n, qname in enumerate(queues):
        body = {"targetQueue": _lit_name(qname), "preTransferAudio": {"tts": "Please hold."},
                "priority": {"lit": 0}}
        if n == 0 and languages:
            body["languageSkill"] = _lit_name(languages[-1])
        if n == 0 and skills:
            body["skills"] = [_lit_name(s) for s in skills]
        action("transferToAcd", "Transfer to ACD %d" % (n + 1), **body)
    if queues:
        action("createCallback", "Offer a callback", queue=_lit_name(queues[-1]),
               callbackNumber={"exp": "Call.Ani"}, callbackName={"lit": "Caller"})
    elif skills or languages:
        body = {}
        if languages:
            body["languageSkill"] = _lit_name(languages[-1])
        if skills:
            body["skills"] = [_lit_name(s) for s in skills]
        action("setRoutingData", "Set routing data", **body)
    for wname in refs.get("wrapupCodes", ()):
        action("setWrapupCode", "Set wrap-up code", wrapupCode=_lit_name(wname))
    for mname in refs.get("modules", ()):
        action("callCommonModule", "Call module", commonModule={mname: {"ver_latestPublished": {
            "inputs": {"Common.ani": {"exp": "Call.Ani"}}}}})
    for fname in refs.get("flows", ()):
        action("transferToFlow", "Transfer to another flow", targetFlow={"name": fname},
               preTransferAudio={"tts": "Transferring."})
    action("disconnect", "Disconnect")
    head[block] = [{unit: {"name": label, "refId": "%s_10" % label, "actions": actions}}]
    return _emit_yaml({key: head}, indent)


class FlowYamlError(ValueError):
    """A flow document the import job refuses; .messages: every problem found (one Failure message each)."""

    def __init__(self, messages):
        self.messages = list(messages)
        super().__init__("; ".join(self.messages))


def _describe(value):
    return "%s %r" % (type(value).__name__, value)


def parse_flow_yaml(text):
    """What an import job reads from an Archy YAML document (PyYAML, YAML 1.1).

    Returns {"type", "typeKey", "name", "description", "division", "references"}: division is the division's
    name or None (the home division); references lists (kind, name) once each in order of appearance, kind one
    of REFERENCE_KINDS (a data action's name is (category, name); a flow's has the document's type, a common
    module's COMMONMODULE). Raises FlowYamlError (a ValueError; .messages) for a document that is not YAML (the
    PyYAML message), not one mapping under a known type key, has no name, or names something with a value that
    is not a string (an unquoted `123` or `Yes`)."""
    yaml = _yaml()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowYamlError([str(exc)])
    if doc is None:
        raise FlowYamlError(["The file holds no flow document."])
    if not isinstance(doc, dict):
        raise FlowYamlError(["A flow document is a mapping under the flow type key (e.g. 'inboundCall:')."])
    if len(doc) != 1:
        raise FlowYamlError(["A flow document has exactly one top-level key, the flow type; found %s."
                             % ", ".join(repr(k) for k in doc)])
    key, body = next(iter(doc.items()))
    ftype = _FLOW_KEY_TYPES.get(key) if isinstance(key, str) else None
    if ftype is None:
        raise FlowYamlError(["Unknown flow type key %r." % (key,)])
    if not isinstance(body, dict):
        raise FlowYamlError(["The flow type key %r must hold a mapping." % key])
    errors = []
    name = body.get("name")
    if name is None or name == "":
        raise FlowYamlError(["The flow document has no name."])
    if not isinstance(name, str):
        errors.append("The flow name is %s, not a string (quote it)." % _describe(name))
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        errors.append("The flow description is %s, not a string (quote it)." % _describe(description))
    division = body.get("division")
    if division == "":
        division = None
    if division is not None and not isinstance(division, str):
        errors.append("The division is %s, not a division name (a string)." % _describe(division))
    refs, seen = [], set()

    def add(kind, value):
        parts = value if kind == "data action" else (value,)
        if not all(isinstance(p, str) and p for p in parts):
            errors.append("A %s name is %s, not a string (quote it)." % (kind, _describe(value)))
            return
        if (kind, value) not in seen:
            seen.add((kind, value))
            refs.append((kind, value))

    def lit_name(v):
        lit = v.get("lit") if isinstance(v, dict) else None
        return lit["name"] if isinstance(lit, dict) and "name" in lit else _MISSING

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _LIT_NAME_KEYS and lit_name(v) is not _MISSING:
                    add(_LIT_NAME_KEYS[k], lit_name(v))
                    walk({kk: vv for kk, vv in v.items() if kk != "lit"})
                elif k == "skills" and isinstance(v, list):
                    for item in v:
                        if lit_name(item) is not _MISSING:
                            add("skill", lit_name(item))
                        else:
                            walk(item)
                elif k == "targetFlow" and isinstance(v, dict) and "name" in v:
                    add("flow", v["name"])
                    walk({kk: vv for kk, vv in v.items() if kk != "name"})
                elif k == "commonModule" and isinstance(v, dict):
                    for module, inner in v.items():
                        add("common module", module)
                        walk(inner)
                elif k == "dataTable" and isinstance(v, dict):
                    for table, inner in v.items():
                        add("data table", table)
                        walk(inner)
                elif (k == "category" and isinstance(v, dict) and v
                      and all(isinstance(c, dict) and isinstance(c.get("dataAction"), dict) for c in v.values())):
                    for category, inner in v.items():
                        for action_name, action_body in inner["dataAction"].items():
                            add("data action", (category, action_name))
                            walk(action_body)
                        walk({kk: vv for kk, vv in inner.items() if kk != "dataAction"})
                else:
                    walk(v)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            for m in _PROMPT_RE.finditer(node):
                add("prompt", m.group(1))

    walk({k: v for k, v in body.items() if k not in ("name", "description", "division")})
    if errors:
        raise FlowYamlError(errors)
    return {"type": ftype, "typeKey": key, "name": name, "description": description, "division": division,
            "references": refs}


class _FlowExportJob:
    def __init__(self, org, flow_ids):
        self.id = str(uuid.uuid4())
        self.created = time.monotonic()
        self.duration = float(org.flow_job_seconds)
        self.flow_ids = flow_ids
        self.documents = []             # YAML texts in request order (snapshot at creation)
        self.messages = []              # [{"type", "text"}] -> Failure


class _PromptUpload:
    """A presigned upload of one prompt resource's audio (PUT on the download host)."""

    def __init__(self, prompt_id, language):
        self.id = str(uuid.uuid4())
        self.prompt_id = prompt_id
        self.language = language
        self.headers = {"Content-Type": "audio/wav", "x-amz-server-side-encryption": "AES256",
                        "x-amz-meta-upload-id": self.id}


class _PromptMedia:
    """What a prompt's mediaUri serves: the audio bytes as they were when the URL was signed."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


_ASSET_WRITABLE = frozenset({"language", "ttsString", "text", "tags"})
_ASSET_IGNORED = frozenset({"name", "promptId", "mediaUri", "audioFormat", "uploadStatus", "uploadUri",
                            "languageDefault", "durationSeconds", "selfUri"})
_SCHEMA_FIELDS = frozenset({"id", "$schema", "title", "description", "type", "required", "properties",
                            "additionalProperties"})


def _schema_columns(schema, strict=False):
    """{column: type} of a data table schema (JsonSchemaDocument); strict: 400 unless it is one the platform
    accepts (object type, a string `key` property, required ["key", ...], column types string|integer|number|
    boolean, additionalProperties false, only JsonSchemaDocument fields)."""
    if not strict:
        props = schema.get("properties") if isinstance(schema, dict) else None
        return {c: (p or {}).get("type") for c, p in (props or {}).items() if isinstance(p, dict)}
    if not isinstance(schema, dict):
        raise _bad("schema must be a JsonSchemaDocument object.", field="schema")
    unknown = sorted(set(schema) - _SCHEMA_FIELDS)
    if unknown:
        raise _bad("Unrecognized field(s) of the schema: %s." % ", ".join(unknown), field="schema." + unknown[0])
    if schema.get("type") != "object":
        raise _bad("schema.type must be \"object\".", field="schema.type")
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        raise _bad("schema.properties must be an object of columns.", field="schema.properties")
    key = props.get("key")
    if not isinstance(key, dict) or key.get("type") != "string":
        raise _bad("schema.properties.key must be a column of type string.", field="schema.properties.key")
    columns = {}
    for column, prop in props.items():
        where = "schema.properties.%s" % column
        if not isinstance(column, str) or not column:
            raise _bad("A column name must be a non-empty string.", field="schema.properties")
        if not isinstance(prop, dict) or prop.get("type") not in _COLUMN_TYPES:
            raise _bad("Column %r needs a type in %s." % (column, "|".join(_COLUMN_TYPES)), field=where + ".type")
        if "displayOrder" in prop and type(prop["displayOrder"]) is not int:
            raise _bad("%s.displayOrder must be an integer." % where, field=where + ".displayOrder")
        for text_field in ("title", "$id", "description"):
            if text_field in prop and not isinstance(prop[text_field], str):
                raise _bad("%s.%s must be a string." % (where, text_field), field=where + "." + text_field)
        columns[column] = prop["type"]
    required = schema.get("required")
    if not isinstance(required, list) or "key" not in required or any(r not in props for r in required):
        raise _bad("schema.required must list \"key\" (and only columns of the table).", field="schema.required")
    if schema.get("additionalProperties") is not False:
        raise _bad("schema.additionalProperties must be false.", field="schema.additionalProperties")
    return columns


def _column_value_ok(ctype, value):
    if ctype == "string":
        return isinstance(value, str)
    if ctype == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if ctype == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ctype == "boolean":
        return isinstance(value, bool)
    return False


def _is_wav(data):
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def _wav_duration(data):
    """Seconds of audio in a RIFF/WAVE file (its data chunk over the fmt chunk's byte rate); 3 decimals."""
    pos, byte_rate, size = 12, None, None
    while pos + 8 <= len(data):
        cid, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt " and length >= 12:
            byte_rate = int.from_bytes(data[pos + 16:pos + 20], "little")
        elif cid == b"data":
            size = min(length, len(data) - pos - 8)
            break
        pos += 8 + length + (length & 1)
    if not byte_rate:
        byte_rate = 16000
    if size is None:
        size = max(0, len(data) - 44)
    return round(size / float(byte_rate), 3)


def make_wav(seed=0, data_bytes=400, rate=8000):
    """A small valid WAV (RIFF/WAVE, PCM 16-bit mono at `rate` Hz) of data_bytes bytes of samples, the same
    for the same seed."""
    rng = random.Random("wav:%s" % (seed,))
    data_bytes -= data_bytes % 2
    samples = bytes(rng.getrandbits(8) for _ in range(data_bytes))
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
           + rate.to_bytes(4, "little") + (rate * 2).to_bytes(4, "little") + (2).to_bytes(2, "little")
           + (16).to_bytes(2, "little"))
    body = b"WAVE" + fmt + b"data" + len(samples).to_bytes(4, "little") + samples
    return b"RIFF" + len(body).to_bytes(4, "little") + body


class _FlowImportJob:
    def __init__(self):
        self.id = str(uuid.uuid4())
        self.created = time.monotonic()
        self.headers = {"Content-Type": "application/octet-stream",
                        "x-amz-server-side-encryption": "AES256",
                        "x-amz-meta-job-id": self.id}
        self.status = "Registered"
        self.content = None             # bytes once uploaded
        self.uploaded = None
        self.due = None
        self.finished = None
        self.flow_id = None
        self.messages = []


class _ConfigOrg:
    """Section 8 handlers. Everything that reads or writes the store runs under self.lock."""

    def _init_config(self):
        self.flow_content = {}              # flow id -> YAML text (never in an API answer)
        self.flow_deps = {}                 # flow id -> [dependency records] of its published content
        self._queue_wrapups = {}            # queue id -> [wrap-up code ids] (the queue's sub-resource)
        self.prompt_resources = {}          # prompt id -> {language: PromptAsset as stored (no mediaUri)}
        self.prompt_audio = {}              # (prompt id, language) -> bytes of a transcoded resource
        self._prompt_pending = {}           # (prompt id, language) -> (due monotonic, uploaded bytes)
        self.table_rows = {}                # data table id -> {key: row}
        self._tampers = collections.defaultdict(collections.deque)
        self._flow_export_jobs = {}
        self._flow_import_jobs = {}
        self._flow_running = []             # uploaded import jobs not finished yet

    # ---- public helpers -----------------------------------------------------------------
    def tamper_next_write(self, kind, field, value):
        """The next create or update of `kind` (API POST/PUT, or a flow import job) stores `value` in
        `field` (a dotted path like "acwSettings.timeoutMs"; value REMOVE drops the field) instead of
        what was sent; the API answer shows the stored (tampered) object. Calls queue up, one per write."""
        if kind not in KINDS:
            raise KeyError("unknown kind %r" % kind)
        with self.lock:
            self._tampers[kind].append((field, value))

    def home_division(self):
        """The home division object (created, named "Home", if the org has none)."""
        with self.lock:
            for d in self.objects["divisions"].values():
                if d.get("homeDivision"):
                    return d
            oid = self.add_object("divisions", "Home", description="Home division", homeDivision=True)
            return self.objects["divisions"][oid]

    def queue_wrapupcodes(self, queue_id):
        """The wrap-up codes on a queue (its sub-resource) as WrapupCode objects, in assignment order."""
        with self.lock:
            codes = self.objects["wrapupcodes"]
            return [self._render("wrapupcodes", codes[c]) for c in self._queue_wrapups.get(queue_id, ()) if c in codes]

    def set_queue_wrapupcodes(self, queue_id, code_ids):
        with self.lock:
            self._queue_wrapups[queue_id] = list(code_ids)

    def set_flow_content(self, flow_id, text):
        """Stores a flow's YAML as its content without a job or checks (None removes it) and records what it
        names: every name that resolves in the org now (names without an object, or a document the import would
        refuse, record nothing). What a published flow names cannot be deleted (409)."""
        with self.lock:
            if text is None:
                self.flow_content.pop(flow_id, None)
                self.flow_deps.pop(flow_id, None)
            else:
                self.flow_content[flow_id] = text
                self._index_flow(flow_id)

    def flow_dependencies(self, flow_id):
        """What the flow's published content names, as the consumedresources endpoint lists it (Dependency
        objects, sorted by name, then type: a skill and a language may share a name)."""
        with self.lock:
            return sorted((self._render_dependency(d) for d in self.flow_deps.get(flow_id, ())),
                          key=lambda d: (_name_key(d)[:2], d["type"], d["id"]))

    def remove_object(self, kind, object_id):
        """Removes an object bypassing the API's in-use checks (the platform losing something a flow uses) and
        returns it; KeyError if unknown. A flow that named it keeps the dependency record, listed with
        "deleted": true. Sub-resources go with it (queue wrap-up codes, flow content, prompt resources, rows)."""
        with self.lock:
            obj = self.objects[kind].pop(object_id)
            self._drop_sub_resources(kind, object_id)
            return obj

    def add_did_pool(self, start, end, **fields):
        """A DID pool [start, end] (E.164 strings, inclusive; same length). Returns its id."""
        for number in (start, end):
            if not isinstance(number, str) or not _E164_RE.match(number):
                raise ValueError("%r is not an E.164 number" % (number,))
        if len(start) != len(end) or int(end[1:]) < int(start[1:]):
            raise ValueError("a DID pool needs start <= end, of the same length")
        pid = fields.pop("id", None) or str(uuid.uuid4())
        now = _now_iso()
        obj = {"id": pid, "startPhoneNumber": start, "endPhoneNumber": end, "state": "active", "version": 1,
               "dateCreated": now, "dateModified": now}
        obj.update(fields)
        obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE["didpools"], pid)
        with self.lock:
            self.objects["didpools"][pid] = obj
        return pid

    def add_data_action(self, category, name, integration_id=None, **fields):
        """A data action (read only through the API) known by (category, name); ValueError if the org has one
        already. Returns its id."""
        with self.lock:
            if any(a.get("category") == category and a.get("name") == name
                   for a in self.objects["dataactions"].values()):
                raise ValueError("data action %r/%r exists already" % (category, name))
            aid = fields.pop("id", None) or str(uuid.uuid4())
            obj = {"id": aid, "name": name, "category": category,
                   "integrationId": integration_id or str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%s" % (self.org_id,
                                                                                                  category)))}
            obj.update(fields)
            obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE["dataactions"], aid)
            self.objects["dataactions"][aid] = obj
            return aid

    def add_prompt_resource(self, prompt_id, language, tts=None, text=None, audio=None):
        """A prompt resource written directly (no upload, no delay): `transcoded` with that audio (bytes; not
        RIFF/WAVE -> `transcodeFailed`), or `created` without audio (TTS only). Returns the stored PromptAsset."""
        language = language.lower()
        with self.lock:
            if prompt_id not in self.objects["prompts"]:
                raise KeyError("unknown prompt %r" % prompt_id)
            assets = self.prompt_resources.setdefault(prompt_id, {})
            asset = {"id": str(uuid.uuid4()), "promptId": prompt_id, "language": language}
            if tts is not None:
                asset["ttsString"] = tts
            if text is not None:
                asset["text"] = text
            asset["uploadStatus"] = "created"
            asset["languageDefault"] = not assets or bool(assets.get(language, {}).get("languageDefault"))
            asset["selfUri"] = "%s/%s/resources/%s" % (_SELF_URI_BASE["prompts"], prompt_id, language)
            assets[language] = asset
            self.prompt_audio.pop((prompt_id, language), None)
            if audio is not None:
                self._transcoded(prompt_id, language, bytes(audio))
            return dict(self.prompt_resources[prompt_id][language])

    def set_table_rows(self, table_id, rows):
        """Replaces a data table's rows (each checked against its schema like a POST; ValueError if not)."""
        with self.lock:
            table = self.objects["datatables"][table_id]
            out = {}
            for row in rows:
                try:
                    row = self._check_row(table, row)
                except _Reply as r:
                    raise ValueError(r.message)
                out[row["key"]] = row
            self.table_rows[table_id] = out

    def flow_export_job(self, job_id):
        return self._flow_export_jobs.get(job_id)

    def flow_import_job(self, job_id):
        return self._flow_import_jobs.get(job_id)

    def find_object(self, object_id):
        """(kind, object) of any kind holding that id, or (None, None)."""
        with self.lock:
            for kind in KINDS:
                obj = self.objects[kind].get(object_id)
                if obj is not None:
                    return kind, obj
        return None, None

    # ---- routing --------------------------------------------------------------------------
    def _route_config(self, m, parts, rec, body):
        """(status, answer) for a section-8 path, or None if the path is not one."""
        if parts == ["architect", "dependencytracking", "consumedresources"]:
            if m != "GET":
                raise _method_not_allowed(m, CONSUMED_RESOURCES_PATH)
            return self._consumed_resources(rec.query)
        if len(parts) >= 2 and parts[0] == "flows":
            if parts[1] == "actions":
                if parts[2:] == ["publish"] and m == "POST":
                    return self._flow_publish(rec.query)
                return None
            if parts[1] == "export":
                if parts[2:] == ["jobs"]:
                    if m == "POST":
                        return self._flow_export_create(_json_body(body))
                    raise _method_not_allowed(m, "/api/v2/flows/export/jobs")
                if len(parts) == 4 and parts[2] == "jobs" and m == "GET":
                    return self._flow_export_status(parts[3], rec.query)
                return None
            if parts[1] == "jobs":
                if len(parts) == 2 and m == "POST":
                    return self._flow_import_create()
                if len(parts) == 3 and m == "GET":
                    return self._flow_import_status(parts[2], rec.query)
                return None
        for n in (4, 2, 1):
            kind = _CONFIG_ROUTES.get(tuple(parts[:n]))
            if kind is not None:
                break
        else:
            return None
        rest = parts[n:]
        base = _SELF_URI_BASE[kind]
        if not rest:
            if m == "GET":
                return self._config_list(kind, rec.query)
            if m == "POST" and kind not in _READ_ONLY_KINDS:
                return self._config_create(kind, _json_body(body))
            raise _method_not_allowed(m, base)
        oid = unquote(rest[0])
        if len(rest) == 1:
            if m == "GET":
                return self._config_get(kind, oid, rec.query)
            if m == "PUT" and kind not in _NO_PUT:
                return self._config_update(kind, oid, _json_body(body))
            if m == "DELETE" and kind not in _READ_ONLY_KINDS:
                return self._config_delete(kind, oid, rec.query)
            raise _method_not_allowed(m, base + "/{id}")
        if kind == "prompts" and rest[1] == "resources":
            return self._route_prompt_resources(m, oid, rest[2:], rec, body)
        if kind == "datatables" and rest[1] == "rows":
            return self._route_table_rows(m, oid, rest[2:], rec, body)
        if kind == "queues" and rest[1] == "wrapupcodes":
            if len(rest) == 2:
                if m == "GET":
                    return self._queue_codes_list(oid, rec.query)
                if m == "POST":
                    return self._queue_codes_add(oid, _json_body(body))
                raise _method_not_allowed(m, base + "/{id}/wrapupcodes")
            if len(rest) == 3:
                if m == "DELETE":
                    return self._queue_codes_delete(oid, rest[2])
                raise _method_not_allowed(m, base + "/{id}/wrapupcodes/{codeId}")
        return None

    # ---- lists ----------------------------------------------------------------------------
    @staticmethod
    def _paging(query, max_size):
        try:
            size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
            number = int(query.get("pageNumber", 1))
        except ValueError:
            raise _bad("pageSize and pageNumber must be integers.")
        if size < 1 or number < 1:
            raise _bad("pageSize and pageNumber must be at least 1.")
        if size > max_size:
            raise _bad("pageSize %d exceeds the maximum of %d for this list." % (size, max_size), field="pageSize")
        return size, number

    @staticmethod
    def _listing(base, query, entities, size, number, total):
        count = -(-total // size)
        extra = [(k, v) for k, v in query.items() if k not in ("pageSize", "pageNumber")]

        def uri(p):
            return "%s?%s" % (base, urlencode([("pageSize", size), ("pageNumber", p)] + extra))

        answer = {"entities": entities, "pageSize": size, "pageNumber": number, "total": total,
                  "firstUri": uri(1), "selfUri": uri(number), "lastUri": uri(max(count, 1)), "pageCount": count}
        if number < count:
            answer["nextUri"] = uri(number + 1)
        if number > 1:
            answer["previousUri"] = uri(min(number - 1, max(count, 1)))
        return answer

    def _page(self, kind, items, query, size, number, base, expand=None, listing=True):
        """Filters (name), sorts by name (DID pools: by start number) and cuts one page; call under self.lock."""
        if "name" in query:
            match = _name_matcher(query["name"])
            items = [o for o in items if match(o.get("name"))]
        if kind == "didpools":
            items = sorted(items, key=lambda o: (len(o.get("startPhoneNumber", "")), o.get("startPhoneNumber", ""),
                                                 o.get("id", "")))
        else:
            items = sorted(items, key=_name_key)
        page = items[(number - 1) * size: number * size]
        entities = [self._render(kind, o, expand, listing) for o in page]
        return self._listing(base, query, entities, size, number, len(items))

    def _config_list(self, kind, query):
        size, number = self._paging(query, MAX_PAGE_SIZE.get(kind, 100))
        if kind == "prompts":
            self._step_prompt_transcodes(time.monotonic())
        with self.lock:
            items = self.objects[kind].values()
            if kind == "flows" and query.get("type"):
                wanted = {t.strip().upper() for t in query["type"].split(",") if t.strip()}
                items = [o for o in items if str(o.get("type", "")).upper() in wanted]
            if kind == "dataactions" and query.get("category"):
                items = [o for o in items if o.get("category") == query["category"]]
            return 200, self._page(kind, items, query, size, number, _SELF_URI_BASE[kind], _expand(query))

    def _render(self, kind, obj, expand=None, listing=False):
        """The API view of a stored object: a shallow copy with the division's current name. expand (a set, None:
        everything): trunk lists show `properties` and data tables `schema` only when asked; prompts carry
        their resources."""
        out = dict(obj)
        div = out.get("division")
        if isinstance(div, dict):
            d = self.objects["divisions"].get(div.get("id"))
            if d is not None:
                out["division"] = {"id": d["id"], "name": d.get("name"), "selfUri": d.get("selfUri")}
        if kind == "trunkbasesettings" and listing and expand is not None and "properties" not in expand:
            out.pop("properties", None)
        elif kind == "datatables" and expand is not None and "schema" not in expand:
            out.pop("schema", None)
        elif kind == "prompts":
            assets = self.prompt_resources.get(obj["id"], {})
            out["resources"] = [self._render_asset(assets[language]) for language in sorted(assets)]
        elif kind == "users" and expand:
            self._render_user_expansions(out, expand, listing)
        return out

    def _config_get(self, kind, oid, query=None):
        if kind == "prompts":
            self._step_prompt_transcodes(time.monotonic())
        with self.lock:
            obj = self.objects[kind].get(oid)
            if obj is None:
                raise _Reply(404, "not.found", "%s %s not found." % (kind, oid))
            return 200, self._render(kind, obj, _expand(query or {}))

    # ---- create / update ------------------------------------------------------------------
    def _config_create(self, kind, body):
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object.")
        if "id" in body:
            raise _bad("id is read-only and must not be sent when creating an object.", field="id")
        if "version" in body:
            raise _Reply(409, "general.conflict", "version must not be sent when creating an object.",
                         details=[{"errorCode": "general.conflict", "fieldName": "version"}])
        with self.lock:
            fields = self._validate(kind, body, None)
            self._check_unique(kind, fields["name"], fields.get("type"), None)
            obj = self._assemble(kind, str(uuid.uuid4()), fields, None)
            self._apply_tamper(kind, obj)
            self.objects[kind][obj["id"]] = obj
            return 200, self._render(kind, obj)

    def _config_update(self, kind, oid, body):
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object.")
        with self.lock:
            current = self.objects[kind].get(oid)
            if current is None:
                raise _Reply(404, "not.found", "%s %s not found." % (kind, oid))
            if "id" in body and body["id"] != oid:
                raise _bad("The id in the body (%s) differs from the id in the path (%s)." % (body["id"], oid),
                           field="id")
            if kind == "trunkbasesettings" and current.get("managed"):
                raise _bad("Trunk base settings %s are managed by the platform and cannot be changed." % oid,
                           entity_id=oid)
            if kind in _INT_VERSIONED:
                version = body.get("version")
                if type(version) is not int or version != current.get("version"):
                    raise _Reply(409, "general.conflict",
                                 "version %r is not the current version %r of %s %s." % (
                                     version, current.get("version"), kind, oid),
                                 details=[{"errorCode": "general.conflict", "fieldName": "version", "entityId": oid}])
            fields = self._validate(kind, body, current)
            self._check_unique(kind, fields["name"], fields.get("type", current.get("type")), oid)
            obj = self._assemble(kind, oid, fields, current)
            self._apply_tamper(kind, obj)
            self.objects[kind][oid] = obj
            return 200, self._render(kind, obj)

    def _validate(self, kind, body, current):
        """Normalized writable fields of a body; raises 400 for unknown fields, bad values, bad references."""
        allowed = _WRITABLE[kind]
        ignored = _READ_ONLY_FIELDS | _IGNORED.get(kind, frozenset())
        if current is not None:
            ignored = ignored | {"id"} | ({"version"} if kind in _INT_VERSIONED else set())
        unknown = sorted(k for k in body if k not in allowed and k not in ignored)
        if unknown:
            hint = " (a skill's division is given as divisionId)" if kind == "skills" and "division" in unknown else ""
            raise _Reply(400, "bad.request", "Unrecognized field(s) for %s: %s%s." % (kind, ", ".join(unknown), hint),
                         details=[{"errorCode": "bad.request", "fieldName": k} for k in unknown])
        b = {k: v for k, v in body.items() if k in allowed}
        name = b.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad("name is required and must be a non-empty string.", field="name")
        f = {"name": name}
        if "description" in b and b["description"] is not None:
            if not isinstance(b["description"], str):
                raise _bad("description must be a string.", field="description")
            f["description"] = b["description"]
        elif kind == "divisions" and current is None:
            raise _bad("description is required (AuthzDivision); send \"\" for none.", field="description")
        if kind == "skills":
            did = b.get("divisionId")
            if did is None:
                f["division"] = self._division_ref(None, "divisionId")
            elif not isinstance(did, str):
                raise _bad("divisionId must be a string.", field="divisionId")
            else:
                f["division"] = self._division_ref({"id": did}, "divisionId")
        elif "division" in allowed:
            if b.get("division") is not None:
                f["division"] = self._division_ref(b["division"], "division")
            elif current is not None and isinstance(current.get("division"), dict):
                f["division"] = current["division"]
            else:
                f["division"] = self._division_ref(None, "division")
        check = getattr(self, "_check_" + kind, None)
        if check is not None:
            check(b, f, current)
        return f

    def _home_ref(self):
        d = self.home_division()
        return {"id": d["id"], "name": d.get("name"), "selfUri": d.get("selfUri")}

    def _division_ref(self, value, field):
        if value is None:
            return self._home_ref()
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise _bad("%s must be an object with a string id." % field, field=field)
        d = self.objects["divisions"].get(value["id"])
        if d is None:
            raise _bad("Division %s (%s) does not exist." % (value["id"], field), field=field, entity_id=value["id"])
        return {"id": d["id"], "name": d.get("name"), "selfUri": d.get("selfUri")}

    def _entity_ref(self, kind, value, field, what):
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise _bad("%s must be an object with a string id." % field, field=field)
        obj = self.objects[kind].get(value["id"])
        if obj is None:
            raise _bad("%s %s (%s) does not exist." % (what, value["id"], field), field=field, entity_id=value["id"])
        return {"id": obj["id"], "name": obj.get("name"), "selfUri": obj.get("selfUri")}

    @staticmethod
    def _check_enum(value, allowed, field):
        if value not in allowed:
            raise _bad("%s must be one of %s; got %r." % (field, "|".join(allowed), value), field=field)

    def _check_schedules(self, b, f, current):
        for key in ("start", "end"):
            value = b.get(key)
            if not isinstance(value, str) or not _LOCAL_DT_RE.match(value):
                raise _bad("%s must be a local date-time without a zone (e.g. 2026-01-05T08:00:00.000); got %r."
                           % (key, value), field=key)
            f[key] = value
        if f["end"] <= f["start"]:
            raise _bad("end must be after start.", field="end")
        if b.get("rrule") is not None:
            if not isinstance(b["rrule"], str):
                raise _bad("rrule must be a string.", field="rrule")
            f["rrule"] = b["rrule"]

    def _check_schedulegroups(self, b, f, current):
        tz = b.get("timeZone")
        zones = _known_time_zones()
        if not isinstance(tz, str) or not tz or (zones and tz not in zones):
            raise _bad("timeZone %r is not a known time zone." % (tz,), field="timeZone")
        f["timeZone"] = tz
        for key in _SCHEDULE_LISTS:
            refs = b.get(key) or []
            if not isinstance(refs, list):
                raise _bad("%s must be a list." % key, field=key)
            f[key] = [self._entity_ref("schedules", r, "%s[%d]" % (key, i), "Schedule") for i, r in enumerate(refs)]

    def _check_queues(self, b, f, current):
        for key, value in b.items():
            if key in ("name", "description", "division"):
                continue
            if key in _QUEUE_ENUMS:
                self._check_enum(value, _QUEUE_ENUMS[key], key)
            elif key in ("autoAnswerOnly", "enableTranscription", "enableAudioMonitoring", "enableManualAssignment",
                         "suppressInQueueCallRecording"):
                if not isinstance(value, bool):
                    raise _bad("%s must be a boolean." % key, field=key)
            elif key == "acwSettings":
                if not isinstance(value, dict):
                    raise _bad("acwSettings must be an object.", field=key)
                if "wrapupPrompt" in value:
                    self._check_enum(value["wrapupPrompt"], _WRAPUP_PROMPTS, "acwSettings.wrapupPrompt")
                if "timeoutMs" in value:
                    timeout = value["timeoutMs"]
                    if type(timeout) is not int:
                        raise _bad("acwSettings.timeoutMs must be an integer.", field="acwSettings.timeoutMs")
                    if value.get("wrapupPrompt") not in _TIMED_WRAPUP_PROMPTS:
                        raise _bad("acwSettings.timeoutMs is only valid with wrapupPrompt %s." % " or ".join(
                            _TIMED_WRAPUP_PROMPTS), field="acwSettings.timeoutMs")
                    if not 1000 <= timeout <= 3600000:
                        raise _bad("acwSettings.timeoutMs must be between 1000 (1 s) and 3600000 (60 min).",
                                   field="acwSettings.timeoutMs")
            elif key == "routingRules":
                if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
                    raise _bad("routingRules must be a list of objects.", field=key)
                for i, r in enumerate(value):
                    if "operator" in r:
                        self._check_enum(r["operator"], _RULE_OPERATORS, "routingRules[%d].operator" % i)
            elif key == "bullseye":
                value = self._normalize_bullseye(value)
            elif key == "memberGroups":
                if value is None:
                    continue
                value = self._member_groups(value, key)
            elif key in _QUEUE_FLOW_FIELDS:
                if value is None:
                    continue
                value = self._entity_ref("flows", value, key, "Flow")
            elif key in ("whisperPrompt", "onHoldPrompt"):
                if value is None:
                    continue
                value = self._entity_ref("prompts", value, key, "Prompt")
            elif key == "mediaSettings" and not isinstance(value, dict):
                raise _bad("mediaSettings must be an object.", field=key)
            if value is not None:
                f[key] = value
        for key, default in _QUEUE_DEFAULTS.items():
            if key not in f:
                f[key] = copy.deepcopy(default)

    def _normalize_bullseye(self, value):
        if not isinstance(value, dict) or not isinstance(value.get("rings", []), list):
            raise _bad("bullseye must be an object with a list rings.", field="bullseye")
        rings = []
        for i, ring in enumerate(value.get("rings", [])):
            if not isinstance(ring, dict):
                raise _bad("bullseye.rings[%d] must be an object." % i, field="bullseye.rings[%d]" % i)
            ring = dict(ring)
            crit = ring.get("expansionCriteria")
            if crit is not None:
                if not isinstance(crit, list) or not all(isinstance(c, dict) for c in crit):
                    raise _bad("bullseye.rings[%d].expansionCriteria must be a list of objects." % i)
                for c in crit:
                    if "type" in c:
                        self._check_enum(c["type"], ("TIMEOUT_SECONDS",),
                                         "bullseye.rings[%d].expansionCriteria[].type" % i)
            actions = ring.get("actions")
            if actions is not None:
                if not isinstance(actions, dict):
                    raise _bad("bullseye.rings[%d].actions must be an object." % i)
                actions = dict(actions)
                skills = actions.get("skillsToRemove") or []
                if not isinstance(skills, list):
                    raise _bad("bullseye.rings[%d].actions.skillsToRemove must be a list." % i)
                actions["skillsToRemove"] = [
                    self._entity_ref("skills", s, "bullseye.rings[%d].actions.skillsToRemove[%d].id" % (i, k), "Skill")
                    for k, s in enumerate(skills)]
                ring["actions"] = actions
            if ring.get("memberGroups") is not None:
                ring["memberGroups"] = self._member_groups(ring["memberGroups"], "bullseye.rings[%d].memberGroups" % i)
            rings.append(ring)
        out = dict(value)
        out["rings"] = rings
        return out

    def _check_flows(self, b, f, current):
        ftype = b.get("type")
        if current is None:
            if ftype not in FLOW_TYPES:
                raise _bad("type must be one of %s; got %r." % ("|".join(FLOW_TYPES), ftype), field="type")
            f["type"] = ftype
        elif ftype is not None and ftype != current.get("type"):
            raise _bad("The type of a flow cannot change (%s -> %r)." % (current.get("type"), ftype), field="type")

    def _check_trunkbasesettings(self, b, f, current):
        meta = b.get("trunkMetabase")
        if not isinstance(meta, dict) or not isinstance(meta.get("id"), str) or not meta["id"]:
            raise _bad("trunkMetabase must be an object with a string id.", field="trunkMetabase")
        f["trunkMetabase"] = {k: meta[k] for k in ("id", "name") if isinstance(meta.get(k), str)}
        ttype = b.get("trunkType", "EXTERNAL")
        self._check_enum(ttype, _TRUNK_TYPES, "trunkType")
        f["trunkType"] = ttype
        props = b.get("properties", {})
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise _bad("properties must be an object.", field="properties")
        f["properties"] = props
        for key in ("site", "inboundSite"):
            if b.get(key) is not None:
                if not isinstance(b[key], dict) or not isinstance(b[key].get("id"), str):
                    raise _bad("%s must be an object with a string id." % key, field=key)
                f[key] = b[key]

    def _check_prompts(self, b, f, current):
        if not _PROMPT_NAME_RE.match(f["name"]):
            raise _bad("A prompt name holds letters, digits and _ and starts with a letter; got %r." % f["name"],
                       field="name")

    def _check_datatables(self, b, f, current):
        schema = b.get("schema")
        if schema is None:
            if current is None:
                raise _bad("schema is required (a JsonSchemaDocument with a string key column).", field="schema")
            f["schema"] = current.get("schema")
            return
        columns = _schema_columns(schema, strict=True)
        if current is not None:
            old = _schema_columns(current.get("schema") or {})
            dropped = [c for c in old if c not in columns]
            if dropped:
                raise _bad("A data table's schema may only gain columns; this one drops %s." % ", ".join(
                    repr(c) for c in dropped), field="schema.properties")
            changed = [c for c in old if columns[c] != old[c]]
            if changed:
                raise _bad("A data table's columns keep their types; %s changed." % ", ".join(
                    repr(c) for c in changed), field="schema.properties")
        f["schema"] = copy.deepcopy(schema)

    def _in_did_pool(self, number):
        digits = int(number[1:])
        for pool in self.objects["didpools"].values():
            start, end = pool.get("startPhoneNumber") or "", pool.get("endPhoneNumber") or ""
            if (len(start) == len(number) == len(end) and start[1:].isdigit() and end[1:].isdigit()
                    and int(start[1:]) <= digits <= int(end[1:])):
                return True
        return False

    def _check_ivrs(self, b, f, current):
        dnis = b.get("dnis")
        if dnis is None:
            dnis = []
        if not isinstance(dnis, list):
            raise _bad("dnis must be a list of E.164 numbers.", field="dnis")
        for i, number in enumerate(dnis):
            if not isinstance(number, str) or not _E164_RE.match(number):
                raise _bad("dnis[%d] %r is not an E.164 number (+ and digits)." % (i, number), field="dnis[%d]" % i)
            if number in dnis[:i]:
                raise _bad("dnis lists %s twice." % number, field="dnis[%d]" % i)
        for i, number in enumerate(dnis):
            if not self._in_did_pool(number):
                raise _Reply(400, "bad.request", "The number %s (dnis[%d]) is not in any DID pool of the org." % (
                    number, i), details=[{"errorCode": "bad.request", "fieldName": "dnis[%d]" % i,
                                          "entityName": number}])
        for key in ("openHoursFlow", "closedHoursFlow", "holidayHoursFlow"):
            if b.get(key) is not None:
                f[key] = self._entity_ref("flows", b[key], key, "Flow")
        if b.get("scheduleGroup") is not None:
            f["scheduleGroup"] = self._entity_ref("schedulegroups", b["scheduleGroup"], "scheduleGroup",
                                                  "Schedule group")
        own = current.get("id") if current is not None else None
        for other in self.objects["ivrs"].values():
            if other.get("id") == own:
                continue
            taken = [n for n in dnis if n in (other.get("dnis") or ())]
            if taken:
                raise _Reply(409, "general.conflict", "The number %s is already assigned to IVR %s (%s)." % (
                    taken[0], other.get("name"), other["id"]),
                    details=[{"errorCode": "general.conflict", "fieldName": "dnis", "entityId": other["id"],
                              "entityName": str(other.get("name"))}])
        f["dnis"] = list(dnis)

    def _check_emergencygroups(self, b, f, current):
        enabled = b.get("enabled", False)
        if enabled is None:
            enabled = False
        if not isinstance(enabled, bool):
            raise _bad("enabled must be a boolean.", field="enabled")
        f["enabled"] = enabled
        flows = b.get("emergencyCallFlows")
        if flows is None:
            flows = []
        if not isinstance(flows, list):
            raise _bad("emergencyCallFlows must be a list.", field="emergencyCallFlows")
        out = []
        for i, entry in enumerate(flows):
            where = "emergencyCallFlows[%d]" % i
            if not isinstance(entry, dict):
                raise _bad("%s must be an object." % where, field=where)
            unknown = sorted(set(entry) - {"emergencyFlow", "ivrs"})
            if unknown:
                raise _bad("Unrecognized field(s) of %s (EmergencyCallFlow): %s." % (where, ", ".join(unknown)),
                           field=where + "." + unknown[0])
            item = {}
            if entry.get("emergencyFlow") is not None:
                item["emergencyFlow"] = self._entity_ref("flows", entry["emergencyFlow"], where + ".emergencyFlow",
                                                         "Flow")
            ivrs = entry.get("ivrs") or []
            if not isinstance(ivrs, list):
                raise _bad("%s.ivrs must be a list." % where, field=where + ".ivrs")
            item["ivrs"] = [self._entity_ref("ivrs", r, "%s.ivrs[%d]" % (where, k), "IVR") for k, r in enumerate(ivrs)]
            out.append(item)
        f["emergencyCallFlows"] = out

    def _check_unique(self, kind, name, ftype, exclude_id):
        for o in self.objects[kind].values():
            if o.get("name") == name and o.get("id") != exclude_id and (kind != "flows" or o.get("type") == ftype):
                what = "%s of type %s" % (kind, ftype) if kind == "flows" else kind
                raise _Reply(409, "general.conflict", "The name %r is already used by %s %s." % (name, what, o["id"]),
                             details=[{"errorCode": "general.conflict", "fieldName": "name",
                                       "entityId": o["id"], "entityName": name}])

    def _assemble(self, kind, oid, fields, current):
        now = _now_iso()
        obj = {"id": oid, "name": fields["name"]}
        if current is None:
            if kind in _HAS_DATE_CREATED:
                obj["dateCreated"] = now
            obj.update(_initial_fields(kind))
            if kind == "queues":
                obj.update(memberCount=0, userMemberCount=0, joinedMemberCount=0)
            elif kind == "flows":
                obj.update(active=False, system=False, deleted=False)
            elif kind == "trunkbasesettings":
                obj["managed"] = False
            if kind == "schedulegroups":
                for key in _SCHEDULE_LISTS:
                    obj[key] = []
        else:
            for k, v in current.items():
                if k in _KEEP_ON_UPDATE:
                    obj[k] = v
            if kind in _INT_VERSIONED:
                obj["version"] = int(current.get("version") or 0) + 1
        obj.update(fields)
        if kind == "queues":
            obj.update(self._queue_counts(oid, obj))       # they follow the members (direct and by group)
        if kind in _HAS_DATE_MODIFIED:
            obj["dateModified"] = now
        obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE[kind], oid)
        return obj

    def _apply_tamper(self, kind, obj):
        queue = self._tampers.get(kind)
        if not queue:
            return
        field, value = queue.popleft()
        path = field.split(".")
        target = obj
        for part in path[:-1]:
            nxt = target.get(part)
            nxt = dict(nxt) if isinstance(nxt, dict) else {}
            target[part] = nxt
            target = nxt
        if value is REMOVE:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = copy.deepcopy(value)

    # ---- delete ---------------------------------------------------------------------------
    def _config_delete(self, kind, oid, query=None):
        query = query or {}
        with self.lock:
            obj = self.objects[kind].get(oid)
            if obj is None:
                raise _Reply(404, "not.found", "%s %s not found." % (kind, oid))
            if kind == "trunkbasesettings" and obj.get("managed"):
                raise _bad("Trunk base settings %s are managed by the platform and cannot be deleted." % oid,
                           entity_id=oid)
            user = self._in_use(kind, oid, obj)
            if user is not None:
                raise _Reply(409, "general.conflict", "%s %s (%s) is in use by %s." % (kind, oid, obj.get("name"), user),
                             details=[{"errorCode": "general.conflict", "entityId": oid,
                                       "entityName": str(obj.get("name"))}])
            if kind == "prompts" and self.prompt_resources.get(oid) and \
                    str(query.get("allResources", "")).lower() != "true":
                raise _Reply(409, "general.conflict", "Prompt %s (%s) has %d resource(s); delete it with "
                             "allResources=true." % (oid, obj.get("name"), len(self.prompt_resources[oid])),
                             details=[{"errorCode": "general.conflict", "entityId": oid,
                                       "entityName": str(obj.get("name"))}])
            if kind == "datatables" and self.table_rows.get(oid) and str(query.get("force", "")).lower() != "true":
                raise _Reply(409, "general.conflict", "Data table %s (%s) holds %d row(s); delete it with force=true."
                             % (oid, obj.get("name"), len(self.table_rows[oid])),
                             details=[{"errorCode": "general.conflict", "entityId": oid,
                                       "entityName": str(obj.get("name"))}])
            del self.objects[kind][oid]
            self._drop_sub_resources(kind, oid)
        return 204, None

    def _drop_sub_resources(self, kind, oid):
        self._drop_people(kind, oid)
        if kind == "queues":
            self._queue_wrapups.pop(oid, None)
        elif kind == "flows":
            self.flow_content.pop(oid, None)
            self.flow_deps.pop(oid, None)
        elif kind == "prompts":
            for language in self.prompt_resources.pop(oid, {}):
                self.prompt_audio.pop((oid, language), None)
                self._prompt_pending.pop((oid, language), None)
        elif kind == "datatables":
            self.table_rows.pop(oid, None)

    @staticmethod
    def _bullseye_skill_ids(queue):
        bullseye = queue.get("bullseye")
        if not isinstance(bullseye, dict):
            return
        for ring in bullseye.get("rings") or []:
            actions = ring.get("actions") if isinstance(ring, dict) else None
            for s in (actions or {}).get("skillsToRemove") or []:
                if isinstance(s, dict):
                    yield s.get("id")

    def _in_use(self, kind, oid, obj):
        """A description of the first user of an object (blocks its deletion), or None. Under self.lock."""
        objs = self.objects
        if kind == "divisions":
            if obj.get("homeDivision"):
                return "the org (it is the home division)"
            for k in KINDS:
                for o in objs[k].values():
                    div = o.get("division")
                    if isinstance(div, dict) and div.get("id") == oid:
                        return "%s %s (%s)" % (k, o.get("id"), o.get("name"))
        elif kind == "skills":
            for q in objs["queues"].values():
                if oid in set(self._bullseye_skill_ids(q)):
                    return "the bullseye of queue %s (%s)" % (q["id"], q.get("name"))
        elif kind == "wrapupcodes":
            for qid, codes in self._queue_wrapups.items():
                if oid in codes and qid in objs["queues"]:
                    return "queue %s (%s)" % (qid, objs["queues"][qid].get("name"))
        elif kind == "schedules":
            for g in objs["schedulegroups"].values():
                if any(isinstance(r, dict) and r.get("id") == oid for key in _SCHEDULE_LISTS for r in g.get(key) or []):
                    return "schedule group %s (%s)" % (g["id"], g.get("name"))
        elif kind == "schedulegroups":
            for ivr in objs["ivrs"].values():
                if (ivr.get("scheduleGroup") or {}).get("id") == oid:
                    return "IVR %s (%s)" % (ivr["id"], ivr.get("name"))
        elif kind == "prompts":
            for q in objs["queues"].values():
                for key in ("whisperPrompt", "onHoldPrompt"):
                    if isinstance(q.get(key), dict) and q[key].get("id") == oid:
                        return "the %s of queue %s (%s)" % (key, q["id"], q.get("name"))
        elif kind == "ivrs":
            for g in objs["emergencygroups"].values():
                if any(isinstance(r, dict) and r.get("id") == oid
                       for e in g.get("emergencyCallFlows") or () for r in e.get("ivrs") or ()):
                    return "emergency group %s (%s)" % (g["id"], g.get("name"))
        if kind != "flows":
            for fid, deps in self.flow_deps.items():
                flow = objs["flows"].get(fid)
                if flow is None or not flow.get("publishedVersion"):
                    continue
                if any(d["kind"] == kind and d["id"] == oid for d in deps):
                    return "the published flow %s (%s)" % (fid, flow.get("name"))
        return None

    # ---- queue wrap-up codes --------------------------------------------------------------
    def _queue_or_404(self, qid):
        queue = self.objects["queues"].get(qid)
        if queue is None:
            raise _Reply(404, "not.found", "queues %s not found." % qid)
        return queue

    def _queue_codes_list(self, qid, query):
        size, number = self._paging(query, 100)
        with self.lock:
            self._queue_or_404(qid)
            codes = self.objects["wrapupcodes"]
            items = [codes[c] for c in self._queue_wrapups.get(qid, ()) if c in codes]
            return 200, self._page("wrapupcodes", items, query, size, number,
                                   "/api/v2/routing/queues/%s/wrapupcodes" % qid)

    def _queue_codes_add(self, qid, body):
        if not isinstance(body, list) or not body:
            raise _bad("The body must be a non-empty list of {\"id\"} objects.")
        if len(body) > MAX_QUEUE_WRAPUPCODES_POST:
            raise _bad("At most %d wrap-up codes per request; got %d." % (MAX_QUEUE_WRAPUPCODES_POST, len(body)))
        with self.lock:
            self._queue_or_404(qid)
            codes = self.objects["wrapupcodes"]
            ids = []
            for i, item in enumerate(body):
                cid = item.get("id") if isinstance(item, dict) else None
                if not isinstance(cid, str):
                    raise _bad("[%d] must be an object with a string id." % i, field="[%d].id" % i)
                if cid not in codes:
                    raise _bad("Wrap-up code %s ([%d].id) does not exist." % (cid, i), field="[%d].id" % i,
                               entity_id=cid)
                if cid not in ids:
                    ids.append(cid)
            current = list(self._queue_wrapups.get(qid, ()))
            current.extend(c for c in ids if c not in current)
            self._queue_wrapups[qid] = current
            return 200, [self._render("wrapupcodes", codes[c]) for c in ids]

    def _queue_codes_delete(self, qid, cid):
        with self.lock:
            self._queue_or_404(qid)
            current = self._queue_wrapups.get(qid, [])
            if cid not in current:
                raise _Reply(404, "not.found", "Wrap-up code %s is not assigned to queue %s." % (cid, qid))
            self._queue_wrapups[qid] = [c for c in current if c != cid]
        return 204, None

    # ---- flows: publish, export jobs, import jobs -------------------------------------------
    @staticmethod
    def _next_version(flow):
        try:
            n = int(str((flow.get("publishedVersion") or {}).get("id", "0")).split(".")[0])
        except ValueError:
            n = 0
        return {"id": "%d.0" % (n + 1)}

    def _flow_publish(self, query):
        fid = query.get("flow")
        if not fid:
            raise _bad("The query parameter flow is required.", field="flow")
        with self.lock:
            flow = self.objects["flows"].get(fid)
            if flow is None:
                raise _Reply(404, "not.found", "flows %s not found." % fid)
            new = dict(flow)
            new["publishedVersion"] = self._next_version(flow)
            new["active"] = True
            self.objects["flows"][fid] = new
            self._index_flow(fid)
        return 200, {"id": str(uuid.uuid4()), "complete": True, "actionName": "PUBLISH", "actionStatus": "SUCCESS"}

    def _flow_document(self, flow):
        """The published text, exactly; a flow without content (a shell) gets a minimal document."""
        text = self.flow_content.get(flow["id"])
        if not text:
            div = self._render("flows", flow).get("division") or self._home_ref()
            text = _flow_yaml(flow.get("type") if flow.get("type") in FLOW_TYPES else "INBOUNDCALL",
                              flow.get("name", ""), flow.get("description"), div.get("name"))
        return text if text.endswith("\n") else text + "\n"

    def _flow_export_create(self, payload):
        flows = payload.get("flows") if isinstance(payload, dict) else None
        if not isinstance(flows, list) or not flows:
            raise _bad("The body must be {\"flows\": [{\"flow\": {\"id\"}, \"exportType\": \"Yaml\"}, ...]}.")
        ids = []
        for i, item in enumerate(flows):
            ref = item.get("flow") if isinstance(item, dict) else None
            if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
                raise _bad("flows[%d].flow must be an object with a string id." % i, field="flows[%d].flow.id" % i)
            for name, value in (("flow.version", ref.get("version")), ("fileName", item.get("fileName"))):
                if value is not None and not isinstance(value, str):
                    raise _bad("flows[%d].%s must be a string." % (i, name), field="flows[%d].%s" % (i, name))
            if item.get("exportType") != "Yaml":
                raise _bad("flows[%d].exportType must be Yaml (the fake exports YAML only); got %r."
                           % (i, item.get("exportType")), field="flows[%d].exportType" % i)
            ids.append(ref["id"])
        job = _FlowExportJob(self, ids)
        with self.lock:
            if self.flow_export_transient_failures > 0:  # the platform under load (CX as Code issue 2061)
                self.flow_export_transient_failures -= 1
                job.messages.append({"type": "Error",
                                     "text": "could not find the flow with id %s (exit code 107)" % ids[0]})
            for fid in ids:
                flow = self.objects["flows"].get(fid)
                if flow is None:
                    job.messages.append({"type": "Error", "text": "Flow %s was not found." % fid})
                else:
                    job.documents.append(self._flow_document(flow))
            self._flow_export_jobs[job.id] = job
        return 200, {"id": job.id, "status": "Registered", "totalFlows": len(ids),
                     "selfUri": "/api/v2/flows/export/jobs/%s" % job.id}

    def _flow_export_status(self, job_id, query):
        job = self._flow_export_jobs.get(job_id)
        if job is None:
            raise _Reply(404, "not.found", "Export job %s not found." % job_id)
        elapsed = time.monotonic() - job.created
        if elapsed < job.duration:
            status = "Registered" if elapsed < job.duration * 0.2 else "Started"
        else:
            status = "Failure" if job.messages else "Success"
        answer = {"id": job.id, "status": status, "command": "Export",
                  "selfUri": "/api/v2/flows/export/jobs/%s" % job.id}
        if "messages" in query.get("expand", "").split(","):
            answer["messages"] = list(job.messages) if status == "Failure" else []
        if status == "Success":
            answer["downloadUrl"], _ = self.fake._mint_download(
                self, job, path="/architect/exports/%s/%s.yaml" % (self.org_id, job.id), kind="flows")
        return 200, answer

    def _flow_export_body(self, job):
        """(content type, bytes): one flow's YAML itself; several flows zipped, one .yaml each, under
        names and in an order that say nothing about which flow is which (the real names are undocumented)."""
        if len(job.documents) == 1:
            return "text/yaml; charset=utf-8", job.documents[0].encode("utf-8")
        order = sorted(range(len(job.documents)), key=lambda i: hashlib.sha256(("%s/%d" % (job.id, i)).encode()).digest())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for n, i in enumerate(order):
                archive.writestr("export-%s-%d.yaml" % (job.id[:8], n), job.documents[i])
        return "application/zip", buffer.getvalue()

    def _flow_import_create(self):
        job = _FlowImportJob()
        with self.lock:
            self._flow_import_jobs[job.id] = job
        url, _ = self.fake._mint_download(self, job, path="/architect/imports/%s/%s.yaml" % (self.org_id, job.id),
                                          kind="upload")
        return 200, {"id": job.id, "presignedUrl": url, "headers": dict(job.headers),
                     "selfUri": "/api/v2/flows/jobs/%s" % job.id}

    def _flow_upload(self, job, content):
        """The download host received the PUT of a job's YAML."""
        with self.lock:
            if job.status != "Registered":
                return                                  # a repeated PUT does not change a running job
            now = time.monotonic()
            job.content = content
            job.uploaded = now
            job.due = now + float(self.flow_job_seconds)
            job.status = "Started"
            self._flow_running.append(job)
        self.fake._wake.set()

    def _step_flow_jobs(self, now):
        """Finishes due flow import jobs; returns the next due time or None."""
        with self.lock:
            if not self._flow_running:
                return None
            due = sorted((j for j in self._flow_running if j.due <= now), key=lambda j: j.due)
            for job in due:
                self._flow_running.remove(job)
                self._finish_flow_import(job, now)
            return min((j.due for j in self._flow_running), default=None)

    def _finish_flow_import(self, job, now):
        job.finished = now
        job.content, content = None, job.content

        def fail(*texts):
            job.status = "Failure"
            job.messages = [{"type": "Error", "text": t} for t in texts]

        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return fail("The file is not UTF-8.")
        try:
            info = parse_flow_yaml(text)
        except FlowYamlError as exc:
            return fail(*exc.messages)
        problems = []
        division = None
        if info["division"] is not None:
            d = self._find_by_name("divisions", info["division"])
            if d is None:
                problems.append("Unable to find division '%s'" % info["division"])
            else:
                division = {"id": d["id"], "name": d.get("name"), "selfUri": d.get("selfUri")}
        flows = self.objects["flows"]
        existing = self._find_by_name("flows", info["name"], info["type"])
        if existing is not None:                # a shell or a published flow: it keeps division and description
            obj = dict(existing)
        else:
            fid = str(uuid.uuid4())
            obj = {"id": fid, "name": info["name"], "type": info["type"], "division": division or self._home_ref(),
                   "active": False, "system": False, "deleted": False,
                   "selfUri": "%s/%s" % (_SELF_URI_BASE["flows"], fid)}
            if info["description"] is not None:
                obj["description"] = info["description"]
        deps, missing = self._resolve_references(info, obj)
        problems += missing
        if problems:
            return fail(*problems)
        obj["publishedVersion"] = self._next_version(obj)
        obj["active"] = True
        self._apply_tamper("flows", obj)
        flows[obj["id"]] = obj
        self.flow_content[obj["id"]] = text
        self.flow_deps[obj["id"]] = deps
        job.flow_id = obj["id"]
        job.status = "Success"
        job.messages = []

    # ---- names and dependencies -----------------------------------------------------------------
    def _find_by_name(self, kind, name, ftype=None):
        """The object of a kind with exactly that name (flows: and type), or None. Under self.lock."""
        for o in self.objects[kind].values():
            if o.get("name") == name and (ftype is None or o.get("type") == ftype):
                return o
        return None

    def _resolve_references(self, info, self_flow=None):
        """([dependency records], [Failure messages]) for what a parsed document names, resolved by name in this
        org (case-sensitively; flows by name and type; data actions by category and name). self_flow: the flow
        the document fills (a document may name its own flow). Under self.lock."""
        deps, missing, seen = [], [], set()
        for kind, name in info["references"]:
            okind, dtype = REFERENCE_KINDS[kind]
            if kind in ("flow", "common module"):
                ftype = info["type"] if kind == "flow" else "COMMONMODULE"
                dtype = flow_dependency_type(ftype)
                if self_flow is not None and self_flow.get("name") == name and self_flow.get("type") == ftype:
                    obj = self_flow
                else:
                    obj = self._find_by_name("flows", name, ftype)
            elif kind == "data action":
                obj = next((a for a in self.objects["dataactions"].values()
                            if a.get("category") == name[0] and a.get("name") == name[1]), None)
            else:
                obj = self._find_by_name(okind, name)
            if obj is None:
                missing.append("Unable to find %s '%s'" % (kind, "/".join(name) if kind == "data action" else name))
                continue
            if (okind, obj["id"]) in seen:
                continue
            seen.add((okind, obj["id"]))
            record = {"kind": okind, "id": obj["id"], "name": obj.get("name"), "type": dtype}
            version = (obj.get("publishedVersion") or {}).get("id") if okind == "flows" else None
            if version:
                record["version"] = version
            deps.append(record)
        return deps, missing

    def _index_flow(self, flow_id):
        """Records what a flow's stored content names (what resolves now). Under self.lock."""
        text = self.flow_content.get(flow_id)
        flow = self.objects["flows"].get(flow_id)
        deps = []
        if text and flow is not None:
            try:
                info = parse_flow_yaml(text)
            except ValueError:
                info = None
            if info is not None:
                deps, _ = self._resolve_references(info, flow)
        self.flow_deps[flow_id] = deps
        return deps

    def _render_dependency(self, record):
        obj = self.objects[record["kind"]].get(record["id"])
        out = {"id": record["id"], "name": obj.get("name") if obj is not None else record["name"],
               "type": record["type"]}
        if record.get("version"):
            out["version"] = record["version"]
        out.update(deleted=obj is None, updated=False, stateUnknown=False)
        return out

    def _consumed_resources(self, query):
        fid = query.get("id")
        if not fid:
            raise _bad("The query parameter id is required.", field="id")
        object_type = query.get("objectType")
        if not object_type:
            raise _bad("The query parameter objectType is required (e.g. INBOUNDCALLFLOW).", field="objectType")
        size, number = self._paging(query, 100)
        wanted = {t.strip() for t in query.get("resourceType", "").split(",") if t.strip()}
        with self.lock:
            flow = self.objects["flows"].get(fid)
            if flow is None:
                raise _Reply(404, "not.found", "Flow %s not found." % fid)
            expected = flow_dependency_type(flow.get("type"))
            if object_type != expected:
                raise _bad("objectType %s does not match flow %s, a %s flow: use %s." % (
                    object_type, fid, flow.get("type"), expected), field="objectType")
            published = (flow.get("publishedVersion") or {}).get("id")
            version = query.get("version") or published
            if published is None or version != published:
                raise _Reply(404, "not.found", "Version %s of flow %s not found (published version: %s)." % (
                    version, fid, published or "none"))
            items = [self._render_dependency(d) for d in self.flow_deps.get(fid, ())]
        if wanted:
            items = [d for d in items if d["type"] in wanted]
        items.sort(key=_name_key)
        page = items[(number - 1) * size: number * size]
        return 200, self._listing(CONSUMED_RESOURCES_PATH, query, page, size, number, len(items))

    # ---- prompt resources ---------------------------------------------------------------------------
    def _route_prompt_resources(self, m, pid, rest, rec, body):
        base = _SELF_URI_BASE["prompts"] + "/{id}/resources"
        if not rest:
            if m == "GET":
                return self._prompt_assets_list(pid, rec.query)
            if m == "POST":
                return self._prompt_asset_create(pid, _json_body(body))
            raise _method_not_allowed(m, base)
        language = unquote(rest[0]).lower()
        if len(rest) == 1:
            if m == "GET":
                return self._prompt_asset_get(pid, language)
            if m == "PUT":
                return self._prompt_asset_update(pid, language, _json_body(body))
            if m == "DELETE":
                return self._prompt_asset_delete(pid, language)
            raise _method_not_allowed(m, base + "/{language}")
        if rest[1:] == ["uploads"]:
            if m == "POST":
                return self._prompt_upload_create(pid, language)
            raise _method_not_allowed(m, base + "/{language}/uploads")
        return None

    def _prompt_or_404(self, pid):
        prompt = self.objects["prompts"].get(pid)
        if prompt is None:
            raise _Reply(404, "not.found", "prompts %s not found." % pid)
        return prompt

    def _asset_or_404(self, pid, language):
        self._prompt_or_404(pid)
        asset = self.prompt_resources.get(pid, {}).get(language)
        if asset is None:
            raise _Reply(404, "not.found", "Prompt %s has no resource for language %s." % (pid, language))
        return asset

    def _render_asset(self, asset):
        """A PromptAsset answer; a transcoded resource gets a freshly signed mediaUri on the download host."""
        out = dict(asset)
        audio = self.prompt_audio.get((asset["promptId"], asset["language"]))
        if asset.get("uploadStatus") == "transcoded" and audio is not None:
            out["mediaUri"], _ = self.fake._mint_download(
                self, _PromptMedia(audio), path="/architect/prompts/%s/%s/%s.wav" % (
                    self.org_id, asset["promptId"], asset["language"]), kind="prompt-media")
        return out

    def _asset_fields(self, body, language=None):
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object (PromptAssetCreate).")
        if "id" in body:
            raise _bad("id is read-only and must not be sent.", field="id")
        unknown = sorted(k for k in body if k not in _ASSET_WRITABLE and k not in _ASSET_IGNORED)
        if unknown:
            raise _Reply(400, "bad.request", "Unrecognized field(s) for a prompt resource: %s." % ", ".join(unknown),
                         details=[{"errorCode": "bad.request", "fieldName": k} for k in unknown])
        out = {}
        for key in ("ttsString", "text"):
            if body.get(key) is not None:
                if not isinstance(body[key], str):
                    raise _bad("%s must be a string." % key, field=key)
                out[key] = body[key]
        if body.get("tags") is not None:
            if not isinstance(body["tags"], dict):
                raise _bad("tags must be an object of string lists.", field="tags")
            out["tags"] = body["tags"]
        given = body.get("language")
        if language is None:
            if not isinstance(given, str) or not _LANGUAGE_TAG_RE.match(given.lower()):
                raise _bad("language must be a language tag such as en-us; got %r." % (given,), field="language")
        elif given is not None and (not isinstance(given, str) or given.lower() != language):
            raise _bad("language %r differs from the language in the path (%s)." % (given, language),
                       field="language")
        return out

    def _prompt_assets_list(self, pid, query):
        size, number = self._paging(query, 100)
        self._step_prompt_transcodes(time.monotonic())
        with self.lock:
            self._prompt_or_404(pid)
            assets = sorted(self.prompt_resources.get(pid, {}).values(), key=lambda a: a["language"])
            page = [self._render_asset(a) for a in assets[(number - 1) * size: number * size]]
            return 200, self._listing("%s/%s/resources" % (_SELF_URI_BASE["prompts"], pid), query, page, size, number,
                                      len(assets))

    def _prompt_asset_create(self, pid, body):
        fields = self._asset_fields(body)
        language = body["language"].lower()
        with self.lock:
            self._prompt_or_404(pid)
            assets = self.prompt_resources.setdefault(pid, {})
            if language in assets:
                raise _Reply(409, "general.conflict", "Prompt %s has a resource for language %s already." % (
                    pid, language), details=[{"errorCode": "general.conflict", "fieldName": "language",
                                              "entityId": assets[language]["id"]}])
            asset = {"id": str(uuid.uuid4()), "promptId": pid, "language": language}
            asset.update(fields)
            asset["uploadStatus"] = "created"
            asset["languageDefault"] = not assets
            asset["selfUri"] = "%s/%s/resources/%s" % (_SELF_URI_BASE["prompts"], pid, language)
            assets[language] = asset
            return 200, self._render_asset(asset)

    def _prompt_asset_get(self, pid, language):
        self._step_prompt_transcodes(time.monotonic())
        with self.lock:
            return 200, self._render_asset(self._asset_or_404(pid, language))

    def _prompt_asset_update(self, pid, language, body):
        fields = self._asset_fields(body, language)
        self._step_prompt_transcodes(time.monotonic())
        with self.lock:
            asset = self._asset_or_404(pid, language)
            new = {k: v for k, v in asset.items() if k not in ("ttsString", "text", "tags")}
            new.update(fields)
            self.prompt_resources[pid][language] = new
            return 200, self._render_asset(new)

    def _prompt_asset_delete(self, pid, language):
        with self.lock:
            asset = self._asset_or_404(pid, language)
            assets = self.prompt_resources[pid]
            del assets[language]
            self.prompt_audio.pop((pid, language), None)
            self._prompt_pending.pop((pid, language), None)
            if asset.get("languageDefault") and assets:
                first = sorted(assets)[0]
                assets[first] = dict(assets[first], languageDefault=True)
        return 204, None

    def _prompt_upload_create(self, pid, language):
        with self.lock:
            self._asset_or_404(pid, language)
        job = _PromptUpload(pid, language)
        url, _ = self.fake._mint_download(self, job, path="/architect/prompt-uploads/%s/%s/%s/%s.wav" % (
            self.org_id, pid, language, job.id), kind="prompt-upload")
        return 200, {"url": url, "headers": dict(job.headers)}

    def _prompt_upload(self, job, content):
        """The download host received the PUT of a resource's audio: `uploaded`, transcoded after a while."""
        with self.lock:
            assets = self.prompt_resources.get(job.prompt_id, {})
            asset = assets.get(job.language)
            if asset is None:
                return                                  # the resource went away meanwhile
            new = {k: v for k, v in asset.items() if k != "durationSeconds"}
            new["uploadStatus"] = "uploaded"
            assets[job.language] = new
            key = (job.prompt_id, job.language)
            self.prompt_audio.pop(key, None)
            self._prompt_pending[key] = (time.monotonic() + float(self.prompt_transcode_seconds), bytes(content))
        self.fake._wake.set()

    def _transcoded(self, pid, language, data):
        """Ends a transcode: `transcoded` (RIFF/WAVE bytes, served unchanged) or `transcodeFailed`. Under lock."""
        assets = self.prompt_resources.get(pid, {})
        asset = assets.get(language)
        if asset is None:
            return
        new = {k: v for k, v in asset.items() if k != "durationSeconds"}
        if _is_wav(data):
            new["uploadStatus"] = "transcoded"
            new["durationSeconds"] = _wav_duration(data)
            self.prompt_audio[(pid, language)] = data
        else:
            new["uploadStatus"] = "transcodeFailed"
            self.prompt_audio.pop((pid, language), None)
        assets[language] = new

    def _step_prompt_transcodes(self, now):
        """Finishes due transcodes; returns the next due time or None."""
        with self.lock:
            if not self._prompt_pending:
                return None
            for key, (due, data) in list(self._prompt_pending.items()):
                if due <= now:
                    del self._prompt_pending[key]
                    self._transcoded(key[0], key[1], data)
            return min((due for due, _ in self._prompt_pending.values()), default=None)

    # ---- data table rows ---------------------------------------------------------------------------
    def _route_table_rows(self, m, tid, rest, rec, body):
        base = _SELF_URI_BASE["datatables"] + "/{id}/rows"
        if not rest:
            if m == "GET":
                return self._rows_list(tid, rec.query)
            if m == "POST":
                return self._row_create(tid, _json_body(body))
            raise _method_not_allowed(m, base)
        if len(rest) == 1:
            key = unquote(rest[0])
            if m == "GET":
                return self._row_get(tid, key, rec.query)
            if m == "PUT":
                return self._row_update(tid, key, _json_body(body))
            if m == "DELETE":
                return self._row_delete(tid, key)
            raise _method_not_allowed(m, base + "/{rowId}")
        return None

    def _table_or_404(self, tid):
        table = self.objects["datatables"].get(tid)
        if table is None:
            raise _Reply(404, "not.found", "datatables %s not found." % tid)
        return table

    @staticmethod
    def _brief(query):
        return str(query.get("showbrief", "true")).lower() != "false"

    def _check_row(self, table, row, path_key=None):
        """A row checked against the table's schema (a copy); 400 for an unknown column or a wrong type."""
        if not isinstance(row, dict):
            raise _bad("A row is a JSON object of column -> value, with a string key.")
        row = dict(row)
        if path_key is not None:
            if "key" not in row:
                row["key"] = path_key
            elif row["key"] != path_key:
                raise _bad("The row's key %r differs from the key in the path (%r)." % (row["key"], path_key),
                           field="key")
        if not isinstance(row.get("key"), str) or not row["key"]:
            raise _bad("A row needs a non-empty string key.", field="key")
        columns = _schema_columns(table.get("schema") or {})
        for column, value in row.items():
            ctype = columns.get(column)
            if ctype is None:
                raise _bad("Unknown column %r (the table's columns: %s)." % (column, ", ".join(columns)),
                           field=column)
            if not _column_value_ok(ctype, value):
                raise _bad("Column %r is %s; got %s." % (column, ctype, _describe(value)), field=column)
        return row

    def _rows_list(self, tid, query):
        size, number = self._paging(query, MAX_TABLE_ROWS_PAGE_SIZE)
        brief = self._brief(query)
        with self.lock:
            self._table_or_404(tid)
            rows = self.table_rows.get(tid, {})
            keys = sorted(rows)
            page = [({"key": k} if brief else dict(rows[k])) for k in keys[(number - 1) * size: number * size]]
            return 200, self._listing("%s/%s/rows" % (_SELF_URI_BASE["datatables"], tid), query, page, size, number,
                                      len(keys))

    def _row_create(self, tid, body):
        with self.lock:
            table = self._table_or_404(tid)
            row = self._check_row(table, body)
            rows = self.table_rows.setdefault(tid, {})
            if row["key"] in rows:
                raise _Reply(409, "general.conflict", "Data table %s has a row with key %r already." % (tid, row["key"]),
                             details=[{"errorCode": "general.conflict", "fieldName": "key",
                                       "entityName": row["key"]}])
            rows[row["key"]] = row
            return 200, dict(row)

    def _row_or_404(self, tid, key):
        row = self.table_rows.get(tid, {}).get(key)
        if row is None:
            raise _Reply(404, "not.found", "Data table %s has no row with key %r." % (tid, key))
        return row

    def _row_get(self, tid, key, query):
        with self.lock:
            self._table_or_404(tid)
            row = self._row_or_404(tid, key)
            return 200, ({"key": key} if self._brief(query) else dict(row))

    def _row_update(self, tid, key, body):
        with self.lock:
            table = self._table_or_404(tid)
            self._row_or_404(tid, key)
            row = self._check_row(table, body, path_key=key)
            self.table_rows[tid][key] = row
            return 200, dict(row)

    def _row_delete(self, tid, key):
        with self.lock:
            self._table_or_404(tid)
            self._row_or_404(tid, key)
            del self.table_rows[tid][key]
        return 204, None

    def _flow_import_status(self, job_id, query):
        self._step_flow_jobs(time.monotonic())
        with self.lock:
            job = self._flow_import_jobs.get(job_id)
            if job is None:
                raise _Reply(404, "not.found", "Architect job %s not found." % job_id)
            answer = {"id": job.id, "status": job.status, "command": "Publish",
                      "selfUri": "/api/v2/flows/jobs/%s" % job.id}
            if job.flow_id is not None:
                answer["flow"] = {"id": job.flow_id, "selfUri": "/api/v2/flows/%s" % job.flow_id}
            if "messages" in query.get("expand", "").split(","):
                answer["messages"] = [dict(m) for m in job.messages]
            return 200, answer


# --------------------------------------------------------------------------------------------
# Section 8, "People": queue members, groups, users' routing skills and languages
# --------------------------------------------------------------------------------------------

GROUPS_PATH = "/api/v2/groups"
MAX_QUEUE_MEMBERS_POST = 100
MAX_USER_BULK_PATCH = 50
MAX_PEOPLE_PAGE_SIZE = 100                  # members, user skills and languages, groups
_MEMBER_PATCH_IGNORED = frozenset({"id", "name", "user", "memberBy", "routingStatus", "selfUri"})


@dataclass(frozen=True)
class _UserList:
    segment: str        # path segment under /api/v2/users/{id}/
    kind: str           # org.objects kind of the entries
    store: str          # FakeOrg attribute: user id -> {object id: proficiency}
    uri_field: str      # skillUri / languageUri
    what: str           # "skill" / "language"
    model: str          # UserRoutingSkill / UserRoutingLanguage (for messages)


_USER_LISTS = {
    "routingskills": _UserList("routingskills", "skills", "user_skills", "skillUri", "skill", "UserRoutingSkill"),
    "routinglanguages": _UserList("routinglanguages", "languages", "user_languages", "languageUri", "language",
                                  "UserRoutingLanguage"),
}
_USER_EXPANDS = {"skills": _USER_LISTS["routingskills"], "languages": _USER_LISTS["routinglanguages"]}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _PeopleOrg:
    """Contract section 8 "People" handlers. Everything that reads or writes the store runs under self.lock."""

    def _init_people(self):
        self.direct_members = {}            # queue id -> {user id: {"ringNumber": int, "joined": bool}}
        self.groups = {}                    # group id -> {"id", "name", "selfUri"}
        self.group_members = {}             # group id -> [user ids]
        self.user_skills = {}               # user id -> {skill id: proficiency (float)}
        self.user_languages = {}            # user id -> {language id: proficiency (float)}

    # ---- public helpers -----------------------------------------------------------------
    def add_group(self, name, user_ids=(), id=None):
        """A group (read only through the API) holding those users. ValueError if the name is taken or a user
        is unknown. Returns its id."""
        with self.lock:
            if any(g["name"] == name for g in self.groups.values()):
                raise ValueError("group %r exists already" % name)
            users = self.objects["users"]
            unknown = [u for u in user_ids if u not in users]
            if unknown:
                raise ValueError("unknown user(s): %s" % ", ".join(unknown))
            gid = id or str(uuid.uuid4())
            self.groups[gid] = {"id": gid, "name": name, "selfUri": "%s/%s" % (GROUPS_PATH, gid)}
            self.group_members[gid] = list(dict.fromkeys(user_ids))
            self._refresh_all_queue_counts()
            return gid

    def set_group_members(self, group_id, user_ids):
        """Replaces a group's users (KeyError for an unknown group); queues naming it follow."""
        with self.lock:
            if group_id not in self.groups:
                raise KeyError("unknown group %r" % group_id)
            self.group_members[group_id] = list(dict.fromkeys(user_ids))
            self._refresh_all_queue_counts()

    def set_queue_member(self, queue_id, user_id, ring_number=1, joined=True):
        """Makes a user a direct member of a queue (or changes one), without the API's ring bound check.
        KeyError for an unknown queue or user."""
        with self.lock:
            if queue_id not in self.objects["queues"]:
                raise KeyError("unknown queue %r" % queue_id)
            if user_id not in self.objects["users"]:
                raise KeyError("unknown user %r" % user_id)
            self.direct_members.setdefault(queue_id, {})[user_id] = {"ringNumber": int(ring_number),
                                                                      "joined": bool(joined)}
            self._refresh_queue_counts(queue_id)

    def queue_members(self, queue_id, member_by=None):
        """Every member of a queue as the members list answers them (QueueMember dicts, sorted by name);
        member_by "user" or "group" keeps only those."""
        with self.lock:
            queue = self.objects["queues"][queue_id]
            members = self._members_of(queue_id, queue)
            return [m for m in members if member_by is None or m["memberBy"] == member_by]

    def set_user_skills(self, user_id, proficiencies):
        """Replaces a user's routing skills: {skill id: proficiency}. KeyError for an unknown user or skill."""
        self._set_user_entries(user_id, proficiencies, _USER_LISTS["routingskills"])

    def set_user_languages(self, user_id, proficiencies):
        """Replaces a user's routing languages: {language id: proficiency}. KeyError if unknown."""
        self._set_user_entries(user_id, proficiencies, _USER_LISTS["routinglanguages"])

    def _set_user_entries(self, user_id, proficiencies, spec):
        with self.lock:
            if user_id not in self.objects["users"]:
                raise KeyError("unknown user %r" % user_id)
            unknown = [k for k in proficiencies if k not in self.objects[spec.kind]]
            if unknown:
                raise KeyError("unknown %s(s): %s" % (spec.what, ", ".join(unknown)))
            getattr(self, spec.store)[user_id] = {k: float(v) for k, v in proficiencies.items()}

    def expand_misses(self, user_id):
        """Whether a users list with expand=skills/languages leaves this user's expanded fields out: a
        deterministic share `expand_miss_share` of users, drawn from (expand_miss_seed, org name, user id)."""
        share = float(self.expand_miss_share)
        if share <= 0:
            return False
        if share >= 1:
            return True
        digest = hashlib.sha256(("%s:%s:%s" % (self.expand_miss_seed, self.name, user_id)).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < share

    def people_snapshot(self):
        """The org's people by name and email, for comparisons between orgs: {"members": {queue name: {email
        (lower case): {"ringNumber", "joined", "memberBy"}}}, "skills": {email: {skill name: proficiency}},
        "languages": {email: {language name: proficiency}}}. Every queue and every user with an email is
        present (empty dicts when they have nothing)."""
        with self.lock:
            users = self.objects["users"]

            def email(uid):
                value = users.get(uid, {}).get("email")
                return value.lower() if isinstance(value, str) else None

            members = {}
            for qid, queue in self.objects["queues"].items():
                members[queue["name"]] = {email(m["id"]): {"ringNumber": m["ringNumber"], "joined": m["joined"],
                                                           "memberBy": m["memberBy"]}
                                          for m in self._members_of(qid, queue) if email(m["id"])}
            out = {"members": members}
            for key, spec in _USER_EXPANDS.items():
                objs = self.objects[spec.kind]
                store = getattr(self, spec.store)
                out[key] = {email(uid): {objs[k]["name"]: p for k, p in store.get(uid, {}).items() if k in objs}
                            for uid in users if email(uid)}
            return out

    # ---- routing --------------------------------------------------------------------------
    def _route_people(self, m, parts, rec, body):
        """(status, answer) for a People path, or None if the path is not one."""
        if parts and parts[0] == "groups":
            if len(parts) == 1:
                if m == "GET":
                    return self._groups_list(rec.query)
                raise _method_not_allowed(m, GROUPS_PATH)
            if len(parts) == 2:
                if m == "GET":
                    return self._group_get(unquote(parts[1]))
                raise _method_not_allowed(m, GROUPS_PATH + "/{id}")
            return None
        if len(parts) in (4, 5) and parts[:2] == ["routing", "queues"] and parts[3] == "members":
            qid = unquote(parts[2])
            base = "/api/v2/routing/queues/{id}/members"
            if len(parts) == 4:
                if m == "GET":
                    return self._members_list(qid, rec.query)
                if m == "POST":
                    return self._members_post(qid, _json_body(body), rec.query)
                raise _method_not_allowed(m, base)
            if m == "PATCH":
                return self._member_patch(qid, unquote(parts[4]), _json_body(body))
            raise _method_not_allowed(m, base + "/{userId}")
        if len(parts) in (3, 4) and parts[0] == "users" and parts[2] in _USER_LISTS:
            uid, spec = unquote(parts[1]), _USER_LISTS[parts[2]]
            base = "/api/v2/users/{id}/" + spec.segment
            if len(parts) == 3:
                if m == "GET":
                    return self._user_list_get(uid, spec, rec.query)
                raise _method_not_allowed(m, base)
            if parts[3] == "bulk":
                if m == "PATCH":
                    return self._user_list_patch(uid, spec, _json_body(body))
                raise _method_not_allowed(m, base + "/bulk")
            if m == "DELETE":
                return self._user_list_delete(uid, spec, unquote(parts[3]))
            raise _method_not_allowed(m, base + "/{%sId}" % spec.what)
        return None

    # ---- groups ---------------------------------------------------------------------------
    def _render_group(self, group):
        users = self.objects["users"]
        out = dict(group)
        out["memberCount"] = sum(1 for u in self.group_members.get(group["id"], ()) if u in users)
        return out

    def _groups_list(self, query):
        size, number = self._paging(query, MAX_PEOPLE_PAGE_SIZE)
        with self.lock:
            items = list(self.groups.values())
            if "name" in query:
                match = _name_matcher(query["name"])
                items = [g for g in items if match(g.get("name"))]
            items.sort(key=_name_key)
            page = [self._render_group(g) for g in items[(number - 1) * size: number * size]]
            return 200, self._listing(GROUPS_PATH, query, page, size, number, len(items))

    def _group_get(self, gid):
        with self.lock:
            group = self.groups.get(gid)
            if group is None:
                raise _Reply(404, "not.found", "Group %s not found." % gid)
            return 200, self._render_group(group)

    def _member_groups(self, value, field):
        """A queue's or ring's memberGroups, checked (type GROUP, an existing group) and stored as
        {"id", "name", "type", "selfUri"}. Under self.lock."""
        if not isinstance(value, list):
            raise _bad("%s must be a list." % field, field=field)
        out = []
        for k, entry in enumerate(value):
            where = "%s[%d]" % (field, k)
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise _bad("%s must be an object with a string id." % where, field=where + ".id")
            if entry.get("type") != "GROUP":
                raise _bad("%s.type must be GROUP (the fake has no teams or skill groups); got %r."
                           % (where, entry.get("type")), field=where + ".type")
            group = self.groups.get(entry["id"])
            if group is None:
                raise _bad("Group %s (%s.id) does not exist." % (entry["id"], where), field=where + ".id",
                           entity_id=entry["id"])
            out.append({"id": group["id"], "name": group["name"], "type": "GROUP", "selfUri": group["selfUri"]})
        return out

    # ---- queue members --------------------------------------------------------------------
    @staticmethod
    def _ring_count(queue):
        bullseye = queue.get("bullseye")
        rings = bullseye.get("rings") if isinstance(bullseye, dict) else None
        return len(rings) if isinstance(rings, list) and rings else 1

    @staticmethod
    def _queue_group_rings(queue):
        """[(ring number, group id)] of the groups a queue names, lowest ring first: the queue's own
        memberGroups give ring 1, bullseye.rings[i].memberGroups ring i + 1."""
        found = []
        for g in queue.get("memberGroups") or ():
            if isinstance(g, dict):
                found.append((1, g.get("id")))
        bullseye = queue.get("bullseye")
        for i, ring in enumerate((bullseye.get("rings") or ()) if isinstance(bullseye, dict) else ()):
            for g in (ring.get("memberGroups") or ()) if isinstance(ring, dict) else ():
                if isinstance(g, dict):
                    found.append((i + 1, g.get("id")))
        found.sort(key=lambda x: x[0])
        return found

    def _member_map(self, qid, queue):
        """user id -> (ringNumber, joined, memberBy) of every member of a queue. Under self.lock."""
        users = self.objects["users"]
        out = {uid: (m["ringNumber"], m["joined"], "user")
               for uid, m in self.direct_members.get(qid, {}).items() if uid in users}
        for ring, gid in self._queue_group_rings(queue):
            for uid in self.group_members.get(gid, ()):
                if uid in users and uid not in out:
                    out[uid] = (ring, True, "group")
        return out

    def _members_of(self, qid, queue):
        """The QueueMember list of a queue, sorted by name (then id). Under self.lock."""
        users = self.objects["users"]
        members = []
        for uid, (ring, joined, by) in self._member_map(qid, queue).items():
            user = users[uid]
            uri = user.get("selfUri") or "%s/%s" % (_SELF_URI_BASE["users"], uid)
            members.append({"id": uid, "name": user.get("name"),
                            "user": {"id": uid, "name": user.get("name"), "selfUri": uri},
                            "ringNumber": ring, "joined": joined, "memberBy": by, "selfUri": uri})
        members.sort(key=_name_key)
        return members

    def _queue_counts(self, qid, queue):
        members = self._member_map(qid, queue)
        return {"memberCount": len(members),
                "userMemberCount": sum(1 for m in members.values() if m[2] == "user"),
                "joinedMemberCount": sum(1 for m in members.values() if m[1])}

    def _refresh_queue_counts(self, qid):
        """Brings the stored queue's member counts up to date (replacing the object when they change)."""
        queue = self.objects["queues"].get(qid)
        if queue is None:
            return
        counts = self._queue_counts(qid, queue)
        if any(queue.get(k) != v for k, v in counts.items()):
            self.objects["queues"][qid] = dict(queue, **counts)

    def _refresh_all_queue_counts(self):
        for qid in list(self.objects["queues"]):
            self._refresh_queue_counts(qid)

    def _members_list(self, qid, query):
        size, number = self._paging(query, MAX_PEOPLE_PAGE_SIZE)
        member_by = query.get("memberBy")
        if member_by is not None and member_by not in ("user", "group"):
            raise _bad("memberBy must be user or group; got %r." % member_by, field="memberBy")
        joined = query.get("joined")
        if joined is not None:
            if joined.lower() not in ("true", "false"):
                raise _bad("joined must be true or false; got %r." % joined, field="joined")
            joined = joined.lower() == "true"
        with self.lock:
            queue = self._queue_or_404(qid)
            members = self._members_of(qid, queue)
        if member_by is not None:
            members = [m for m in members if m["memberBy"] == member_by]
        if joined is not None:
            members = [m for m in members if m["joined"] is joined]
        if "name" in query:
            match = _name_matcher(query["name"])
            members = [m for m in members if match(m["name"])]
        page = members[(number - 1) * size: number * size]
        return 200, self._cursorless_listing("/api/v2/routing/queues/%s/members" % qid, query, page, size, number,
                                             len(members))

    @staticmethod
    def _cursorless_listing(base, query, entities, size, number, total):
        """A QueueMemberEntityListing: like the other lists but without total, pageCount and lastUri."""
        count = -(-total // size)
        extra = [(k, v) for k, v in query.items() if k not in ("pageSize", "pageNumber")]

        def uri(p):
            return "%s?%s" % (base, urlencode([("pageSize", size), ("pageNumber", p)] + extra))

        answer = {"entities": entities, "pageSize": size, "pageNumber": number, "firstUri": uri(1),
                  "selfUri": uri(number)}
        if number < count:
            answer["nextUri"] = uri(number + 1)
        if number > 1:
            answer["previousUri"] = uri(min(number - 1, max(count, 1)))
        return answer

    def _members_post(self, qid, body, query):
        delete = str(query.get("delete", "false")).lower()
        if delete not in ("true", "false"):
            raise _bad("delete must be true or false; got %r." % query.get("delete"), field="delete")
        if not isinstance(body, list) or not body:
            raise _bad("The body must be a non-empty list of {\"id\"} objects (user ids).")
        if len(body) > MAX_QUEUE_MEMBERS_POST:
            raise _bad("At most %d members per request; got %d." % (MAX_QUEUE_MEMBERS_POST, len(body)))
        ids = []
        for i, item in enumerate(body):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise _bad("[%d] must be an object with a string id." % i, field="[%d].id" % i)
            unknown = sorted(k for k in item if k != "id")
            if unknown:
                raise _bad("Unrecognized field(s) of [%d] (WritableEntity): %s." % (i, ", ".join(unknown)),
                           field="[%d].%s" % (i, unknown[0]))
            ids.append(item["id"])
        with self.lock:
            self._queue_or_404(qid)
            current = self.direct_members.setdefault(qid, {})
            if delete == "true":
                for uid in ids:
                    current.pop(uid, None)
            else:
                users = self.objects["users"]
                missing = [(i, uid) for i, uid in enumerate(ids) if uid not in users]
                if missing:
                    i, uid = missing[0]
                    raise _Reply(400, "bad.request", "User %s ([%d].id) does not exist%s." % (
                        uid, i, " (and %d more)" % (len(missing) - 1) if len(missing) > 1 else ""),
                        details=[{"errorCode": "bad.request", "fieldName": "[%d].id" % j, "entityId": u}
                                 for j, u in missing])
                for uid in ids:
                    if uid not in current:
                        current[uid] = {"ringNumber": 1, "joined": True}
            self._refresh_queue_counts(qid)
        return 200, None

    def _member_patch(self, qid, uid, body):
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object {\"ringNumber\", \"joined\"}.")
        unknown = sorted(k for k in body if k not in ("ringNumber", "joined") and k not in _MEMBER_PATCH_IGNORED)
        if unknown:
            raise _Reply(400, "bad.request", "Unrecognized field(s) for a queue member: %s." % ", ".join(unknown),
                         details=[{"errorCode": "bad.request", "fieldName": k} for k in unknown])
        if body.get("id") is not None and body["id"] != uid:
            raise _bad("The id in the body (%s) differs from the id in the path (%s)." % (body["id"], uid), field="id")
        ring, joined = body.get("ringNumber"), body.get("joined")
        if ring is None and joined is None:
            raise _bad("Send ringNumber, joined or both.")
        if ring is not None and type(ring) is not int:
            raise _bad("ringNumber must be an integer; got %r." % (ring,), field="ringNumber")
        if joined is not None and not isinstance(joined, bool):
            raise _bad("joined must be a boolean; got %r." % (joined,), field="joined")
        with self.lock:
            queue = self._queue_or_404(qid)
            current = self.direct_members.get(qid, {})
            if uid not in current or uid not in self.objects["users"]:
                if uid in self._member_map(qid, queue):
                    raise _bad("User %s is a member of queue %s by group: its ring and joined state follow the group."
                               % (uid, qid), entity_id=uid)
                raise _Reply(404, "not.found", "User %s is not a member of queue %s." % (uid, qid))
            rings = self._ring_count(queue)
            if ring is not None and not 1 <= ring <= rings:
                raise _Reply(400, "bad.request", "ringNumber %d is outside the rings of queue %s (1 to %d)." % (
                    ring, qid, rings), details=[{"errorCode": "bad.request", "fieldName": "ringNumber",
                                                 "entityId": qid}])
            member = dict(current[uid])
            if ring is not None:
                member["ringNumber"] = ring
            if joined is not None:
                member["joined"] = joined
            current[uid] = member
            self._refresh_queue_counts(qid)
        return 200, None

    # ---- users' routing skills and languages ----------------------------------------------------
    def _user_or_404(self, uid):
        user = self.objects["users"].get(uid)
        if user is None:
            raise _Reply(404, "not.found", "users %s not found." % uid)
        return user

    def _user_entries(self, uid, spec):
        """The user's UserRoutingSkill / UserRoutingLanguage list, sorted by name. Under self.lock."""
        objs = self.objects[spec.kind]
        out = []
        for oid, proficiency in getattr(self, spec.store).get(uid, {}).items():
            obj = objs.get(oid)
            if obj is None:
                continue
            out.append({"id": oid, "name": obj.get("name"), "proficiency": float(proficiency), "state": "active",
                        spec.uri_field: "%s/%s" % (_SELF_URI_BASE[spec.kind], oid),
                        "selfUri": "%s/%s/%s/%s" % (_SELF_URI_BASE["users"], uid, spec.segment, oid)})
        out.sort(key=_name_key)
        return out

    def _user_list_get(self, uid, spec, query):
        size, number = self._paging(query, MAX_PEOPLE_PAGE_SIZE)
        with self.lock:
            self._user_or_404(uid)
            entries = self._user_entries(uid, spec)
        page = entries[(number - 1) * size: number * size]
        return 200, self._listing("%s/%s/%s" % (_SELF_URI_BASE["users"], uid, spec.segment), query, page, size,
                                  number, len(entries))

    def _user_list_patch(self, uid, spec, body):
        if not isinstance(body, list) or not body:
            raise _bad("The body must be a non-empty list of {\"id\", \"proficiency\"} objects.")
        if len(body) > MAX_USER_BULK_PATCH:
            raise _bad("At most %d %ss per request; got %d." % (MAX_USER_BULK_PATCH, spec.what, len(body)))
        allowed = {"id", "proficiency", spec.uri_field, "selfUri"}
        wanted = {}
        for i, item in enumerate(body):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise _bad("[%d] must be an object with a string id." % i, field="[%d].id" % i)
            unknown = sorted(k for k in item if k not in allowed)
            if unknown:
                raise _bad("Unrecognized field(s) of [%d] (%sPost): %s." % (i, spec.model, ", ".join(unknown)),
                           field="[%d].%s" % (i, unknown[0]))
            p = item.get("proficiency")
            if not _is_number(p) or not 0 <= p <= 5:
                raise _bad("[%d].proficiency must be a number from 0 to 5; got %r." % (i, p),
                           field="[%d].proficiency" % i, entity_id=item["id"])
            wanted[item["id"]] = float(p)                 # the same id twice: the last one counts
        with self.lock:
            self._user_or_404(uid)
            objs = self.objects[spec.kind]
            missing = [oid for oid in wanted if oid not in objs]
            if missing:
                raise _Reply(400, "bad.request", "%s %s does not exist%s." % (
                    spec.what.capitalize(), missing[0], " (and %d more)" % (len(missing) - 1) if len(missing) > 1
                    else ""), details=[{"errorCode": "bad.request", "fieldName": "id", "entityId": oid}
                                       for oid in missing])
            store = getattr(self, spec.store)
            current = dict(store.get(uid, {}))
            current.update(wanted)
            store[uid] = current
            entries = self._user_entries(uid, spec)
        base = "%s/%s/%s" % (_SELF_URI_BASE["users"], uid, spec.segment)
        return 200, self._listing(base, {}, entries, max(len(entries), 1), 1, len(entries))

    def _user_list_delete(self, uid, spec, oid):
        with self.lock:
            self._user_or_404(uid)
            store = getattr(self, spec.store)
            current = store.get(uid, {})
            if oid not in current:
                raise _Reply(404, "not.found", "User %s has no routing %s %s." % (uid, spec.what, oid))
            store[uid] = {k: v for k, v in current.items() if k != oid}
        return 204, None

    def _render_user_expansions(self, out, expand, listing):
        """Adds `skills` / `languages` to a rendered user when expanded (a users list leaves them out for the
        users expand_misses picks). Under self.lock."""
        wanted = [key for key in ("skills", "languages") if key in expand]
        if not wanted or (listing and self.expand_misses(out["id"])):
            return
        for key in wanted:
            out[key] = self._user_entries(out["id"], _USER_EXPANDS[key])

    def _drop_people(self, kind, oid):
        """What goes with a deleted object: a queue's direct members; a skill or language from every user;
        a user's skills, languages and memberships. Under self.lock."""
        if kind == "queues":
            self.direct_members.pop(oid, None)
        elif kind in ("skills", "languages"):
            store = getattr(self, _USER_EXPANDS[kind].store)
            for uid, entries in list(store.items()):
                if oid in entries:
                    store[uid] = {k: v for k, v in entries.items() if k != oid}
        elif kind == "users":
            self.user_skills.pop(oid, None)
            self.user_languages.pop(oid, None)
            for members in self.direct_members.values():
                members.pop(oid, None)
            for gid, members in self.group_members.items():
                if oid in members:
                    self.group_members[gid] = [u for u in members if u != oid]
            self._refresh_all_queue_counts()


# --------------------------------------------------------------------------------------------
# Section 9: analytics conversation-detail jobs (the request handlers; FakeOrg inherits them)
# --------------------------------------------------------------------------------------------

ANALYTICS_JOBS_PATH = "/api/v2/analytics/conversations/details/jobs"
ANALYTICS_DEFAULT_PAGE_SIZE = 100
ANALYTICS_MAX_PAGE_SIZE = 1000
_ASYNC_QUERY_FIELDS = frozenset({"conversationFilters", "segmentFilters", "evaluationFilters", "surveyFilters",
                                 "resolutionFilters", "order", "orderBy", "interval", "limit",
                                 "startOfDayIntervalMatching"})
_UNSUPPORTED_FILTERS = ("evaluationFilters", "surveyFilters", "resolutionFilters")
_ORDERS = ("asc", "desc", "unordered")
_ORDER_BYS = ("conversationStart", "conversationEnd", "segmentStart", "segmentEnd")
_PREDICATE_FIELDS = frozenset({"type", "dimension", "operator", "value"})
_OPERATORS = ("matches", "exists", "notExists")
# dimension -> (level, field); level: "conv", "part", "sess", "seg"; a field ending in "[]" is a list to search
_SEGMENT_DIMENSIONS = {
    "mediaType": ("sess", "mediaType"), "direction": ("sess", "direction"), "ani": ("sess", "ani"),
    "dnis": ("sess", "dnis"), "sessionId": ("sess", "sessionId"), "purpose": ("part", "purpose"),
    "userId": ("part", "userId"), "participantName": ("part", "participantName"),
    "participantId": ("part", "participantId"), "queueId": ("seg", "queueId"),
    "segmentType": ("seg", "segmentType"), "wrapUpCode": ("seg", "wrapUpCode"),
    "requestedLanguageId": ("seg", "requestedLanguageId"),
    "requestedRoutingSkillId": ("seg", "requestedRoutingSkillIds[]"), "conversationId": ("conv", "conversationId"),
}
_CONVERSATION_DIMENSIONS = {
    "conversationId": ("conv", "conversationId"), "originatingDirection": ("conv", "originatingDirection"),
    "divisionId": ("conv", "divisionIds[]"),
}
_FOREVER_MS = 1 << 62


def _parse_interval(value):
    """'start/end' (ISO-8601 date-times with a zone designator) -> (start_dt, end_dt); raises _Reply 400."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise _bad("interval must be a string 'start/end' of ISO-8601 date-times, e.g. "
                   "'2026-01-01T00:00:00.000Z/2026-01-02T00:00:00.000Z'.", field="interval")
    parts = []
    for text in value.split("/"):
        text = text.strip()
        try:
            if "T" not in text:
                raise ValueError(text)
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise _bad("interval %r: %r is not an ISO-8601 date-time." % (value, text), field="interval")
        if dt.tzinfo is None:
            raise _bad("interval %r: %r has no zone designator (use Z)." % (value, text), field="interval")
        parts.append(dt.astimezone(timezone.utc))
    if parts[0] >= parts[1]:
        raise _bad("interval %r: the start must be before the end." % value, field="interval")
    return parts[0], parts[1]


def _check_filters(filters, field, dimensions):
    """Validates a list of ConversationDetailQueryFilter / SegmentDetailQueryFilter (the part the fake knows)."""
    if filters is None:
        return []
    if not isinstance(filters, list):
        raise _bad("%s must be a list." % field, field=field)

    def check(flt, path, depth):
        if not isinstance(flt, dict):
            raise _bad("%s must be an object." % path, field=path)
        unknown = set(flt) - {"type", "clauses", "predicates"}
        if unknown:
            raise _bad("%s: unknown field(s) %s." % (path, ", ".join(sorted(unknown))), field=path)
        if flt.get("type") not in ("and", "or"):
            raise _bad("%s.type must be 'and' or 'or'." % path, field=path + ".type")
        clauses = flt.get("clauses") or []
        predicates = flt.get("predicates") or []
        if not isinstance(clauses, list) or not isinstance(predicates, list):
            raise _bad("%s: clauses and predicates must be lists." % path, field=path)
        if depth and clauses:
            raise _bad("%s: a clause cannot hold clauses." % path, field=path + ".clauses")
        if not clauses and not predicates:
            raise _bad("%s needs predicates or clauses." % path, field=path)
        for n, c in enumerate(clauses):
            check(c, "%s.clauses[%d]" % (path, n), depth + 1)
        for n, p in enumerate(predicates):
            ppath = "%s.predicates[%d]" % (path, n)
            if not isinstance(p, dict):
                raise _bad("%s must be an object." % ppath, field=ppath)
            unknown = set(p) - _PREDICATE_FIELDS
            if unknown:
                raise _bad("%s: field(s) %s are not supported by the fake." % (ppath, ", ".join(sorted(unknown))),
                           field=ppath)
            if p.get("type", "dimension") != "dimension":
                raise _bad("%s: only predicates of type 'dimension' are supported by the fake." % ppath,
                           field=ppath + ".type")
            if p.get("dimension") not in dimensions:
                raise _bad("%s: dimension %r is not supported (known: %s)."
                           % (ppath, p.get("dimension"), ", ".join(sorted(dimensions))), field=ppath + ".dimension")
            op = p.get("operator", "matches")
            if op not in _OPERATORS:
                raise _bad("%s.operator must be one of %s." % (ppath, ", ".join(_OPERATORS)),
                           field=ppath + ".operator")
            if op == "matches" and not isinstance(p.get("value"), str):
                raise _bad("%s.value must be a string." % ppath, field=ppath + ".value")

    for n, flt in enumerate(filters):
        check(flt, "%s[%d]" % (field, n), 0)
    return filters


def _dim_values(ctx, spec):
    """The values of a dimension in a (conv, part, sess, seg) context (a list, maybe empty)."""
    level, name = spec
    obj = ctx[{"conv": 0, "part": 1, "sess": 2, "seg": 3}[level]]
    if not isinstance(obj, dict):
        return []
    if name.endswith("[]"):
        value = obj.get(name[:-2])
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
    value = obj.get(name)
    return [value] if isinstance(value, str) else []


def _eval_filter(flt, ctx, dimensions):
    results = []
    for p in flt.get("predicates") or []:
        values = _dim_values(ctx, dimensions[p["dimension"]])
        op = p.get("operator", "matches")
        if op == "exists":
            results.append(bool(values))
        elif op == "notExists":
            results.append(not values)
        else:
            results.append(p["value"] in values)
    for c in flt.get("clauses") or []:
        results.append(_eval_filter(c, ctx, dimensions))
    return any(results) if flt["type"] == "or" else all(results)


def _segment_contexts(conv):
    for part in conv.get("participants") or []:
        if not isinstance(part, dict):
            continue
        for sess in part.get("sessions") or []:
            if not isinstance(sess, dict):
                continue
            segs = [s for s in (sess.get("segments") or []) if isinstance(s, dict)] or [{}]
            for seg in segs:
                yield conv, part, sess, seg


def _filter_media_types(segment_filters):
    """The mediaType values a conversation must have one of (for the source), or None for any."""
    allowed = None
    for flt in segment_filters:
        preds = flt.get("predicates") or []
        if flt.get("clauses") or not preds:
            continue
        if not all(p.get("dimension") == "mediaType" and p.get("operator", "matches") == "matches" for p in preds):
            continue
        if flt["type"] == "and" and len(preds) > 1:
            continue
        values = {p["value"] for p in preds}
        allowed = values if allowed is None else allowed & values
    return None if allowed is None else tuple(sorted(allowed))


def _encode_cursor(job, offset, position):
    raw = json.dumps({"j": job.id[:8], "o": offset, "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(job, cursor):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if data["j"] != job.id[:8] or not isinstance(data["o"], int) or data["o"] < 1:
            raise ValueError(cursor)
        return data["o"], data.get("p")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, AttributeError):
        raise _bad("Invalid cursor %r for job %s." % (cursor[:80], job.id), field="cursor")


class _AnalyticsJob:
    def __init__(self, org, query):
        self.id = str(uuid.uuid4())
        self.created = time.monotonic()
        self.submitted = datetime.now(timezone.utc)
        self.duration = max(0.0, float(org.analytics_job_seconds))
        self.ttl = float(org.analytics_job_ttl)
        self.start_dt, self.end_dt = query["interval"]
        self.start_of_day = query["startOfDayIntervalMatching"]
        self.order = query["order"]
        self.order_by = query["orderBy"]
        self.limit = query["limit"]
        self.segment_filters = query["segmentFilters"]
        self.conversation_filters = query["conversationFilters"]
        self.media_types = _filter_media_types(self.segment_filters)
        self.availability = None             # datetime: the datalake's availability when the job ran
        self.fail_message = None
        self.cancelled = False
        self.expired_at = None               # datetime when expire_analytics_jobs() expired it
        self.snapshot = None                 # list of matching records (org.conversations mode)
        self.source = None                   # org.conversation_source at creation (source mode)
        self.lock = threading.Lock()
        self.cancelled_after = False         # cancelled once FULFILLED (keeps its completionDate)
        self._avail_ms = _FOREVER_MS
        self.live = None                     # (offset, iterator, peeked) for sources without .resume
        self.last_page = None                # (offset, position, want, records, next cursor) for repeats
        if self.start_of_day:
            day = timedelta(days=1)
            lo = datetime(self.start_dt.year, self.start_dt.month, self.start_dt.day, tzinfo=timezone.utc)
            hi = datetime(self.end_dt.year, self.end_dt.month, self.end_dt.day, tzinfo=timezone.utc)
            if hi < self.end_dt:
                hi += day
            self.window = (lo, hi)
        else:
            self.window = (self.start_dt, self.end_dt)
        self._lo_ms, self._hi_ms = _to_ms(self.window[0]), _to_ms(self.window[1])

    @property
    def completed(self):
        return self.submitted + timedelta(seconds=self.duration)

    def matches(self, conv):
        """Interval (any activity, or the start-of-day rule), data availability, filters."""
        if not isinstance(conv, dict):
            return False
        try:
            start = _to_ms(conv["conversationStart"])
            end = _to_ms(conv["conversationEnd"]) if conv.get("conversationEnd") else _FOREVER_MS
        except (KeyError, TypeError, ValueError):
            return False
        if self.start_of_day:
            if not self._lo_ms <= start < self._hi_ms:
                return False
        elif not (start < self._hi_ms and end >= self._lo_ms):
            return False
        if end > self._avail_ms:
            return False
        ctx = (conv, None, None, None)
        for flt in self.conversation_filters:
            if not _eval_filter(flt, ctx, _CONVERSATION_DIMENSIONS):
                return False
        for flt in self.segment_filters:
            if not any(_eval_filter(flt, c, _SEGMENT_DIMENSIONS) for c in _segment_contexts(conv)):
                return False
        return True


class _AnalyticsOrg:
    """Section 9 handlers, mixed into FakeOrg."""

    def _init_analytics(self):
        self.conversations = []                 # AnalyticsConversation dicts (list mode)
        self.conversation_source = None         # callable (start_dt, end_dt, media_types) -> iterable
        self.fail_next_analytics_job = None
        self._analytics_jobs = {}

    # ---- public helpers -----------------------------------------------------------------------
    def analytics_job(self, job_id):
        """The internal analytics job (for tests): .snapshot, .source, .availability, .cancelled ..."""
        return self._analytics_jobs.get(job_id)

    def expire_analytics_jobs(self):
        """Every job FULFILLED now becomes EXPIRED (its results 404). Returns the ids expired."""
        now = time.monotonic()
        done = []
        with self.lock:
            for job in self._analytics_jobs.values():
                if self._analytics_state(job, now) == "FULFILLED":
                    job.expired_at = datetime.now(timezone.utc)
                    done.append(job.id)
        return done

    def analytics_availability(self):
        """The dataAvailabilityDate now (a datetime): the knob, or now minus one hour."""
        if self.data_availability_date is None:
            return datetime.now(timezone.utc) - timedelta(hours=1)
        return _parse_ts(self.data_availability_date).astimezone(timezone.utc)

    # ---- routing --------------------------------------------------------------------------------
    def _route_analytics(self, m, parts, rec, body):
        if parts[:4] != ["analytics", "conversations", "details", "jobs"]:
            return None
        rest = parts[4:]
        if not rest:
            if m != "POST":
                raise _method_not_allowed(m, ANALYTICS_JOBS_PATH)
            return self._analytics_create(_json_body(body))
        if rest == ["availability"]:
            if m != "GET":
                raise _method_not_allowed(m, ANALYTICS_JOBS_PATH + "/availability")
            return 200, {"dataAvailabilityDate": _iso(self.analytics_availability())}
        if len(rest) == 1:
            if m == "GET":
                return self._analytics_status(rest[0])
            if m == "DELETE":
                return self._analytics_cancel(rest[0])
            raise _method_not_allowed(m, ANALYTICS_JOBS_PATH + "/{jobId}")
        if len(rest) == 2 and rest[1] == "results":
            if m != "GET":
                raise _method_not_allowed(m, ANALYTICS_JOBS_PATH + "/{jobId}/results")
            return self._analytics_results(rest[0], rec.query)
        return None

    # ---- create ---------------------------------------------------------------------------------
    def _analytics_create(self, payload):
        if not isinstance(payload, dict):
            raise _bad("The request body must be a JSON object (AsyncConversationQuery).")
        unknown = set(payload) - _ASYNC_QUERY_FIELDS
        if unknown:
            raise _bad("Unknown field(s) %s in AsyncConversationQuery." % ", ".join(sorted(unknown)),
                       field=sorted(unknown)[0])
        query = {"interval": _parse_interval(payload.get("interval"))}
        order = payload.get("order", "asc")
        if order not in _ORDERS:
            raise _bad("order must be one of %s." % ", ".join(_ORDERS), field="order")
        order_by = payload.get("orderBy", "conversationStart")
        if order_by not in _ORDER_BYS:
            raise _bad("orderBy must be one of %s." % ", ".join(_ORDER_BYS), field="orderBy")
        limit = payload.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise _bad("limit must be a positive integer.", field="limit")
        sod = payload.get("startOfDayIntervalMatching", False)
        if not isinstance(sod, bool):
            raise _bad("startOfDayIntervalMatching must be a boolean.", field="startOfDayIntervalMatching")
        for name in _UNSUPPORTED_FILTERS:
            if payload.get(name):
                raise _bad("%s are not supported by the fake." % name, field=name)
        query.update(order=order, orderBy=order_by, limit=limit, startOfDayIntervalMatching=sod,
                     segmentFilters=_check_filters(payload.get("segmentFilters"), "segmentFilters",
                                                   _SEGMENT_DIMENSIONS),
                     conversationFilters=_check_filters(payload.get("conversationFilters"), "conversationFilters",
                                                        _CONVERSATION_DIMENSIONS))
        job = _AnalyticsJob(self, query)
        job.availability = self.analytics_availability()
        job._avail_ms = _to_ms(job.availability)
        with self.lock:
            job.fail_message, self.fail_next_analytics_job = self.fail_next_analytics_job, None
            source = self.conversation_source
            conversations = self.conversations if source is None else None
        if source is not None and not (order in ("asc", "unordered") and order_by in ("conversationStart",
                                                                                       "segmentStart")):
            raise _bad("The fake's conversation_source serves only order asc by conversationStart "
                       "(got order %r, orderBy %r)." % (order, order_by), field="orderBy")
        if source is None:
            key_field = "conversationEnd" if order_by in ("conversationEnd", "segmentEnd") else "conversationStart"
            picked = [c for c in list(conversations) if job.matches(c)]

            def key(c):
                value = c.get(key_field)
                return _to_ms(value) if value else _FOREVER_MS

            picked.sort(key=key, reverse=(order == "desc"))
            job.snapshot = picked
        else:
            job.source = source
        with self.lock:
            self._analytics_jobs[job.id] = job
        return 202, {"jobId": job.id}

    # ---- status / cancel --------------------------------------------------------------------------
    @staticmethod
    def _analytics_state(job, now):
        elapsed = now - job.created
        if job.cancelled:
            return "CANCELLED"
        if elapsed < job.duration:
            return "QUEUED" if elapsed < job.duration * 0.2 else "PENDING"
        if job.fail_message is not None:
            return "FAILED"
        if job.expired_at is not None or elapsed >= job.duration + job.ttl:
            return "EXPIRED"
        return "FULFILLED"

    def _analytics_job_or_404(self, job_id):
        job = self._analytics_jobs.get(job_id)
        if job is None:
            raise _Reply(404, "not.found", "Analytics job %s not found." % job_id)
        return job

    def _analytics_status(self, job_id):
        job = self._analytics_job_or_404(job_id)
        with self.lock:
            state = self._analytics_state(job, time.monotonic())
            answer = {"state": state, "submissionDate": _iso(job.submitted)}
            if state in ("FULFILLED", "FAILED", "EXPIRED") or (state == "CANCELLED" and job.cancelled_after):
                answer["completionDate"] = _iso(job.completed)
            if state == "FULFILLED":
                answer["expirationDate"] = _iso(job.completed + timedelta(seconds=job.ttl))
            elif state == "EXPIRED":
                answer["expirationDate"] = _iso(job.expired_at or job.completed + timedelta(seconds=job.ttl))
            elif state == "FAILED":
                answer["errorMessage"] = job.fail_message
        return 200, answer

    def _analytics_cancel(self, job_id):
        job = self._analytics_job_or_404(job_id)
        with self.lock:
            state = self._analytics_state(job, time.monotonic())
            if state in ("QUEUED", "PENDING", "FULFILLED"):
                job.cancelled = True
                job.cancelled_after = state == "FULFILLED"
        with job.lock:                          # a results request in progress finishes first
            if job.cancelled:
                job.snapshot = job.live = job.last_page = None
        return 204, None

    # ---- results --------------------------------------------------------------------------------
    def _analytics_results(self, job_id, query):
        job = self._analytics_job_or_404(job_id)
        size = query.get("pageSize", "")
        if size == "":
            size = ANALYTICS_DEFAULT_PAGE_SIZE
        else:
            try:
                size = int(size)
            except ValueError:
                raise _bad("pageSize must be an integer.", field="pageSize")
            if not 1 <= size <= ANALYTICS_MAX_PAGE_SIZE:
                raise _bad("pageSize must be between 1 and %d." % ANALYTICS_MAX_PAGE_SIZE, field="pageSize")
        with self.lock:
            state = self._analytics_state(job, time.monotonic())
        if state in ("CANCELLED", "EXPIRED"):
            raise _Reply(404, "not.found", "The results of analytics job %s are no longer available (%s)."
                         % (job.id, state))
        if state != "FULFILLED":
            raise _bad("Analytics job %s is %s; results are available once it is FULFILLED." % (job.id, state))
        cursor = query.get("cursor", "")
        offset, position = _decode_cursor(job, cursor) if cursor else (0, None)
        want = size if job.limit is None else min(size, job.limit - offset)
        with job.lock:
            if job.cancelled:
                raise _Reply(404, "not.found", "The results of analytics job %s are no longer available "
                                               "(CANCELLED)." % job.id)
            records, more, next_position = self._analytics_page(job, offset, position, max(0, want))
        answer = {"conversations": records}
        if more:
            answer["cursor"] = _encode_cursor(job, offset + len(records), next_position)
        answer["dataAvailabilityDate"] = _iso(job.availability)
        return 200, answer

    def _analytics_page(self, job, offset, position, want):
        """(records, more, position after them). Call with job.lock held."""
        if want <= 0:
            return [], False, None
        last = job.last_page
        if last is not None and last[:3] == (offset, position, want):          # a repeated request
            return last[3], last[4], last[5]
        limit_left = None if job.limit is None else job.limit - offset - want
        if job.snapshot is not None:
            records = job.snapshot[offset:offset + want]
            more = offset + want < len(job.snapshot) and (limit_left is None or limit_left > 0)
            return records, more, None
        resume = getattr(job.source, "resume", None)
        if callable(resume):
            records, next_position, more = [], position, False
            for pos, conv in resume(job.window[0], job.window[1], job.media_types, position):
                if not job.matches(conv):
                    continue
                if len(records) == want:
                    more = True
                    break
                records.append(conv)
                next_position = pos
        else:
            live = job.live
            if live is not None and live[0] == offset:
                it, peeked = live[1], live[2]
            else:                                   # restart and skip (a source without .resume)
                it = (c for c in job.source(job.window[0], job.window[1], job.media_types) if job.matches(c))
                peeked = None
                for _ in itertools.islice(it, offset):
                    pass
            records = [peeked] if peeked is not None else []
            records.extend(itertools.islice(it, want - len(records)))
            peeked = next(it, None)
            more = peeked is not None
            job.live = (offset + len(records), it, peeked) if more else None
            next_position = None
        if limit_left is not None and limit_left <= 0:
            more = False
        job.last_page = (offset, position, want, records, more, next_position)
        return records, more, next_position


# --------------------------------------------------------------------------------------------
# One org
# --------------------------------------------------------------------------------------------

class FakeOrg(_AnalyticsOrg, _PeopleOrg, _ConfigOrg):
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
        "flow_job_seconds": 0.3,
        "flow_export_transient_failures": 0,
        "prompt_transcode_seconds": 0.2,
        "analytics_job_seconds": 0.3,
        "analytics_job_ttl": 300.0,
        "data_availability_date": None,
        "expand_miss_share": 0.3,
        "expand_miss_seed": 0,
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
        self._answers: list[_Answer] = []
        self._rl_lock = threading.Lock()
        self._windows = {}                      # (client_id, bucket) -> deque of monotonic times
        self._export_jobs = {}
        self._import_jobs = {}
        self._import_queue = collections.deque()
        self._import_running = []
        self._import_seq = 0
        self._init_config()
        self._init_people()
        self._init_analytics()

    # ---- public helpers -----------------------------------------------------------------
    def revoke_tokens(self):
        with self.lock:
            self._tokens.clear()

    def inject_fault(self, status=503, retry_after=None, drop=False, method=None, path_prefix=None, times=1):
        with self.lock:
            self._faults.append(_Fault(status, retry_after, drop, method, path_prefix, times))

    def inject_answer(self, method=None, path_prefix=None, status=200, body=None, headers=None, times=1, raw=None,
                      path_suffix=None):
        """The next `times` matching requests (method; path prefix as inject_fault, "/oauth/token" included;
        optional path suffix) get this answer instead of the real handling: `raw` bytes if given, else `body`
        as JSON (none when both are None), Content-Type application/json unless `headers` name one, plus
        `headers` (after the rate-limit headers of an /api/v2 path). The request is still logged."""
        with self.lock:
            self._answers.append(_Answer(status, body, dict(headers or {}), raw, method, path_prefix, path_suffix,
                                         times))

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
    def _take_answer(self, method, path):
        with self.lock:
            for a in self._answers:
                if a.matches(method, path):
                    a.times -= 1
                    if a.times <= 0:
                        self._answers.remove(a)
                    return a
        return None

    def _send_answer(self, h, rec, answer, is_api):
        headers = self._rl_headers(self.client_id, self._is_status(rec.method, rec.path)) if is_api else {}
        content_type = "application/json; charset=UTF-8"
        for name, value in answer.headers.items():
            if name.lower() == "content-type":
                content_type = value
            else:
                headers[name] = value
        if answer.raw is not None:
            data = bytes(answer.raw)
        elif answer.body is not None:
            data = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        else:
            data = b""
        h.send_bytes(rec, answer.status, content_type, data, headers)

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
        answer = self._take_answer(rec.method, path)
        if answer is not None:
            self._send_answer(h, rec, answer, is_api)
            return
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
        if obj is None:
            h.send_empty(rec, status, rl_headers)
        else:
            h.send_json(rec, status, obj, rl_headers)

    @staticmethod
    def _is_status(method, path):
        if method != "GET":
            return False
        parts = path.split("/")
        # /api/v2/interaction/{export|import}/{id}
        if (len(parts) == 6 and parts[3] == "interaction" and parts[4] in ("export", "import")
                and parts[5] not in ("", "schemas")):
            return True
        # /api/v2/flows/jobs/{id} and /api/v2/flows/export/jobs/{id}
        if len(parts) == 6 and parts[3] == "flows" and parts[4] == "jobs" and parts[5]:
            return True
        if len(parts) == 7 and parts[3:6] == ["flows", "export", "jobs"] and parts[6] != "":
            return True
        # /api/v2/analytics/conversations/details/jobs/{id} (not .../availability, not .../{id}/results)
        return (len(parts) == 8 and parts[3:7] == ["analytics", "conversations", "details", "jobs"]
                and parts[7] not in ("", "availability"))

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

    def _platform_limits(self):
        """LimitsEntityListing of the platform.api namespace: the client limit, as requests per minute."""
        per_minute = int(round(self.rate_limit * 60.0 / self.rate_window))
        limits = [{"key": "client.credentials.token.rate.per.minute", "namespace": "platform.api", "value": per_minute}]
        return {"entities": limits, "pageSize": len(limits), "pageNumber": 1, "total": len(limits), "pageCount": 1}

    # ---- routing -------------------------------------------------------------------------
    def _route(self, rec, body):
        m, parts = rec.method, rec.path.rstrip("/").split("/")[3:]   # after /api/v2
        if parts == ["organizations", "me"] and m == "GET":
            return 200, {"id": self.org_id, "name": self.name, "domain": self.name, "state": "active",
                         "selfUri": "/api/v2/organizations/%s" % self.org_id}
        if parts == ["organizations", "limits", "namespaces", "platform.api"] and m == "GET":
            return 200, self._platform_limits()
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
        answer = self._route_analytics(m, parts, rec, body)
        if answer is not None:
            return answer
        answer = self._route_people(m, parts, rec, body)
        if answer is not None:
            return answer
        answer = self._route_config(m, parts, rec, body)
        if answer is not None:
            return answer
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
                self.server.fake._handle_download(self, rec, body, too_large)
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

    def send_bytes(self, rec, status, content_type, data, headers=None):
        rec.status = status
        self._rec = rec
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(data)
        self._rec = None
        self.flush_headers()

    def send_empty(self, rec, status, headers=None):
        """An answer without a body (204 for DELETE)."""
        rec.status = status
        self._rec = rec
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Length", "0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._rec = None
        self.end_headers()

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
        self.redirect_downloads = None                # a URL: the download host answers 302 to it (GET and PUT)
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
                for step in (org._step_imports, org._step_flow_jobs, org._step_prompt_transcodes):
                    try:
                        due = step(time.monotonic())
                    except Exception:                          # pragma: no cover - diagnostics
                        self.server_errors.append(traceback.format_exc())
                        due = None
                    if due is not None and (next_due is None or due < next_due):
                        next_due = due
            timeout = 1.0 if next_due is None else max(0.0, next_due - time.monotonic())
            if timeout > 0:
                self._wake.wait(timeout)

    # ---- download host ----------------------------------------------------------------------------
    def _mint_download(self, org, job, path=None, kind="export"):
        sig = secrets.token_hex(20)
        ttl = float(org.download_ttl)
        if path is None:
            path = "/exports/%s/%s.json.gz" % (org.org_id, job.id)
        with self._lock:
            self._downloads[sig] = _Download(org, job, path, time.monotonic() + ttl, kind)
        expires_at = _iso(datetime.now(timezone.utc) + timedelta(seconds=ttl))
        url = "%s%s?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=%d&X-Amz-Signature=%s" % (
            self.download_url, path, int(ttl), sig)
        return url, expires_at

    def _expire_downloads(self, org):
        with self._lock:
            for d in self._downloads.values():
                if d.org is org:
                    d.expired = True

    def _handle_download(self, h, rec, body=None, too_large=False):
        with self._lock:
            self.download_log.append(rec)
            d = self._downloads.get(rec.query.get("X-Amz-Signature", ""))
            redirect = self.redirect_downloads
        if redirect is not None and rec.method in ("GET", "PUT"):
            h.send_bytes(rec, 302, "text/plain", b"", headers={"Location": redirect})
            return
        if rec.method == "PUT" and (rec.path.startswith(("/architect/imports/", "/architect/prompt-uploads/"))
                                    or (d is not None and d.kind in _UPLOAD_KINDS)):
            self._handle_upload(h, rec, d, body, too_large)
            return
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
        if (refuse or d is None or d.path != rec.path or d.expired or time.monotonic() >= d.expires
                or d.kind in _UPLOAD_KINDS):
            h.send_error_body(rec, 403, "AccessDenied", "Request has expired or the signature does not match.")
            return
        if d.kind == "flows":
            content_type, content = d.org._flow_export_body(d.job)
            h.send_bytes(rec, 200, content_type, content)
            return
        if d.kind == "prompt-media":
            h.send_bytes(rec, 200, "audio/wav", d.job.data)
            return
        h.send_chunked(rec, 200, "application/gzip", _gzip_json_array(d.org._export_records(d.job)))


    def _handle_upload(self, h, rec, d, body, too_large):
        """PUT of a flow job's YAML to its presignedUrl (S3-like)."""
        if "authorization" in rec.headers:
            h.send_error_body(rec, 400, "InvalidArgument",
                              "Only one auth mechanism allowed; a pre-signed URL takes no Authorization header.")
            return
        if (d is None or d.kind not in _UPLOAD_KINDS or d.path != rec.path or d.expired
                or time.monotonic() >= d.expires):
            h.send_error_body(rec, 403, "AccessDenied", "Request has expired or the signature does not match.")
            return
        for name, value in d.job.headers.items():
            if rec.headers.get(name.lower()) != value:
                h.send_error_body(rec, 403, "SignatureDoesNotMatch",
                                  "The signed header %s is missing or differs from the signed value." % name)
                return
        if too_large or body is None:
            h.send_error_body(rec, 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
            return
        if d.kind == "upload":
            d.org._flow_upload(d.job, body)
        else:
            d.org._prompt_upload(d.job, body)
        h.send_bytes(rec, 200, None, b"", headers={"ETag": '"%s"' % secrets.token_hex(16)})


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


class _RefIds(dict):
    """{kind: [ids]} as populate_reference_objects returns it; .names maps every id to its name (the
    conversation generator uses it for participantName and flowName)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.names = {}


def populate_reference_objects(org, seed=0, queues=8, flows=4, skills=6, languages=3, wrapupcodes=6, users=10):
    """Adds realistic reference objects to org; returns {kind: [ids]}.

    Names depend only on the seed and the counts (so two orgs populated with the same seed hold the
    same names, like a cloned org); ids depend on the seed and the org's name (so they differ)."""
    rng_names = random.Random("%s:names" % seed)
    rng_ids = random.Random("%s:%s:ids" % (seed, org.name))
    refs = _RefIds()

    def add(kind, name, **fields):
        oid = org.add_object(kind, name, id=_rng_uuid(rng_ids), **fields)
        refs.setdefault(kind, []).append(oid)
        refs.names[oid] = name
        return oid

    with org.lock:
        home = next((d for d in org.objects["divisions"].values() if d.get("homeDivision")), None)
        if home is None:
            home_id = add("divisions", "Home", description="Home division", homeDivision=True)
            home = org.objects["divisions"][home_id]
        else:
            refs["divisions"] = [home["id"]]
            refs.names[home["id"]] = home["name"]
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


# ---- section 8: a realistic configuration org ------------------------------------------------

_CFG_DIVISIONS = ["Home", "EMEA", "Ünïcødé 東京", "Americas", "APAC", "Partners", "Back Office", "Outsourcer"]
_CFG_SKILLS = ["English", "German", "French", "Billing", "Spanish", "Yes", "Technical L1", "Technical L2",
               "Complaints", "-dash", "Sales Closing", "Retention", "Insurance Claims", "Premium Accounts",
               "Mortgages", "Credit Cards", "Fraud", "Onboarding", "Collections", "Escalations", "Chat Etiquette",
               "Email Writing", "Social Media", "Hardware", "Software", "Network", "Returns", "VIP", "Italian",
               "Dutch", "Polish", "billing"]                  # "billing" next to "Billing": names are case-sensitive
_CFG_LANGUAGES = ["English", "German", "Ünïcødé 東京", "French", "Spanish", "Dutch", "Italian", "Portuguese", "Polish",
                  "Swedish", "Japanese"]
_CFG_WRAPUPS = ["Resolved", "Follow-up required", "Callback scheduled", "123", "Transferred", "No answer", "it's",
                "Sale completed", "Complaint logged", "Wrong number", "Escalated", "Information given",
                "Cancelled order", "Refund issued", "Address changed", "Payment arrangement", "Technical issue",
                "Password reset", "Upsell", "Survey declined", "Duplicate contact", "Spam", "Abandoned",
                "Voicemail left", "Appointment booked", "Quote sent", "resolved"]    # case-variant of "Resolved"
_CFG_SCHEDULES = [      # name, start, end, rrule, role
    ("Weekdays 08-18", "2026-01-05T08:00:00.000", "2026-01-05T18:00:00.000", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "open"),
    ("Saturday: 09-13", "2026-01-10T09:00:00.000", "2026-01-10T13:00:00.000", "FREQ=WEEKLY;BYDAY=SA", "open"),
    ("New Year", "2026-01-01T00:00:00.000", "2026-01-02T00:00:00.000", "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1", "holiday"),
    ("Christmas Day", "2026-12-25T00:00:00.000", "2026-12-26T00:00:00.000", "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25",
     "holiday"),
    ("Maintenance Window", "2026-01-04T00:00:00.000", "2026-01-04T06:00:00.000", "FREQ=MONTHLY;BYDAY=1SU", "closed"),
    ("Weekdays 07-20", "2026-01-05T07:00:00.000", "2026-01-05T20:00:00.000", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "open"),
    ("Labour Day", "2026-05-01T00:00:00.000", "2026-05-02T00:00:00.000", "FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1", "holiday"),
    ("Team Training", "2026-01-07T14:00:00.000", "2026-01-07T16:00:00.000", "FREQ=WEEKLY;BYDAY=WE", "closed"),
    ("Sunday 10-16", "2026-01-11T10:00:00.000", "2026-01-11T16:00:00.000", "FREQ=WEEKLY;BYDAY=SU", "open"),
    ("Boxing Day", "2026-12-26T00:00:00.000", "2026-12-27T00:00:00.000", "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=26",
     "holiday"),
]
_CFG_SCHEDULE_GROUPS = [("Business Hours EMEA", "Europe/Berlin"), ("After Hours: it's closed", "America/New_York"),
                        ("Business Hours US", "America/New_York"), ("Business Hours APAC", "Asia/Tokyo"),
                        ("Support Hours UK", "Europe/London"), ("Sales Hours", "America/Chicago"),
                        ("Weekend Cover", "Europe/Paris")]
_CFG_QUEUES = ["Billing", "Support EN", "Support DE", "Sales: EMEA", "Retention", "Technical Support", "Claims",
               "#1 Priority", "Collections", "Onboarding", "Support FR", "Escalations", "Mortgages", "Credit Cards",
               "Fraud Desk", "Returns", "Chat Support", "Email Support", "Social Care", "Partner Desk",
               "Back Office", "Complaints", "Renewals", "Cancellations", "Hardware Support", "Network Support",
               "Premium Line", "SMB Sales", "Enterprise Sales", "Reception"]
_CFG_FLOWS = [("Main IVR", "INBOUNDCALL"), ("After Hours IVR", "INBOUNDCALL"), ("Default In-Queue", "INQUEUECALL"),
              ("Web Chat Entry", "INBOUNDCHAT"), ("Email Router", "INBOUNDEMAIL"), ("SMS Entry", "INBOUNDSHORTMESSAGE"),
              ("Auth Module: PIN", "COMMONMODULE"), ("#1 Billing IVR", "INBOUNDCALL"),
              ("VIP In-Queue", "INQUEUECALL"), ("FAQ Bot", "BOT"), ("Case Workflow", "WORKFLOW"),
              ("Support IVR", "INBOUNDCALL"), ("Sales IVR", "INBOUNDCALL"), ("Callback In-Queue", "INQUEUECALL"),
              ("German IVR", "INBOUNDCALL"), ("Survey Module", "COMMONMODULE"), ("Claims IVR", "INBOUNDCALL"),
              ("Order Status Bot", "BOT"), ("Escalation Workflow", "WORKFLOW"), ("Collections IVR", "INBOUNDCALL")]
_CFG_PROMPTS = ["Welcome", "Main_Menu", "Hold_Message", "After_Hours", "Holiday_Closed", "Queue_Position",
                "Survey_Intro", "Goodbye", "Callback_Offer", "Emergency_Closure", "Payment_Options", "Transfer_Notice"]
_CFG_TABLES = ["VIP Numbers", "Sales: EMEA Rates", "Store Locations", "123", "Holiday Overrides", "it's Config",
               "Routing Overrides", "Agent Extensions", "Ünïcødé 東京 Branches", "Product Codes"]
_CFG_TABLE_COLUMNS = [("tier", "string"), ("priority", "integer"), ("rate", "number"), ("active", "boolean"),
                      ("region", "string"), ("maxWait", "integer"), ("weight", "number"), ("queueName", "string"),
                      ("open", "boolean")]
_CFG_WORDS = ["gold", "silver", "bronze", "north", "south", "east", "west", "Berlin", "Boston", "Tokyo", "Paris",
              "it's fine", "a: b", "#7", "Ünïcødé"]
_CFG_IVRS = ["Main Number", "Sales: EMEA Line", "Support Hotline", "Yes", "#1 Priority Line", "Billing Line",
             "Ünïcødé 東京 Line", "-dash Line", "Claims Line", "it's the Night Line"]
_CFG_EGROUPS = ["Fire Evacuation", "it's an Emergency", "Severe Weather", "Building Closure", "#1 Outage",
                "Power Failure"]
_CFG_ACTIONS = [("Billing", "Get Balance"), ("CRM: Salesforce", "Lookup Customer"), ("Billing", "#1 Payment Check"),
                ("Orders", "Yes"), ("CRM: Salesforce", "Create Case"), ("Orders", "Get Order Status"),
                ("Ünïcødé 東京", "Lookup Branch"), ("Billing", "it's Overdue")]
_CFG_DEPARTMENTS = ["Customer Service", "Sales", "Technical Support", "Billing", "Back Office"]
_CFG_TITLES = ["Agent", "Senior Agent", "Team Lead", "Supervisor"]
_CFG_KIND_ORDER = ("divisions", "skills", "languages", "wrapupcodes", "schedules", "schedulegroups", "users",
                   "flows", "queues", "trunkbasesettings", "prompts", "datatables", "dataactions", "ivrs",
                   "didpools", "emergencygroups")
_CFG_BASE_DATE = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
_SHELL_TYPES_SKIPPED = ("INBOUNDCALL", "COMMONMODULE", "INQUEUECALL")   # never the unpublished shell


def _select_only(only, counts, seed):
    """kind -> sorted list of selected plan indices (populate_config_org's `only`)."""
    if only is None:
        return {k: list(range(n)) for k, n in counts.items()}
    if isinstance(only, (int, float)) and not isinstance(only, bool):
        only = {k: float(only) for k in counts}
    elif isinstance(only, (list, tuple, set, frozenset)):
        only = {k: 1.0 for k in only}
    if not isinstance(only, dict):
        raise TypeError("only must be None, a fraction, a list of kinds or a dict kind -> fraction/count")
    unknown = set(only) - set(counts)
    if unknown:
        raise KeyError("unknown kind(s) in only: %s" % ", ".join(sorted(unknown)))
    selected = {}
    for kind, n in counts.items():
        want = only.get(kind, 0)
        k = min(n, want if isinstance(want, int) and not isinstance(want, bool) else math.ceil(float(want) * n))
        selected[kind] = sorted(random.Random("%s:%s:only" % (seed, kind)).sample(range(n), k)) if k else []
    return selected


def _ivr_number(prefix, i, k):
    """The k-th number of plan IVR i: +1 <area> 555 <i*10+k>; the area code depends on the name prefix."""
    area = 317 if not prefix else 200 + zlib.crc32(prefix.encode("utf-8")) % 700
    return "+1%03d555%04d" % (area, (i * 10 + k) % 10000)


def populate_config_org(org, seed=0, skills=60, wrapupcodes=40, schedules=10, schedulegroups=4, queues=80, flows=20,
                        trunks=2, languages=5, users=30, divisions=2, name_prefix="", only=None, variant=0,
                        prompts=0, datatables=0, table_rows=0, ivrs=0, emergencygroups=0, data_actions=0,
                        unpublished_flows=1):
    """Adds a realistic section-8 configuration to org (directly into the store); returns {kind: [ids]}.

    A plan of every object (names, structure, settings) is drawn first, so it depends only on the seed
    and the counts: two orgs populated with the same seed hold the same names and structure (like a
    cloned org); ids depend on the seed, the org's name and name_prefix. `only` (a fraction, a list of
    kinds, or {kind: fraction or count}) materializes just a seeded sample of the plan, with references
    to objects left out dropped: a target pre-populated with some same-named objects. `variant` != 0
    changes settings (descriptions, timeouts, ...) but not names or structure. `divisions` counts the
    home division (reused when the org has one). prompts, datatables (with table_rows rows in all), ivrs
    (with a DID pool each), emergencygroups and data_actions add the later kinds (`only` keys: prompts,
    datatables, ivrs, emergencygroups, dataactions). With 3 or more flows, the last `unpublished_flows` flows
    of a type other than inbound call, in-queue call and common module stay unpublished shells (no content).
    See tests/FAKE_SPEC.md for the shapes and YAML layout."""
    counts = {"divisions": max(1, divisions), "skills": skills, "languages": languages, "wrapupcodes": wrapupcodes,
              "schedules": schedules, "schedulegroups": schedulegroups, "users": users, "flows": flows,
              "queues": queues, "trunkbasesettings": trunks, "prompts": prompts, "datatables": datatables,
              "dataactions": data_actions, "ivrs": ivrs, "emergencygroups": emergencygroups}
    rs = random.Random("%s:config-struct" % seed)                 # names and structure
    rv = random.Random("%s:%s:config-settings" % (seed, variant))  # settings
    rid = random.Random("%s:%s:%s:config-ids" % (seed, org.name, name_prefix))
    sel = _select_only(only, counts, seed)
    P = name_prefix
    PP = re.sub(r"[^A-Za-z0-9_]", "_", P)                         # the prefix as prompt names allow it
    if PP and not PP[0].isalpha():
        PP = "P" + PP
    vtag = "" if not variant else " (v%d)" % variant

    def pick_div():
        n = counts["divisions"]
        return 0 if n == 1 or rs.random() < 0.7 else 1 + int(rs.random() * (n - 1))

    def sample(n_pool, lo, hi):
        if n_pool <= 0:
            return []
        k = min(n_pool, lo + int(rs.random() * (hi - lo + 1)))
        return sorted(rs.sample(range(n_pool), k))

    # ---- the plan (no org access) --------------------------------------------------------------
    plan = {k: [] for k in _CFG_KIND_ORDER}
    plan["divisions"] = [{"name": "Home"}] + [{"name": P + nm} for nm in _names(_CFG_DIVISIONS[1:], counts["divisions"] - 1)]
    for d in plan["divisions"][1:]:
        d["description"] = "%s division%s" % (d["name"], vtag)
    for nm in _names(_CFG_SKILLS, skills):
        plan["skills"].append({"name": P + nm, "div": pick_div()})
    for nm in _names(_CFG_LANGUAGES, languages):
        plan["languages"].append({"name": P + nm})
    for nm in _names(_CFG_WRAPUPS, wrapupcodes):
        plan["wrapupcodes"].append({"name": P + nm, "div": pick_div(), "description": "%s%s" % (nm, vtag)})
    for i in range(schedules):
        nm, start, end, rrule, role = _CFG_SCHEDULES[i % len(_CFG_SCHEDULES)]
        if i >= len(_CFG_SCHEDULES):
            nm = "%s %d" % (nm, i // len(_CFG_SCHEDULES) + 1)
        plan["schedules"].append({"name": P + nm, "div": pick_div(), "start": start, "end": end, "rrule": rrule,
                                  "role": role, "description": "%s schedule%s" % (nm, vtag)})
    by_role = {r: [i for i, s in enumerate(plan["schedules"]) if s["role"] == r] for r in ("open", "closed", "holiday")}
    for i in range(schedulegroups):
        nm, tz = _CFG_SCHEDULE_GROUPS[i % len(_CFG_SCHEDULE_GROUPS)]
        if i >= len(_CFG_SCHEDULE_GROUPS):
            nm = "%s %d" % (nm, i // len(_CFG_SCHEDULE_GROUPS) + 1)
        lists = {}
        for key, role, lo, hi in (("openSchedules", "open", 1, 2), ("closedSchedules", "closed", 0, 1),
                                  ("holidaySchedules", "holiday", 1, 3)):
            pool = by_role[role]
            lists[key] = [pool[j] for j in sample(len(pool), lo, hi)]
        plan["schedulegroups"].append({"name": P + nm, "div": pick_div(), "timeZone": tz, "lists": lists,
                                       "description": "%s%s" % (nm, vtag)})
    emails = set()
    for i in range(users):
        first, last = rs.choice(_FIRST), rs.choice(_LAST)
        local = "%s%s.%s" % (re.sub(r"[^a-z0-9]+", ".", P.lower()).strip(".") + "." if P.strip() else "",
                             first.lower(), last.lower())
        email, n = local + "@example.com", 2
        while email in emails:
            email, n = "%s%d@example.com" % (local, n), n + 1
        emails.add(email)
        plan["users"].append({"name": "%s%s %s" % (P, first, last), "email": email, "div": pick_div(),
                              "department": rs.choice(_CFG_DEPARTMENTS), "title": rs.choice(_CFG_TITLES)})
    flow_names = _names([nm for nm, _ in _CFG_FLOWS], flows)
    for i, nm in enumerate(flow_names):
        plan["flows"].append({"name": P + nm, "type": _CFG_FLOWS[i % len(_CFG_FLOWS)][1], "div": pick_div(),
                              "description": "%s flow%s" % (nm, vtag), "published": True})
    if flows >= 3:
        shells = [j for j in reversed(range(flows)) if plan["flows"][j]["type"] not in _SHELL_TYPES_SKIPPED]
        for j in shells[:max(0, unpublished_flows)]:
            plan["flows"][j]["published"] = False
    inqueue = [i for i, f in enumerate(plan["flows"]) if f["type"] == "INQUEUECALL"]
    for i, nm in enumerate(_names(_CFG_QUEUES, queues)):
        n_rings = 1 + int(rs.random() * 4)
        rings = [sample(skills, 0 if r == n_rings - 1 else 1, 0 if r == n_rings - 1 else 2) for r in range(n_rings)]
        plan["queues"].append({
            "name": P + nm, "div": pick_div(), "rings": rings,
            "wrapups": sample(wrapupcodes, 1, 6),
            "queueFlow": inqueue[int(rs.random() * len(inqueue))] if inqueue and rs.random() < 0.5 else None,
            "members": int(rs.random() * 25),
            "description": "%s queue%s" % (nm, vtag),
            "skillEvaluationMethod": rv.choice(("ALL", "BEST", "NONE")),
            "wrapupPrompt": rv.choice(("MANDATORY_TIMEOUT", "OPTIONAL", "MANDATORY")),
            "acwTimeoutMs": rv.choice((15000, 30000, 60000, 120000)),
            "alerting": rv.choice((8, 10, 15, 30)),
            "serviceLevel": rv.choice((0.8, 0.9)),
            "threshold": rv.choice((5, 9, 15)),
            "ringSeconds": [rv.choice((10.0, 15.0, 30.0)) for _ in range(n_rings)],
            "callingPartyName": "%s Team" % nm if rv.random() < 0.5 else None,
        })
        if prompts:
            plan["queues"][-1]["whisperPrompt"] = int(rs.random() * prompts) if rs.random() < 0.3 else None
            plan["queues"][-1]["onHoldPrompt"] = int(rs.random() * prompts) if rs.random() < 0.3 else None
    for i in range(prompts):
        nm = _CFG_PROMPTS[i % len(_CFG_PROMPTS)]
        if i >= len(_CFG_PROMPTS):
            nm = "%s_%d" % (nm, i // len(_CFG_PROMPTS) + 1)
        resources = []
        for language in (("en-us", "de-de") if rs.random() < 0.6 else ("en-us",)):
            r = rs.random()
            resources.append({"language": language, "mode": "audio" if r < 0.45 else ("both" if r < 0.8 else "tts"),
                              "size": 200 + 2 * int(rs.random() * 200)})
        plan["prompts"].append({"name": PP + nm, "base": nm, "resources": resources,
                                "description": "%s prompt%s" % (nm.replace("_", " "), vtag)})
    for i, nm in enumerate(_names(_CFG_TABLES, datatables)):
        columns = rs.sample(_CFG_TABLE_COLUMNS, 1 + int(rs.random() * 3))
        plan["datatables"].append({"name": P + nm, "div": pick_div(), "columns": columns, "weight": 0.5 + rs.random(),
                                   "description": "%s table%s" % (nm, vtag)})
    if datatables:
        total_w = sum(t["weight"] for t in plan["datatables"])
        shares = [int(table_rows * t["weight"] / total_w) for t in plan["datatables"]]
        for j in range(table_rows - sum(shares)):
            shares[j % datatables] += 1
        for t, n_rows in zip(plan["datatables"], shares):
            t["rows"] = n_rows
    for i in range(data_actions):
        category, nm = _CFG_ACTIONS[i % len(_CFG_ACTIONS)]
        if i >= len(_CFG_ACTIONS):
            nm = "%s %d" % (nm, i // len(_CFG_ACTIONS) + 1)
        plan["dataactions"].append({"category": category, "name": P + nm})
    inbound_calls = [j for j, f in enumerate(plan["flows"]) if f["type"] == "INBOUNDCALL"]

    def a_call_flow(p):
        return inbound_calls[int(rs.random() * len(inbound_calls))] if inbound_calls and rs.random() < p else None

    for i, nm in enumerate(_names(_CFG_IVRS, ivrs)):
        numbers = [_ivr_number(P, i, k) for k in range(1 + int(rs.random() * 3))]
        plan["ivrs"].append({"name": P + nm, "div": pick_div(), "dnis": numbers, "open": a_call_flow(1.0),
                             "closed": a_call_flow(0.8), "holiday": a_call_flow(0.6),
                             "group": int(rs.random() * schedulegroups) if schedulegroups else None,
                             "description": "%s IVR%s" % (nm, vtag)})
        plan["didpools"].append({"ivr": i, "start": _ivr_number(P, i, 0), "end": _ivr_number(P, i, 9)})
    for i, nm in enumerate(_names(_CFG_EGROUPS, emergencygroups)):
        plan["emergencygroups"].append({"name": P + nm, "div": pick_div(), "enabled": i == 0,
                                        "flow": a_call_flow(1.0) if inbound_calls else (0 if flows else None),
                                        "ivrs": sample(ivrs, 1, 2), "description": "%s%s" % (nm, vtag)})
    modules = [j for j, g in enumerate(plan["flows"]) if g["type"] == "COMMONMODULE" and g["published"]]
    for i, f in enumerate(plan["flows"]):            # what each flow's content uses
        ftype = f["type"]
        first = i == 0
        calls = ftype in ("INBOUNDCALL", "INBOUNDCHAT", "INBOUNDEMAIL", "INBOUNDSHORTMESSAGE")
        f["queues"] = sample(queues, 1, 3)
        f["schedulegroups"] = sample(schedulegroups, 1, 1) if calls and (first or rs.random() < 0.8) else []
        f["skills"] = sample(skills, 1, 2)
        f["wrapupcodes"] = sample(wrapupcodes, 1 if first else 0, 1) if ftype != "INQUEUECALL" else []
        f["languages"] = sample(languages, 1 if first else 0, 2 if first else 1)
        f["prompts"] = sample(prompts, 1 if first else 0, 2)
        f["datatables"] = sample(datatables, 1 if first else 0, 1)
        f["dataactions"] = sample(data_actions, 1 if first else 0, 1)
        f["emergencygroups"] = sample(emergencygroups, 1 if first else 0, 1) if ftype == "INBOUNDCALL" else []
        targets = []
        if flows >= 2 and i in (0, 1) and plan["flows"][1 - i]["type"] == ftype:
            targets.append(1 - i)                    # Main IVR <-> After Hours IVR: a cycle
        elif flows >= 3 and rs.random() < 0.6:
            j = int(rs.random() * flows)
            same = [g for g, h in enumerate(plan["flows"]) if h["type"] == ftype and g != i]
            if same:
                targets.append(same[j % len(same)])   # transferToFlow: a flow of the document's own type
        f["flows"] = targets
        f["modules"] = [j for j in modules if j != i][:1] if ftype == "INBOUNDCALL" else []
    for i in range(trunks):
        if i == 0:
            plan["trunkbasesettings"].append({"name": P + "Genesys Cloud Voice Trunk", "managed": True})
        else:
            nm = "BYOC Carrier: it's Trunk 1" if i == 1 else "BYOC Carrier Trunk %d" % i
            plan["trunkbasesettings"].append({"name": P + nm, "managed": False, "n": i,
                                              "description": "SIP trunk to carrier %d%s" % (i, vtag)})
    ids = {k: [_rng_uuid(rid) for _ in plan[k]] for k in _CFG_KIND_ORDER}
    secrets_rng = random.Random("%s:%s:%s:config-secrets" % (seed, org.name, name_prefix))
    asset_ids = random.Random("%s:%s:%s:config-asset-ids" % (seed, org.name, name_prefix))
    rows_rng = random.Random("%s:%s:config-rows" % (seed, name_prefix))
    sel["didpools"] = list(sel["ivrs"])

    # ---- materialize ----------------------------------------------------------------------------
    made = {k: {} for k in plan}                     # kind -> plan index -> object
    refs = {k: [] for k in KINDS}

    def date(kind, i):
        return _iso(_CFG_BASE_DATE + timedelta(hours=7 * i + 3 * _CFG_KIND_ORDER.index(kind)))

    def ref(kind, i):
        o = made[kind].get(i) if i is not None else None
        return None if o is None else {"id": o["id"], "name": o["name"], "selfUri": o["selfUri"]}

    def div(i):
        return ref("divisions", i) or ref("divisions", 0)

    def store(kind, i, obj):
        objects = org.objects[kind].values()
        if kind == "flows":
            taken = any(o.get("name") == obj["name"] and o.get("type") == obj["type"] for o in objects)
        elif kind == "users":                        # users are unique by email (names may repeat, as in real orgs)
            taken = any(str(o.get("email", "")).lower() == obj["email"] for o in objects)
        elif kind == "dataactions":
            taken = any(o.get("category") == obj["category"] and o.get("name") == obj["name"] for o in objects)
        elif kind == "didpools":
            taken = False
        else:
            taken = any(o.get("name") == obj["name"] for o in objects)
        if taken:
            raise ValueError("populate_config_org: %s %r already exists in org %s (use name_prefix)"
                             % (kind, obj.get("email", obj.get("name")), org.name))
        obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE[kind], obj["id"])
        org.objects[kind][obj["id"]] = obj
        made[kind][i] = obj
        refs[kind].append(obj["id"])
        return obj

    with org.lock:
        home = next((d for d in org.objects["divisions"].values() if d.get("homeDivision")), None)
        if home is None:
            store("divisions", 0, {"id": ids["divisions"][0], "name": "Home", "description": "Home division",
                                   "homeDivision": True})
        else:
            made["divisions"][0] = home
            refs["divisions"].append(home["id"])
        for i in sel["divisions"]:
            if i:
                p = plan["divisions"][i]
                store("divisions", i, {"id": ids["divisions"][i], "name": p["name"], "description": p["description"],
                                       "homeDivision": False})
        for i in sel["skills"]:
            p = plan["skills"][i]
            store("skills", i, {"id": ids["skills"][i], "name": p["name"], "division": div(p["div"]),
                                "state": "active", "version": "1", "dateModified": date("skills", i)})
        for i in sel["languages"]:
            store("languages", i, {"id": ids["languages"][i], "name": plan["languages"][i]["name"],
                                   "state": "active", "version": "1", "dateModified": date("languages", i)})
        for i in sel["wrapupcodes"]:
            p = plan["wrapupcodes"][i]
            store("wrapupcodes", i, {"id": ids["wrapupcodes"][i], "name": p["name"], "division": div(p["div"]),
                                     "description": p["description"], "dateCreated": date("wrapupcodes", i),
                                     "dateModified": date("wrapupcodes", i)})
        for i in sel["schedules"]:
            p = plan["schedules"][i]
            store("schedules", i, {"id": ids["schedules"][i], "name": p["name"], "division": div(p["div"]),
                                   "description": p["description"], "version": 1, "state": "active",
                                   "dateCreated": date("schedules", i), "dateModified": date("schedules", i),
                                   "start": p["start"], "end": p["end"], "rrule": p["rrule"]})
        for i in sel["schedulegroups"]:
            p = plan["schedulegroups"][i]
            obj = {"id": ids["schedulegroups"][i], "name": p["name"], "division": div(p["div"]),
                   "description": p["description"], "version": 1, "state": "active",
                   "dateCreated": date("schedulegroups", i), "dateModified": date("schedulegroups", i),
                   "timeZone": p["timeZone"]}
            for key, idx in p["lists"].items():
                obj[key] = [r for r in (ref("schedules", j) for j in idx) if r]
            store("schedulegroups", i, obj)
        for i in sel["users"]:
            p = plan["users"][i]
            store("users", i, {"id": ids["users"][i], "name": p["name"], "division": div(p["div"]),
                               "email": p["email"], "username": p["email"], "state": "active", "version": 1,
                               "department": p["department"], "title": p["title"]})
        for i in sel["prompts"]:
            p = plan["prompts"][i]
            obj = store("prompts", i, {"id": ids["prompts"][i], "name": p["name"], "description": p["description"]})
            assets = {}
            for n, r in enumerate(p["resources"]):
                asset = {"id": _rng_uuid(asset_ids), "promptId": obj["id"], "language": r["language"]}
                words = p["base"].replace("_", " ")
                if r["mode"] != "audio":
                    asset["ttsString"] = "%s (%s)." % (words, r["language"])
                    asset["text"] = words
                asset["uploadStatus"] = "created"
                asset["languageDefault"] = n == 0
                asset["selfUri"] = "%s/%s/resources/%s" % (_SELF_URI_BASE["prompts"], obj["id"], r["language"])
                assets[r["language"]] = asset
            org.prompt_resources[obj["id"]] = assets
            for r in p["resources"]:
                if r["mode"] != "tts":
                    org._transcoded(obj["id"], r["language"], make_wav("%s:%s:%s" % (seed, p["base"], r["language"]),
                                                                       r["size"]))
        for i in sel["datatables"]:
            p = plan["datatables"][i]
            props = {"key": {"title": "Key", "type": "string", "$id": "/properties/key", "displayOrder": 0}}
            for n, (column, ctype) in enumerate(p["columns"]):
                props[column] = {"title": column, "type": ctype, "$id": "/properties/%s" % column,
                                 "displayOrder": n + 1}
            obj = store("datatables", i, {"id": ids["datatables"][i], "name": p["name"], "division": div(p["div"]),
                                          "description": p["description"],
                                          "schema": {"$schema": "http://json-schema.org/draft-04/schema#",
                                                     "type": "object", "properties": props, "required": ["key"],
                                                     "additionalProperties": False}})
            rows = {}
            for n in range(p["rows"]):
                key = "Ü/%d it's" % i if n == 0 else "%s-%05d" % (re.sub(r"[^A-Za-z0-9]+", "", p["name"])[:8] or "T", n)
                row = {"key": key}
                for column, ctype in p["columns"]:
                    if ctype == "string":
                        row[column] = rows_rng.choice(_CFG_WORDS)
                    elif ctype == "integer":
                        row[column] = rows_rng.randint(0, 1000)
                    elif ctype == "number":
                        row[column] = round(rows_rng.random() * 100, 2)
                    else:
                        row[column] = rows_rng.random() < 0.5
                rows[key] = row
            org.table_rows[obj["id"]] = rows
        for i in sel["dataactions"]:
            p = plan["dataactions"][i]
            store("dataactions", i, {"id": ids["dataactions"][i], "name": p["name"], "category": p["category"],
                                     "integrationId": str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%s/%s" % (
                                         org.org_id, name_prefix, p["category"])))})
        for i in sel["flows"]:                       # objects first (contents refer to queues and flows)
            p = plan["flows"][i]
            obj = {"id": ids["flows"][i], "name": p["name"], "division": div(p["div"]),
                   "description": p["description"], "type": p["type"], "active": p["published"], "system": False,
                   "deleted": False}
            if p["published"]:
                obj["publishedVersion"] = {"id": "1.0"}
            store("flows", i, obj)
        for i in sel["queues"]:
            p = plan["queues"][i]
            rings = []
            for r, skill_idx in enumerate(p["rings"]):
                ring = {"expansionCriteria": [{"type": "TIMEOUT_SECONDS", "threshold": p["ringSeconds"][r]}]}
                ring["actions"] = {"skillsToRemove": [x for x in (ref("skills", j) for j in skill_idx) if x]}
                rings.append(ring)
            sl = {"percentage": p["serviceLevel"], "durationMs": 20000}
            obj = {"id": ids["queues"][i], "name": p["name"], "division": div(p["div"]),
                   "description": p["description"], "dateCreated": date("queues", i),
                   "dateModified": date("queues", i), "memberCount": 0, "userMemberCount": 0,
                   "joinedMemberCount": 0,                     # no members (populate_people adds some)
                   "mediaSettings": {
                       "call": {"enableAutoAnswer": False, "alertingTimeoutSeconds": p["alerting"], "serviceLevel": sl},
                       "callback": {"enableAutoAnswer": False, "alertingTimeoutSeconds": 30, "serviceLevel": sl},
                       "chat": {"enableAutoAnswer": False, "alertingTimeoutSeconds": 30, "serviceLevel": sl},
                       "email": {"enableAutoAnswer": False, "alertingTimeoutSeconds": 300,
                                 "serviceLevel": {"percentage": 0.8, "durationMs": 86400000}},
                       "message": {"enableAutoAnswer": False, "alertingTimeoutSeconds": 30, "serviceLevel": sl}},
                   "routingRules": [{"operator": "MEETS_THRESHOLD", "threshold": p["threshold"], "waitSeconds": 2.0}],
                   "bullseye": {"rings": rings},
                   "acwSettings": {"wrapupPrompt": p["wrapupPrompt"], "timeoutMs": p["acwTimeoutMs"]},
                   "skillEvaluationMethod": p["skillEvaluationMethod"], "scoringMethod": "TimestampAndPriority",
                   "lastAgentRoutingMode": "Disabled", "autoAnswerOnly": False, "enableTranscription": False,
                   "enableAudioMonitoring": False, "enableManualAssignment": False,
                   "suppressInQueueCallRecording": True}
            qf = ref("flows", p["queueFlow"]) if p["queueFlow"] is not None else None
            if qf:
                obj["queueFlow"] = qf
            for key in ("whisperPrompt", "onHoldPrompt"):
                prompt_ref = ref("prompts", p.get(key))
                if prompt_ref:
                    obj[key] = prompt_ref
            if p["callingPartyName"]:
                obj["callingPartyName"] = p["callingPartyName"]
            store("queues", i, obj)
            codes = [made["wrapupcodes"][j]["id"] for j in p["wrapups"] if j in made["wrapupcodes"]]
            if codes:
                org._queue_wrapups[obj["id"]] = codes
        for i in sel["ivrs"]:
            p = plan["ivrs"][i]
            obj = {"id": ids["ivrs"][i], "name": p["name"], "division": div(p["div"]), "description": p["description"],
                   "version": 1, "state": "active", "dateCreated": date("ivrs", i), "dateModified": date("ivrs", i),
                   "dnis": list(p["dnis"])}
            for key, idx in (("openHoursFlow", p["open"]), ("closedHoursFlow", p["closed"]),
                             ("holidayHoursFlow", p["holiday"])):
                flow_ref = ref("flows", idx)
                if flow_ref:
                    obj[key] = flow_ref
            group_ref = ref("schedulegroups", p["group"])
            if group_ref:
                obj["scheduleGroup"] = group_ref
            store("ivrs", i, obj)
            pool = plan["didpools"][i]
            store("didpools", i, {"id": ids["didpools"][i], "startPhoneNumber": pool["start"],
                                  "endPhoneNumber": pool["end"], "state": "active", "version": 1,
                                  "dateCreated": date("didpools", i), "dateModified": date("didpools", i)})
        for i in sel["emergencygroups"]:
            p = plan["emergencygroups"][i]
            call_flow = {"ivrs": [r for r in (ref("ivrs", j) for j in p["ivrs"]) if r]}
            flow_ref = ref("flows", p["flow"])
            if flow_ref:
                call_flow = dict({"emergencyFlow": flow_ref}, **call_flow)
            store("emergencygroups", i, {"id": ids["emergencygroups"][i], "name": p["name"], "division": div(p["div"]),
                                         "description": p["description"], "version": 1, "state": "active",
                                         "dateCreated": date("emergencygroups", i),
                                         "dateModified": date("emergencygroups", i), "enabled": p["enabled"],
                                         "emergencyCallFlows": [call_flow]})
        published = []
        for i in sel["flows"]:
            p, obj = plan["flows"][i], made["flows"][i]
            if not p["published"]:
                continue

            def named(kind, idx):
                return [made[kind][j]["name"] for j in idx if j in made[kind]]

            content_refs = {"scheduleGroups": named("schedulegroups", p["schedulegroups"]),
                            "emergencyGroups": named("emergencygroups", p["emergencygroups"]),
                            "queues": named("queues", p["queues"]), "skills": named("skills", p["skills"]),
                            "languages": named("languages", p["languages"]),
                            "wrapupCodes": named("wrapupcodes", p["wrapupcodes"]),
                            "flows": named("flows", p["flows"]), "modules": named("flows", p["modules"]),
                            "prompts": named("prompts", p["prompts"]),
                            "dataTables": [(made["datatables"][j]["name"], [c for c, _ in plan["datatables"][j]["columns"]])
                                           for j in p["datatables"] if j in made["datatables"]],
                            "dataActions": [(made["dataactions"][j]["category"], made["dataactions"][j]["name"])
                                            for j in p["dataactions"] if j in made["dataactions"]]}
            division = obj["division"]["name"]
            if obj["division"]["id"] == made["divisions"][0]["id"] and i % 2:
                division = None                      # no division key: the home division
            org.flow_content[obj["id"]] = _flow_yaml(p["type"], obj["name"], obj.get("description"), division,
                                                     content_refs, indent=4 if i % 3 == 2 else 2)
            published.append(obj["id"])
        for fid in published:
            org._index_flow(fid)
        for i in sel["trunkbasesettings"]:
            p = plan["trunkbasesettings"][i]
            obj = {"id": ids["trunkbasesettings"][i], "name": p["name"], "division": div(0), "version": 1,
                   "state": "active", "dateCreated": date("trunkbasesettings", i),
                   "dateModified": date("trunkbasesettings", i), "trunkType": "EXTERNAL", "managed": p["managed"]}
            if p["managed"]:
                obj["description"] = "Managed by Genesys Cloud Voice"
                obj["trunkMetabase"] = {"id": "external_sip_pcv_cloud_voice.json", "name": "Genesys Cloud Voice"}
                obj["properties"] = {
                    "trunk_label": {"type": "string", "value": {"default": "", "instance": p["name"]}},
                    "trunk_enabled": {"type": "boolean", "value": {"default": True, "instance": True}}}
            else:
                n = p["n"]
                obj["description"] = p["description"]
                obj["trunkMetabase"] = {"id": "external_sip_pcv_byoc_carrier.json", "name": "BYOC Carrier"}
                obj["properties"] = {
                    "trunk_label": {"type": "string", "value": {"default": "", "instance": p["name"]}},
                    "trunk_enabled": {"type": "boolean", "value": {"default": True, "instance": True}},
                    "trunk_transport_sip_proxy": {"type": "string",
                                                  "value": {"default": "", "instance": "sip%d.carrier.example.net" % n}},
                    "trunk_max_dial_timeout": {"type": "string", "value": {"default": "1m", "instance": "2m"}},
                    "trunk_sip_authentication_credentials_realm": {
                        "type": "string", "value": {"default": "", "instance": "sip%d.carrier.example.net" % n}},
                    "trunk_sip_authentication_credentials_username": {
                        "type": "string", "value": {"default": "", "instance": "%s-trunk-%d" % (org.name, n)}},
                    "trunk_sip_authentication_credentials_password": {
                        "type": "string", "value": {"default": "", "instance": "%032x" % secrets_rng.getrandbits(128)}},
                }
            store("trunkbasesettings", i, obj)
    return refs


def copy_some_names(source, target, kinds=("skills", "wrapupcodes", "queues", "flows"), count=3, seed=0):
    """Creates in target `count` objects per kind with the names of source objects (a seeded sample; flows
    keep their type): same names, new ids, plain settings and no references (home division). For
    conflict tests against any source org. Returns {kind: [target ids]}."""
    rng = random.Random("%s:copy-names" % seed)
    out = {}
    with source.lock:
        picks = {}
        for kind in kinds:
            pool = sorted((o for o in source.objects[kind].values()
                           if not o.get("homeDivision") and not o.get("managed")), key=_name_key)
            picks[kind] = [dict(o) for o in rng.sample(pool, min(count, len(pool)))]
    with target.lock:
        home = target._home_ref()
        for kind, objs in picks.items():
            ids = out.setdefault(kind, [])
            for o in objs:
                oid = str(uuid.uuid4())
                obj = {"id": oid, "name": o["name"]}
                if kind in ("skills", "wrapupcodes", "schedules", "schedulegroups", "queues", "flows",
                            "trunkbasesettings", "users"):
                    obj["division"] = dict(home)
                obj.update(_initial_fields(kind))
                if kind == "wrapupcodes":
                    obj["description"] = "pre-existing in %s" % target.name
                elif kind == "schedules":
                    obj.update(start=o.get("start", "2026-01-05T09:00:00.000"), end=o.get("end", "2026-01-05T17:00:00.000"),
                               rrule=o.get("rrule", "FREQ=WEEKLY;BYDAY=MO"))
                elif kind == "schedulegroups":
                    obj.update(timeZone=o.get("timeZone", "Europe/Berlin"), openSchedules=[], closedSchedules=[],
                               holidaySchedules=[])
                elif kind == "queues":
                    obj.update(description="pre-existing in %s" % target.name, memberCount=0, userMemberCount=0,
                               joinedMemberCount=0, **copy.deepcopy(_QUEUE_DEFAULTS))
                elif kind == "flows":
                    obj.update(type=o.get("type", "INBOUNDCALL"), active=True, system=False, deleted=False,
                               publishedVersion={"id": "1.0"})
                elif kind == "trunkbasesettings":
                    obj.update(trunkType=o.get("trunkType", "EXTERNAL"), managed=False,
                               trunkMetabase=dict(o.get("trunkMetabase") or {"id": "external_sip_pcv_byoc_carrier.json"}),
                               properties={})
                elif kind == "users":
                    obj.update(email=o.get("email"), username=o.get("email"), state="active", version=1)
                elif kind == "prompts":
                    obj["description"] = "pre-existing in %s" % target.name
                elif kind == "datatables":
                    obj.update(division=dict(home), description="pre-existing in %s" % target.name,
                               schema=copy.deepcopy(o.get("schema")))
                elif kind in ("ivrs", "emergencygroups"):
                    now = _now_iso()
                    obj.update(division=dict(home), dateCreated=now, dateModified=now)
                    obj.update({"dnis": []} if kind == "ivrs" else {"enabled": False, "emergencyCallFlows": []})
                obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE[kind], oid)
                target.objects[kind][oid] = obj
                ids.append(oid)
                if kind == "flows":
                    target.flow_content[oid] = _flow_yaml(obj["type"] if obj["type"] in FLOW_TYPES else "INBOUNDCALL",
                                                          obj["name"], None, home["name"])
                    target._index_flow(oid)
    return out


def populate_clone_demo(source, target, seed=0, scale=1, conflicting_number=False, **counts_override):
    """A source org holding every kind (section 8 and the later ones) and every reference form of the
    contract's table, with names that need quoting; a target holding what a clone needs and cannot create:
    the users (same emails, other ids), DID pools covering some but not all of the source IVRs' numbers, and
    the source's data actions except one. With conflicting_number, the target also has an IVR ("Legacy
    Hotline") holding a number that its pools contain and a source IVR uses. `scale` multiplies the counts
    (1: tens of objects and about 200 rows; 10: 40 prompts, 10 tables with 2,000 rows, 20 IVRs, 60+ flows);
    `counts_override` sets populate_config_org's counts outright (the benchmark's 300 queues, say).

    Returns what the tests should expect: {"missing_data_action": (category, name), "flows_needing_missing_action":
    [flow names: those calling it and, transitively, those naming such a flow], "unpublished_flows": [names],
    "numbers_in_target_pools": [...], "numbers_awaiting_porting": [...], "conflicting_numbers": {number: target
    IVR name}, "enabled_emergency_groups": [names], "data_actions": [(category, name) of the source],
    "counts": populate_config_org's counts, "refs": the source's {kind: [ids]}}."""

    def n(base, minimum):
        return max(minimum, int(round(base * scale)))

    counts = dict(divisions=3, skills=n(8, 10), languages=3, wrapupcodes=n(6, 7), schedules=n(4, 4),
                  schedulegroups=n(2, 2), users=n(8, 8), flows=n(6, 8), queues=n(6, 8), trunks=2, prompts=n(4, 4),
                  datatables=n(1, 2), table_rows=n(200, 200), ivrs=n(2, 4), emergencygroups=n(1, 2),
                  data_actions=n(2, 4))
    counts.update(counts_override)
    refs = populate_config_org(source, seed=seed, **counts)
    missing = ("Payments", "Charge Card: Legacy")
    rng = random.Random("%s:%s:clone-demo" % (seed, source.name))
    with source.lock:
        missing_id = source.add_data_action(*missing, id=_rng_uuid(rng))
        home = source.home_division()
        queue_names = [source.objects["queues"][q]["name"] for q in refs["queues"][:1]]
        prompt_names = [source.objects["prompts"][p]["name"] for p in refs["prompts"][:1]]
        for name, content in (("Payments IVR", {"queues": queue_names, "prompts": prompt_names,
                                                "dataActions": [missing]}),
                              ("Payments: Overflow IVR", {"queues": queue_names, "flows": ["Payments IVR"]})):
            fid = _rng_uuid(rng)
            source.objects["flows"][fid] = {
                "id": fid, "name": name, "division": {"id": home["id"], "name": home["name"],
                                                      "selfUri": home["selfUri"]},
                "description": "%s flow" % name, "type": "INBOUNDCALL", "active": True, "system": False,
                "deleted": False, "publishedVersion": {"id": "1.0"}, "selfUri": "%s/%s" % (_SELF_URI_BASE["flows"], fid)}
            source.flow_content[fid] = _flow_yaml("INBOUNDCALL", name, "%s flow" % name, home["name"], content,
                                                  indent=4 if name.startswith("Payments:") else 2)
            source._index_flow(fid)
            refs["flows"].append(fid)
        refs["dataactions"].append(missing_id)
        flows = source.objects["flows"]

        def quoting(kind, **match):             # names a writer must quote, or that stress one (', non-ASCII)
            return [o["name"] for o in sorted(source.objects[kind].values(), key=_name_key)
                    if all(o.get(k) == v for k, v in match.items()) and (
                        _yaml_str(o["name"]) != o["name"] or "'" in o["name"] or not o["name"].isascii())]

        names_flow = "Names: it's all quoted"
        content = {"queues": quoting("queues"), "skills": quoting("skills"), "languages": quoting("languages"),
                   "wrapupCodes": quoting("wrapupcodes"), "scheduleGroups": quoting("schedulegroups"),
                   "emergencyGroups": quoting("emergencygroups"), "dataTables": quoting("datatables"),
                   "modules": quoting("flows", type="COMMONMODULE", active=True),
                   "flows": [f for f in quoting("flows", type="INBOUNDCALL", active=True)
                             if f not in ("Payments: Overflow IVR",)],
                   "dataActions": [(a["category"], a["name"]) for a in sorted(
                       source.objects["dataactions"].values(), key=lambda a: (a["category"], a["name"]))
                       if a["id"] != missing_id and (_yaml_str(a["category"]) != a["category"]
                                                     or _yaml_str(a["name"]) != a["name"])]}
        division = next((d for d in source.objects["divisions"].values() if not d["name"].isascii()), home)
        fid = _rng_uuid(rng)
        flows[fid] = {"id": fid, "name": names_flow, "division": {"id": division["id"], "name": division["name"],
                                                                  "selfUri": division["selfUri"]},
                      "description": "Names that need quoting", "type": "INBOUNDCALL", "active": True,
                      "system": False, "deleted": False, "publishedVersion": {"id": "1.0"},
                      "selfUri": "%s/%s" % (_SELF_URI_BASE["flows"], fid)}
        source.flow_content[fid] = _flow_yaml("INBOUNDCALL", names_flow, "Names that need quoting", division["name"],
                                              content, indent=4)
        source._index_flow(fid)
        refs["flows"].append(fid)
        needing = {fid for fid, deps in source.flow_deps.items()
                   if any(d["kind"] == "dataactions" and d["id"] == missing_id for d in deps)}
        grew = True
        while grew:                                  # and the flows that name such a flow, transitively
            grew = False
            for fid, deps in source.flow_deps.items():
                if fid not in needing and any(d["kind"] == "flows" and d["id"] in needing for d in deps):
                    needing.add(fid)
                    grew = True
        actions = sorted((a["category"], a["name"]) for a in source.objects["dataactions"].values())
        ivr_objs = [source.objects["ivrs"][i] for i in refs["ivrs"]]
        pools = [source.objects["didpools"][p] for p in refs["didpools"]]
        expected = {
            "missing_data_action": missing,
            "flows_needing_missing_action": sorted(flows[f]["name"] for f in needing),
            "unpublished_flows": sorted(f["name"] for f in flows.values() if not f.get("publishedVersion")),
            "enabled_emergency_groups": sorted(g["name"] for g in source.objects["emergencygroups"].values()
                                               if g.get("enabled")),
            "data_actions": actions,
            "counts": counts,
            "refs": refs,
        }
    populate_config_org(target, seed=seed, **counts, only=["users"])
    in_pools, awaiting = [], []
    with target.lock:
        for category, name in actions:
            if (category, name) != missing:
                target.add_data_action(category, name, id=_rng_uuid(rng))
        for i, (ivr, pool) in enumerate(zip(ivr_objs, pools)):
            if i % 2 == 0:
                target.add_did_pool(pool["startPhoneNumber"], pool["endPhoneNumber"], id=_rng_uuid(rng))
                in_pools.extend(ivr["dnis"])
            else:
                awaiting.extend(ivr["dnis"])
        conflicts = {}
        if conflicting_number and in_pools:
            number = in_pools[0]
            home = target._home_ref()
            now = _now_iso()
            lid = _rng_uuid(rng)
            target.objects["ivrs"][lid] = {"id": lid, "name": "Legacy Hotline", "division": home,
                                           "description": "An IVR the target had before the clone", "version": 1,
                                           "state": "active", "dateCreated": now, "dateModified": now,
                                           "dnis": [number], "selfUri": "%s/%s" % (_SELF_URI_BASE["ivrs"], lid)}
            conflicts[number] = "Legacy Hotline"
    expected.update(numbers_in_target_pools=sorted(in_pools), numbers_awaiting_porting=sorted(awaiting),
                    conflicting_numbers=conflicts)
    return expected


# ---- contract section 8 "People": members, skills and languages of two orgs --------------------------

_PEOPLE_SKILLS = ["Billing", "Technical Support", "Sales", "Retention", "Claims", "Complaints", "VIP Care",
                  "Collections", "Onboarding", "Escalations", "Fraud", "Mortgages", "Returns", "Hardware",
                  "Network", "Chat Etiquette", "Email Writing", "Social Media"]
_PEOPLE_LANGUAGES = ["English", "German", "French", "Spanish", "Dutch", "Italian", "Portuguese", "Polish",
                     "Swedish", "Japanese"]
_PEOPLE_QUEUES = ["Customer Care", "Inbound Sales", "Tech Desk", "Billing Desk", "Retention Team", "Claims Desk",
                  "VIP Line", "Collections Desk", "Onboarding Desk", "Escalation Desk", "Fraud Line", "Returns Desk",
                  "Chat Care", "Email Care", "Social Care", "Partner Line"]
_PEOPLE_GROUPS = ["Night Shift", "Floor Walkers", "Team Leads", "Weekend Cover", "Overflow Pool", "Trainers"]
_PEOPLE_LOCAL_SKILLS = ["Local Knowledge", "Legacy CRM", "Print Orders", "Site Safety"]
_PEOPLE_LOCAL_LANGUAGES = ["Welsh", "Catalan"]
_PROFICIENCIES = (0.0, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0)
_PEOPLE_BASE_DATE = datetime(2025, 6, 2, 8, 0, tzinfo=timezone.utc)


def populate_people(source, target, seed=0, users=200, queues=12, skills=12, languages=4, members_per_queue=20,
                    skills_per_user=(1, 5), languages_per_user=(0, 2), unmatched_share=0.05,
                    target_extra_share=0.2, group_queues=2, existing_target_queues=3, name_prefix="People "):
    """The people of a contact centre in two orgs (directly into the stores, no HTTP), on top of whatever they
    hold: in the source `skills` skills and `languages` languages, `users` users (emails) holding skills and
    languages with proficiencies, `queues` queues (1-3 bullseye rings) with direct members (varied rings,
    some not joined) and, for the first `group_queues` queues, a group named in a ring's memberGroups; in the
    target the same skills and languages and the same users by email (other ids, some emails in other case)
    but a share `unmatched_share` left out, a few users of its own, a share `target_extra_share` of matched
    users holding other skills or languages, a few holding a source skill (and language) with another
    proficiency, and `existing_target_queues` of the source queues by name with a few members of their own (the
    first with 1 ring where the source has 3). Every name starts with `name_prefix` (emails: a dotted
    prefix); a name or email the org already has -> ValueError. Returns the expectations (FAKE_SPEC.md)."""
    if source is target:
        raise ValueError("populate_people needs two orgs")
    P = name_prefix
    rs = random.Random("%s:%s:people" % (seed, P))
    ids_src = random.Random("%s:%s:%s:people-ids" % (seed, source.name, P))
    ids_tgt = random.Random("%s:%s:%s:people-ids" % (seed, target.name, P))
    slug = re.sub(r"[^a-z0-9]+", ".", P.lower()).strip(".")
    slug = slug + "." if slug else ""
    s_lo, s_hi = (min(skills, max(0, v)) for v in skills_per_user)
    l_lo, l_hi = (min(languages, max(0, v)) for v in languages_per_user)
    members_per_queue = max(0, min(members_per_queue, users))
    group_queues = max(0, min(group_queues, queues))
    existing_target_queues = max(0, min(existing_target_queues, queues))

    # ---- the plan (no org access) ----------------------------------------------------------------
    skill_names = [P + n for n in _names(_PEOPLE_SKILLS, skills)]
    language_names = [P + n for n in _names(_PEOPLE_LANGUAGES, languages)]
    queue_names = [P + n for n in _names(_PEOPLE_QUEUES, queues)]
    local_skill_names = [P + n for n in _names(_PEOPLE_LOCAL_SKILLS, 2 if skills else 0)]
    local_language_names = [P + n for n in _names(_PEOPLE_LOCAL_LANGUAGES, 1 if languages else 0)]
    seen = collections.Counter()
    plan_users = []
    for i in range(users):
        first, last = rs.choice(_FIRST), rs.choice(_LAST)
        local = "%s%s.%s" % (slug, first.lower(), last.lower())
        seen[local] += 1
        email = "%s%s@example.com" % (local, seen[local] if seen[local] > 1 else "")
        u_skills = {j: rs.choice(_PROFICIENCIES) for j in sorted(rs.sample(range(skills), rs.randint(s_lo, s_hi)))}
        u_langs = {j: rs.choice(_PROFICIENCIES) for j in sorted(rs.sample(range(languages), rs.randint(l_lo, l_hi)))}
        plan_users.append({"name": "%s%s %s" % (P, first, last), "email": email, "skills": u_skills,
                           "languages": u_langs, "department": rs.choice(_CFG_DEPARTMENTS),
                           "title": rs.choice(_CFG_TITLES)})
    unmatched = set(rs.sample(range(users), int(round(users * unmatched_share))))
    matched = [i for i in range(users) if i not in unmatched]
    existing = list(range(group_queues, queues))[:existing_target_queues]
    for q in range(group_queues):                                   # few queues: group queues exist too
        if len(existing) < existing_target_queues:
            existing.append(q)
    clamp_q = existing[0] if existing else None
    plan_queues = []
    for q in range(queues):
        n_rings = 3 if q == clamp_q else 1 + int(rs.random() * 3)
        rings = [sorted(rs.sample(range(skills), 1)) if skills and r < n_rings - 1 and rs.random() < 0.5 else []
                 for r in range(n_rings)]
        member_idx = rs.sample(range(users), members_per_queue)
        members = {}
        for i in member_idx:
            ring = rs.randint(2, n_rings) if n_rings > 1 and rs.random() < 0.3 else 1
            members[i] = [ring, rs.random() >= 0.15]
        in_target = [i for i in member_idx if i not in unmatched]
        if n_rings > 1 and in_target:
            members[in_target[0]][0] = n_rings                      # a member in the last ring, always
        if len(in_target) > 1:
            members[in_target[-1]][1] = False                       # and one not joined
        plan_queues.append({"name": queue_names[q], "rings": rings, "members": members,
                            "seconds": [rs.choice((10.0, 15.0, 30.0)) for _ in range(n_rings)]})
    if unmatched and queues and members_per_queue and not any(
            i in unmatched for pq in plan_queues for i in pq["members"]):
        plan_queues[0]["members"][min(unmatched)] = [1, True]       # an unmatched user is a member somewhere
    plan_groups = []
    for q in range(group_queues):
        pq = plan_queues[q]
        size = min(users, 3 + int(rs.random() * 4))
        group_users = rs.sample(range(users), size)
        if q == 0 and pq["members"] and size:
            direct = next(iter(pq["members"]))
            if direct not in group_users:
                group_users[0] = direct                             # a direct member in the group too
        plan_groups.append({"name": P + _names(_PEOPLE_GROUPS, group_queues)[q], "queue": q,
                            "ring": int(rs.random() * len(pq["rings"])), "users": group_users})
    n_extra = int(round(len(matched) * target_extra_share))
    extra = sorted(rs.sample(matched, n_extra))
    extra_plan = {}
    for i in extra:
        pu = plan_users[i]
        pool = [("s", j) for j in range(len(local_skill_names))] + [("S", j) for j in range(skills)
                                                                   if j not in pu["skills"]]
        own_skills = rs.sample(pool, min(len(pool), 1 + int(rs.random() * 2)))
        lpool = [("l", j) for j in range(len(local_language_names))] + [("L", j) for j in range(languages)
                                                                       if j not in pu["languages"]]
        own_langs = rs.sample(lpool, 1) if lpool and rs.random() < 0.5 else []
        extra_plan[i] = ({k: rs.choice(_PROFICIENCIES) for k in own_skills},
                         {k: rs.choice(_PROFICIENCIES) for k in own_langs})
    with_skills = [i for i in matched if plan_users[i]["skills"]]
    differing = sorted(rs.sample(with_skills, min(len(with_skills), max(2, users // 50))))
    with_langs = [i for i in matched if plan_users[i]["languages"]]
    differing_langs = sorted(rs.sample(with_langs, min(len(with_langs), max(1, users // 100))))

    def other_value(value):
        return rs.choice([p for p in _PROFICIENCIES if p != value])

    diff_plan, diff_lang_plan = {}, {}                              # user -> (skill/language, target value)
    for i in differing:
        j = rs.choice(sorted(plan_users[i]["skills"]))
        diff_plan[i] = (j, other_value(plan_users[i]["skills"][j]))
    for i in differing_langs:
        j = rs.choice(sorted(plan_users[i]["languages"]))
        diff_lang_plan[i] = (j, other_value(plan_users[i]["languages"][j]))
    case_differs = {i for i in matched if rs.random() < 0.1}
    n_own = max(2, users // 50)
    plan_own = []
    for k in range(n_own):
        first, last = rs.choice(_FIRST), rs.choice(_LAST)
        plan_own.append({"name": "%s%s %s" % (P, first, last),
                         "email": "%slocal.%s.%s%d@example.com" % (slug, first.lower(), last.lower(), k + 1)})
    existing_plan = {}                                              # queue -> (rings in target, {member: [ring, joined]})
    for n, q in enumerate(existing):
        pq = plan_queues[q]
        t_rings = 1 if q == clamp_q else len(pq["rings"])
        own = {("own", n % n_own): [1, True]}
        outsiders = [i for i in matched if i not in pq["members"]]
        if outsiders:
            own[("user", rs.choice(outsiders))] = [t_rings, rs.random() < 0.8]
        insiders = [i for i in pq["members"] if i not in unmatched]
        insiders = insiders[1:] or insiders                         # not the one always in the last ring
        if insiders:
            i = insiders[len(insiders) // 2]
            s_ring, s_joined = pq["members"][i]
            if t_rings > 1 and s_ring != 1:
                own[("user", i)] = [1, s_joined]
            elif t_rings > 1:
                own[("user", i)] = [t_rings, s_joined]
            else:
                own[("user", i)] = [1, not s_joined]
        existing_plan[q] = (t_rings, own)

    # ---- materialize ------------------------------------------------------------------------------
    def date(i):
        return _iso(_PEOPLE_BASE_DATE + timedelta(minutes=37 * i))

    def check_free(org):
        for kind, names in (("skills", skill_names + local_skill_names), ("languages", language_names +
                                                                           local_language_names),
                            ("queues", queue_names)):
            taken = {o.get("name") for o in org.objects[kind].values()} & set(names)
            if taken:
                raise ValueError("populate_people: %s %r already exists in org %s (use name_prefix)"
                                 % (kind, sorted(taken)[0], org.name))
        emails = {str(u.get("email", "")).lower() for u in org.objects["users"].values()}
        clash = emails & ({u["email"] for u in plan_users} | {u["email"] for u in plan_own})
        if clash:
            raise ValueError("populate_people: user %r already exists in org %s (use name_prefix)"
                             % (sorted(clash)[0], org.name))
        group_names = {g["name"] for g in org.groups.values()} & {g["name"] for g in plan_groups}
        if group_names:
            raise ValueError("populate_people: group %r already exists in org %s" % (sorted(group_names)[0], org.name))

    def put(org, kind, obj):
        obj["selfUri"] = "%s/%s" % (_SELF_URI_BASE[kind], obj["id"])
        org.objects[kind][obj["id"]] = obj
        return obj

    def ref(obj):
        return {"id": obj["id"], "name": obj["name"], "selfUri": obj["selfUri"]}

    def make_catalogue(org, rid, names, local_names):
        home = org._home_ref()
        skill_objs = [put(org, "skills", {"id": _rng_uuid(rid), "name": n, "division": dict(home), "state": "active",
                                          "version": "1", "dateModified": date(k)})
                      for k, n in enumerate(names[0] + local_names[0])]
        lang_objs = [put(org, "languages", {"id": _rng_uuid(rid), "name": n, "state": "active", "version": "1",
                                            "dateModified": date(k)})
                     for k, n in enumerate(names[1] + local_names[1])]
        return home, skill_objs, lang_objs

    def make_user(org, rid, home, name, email, pu=None):
        obj = {"id": _rng_uuid(rid), "name": name, "division": dict(home), "email": email, "username": email.lower(),
               "state": "active", "version": 1}
        if pu is not None:
            obj.update(department=pu["department"], title=pu["title"])
        return put(org, "users", obj)

    def make_queue(org, rid, home, n, pq, rings, skill_objs, description):
        ring_objs = []
        for r in range(rings):
            ring = {"expansionCriteria": [{"type": "TIMEOUT_SECONDS", "threshold": pq["seconds"][r]}],
                    "actions": {"skillsToRemove": [ref(skill_objs[j]) for j in pq["rings"][r]]}}
            ring_objs.append(ring)
        obj = {"id": _rng_uuid(rid), "name": pq["name"], "division": dict(home), "description": description,
               "dateCreated": date(n), "dateModified": date(n), "memberCount": 0, "userMemberCount": 0,
               "joinedMemberCount": 0}
        obj.update(copy.deepcopy(_QUEUE_DEFAULTS))
        obj["bullseye"] = {"rings": ring_objs}
        return put(org, "queues", obj)

    counts = {"users": users, "matched_users": len(matched), "unmatched_users": len(unmatched), "queues": queues,
              "skills": skills, "languages": languages, "groups": len(plan_groups)}
    with source.lock, target.lock:
        check_free(source)
        check_free(target)
        # source
        s_home, s_skills, s_langs = make_catalogue(source, ids_src, (skill_names, language_names), ([], []))
        s_users = []
        for pu in plan_users:
            u = make_user(source, ids_src, s_home, pu["name"], pu["email"], pu)
            s_users.append(u)
            source.user_skills[u["id"]] = {s_skills[j]["id"]: p for j, p in pu["skills"].items()}
            source.user_languages[u["id"]] = {s_langs[j]["id"]: p for j, p in pu["languages"].items()}
        s_queues = []
        for q, pq in enumerate(plan_queues):
            obj = make_queue(source, ids_src, s_home, q, pq, len(pq["rings"]), s_skills, "%s queue" % pq["name"])
            s_queues.append(obj)
            source.direct_members[obj["id"]] = {s_users[i]["id"]: {"ringNumber": ring, "joined": joined}
                                                for i, (ring, joined) in pq["members"].items()}
        s_groups = []
        for pg in plan_groups:
            gid = source.add_group(pg["name"], [s_users[i]["id"] for i in pg["users"]], id=_rng_uuid(ids_src))
            s_groups.append(gid)
            queue = s_queues[pg["queue"]]
            rings = copy.deepcopy(queue["bullseye"]["rings"])
            group = source.groups[gid]
            rings[pg["ring"]]["memberGroups"] = [{"id": gid, "name": group["name"], "type": "GROUP",
                                                  "selfUri": group["selfUri"]}]
            source.objects["queues"][queue["id"]] = dict(queue, bullseye={"rings": rings})
        for obj in s_queues:
            source._refresh_queue_counts(obj["id"])
        # target
        t_home, t_skills, t_langs = make_catalogue(target, ids_tgt, (skill_names, language_names),
                                                   (local_skill_names, local_language_names))
        t_local_skills, t_local_langs = t_skills[skills:], t_langs[languages:]
        t_users = {}
        for i in matched:
            pu = plan_users[i]
            email = pu["email"]
            if i in case_differs:
                email = email.upper() if i % 2 else email.title()
            t_users[i] = make_user(target, ids_tgt, t_home, pu["name"], email, pu)
        t_own = [make_user(target, ids_tgt, t_home, po["name"], po["email"]) for po in plan_own]
        pick = {"s": t_local_skills, "S": t_skills, "l": t_local_langs, "L": t_langs}
        for i in matched:
            uid = t_users[i]["id"]
            own_skills, own_langs = extra_plan.get(i, ({}, {}))
            skills_now = {pick[k][j]["id"]: p for (k, j), p in own_skills.items()}
            langs_now = {pick[k][j]["id"]: p for (k, j), p in own_langs.items()}
            if i in diff_plan:
                j, p = diff_plan[i]
                skills_now[t_skills[j]["id"]] = p
            if i in diff_lang_plan:
                j, p = diff_lang_plan[i]
                langs_now[t_langs[j]["id"]] = p
            if skills_now:
                target.user_skills[uid] = skills_now
            if langs_now:
                target.user_languages[uid] = langs_now
        t_queues = []
        for n, q in enumerate(existing):
            pq = plan_queues[q]
            t_rings, own = existing_plan[q]
            obj = make_queue(target, ids_tgt, t_home, n, pq, t_rings, t_skills, "pre-existing in %s" % target.name)
            t_queues.append(obj)
            target.direct_members[obj["id"]] = {
                (t_own[k]["id"] if tag == "own" else t_users[k]["id"]): {"ringNumber": ring, "joined": joined}
                for (tag, k), (ring, joined) in own.items()}
            target._refresh_queue_counts(obj["id"])

        # ---- what the tests should expect ------------------------------------------------------------
        email_of = [pu["email"] for pu in plan_users]
        group_queue_info = {}
        for pg, gid in zip(plan_groups, s_groups):
            queue = source.objects["queues"][s_queues[pg["queue"]]["id"]]
            by_group = source.queue_members(queue["id"], member_by="group")
            info = group_queue_info.setdefault(queue["name"], {"groups": [], "members": 0})
            info["groups"].append(pg["name"])
            info["members"] = len(by_group)
        clamped, kept = [], []
        for q in existing:
            pq = plan_queues[q]
            t_rings, own = existing_plan[q]
            for i, (ring, joined) in pq["members"].items():
                if i in unmatched:
                    continue
                if ("user", i) in own:
                    kept.append((pq["name"], email_of[i], (ring, joined), tuple(own[("user", i)])))
                elif ring > t_rings:
                    clamped.append((pq["name"], email_of[i], ring, t_rings))
        direct = sum(len(pq["members"]) for pq in plan_queues)
        matched_direct = sum(1 for pq in plan_queues for i in pq["members"] if i not in unmatched)
        counts.update(
            direct_memberships=direct, matched_memberships=matched_direct,
            group_memberships=sum(v["members"] for v in group_queue_info.values()),
            user_skills=sum(len(pu["skills"]) for pu in plan_users),
            user_languages=sum(len(pu["languages"]) for pu in plan_users),
            matched_user_skills=sum(len(plan_users[i]["skills"]) for i in matched),
            matched_user_languages=sum(len(plan_users[i]["languages"]) for i in matched),
            target_only_users=len(t_own), target_extra_users=len(extra), existing_queues=len(existing))
        target_extra = {}
        for i in extra:
            own_skills, own_langs = extra_plan[i]
            target_extra[email_of[i]] = {"skills": {pick[k][j]["name"]: p for (k, j), p in own_skills.items()},
                                         "languages": {pick[k][j]["name"]: p for (k, j), p in own_langs.items()}}
        return {
            "unmatched_emails": sorted(email_of[i] for i in unmatched),
            "group_queues": group_queue_info,
            "existing_queues": [plan_queues[q]["name"] for q in existing],
            "clamped": sorted(clamped),
            "kept_members": sorted(kept),
            "differing_proficiency": sorted((email_of[i], skill_names[j], plan_users[i]["skills"][j], p)
                                            for i, (j, p) in diff_plan.items()),
            "differing_language_proficiency": sorted((email_of[i], language_names[j], plan_users[i]["languages"][j], p)
                                                     for i, (j, p) in diff_lang_plan.items()),
            "email_case_differs": sorted(email_of[i] for i in case_differs),
            "target_only_emails": sorted(po["email"] for po in plan_own),
            "target_extra": target_extra,
            "skills": list(skill_names), "languages": list(language_names), "queues": list(queue_names),
            "target_local_skills": list(local_skill_names), "target_local_languages": list(local_language_names),
            "counts": counts,
            "source_refs": {"skills": [o["id"] for o in s_skills], "languages": [o["id"] for o in s_langs],
                            "users": [o["id"] for o in s_users], "queues": [o["id"] for o in s_queues],
                            "groups": s_groups},
            "target_refs": {"skills": [o["id"] for o in t_skills], "languages": [o["id"] for o in t_langs],
                            "users": [t_users[i]["id"] for i in matched] + [o["id"] for o in t_own],
                            "queues": [o["id"] for o in t_queues]},
        }


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


# ---- section 9: analytics conversations (AnalyticsConversation records) ------------------------

_M64 = (1 << 64) - 1
_CONV_TYPES = ("voice", "chat", "email")
_UNUSUAL_TYPES = ("callback", "message")
_CONV_DURATIONS = {"voice": (60, 1800), "chat": (180, 2700), "email": (120, 1200), "callback": (120, 1200),
                   "message": (300, 3600)}                     # seconds (lo, hi) of a conversation's lifetime
_CONV_LONG = (3600, 12600)                                     # 1 h .. 3.5 h: the long ones (about 3 %)
_LONG_STRIDE = 16                                              # long conversations sit on indices i % 16 == 0
_LONG_SHARE = 0.48                                             # ... and are 48 % of those: 3 % overall
_BOUNDARY_EXTRA = 600000                                       # a forced day-boundary crosser ends <= 10 min after


def _mix64(x):
    """splitmix64: a cheap, well-spread 64-bit hash (random access to the skeleton by index)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _seed_key(seed):
    return int.from_bytes(hashlib.sha256(("conversations:%s" % seed).encode("utf-8")).digest()[:8], "big")


class _ConvSkeleton:
    """What is known of conversation i without building it, in O(1): start ms, first media type, lifetime.

    Starts: base_i = t0 + floor(i * span / n), start_i in [base_i, base_{i+1}): strictly increasing and distinct.
    The last conversation starting before each UTC midnight inside the window lasts across that midnight."""

    def __init__(self, n, start, end, seed, media_types, unusual):
        self.n = int(n)
        self.t0, self.t1 = _to_ms(start), _to_ms(end)
        self.span = self.t1 - self.t0
        if self.n < 0 or self.span <= 0:
            raise ValueError("need n >= 0 and start < end")
        if self.n > self.span:
            raise ValueError("window too short for %d distinct millisecond start times" % n)
        self.types = tuple(media_types)
        if not self.types:
            raise ValueError("media_types must not be empty")
        self.unusual = float(unusual)
        self.key = _seed_key(seed)
        gap = -(-self.span // self.n) if self.n else 0
        self.normal_max = max(max(hi for _, hi in _CONV_DURATIONS.values()) * 1000,
                              2 * gap + _BOUNDARY_EXTRA) + 1
        self.long_max = max(self.normal_max, _CONV_LONG[1] * 1000 + 1)

    def base(self, i):
        return self.t0 + (i * self.span) // self.n

    def start(self, i):
        lo = self.base(i)
        gap = self.base(i + 1) - lo
        return lo + ((_mix64(self.key + 2 * i) & 0xFFFFFFFF) * gap >> 32)

    def at(self, i):
        """(start ms, first-session media type, base media type, lifetime ms) of conversation i."""
        h1 = _mix64(self.key + 2 * i)
        h2 = _mix64(self.key + 2 * i + 1)
        lo = self.base(i)
        t = lo + ((h1 & 0xFFFFFFFF) * (self.base(i + 1) - lo) >> 32)
        base_type = self.types[((h1 >> 32) & 0xFFFF) * len(self.types) >> 16]
        kind = base_type
        if self.unusual > 0 and ((h1 >> 48) & 0xFFFF) / 65536.0 < self.unusual:
            kind = _UNUSUAL_TYPES[h2 & 1]
        v = ((h2 >> 1) & 0xFFFFFFFF) / 4294967296.0
        if i % _LONG_STRIDE == 0 and ((h2 >> 33) & 0xFFFF) / 65536.0 < _LONG_SHARE:
            lo_s, hi_s = _CONV_LONG
            dur = int((lo_s + (hi_s - lo_s) * v) * 1000)
        else:
            lo_s, hi_s = _CONV_DURATIONS[kind]
            dur = int((lo_s + (hi_s - lo_s) * v * v) * 1000)
        midnight = (t // _DAY_MS + 1) * _DAY_MS               # the next UTC midnight after t
        if i + 1 < self.n and midnight < self.t1 and midnight <= self.base(i + 2) and self.start(i + 1) >= midnight:
            need = midnight - t + 60000 + int(v * (_BOUNDARY_EXTRA - 60000))
            dur = max(dur, need)
        return t, kind, base_type, dur

    def media(self, kind, base_type):
        """The mediaTypes of a conversation's sessions."""
        if kind == "callback":
            return ("callback", "voice")
        return (kind,)

    def first_at_or_after(self, ms):
        """The smallest index whose start is >= ms (n if none)."""
        if ms <= self.t0:
            return 0
        if ms >= self.t1:
            return self.n
        i = min(self.n, max(0, ((ms - self.t0) * self.n) // self.span))
        while i > 0 and self.start(i - 1) >= ms:
            i -= 1
        while i < self.n and self.start(i) < ms:
            i += 1
        return i

    def candidates(self, lo_ms, hi_ms, position=None):
        """Indices of conversations that may overlap [lo_ms, hi_ms), from position on, in order."""
        i_long = self.first_at_or_after(lo_ms - self.long_max)
        i_norm = self.first_at_or_after(lo_ms - self.normal_max)
        i_end = self.first_at_or_after(hi_ms)
        i = i_long if position is None else max(int(position), i_long)
        while i < i_end:
            if i < i_norm and i % _LONG_STRIDE:
                i = min(i_norm, i + _LONG_STRIDE - i % _LONG_STRIDE)
                continue
            yield i
            i += 1

    def selected(self, lo_ms, hi_ms, media_types=None, position=None):
        """(index, start, kind, base type, lifetime) of the conversations overlapping [lo_ms, hi_ms) with a
        session of one of media_types (None: any). Overlap: start < hi and end >= lo."""
        wanted = None if media_types is None else set(media_types)
        for i in self.candidates(lo_ms, hi_ms, position):
            t, kind, base_type, dur = self.at(i)
            if t + dur < lo_ms:
                continue
            if wanted is not None and wanted.isdisjoint(self.media(kind, base_type)):
                continue
            yield i, t, kind, base_type, dur


def _ref_names(refs, names):
    """id -> name lookup: names (a dict, or a FakeOrg), else refs.names (populate_reference_objects)."""
    if names is None:
        names = getattr(refs, "names", None) or {}
    if hasattr(names, "objects") and hasattr(names, "lock"):          # a FakeOrg
        org = names
        with org.lock:
            names = {oid: o.get("name") for kind in org.objects.values() for oid, o in kind.items()}
    return names


_UUID_CLEAR = ~((0xc000 << 48) | (0xf000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def _fast_uuid(rng):
    """The same string as str(uuid.UUID(int=rng.getrandbits(128), version=4)), a few times faster."""
    h = "%032x" % ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _tel(rnd, prefix="+1555"):
    return "tel:%s%07d" % (prefix, int(rnd() * 10 ** 7))


def _make_conversation(refs, names, key, i, t, kind, base_type, dur):
    rng = random.Random((key << 32) ^ (i * 2654435761 + 97))
    rnd = rng.random

    def pick(kind_name):
        seq = refs.get(kind_name) or []
        return seq[int(rnd() * len(seq))] if seq else None

    def name_of(oid, what):
        value = names.get(oid) if oid else None
        return value if isinstance(value, str) else "%s %s" % (what, (oid or "unknown")[:8])

    def seg(start_ms, end_ms, stype, **extra):
        out = {"segmentStart": _iso_ms(start_ms), "segmentEnd": _iso_ms(end_ms), "segmentType": stype}
        out.update((k, v) for k, v in extra.items() if v is not None)
        return out

    def session(media, direction, ani, dnis, segments, flow=None):
        out = {"sessionId": _fast_uuid(rng), "mediaType": media, "direction": direction, "ani": ani, "dnis": dnis}
        if flow is not None:
            out["flow"] = flow
        out["segments"] = segments
        return out

    def participant(purpose, pname, sessions, user_id=None):
        out = {"participantId": _fast_uuid(rng), "purpose": purpose}
        if user_id is not None:
            out["userId"] = user_id
        out["participantName"] = pname
        out["sessions"] = sessions
        return out

    conv_id = _fast_uuid(rng)
    media = kind                                    # the first session's mediaType
    first, last = _FIRST[int(rnd() * len(_FIRST))], _LAST[int(rnd() * len(_LAST))]
    customer_name = "%s %s" % (first, last)
    if media in ("voice", "callback", "message"):
        ani, dnis = _tel(rnd), "tel:+1800555%04d" % int(rnd() * 10 ** 4)
    elif media == "email":
        ani, dnis = "mailto:%s.%s%d@example.net" % (first.lower(), last.lower(), int(rnd() * 1000)), \
            "mailto:support@example.com"
    else:
        ani, dnis = "%s:%s.%s" % (media, first.lower(), last.lower()), "%s:webchat" % media
    outbound = media == "callback" or (media == "voice" and rnd() < 0.15)
    queue, flow_id, user = pick("queues"), pick("flows"), pick("users")
    wrapup, language = pick("wrapupcodes"), pick("languages")
    skills_pool = refs.get("skills") or []
    skills = []
    if skills_pool and rnd() < 0.9:
        skills.append(skills_pool[int(rnd() * len(skills_pool))])
        if len(skills_pool) > 1 and rnd() < 0.4:
            second = skills_pool[int(rnd() * len(skills_pool))]
            if second != skills[0]:
                skills.append(second)
    if rnd() >= 0.8:
        language = None
    divisions = refs.get("divisions") or []

    # the lifetime [t, t + dur] split into phases (integers, summing to dur exactly)
    ivr = 0 if outbound else max(1, int(dur * (0.02 + rnd() * 0.06)))
    wait = 0 if media == "voice" and outbound else max(1, int(dur * (0.02 + rnd() * 0.10)))
    alert = max(1, int(dur * (0.005 + rnd() * 0.015)))
    wrap = max(1, int(dur * (0.03 + rnd() * 0.07)))
    talk = dur - ivr - wait - alert - wrap
    a_alert = t + ivr + wait                    # agent alerted
    a_talk = a_alert + alert                    # agent connected
    t_end = a_talk + talk                       # customer disconnects; then wrap-up
    c_end = t + dur
    talk_from = t if (outbound and media == "voice") else a_talk     # an agent-dialled call: talking from dialling
    hold = None
    if media in ("voice", "callback") and rnd() < 0.3:
        h0 = talk_from + int((t_end - talk_from) * (0.3 + rnd() * 0.2))
        hold = (h0, h0 + max(1, int((t_end - talk_from) * (0.05 + rnd() * 0.15))))
    if hold:
        agent_talk = [seg(talk_from, hold[0], "interact", queueId=queue), seg(hold[0], hold[1], "hold", queueId=queue),
                      seg(hold[1], t_end, "interact", queueId=queue)]
    else:
        agent_talk = [seg(talk_from, t_end, "interact", queueId=queue)]
    alert_seg = seg(a_alert, a_talk, "alert", queueId=queue)
    wrap_seg = seg(t_end, c_end, "wrapup", queueId=queue, wrapUpCode=wrapup)
    acd_seg = seg(t + ivr, a_talk, "interact", queueId=queue, requestedRoutingSkillIds=skills or None,
                  requestedLanguageId=language)
    agent_name = name_of(user, "User")
    queue_name = name_of(queue, "Queue")

    if media == "callback":                     # a callback: requested, queued, then dialled as a voice call
        direction = "outbound"
        participants = [
            participant("customer", customer_name, [
                session("callback", "outbound", ani, dnis, [seg(t, a_talk, "interact")]),
                session("voice", "outbound", ani, dnis, [seg(a_talk, t_end, "interact")])]),
            participant("acd", queue_name, [session("callback", "outbound", ani, dnis, [acd_seg])]),
            participant("agent", agent_name, [
                session("callback", "outbound", ani, dnis, [alert_seg]),
                session("voice", "outbound", ani, dnis, agent_talk + [wrap_seg])], user_id=user),
        ]
    elif outbound:                              # an agent-dialled voice call
        direction = "outbound"
        participants = [
            participant("agent", agent_name, [session("voice", "outbound", dnis, ani, agent_talk + [wrap_seg])],
                        user_id=user),
            participant("customer", customer_name, [session("voice", "outbound", dnis, ani,
                                                            [seg(t, t_end, "interact")])]),
        ]
    else:                                       # inbound: customer -> IVR flow -> ACD queue -> agent
        direction = "inbound"
        flow = {"flowId": flow_id, "flowName": name_of(flow_id, "Flow")} if flow_id else None
        participants = [
            participant("customer", customer_name, [session(media, "inbound", ani, dnis,
                                                            [seg(t, t_end, "interact")])]),
            participant("ivr", flow["flowName"] if flow else "IVR", [session(media, "inbound", ani, dnis,
                                                                             [seg(t, t + ivr, "ivr")], flow=flow)]),
            participant("acd", queue_name, [session(media, "inbound", ani, dnis, [acd_seg])]),
            participant("agent", agent_name, [session(media, "inbound", ani, dnis, [alert_seg] + agent_talk + [wrap_seg])],
                        user_id=user),
        ]
    return {
        "conversationId": conv_id,
        "conversationStart": _iso_ms(t),
        "conversationEnd": _iso_ms(c_end),
        "originatingDirection": direction,
        "divisionIds": divisions[:1],
        "participants": participants,
    }


def generate_conversations(refs, n, start="2026-01-01T00:00:00Z", end="2026-01-03T00:00:00Z", seed=0,
                           media_types=_CONV_TYPES, unusual=0.0, names=None):
    """Yields n AnalyticsConversation records (contract section 9), conversationStart increasing and distinct
    within [start, end). References come from refs (populate_reference_objects' dict); names from `names`
    (id -> name, or a FakeOrg), else refs.names, else "Queue 1a2b3c4d"-like. A fraction `unusual` has a first
    session of mediaType "callback" or "message". Deterministic by seed; record i is built on its own."""
    sk = _ConvSkeleton(n, start, end, seed, media_types, unusual)
    names = _ref_names(refs, names)
    for i in range(sk.n):
        t, kind, base_type, dur = sk.at(i)
        yield _make_conversation(refs, names, sk.key, i, t, kind, base_type, dur)


class ConversationSource:
    """A ready-made org.conversation_source over generate_conversations(refs, n, ...) (same records).

    Called as source(start, end, media_types) it yields, in conversationStart order, the conversations
    overlapping [start, end) (start < end and conversationEnd >= start) with a session of one of media_types
    (None: any), building no other record. .resume(start, end, media_types, position) yields (position,
    record) and continues after a position it gave (the fake's cursor keeps it: paging is O(page)).
    .count(start, end, media_types) counts without building records. start/end: datetimes or ISO strings."""

    def __init__(self, refs, n, start="2026-01-01T00:00:00Z", end="2026-01-03T00:00:00Z", seed=0,
                 media_types=_CONV_TYPES, unusual=0.0, names=None):
        self.refs, self.n, self.start, self.end, self.seed = refs, n, start, end, seed
        self.media_types, self.unusual = tuple(media_types), unusual
        self.names = _ref_names(refs, names)
        self.skeleton = _ConvSkeleton(n, start, end, seed, media_types, unusual)
        self.built = 0                              # records built so far (tests check paging costs)

    def _build(self, i, t, kind, base_type, dur):
        self.built += 1
        return _make_conversation(self.refs, self.names, self.skeleton.key, i, t, kind, base_type, dur)

    def resume(self, start, end, media_types=None, position=None):
        for i, t, kind, base_type, dur in self.skeleton.selected(_to_ms(start), _to_ms(end), media_types, position):
            yield i + 1, self._build(i, t, kind, base_type, dur)

    def __call__(self, start, end, media_types=None):
        for _, record in self.resume(start, end, media_types):
            yield record

    def count(self, start, end, media_types=None):
        return sum(1 for _ in self.skeleton.selected(_to_ms(start), _to_ms(end), media_types))

    def __iter__(self):
        for i in range(self.skeleton.n):
            yield self._build(i, *self.skeleton.at(i))


# --------------------------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------------------------

def _write_env_file(path, orgs):
    """Shell exports pointing migrate.py at the fake: the first org is the source, the second the target."""
    lines = []
    for label, org in zip(("SOURCE", "TARGET"), orgs):
        for name, value in (("CLIENT_ID", org.client_id), ("CLIENT_SECRET", org.client_secret),
                            ("LOGIN_URL", org.login_url), ("API_URL", org.api_url)):
            lines.append("export GENESYS_%s_%s='%s'\n" % (label, name, value))
    partial = path + ".part"
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.writelines(lines)
    os.replace(partial, path)


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
    ap.add_argument("--flow-job-seconds", type=float)
    ap.add_argument("--analytics-job-seconds", type=float)
    ap.add_argument("--prompt-transcode-seconds", type=float)
    ap.add_argument("--generate", action="store_true",
                    help="fill the first two orgs with populate_clone_demo (source, target) before serving")
    ap.add_argument("--seed", type=int, default=0, help="seed of --generate and --people (default 0)")
    ap.add_argument("--scale", type=float, default=1, help="scale of --generate (default 1)")
    ap.add_argument("--people", type=int, default=0, metavar="N",
                    help="also fill the first two orgs with populate_people(users=N) (default 0: no)")
    ap.add_argument("--expand-miss-share", type=float)
    ap.add_argument("--env", metavar="FILE",
                    help="also write the first two orgs' settings as shell exports (GENESYS_SOURCE_*, "
                         "GENESYS_TARGET_*) to FILE (mode 0600), once serving")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.orgs.split(",") if n.strip()]
    if not names:
        ap.error("--orgs needs at least one name")
    if args.generate and len(names) < 2:
        ap.error("--generate needs two orgs (source and target)")
    if args.people < 0:
        ap.error("--people needs a count of users (0 or more)")
    if args.people and len(names) < 2:
        ap.error("--people needs two orgs (source and target)")
    knobs = {k: v for k, v in vars(args).items()
             if k not in ("orgs", "generate", "seed", "scale", "env", "people") and v is not None}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake = FakeGenesys(orgs=names, **knobs)
    generated = None
    if args.generate:
        generated = populate_clone_demo(fake.orgs[names[0]], fake.orgs[names[1]], seed=args.seed, scale=args.scale)
    people = None
    if args.people:
        people = populate_people(fake.orgs[names[0]], fake.orgs[names[1]], seed=args.seed, users=args.people)
    fake.start()
    try:
        info = {"download_url": fake.download_url,
                "orgs": {o.name: {"login_url": o.login_url, "api_url": o.api_url, "client_id": o.client_id,
                                  "client_secret": o.client_secret, "org_id": o.org_id}
                         for o in fake.orgs.values()}}
        if generated is not None:
            info["generated"] = {k: v for k, v in generated.items() if k != "refs"}
        if people is not None:
            info["people"] = {k: v for k, v in people.items() if k not in ("source_refs", "target_refs")}
        if args.env:
            _write_env_file(args.env, [fake.orgs[name] for name in names[:2]])
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
