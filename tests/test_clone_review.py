"""Regression tests for the clone-path bugs of review 9 (its reproduction scripts, turned into tests).

Each test builds a small source and target in the fake and runs the CLI over loopback as an admin would,
then checks what a user sees: the exit code, the stderr lines, and what was (or was not) written to the
target.  The YAML scanner (item 1) and the export-zip reader (item 11) are checked directly."""

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile

import pytest
import yaml

from fake_genesys import FakeGenesys, _flow_yaml
from support import MIGRATE, migrate, org_env, run_cli

FAST = ["--max-rps", "1000", "--max-status-rps", "1000", "--poll-initial", "0.05", "--poll-max", "0.3"]
WRITES = ("POST", "PUT", "DELETE", "PATCH")
CONSUMED = "/api/v2/architect/dependencytracking/consumedresources"


@pytest.fixture
def orgs():
    fake = FakeGenesys(("source", "target", "other"), rate_limit=1_000_000, status_rate_limit=1_000_000,
                       flow_job_seconds=0.05, prompt_transcode_seconds=0.05, export_job_seconds=0.05)
    fake.start()
    try:
        for org in fake.orgs.values():
            org.home_division()
        yield fake
        assert fake.server_errors == [], fake.server_errors[0]
    finally:
        fake.stop()


# --- helpers -------------------------------------------------------------------------------------------------

def home_ref(org):
    home = org.home_division()
    return {"id": home["id"], "name": home["name"], "selfUri": home["selfUri"]}


def add_flow(org, name, ftype="INBOUNDCALL", content=None, refs=None):
    """A published flow with Archy content (the fake's own document for its type unless `content`)."""
    fid = org.add_object("flows", name, type=ftype, division=home_ref(org), description=name + " flow",
                         active=True, system=False, deleted=False)
    org.objects["flows"][fid]["publishedVersion"] = {"id": "1.0"}
    org.set_flow_content(fid, content if content is not None
                         else _flow_yaml(ftype, name, name + " flow", None, refs or {}))
    return fid


def clone(fake, cwd, *extra):
    return run_cli(["clone", "--yes", *FAST, *extra], env=org_env(fake, source="source", target="target"),
                   cwd=str(cwd))


def clone_side_by_side(fake, *runs):
    """Runs of clone that write nothing, at once: (cwd, extra args[, target org]) each -> CompletedProcess each."""
    processes = [subprocess.Popen([sys.executable, MIGRATE, "clone", "--yes", *FAST, *run[1]],
                                  env=org_env(fake, source="source", target=run[2] if len(run) > 2 else "target"),
                                  cwd=str(run[0]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for run in runs]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def writes_to(org, since=0):
    return [(r.method, r.path) for r in org.requests[since:] if r.method in WRITES and r.path.startswith("/api/v2")]


def uploads_to(fake, org, since=0):
    return [r for r in fake.download_log[since:] if r.method == "PUT" and org.org_id in r.path]


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def assert_one_line_error(result, *fragments):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def plan_actions(cwd):
    with open(os.path.join(cwd, "plan.json"), encoding="utf-8") as handle:
        plan = json.load(handle)
    return {(a["kind"], a["name"]): a for a in plan["actions"]}, plan


def named(org, kind, name):
    return [obj for obj in org.objects[kind].values() if obj.get("name") == name]


def consumed_answer(dependencies, times=5):
    return dict(method="GET", path_prefix=CONSUMED, times=times,
                body={"entities": dependencies, "pageSize": 100, "pageNumber": 1, "total": len(dependencies),
                      "pageCount": 1})


# --- 1. the scanner and a plain multi-line scalar whose continuation starts with a quote ---------------------

QUOTED_CONTINUATION = """inboundCall:
  name: Main
  description: Greets callers with the
    'new year message
  startUpRef: "/inboundCall/tasks/task[Main Task_10]"
  defaultLanguage: en-us
  tasks:
    - task:
        name: Main Task
        refId: Main Task_10
        actions:
          - transferToAcd:
              name: Transfer to ACD
              targetQueue:
                lit:
                  name: Sales
          - disconnect:
              name: Disconnect
"""


def test_plain_scalar_continuation_starting_with_quote_is_scanned():
    assert yaml.safe_load(QUOTED_CONTINUATION)["inboundCall"]["description"] == "Greets callers with the 'new year message"
    references = migrate.flow_name_references(QUOTED_CONTINUATION)
    assert [(kind, name) for kind, name, _ in references] == [("queues", "Sales")]
    assert migrate.flow_document_identity(QUOTED_CONTINUATION) == ("INBOUNDCALL", "Main")
    # a double quote, and a continuation that ends in a comment, too
    other = QUOTED_CONTINUATION.replace("    'new year message", '    "new year" message # note')
    assert [(kind, name) for kind, name, _ in migrate.flow_name_references(other)] == [("queues", "Sales")]
    renamed = migrate.rewrite_flow_names(QUOTED_CONTINUATION, lambda kind, name, detail: "Sales 2")
    assert yaml.safe_load(renamed)["inboundCall"]["tasks"][0]["task"]["actions"][0]["transferToAcd"][
        "targetQueue"]["lit"]["name"] == "Sales 2"


# --- 2. flows of every SDK type; a flow whose export holds no document of its own ----------------------------

def test_flows_of_every_sdk_type_clone_and_an_unmatched_export_is_left_out(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    source.add_object("queues", "Sales", division=home_ref(source))
    add_flow(source, "Main", refs={"queues": ["Sales"]})
    add_flow(source, "Secure", ftype="SECURECALL")
    add_flow(source, "Work", ftype="WORKITEM")
    # its export is a document of another name: no document matches the flow
    add_flow(source, "Stray", content=_flow_yaml("INBOUNDCALL", "Elsewhere", "x", None, {}))
    result = clone(orgs, tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 3, result.stderr
    assert not error_lines(result), result.stderr
    assert "Stray" in result.stderr and "its export holds no document of its type and name" in result.stderr
    for name, ftype in (("Main", "INBOUNDCALL"), ("Secure", "SECURECALL"), ("Work", "WORKITEM")):
        [flow] = named(target, "flows", name)
        assert flow["type"] == ftype and flow.get("publishedVersion"), flow
        assert migrate.flow_document_identity(target.flow_content[flow["id"]]) == (ftype, name)
    assert "0 verify mismatches" in result.stderr, result.stderr
    assert not named(target, "flows", "Stray") and not named(target, "flows", "Elsewhere")


# --- 3. SYSTEMPROMPT and USER dependencies -----------------------------------------------------------------

def test_system_prompt_dependency_never_leaves_a_flow_out(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    source.add_object("queues", "Sales", division=home_ref(source))
    fid = add_flow(source, "Main", refs={"queues": ["Sales"]})
    deps = source.flow_dependencies(fid) + [
        {"id": "a1b2c3d4-0000-4000-8000-000000000001", "name": "on_hold_music", "type": "SYSTEMPROMPT",
         "deleted": False, "updated": False, "stateUnknown": False}]
    source.inject_answer(**consumed_answer(deps))
    result = clone(orgs, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 unresolved" in result.stderr and "0 verify mismatches" in result.stderr, result.stderr
    [flow] = named(target, "flows", "Main")
    assert flow.get("publishedVersion"), flow


def test_user_dependency_is_matched_by_email(orgs, tmp_path):
    """One source, two targets planned side by side: "target" has the person (same email, another display
    name), "other" only someone else of the same name."""
    source, target, other = orgs.orgs["source"], orgs.orgs["target"], orgs.orgs["other"]
    source.add_object("queues", "Sales", division=home_ref(source))
    fid = add_flow(source, "Main", refs={"queues": ["Sales"]})
    uid = source.add_object("users", "Ann Lee", email="ann.lee@example.com")
    target.add_object("users", "Ann Lee-Smith", email="ann.lee@example.com")
    for org in (target, other):
        org.add_object("users", "Ann Lee", email="someone.else@example.com")
    deps = source.flow_dependencies(fid) + [
        {"id": uid, "name": "Ann Lee", "type": "USER", "deleted": False, "updated": False, "stateUnknown": False}]
    source.inject_answer(**consumed_answer(deps, times=10))
    for name in ("target", "other"):
        (tmp_path / name).mkdir()
    found, missing = clone_side_by_side(orgs, (tmp_path / "target", ["--plan"]),
                                        (tmp_path / "other", ["--plan"], "other"))
    assert "Traceback" not in found.stderr + missing.stderr, found.stderr + missing.stderr
    assert found.returncode == 0, found.stderr
    actions, plan = plan_actions(tmp_path / "target")
    assert actions[("flows", "Main")]["action"] == "create", actions
    assert actions[("users", "Ann Lee")]["targetName"] == "Ann Lee-Smith", actions
    assert plan["unresolved"] == []
    assert missing.returncode == 3, missing.stderr
    actions, plan = plan_actions(tmp_path / "other")
    assert actions[("flows", "Main")]["action"] == "skip", actions
    assert "Ann Lee" in actions[("flows", "Main")]["reason"], actions
    assert writes_to(target) == [] and writes_to(other) == []


# --- 4. data table row keys that are dot segments --------------------------------------------------------------

def test_row_keys_dot_and_dotdot_reach_the_row_not_the_table(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "additionalProperties": False,
              "required": ["key"], "properties": {
                  "key": {"title": "key", "type": "string", "$id": "/properties/key", "displayOrder": 0},
                  "v": {"title": "v", "type": "string", "$id": "/properties/v", "displayOrder": 1}}}
    keys = ["..", ".", "a/b", "50%", "x y", "q?x=1", "h#1", "ü", "a.b", "..."]
    sid = source.add_object("datatables", "T", division=home_ref(source), schema=schema, description="")
    source.set_table_rows(sid, [{"key": k, "v": "new"} for k in keys])
    tid = target.add_object("datatables", "T", division=home_ref(target), schema=schema, description="")
    target.set_table_rows(tid, [{"key": k, "v": "old"} for k in keys])
    table_before = json.loads(json.dumps(target.objects["datatables"][tid]))
    since = len(target.requests)
    result = clone(orgs, tmp_path, "--on-conflict", "update", "--kinds", "dataTables")
    assert result.returncode == 0, result.stderr
    assert "0 verify mismatches" in result.stderr, result.stderr
    assert {k: row["v"] for k, row in target.table_rows[tid].items()} == {k: "new" for k in keys}
    assert target.objects["datatables"][tid] == table_before
    assert list(target.objects["datatables"]) == [tid]
    table_path = f"/api/v2/flows/datatables/{tid}"
    writes = writes_to(target, since)
    assert len(writes) == len(keys) and all(method == "PUT" and path.startswith(table_path + "/rows/")
                                            for method, path in writes), writes


# --- 5. --kinds never writes an unselected kind, not even what an earlier run created --------------------------

def test_kinds_leaves_unselected_objects_of_an_earlier_run_alone(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    source.add_object("skills", "Billing", division=home_ref(source))
    prompt = source.add_object("prompts", "Welcome", description="hi")
    source.add_prompt_resource(prompt, "en-us", tts="Hello")
    source.add_object("queues", "Sales", division=home_ref(source))
    add_flow(source, "Main", refs={"queues": ["Sales"], "prompts": ["Welcome"]})
    target.inject_answer(method="POST", path_prefix="/api/v2/flows/jobs", status=400,
                         body={"message": "nope", "code": "bad.request", "status": 400}, times=1)
    first = clone(orgs, tmp_path)
    assert "Traceback" not in first.stderr, first.stderr
    assert first.returncode == 1, first.stderr
    [shell] = named(target, "flows", "Main")
    assert not shell.get("publishedVersion"), "the first run's publish was refused: the flow waits as a shell"
    assert named(target, "skills", "Billing") and named(target, "prompts", "Welcome")
    source.add_prompt_resource(prompt, "en-us", tts="Hello again")  # the source changes meanwhile
    since, uploads_since = len(target.requests), len(orgs.download_log)
    second = clone(orgs, tmp_path, "--kinds", "skills")
    assert second.returncode == 0, second.stderr
    assert writes_to(target, since) == []
    assert uploads_to(orgs, target, uploads_since) == []
    assert not named(target, "flows", "Main")[0].get("publishedVersion")
    [welcome] = named(target, "prompts", "Welcome")
    assert target.prompt_resources[welcome["id"]]["en-us"].get("ttsString") == "Hello"


# --- 6. a --prefix that cannot begin a prompt name -------------------------------------------------------------

def test_prefix_that_cannot_begin_a_prompt_name_is_a_usage_error(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    prompt = source.add_object("prompts", "Welcome", description="hi")
    source.add_prompt_resource(prompt, "en-us", tts="Hello")
    target.add_object("prompts", "Welcome", description="target's own")
    source.add_object("queues", "Sales", division=home_ref(source))
    target.add_object("queues", "Sales", division=home_ref(target))
    result = clone(orgs, tmp_path, "--on-conflict", "prefix", "--prefix", "2024-")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == error_lines(result), result.stderr
    assert_one_line_error(result, "'2024-'", "prompts")
    assert target.requests == [], "a usage error comes before any request"
    # without prompts among the kinds the same prefix is fine
    result = clone(orgs, tmp_path, "--on-conflict", "prefix", "--prefix", "2024-", "--kinds", "queues")
    assert result.returncode == 0, result.stderr
    assert sorted(q["name"] for q in target.objects["queues"].values()) == ["2024-Sales", "Sales"]
    assert sorted(p["name"] for p in target.objects["prompts"].values()) == ["Welcome"]


# --- 7. malformed consumed resources and target IVRs: one-line errors -----------------------------------------

@pytest.mark.parametrize("case", ["two-missing-actions-one-unnamed", "dep-name-dict-known-id", "target-ivr-dnis-int"])
def test_malformed_answers_are_one_line_errors(orgs, tmp_path, case):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    qid = source.add_object("queues", "Sales", division=home_ref(source))
    add_flow(source, "Main", refs={"queues": ["Sales"]})
    if case == "two-missing-actions-one-unnamed":
        source.inject_answer(**consumed_answer([
            {"id": "a1b2c3d4-0000-4000-8000-000000000001", "type": "DATAACTION", "deleted": False},
            {"id": "a1b2c3d4-0000-4000-8000-000000000002", "name": "Lookup", "type": "DATAACTION", "deleted": False}]))
        fragment = "dependency tracking"
    elif case == "dep-name-dict-known-id":
        source.inject_answer(**consumed_answer([{"id": qid, "name": {"n": "Sales"}, "type": "QUEUE", "deleted": False}]))
        fragment = "dependency tracking"
    else:
        legacy = target.add_object("ivrs", "Legacy", division=home_ref(target))
        target.objects["ivrs"][legacy]["dnis"] = 5
        source.add_object("ivrs", "Main IVR", division=home_ref(source), dnis=["+15550001000"])
        fragment = "dnis"
    result = clone(orgs, tmp_path)
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result, fragment)
    assert writes_to(target) == []


# --- 8. an IVR of an earlier run gains the numbers ported since ---------------------------------------------

def test_ivr_of_an_earlier_run_gains_numbers_ported_since(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    source.add_object("ivrs", "Main IVR", division=home_ref(source), dnis=["+15550001000", "+15550002000"],
                      description="")
    target.add_did_pool("+15550002000", "+15550002999")  # one number is in the target already
    first = clone(orgs, tmp_path, "--kinds", "ivrs")
    assert first.returncode == 0, first.stderr
    assert "awaiting porting" in first.stderr and "+15550001000" in first.stderr, first.stderr
    [ivr] = named(target, "ivrs", "Main IVR")
    assert ivr.get("dnis") == ["+15550002000"]
    target.add_did_pool("+15550000000", "+15550001999")  # the other is ported now
    second = clone(orgs, tmp_path, "--kinds", "ivrs")
    assert second.returncode == 0, second.stderr
    assert "awaiting porting" not in second.stderr and "0 verify mismatches" in second.stderr, second.stderr
    [ivr] = named(target, "ivrs", "Main IVR")
    assert sorted(ivr["dnis"]) == ["+15550001000", "+15550002000"]


# --- 9. clone --plan with --on-conflict fail and a conflict ---------------------------------------------------

def test_plan_exits_3_where_on_conflict_fail_would_stop(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    source.add_object("queues", "Sales", division=home_ref(source), description="src")
    source.add_object("skills", "Billing", division=home_ref(source))
    target.add_object("queues", "Sales", division=home_ref(target), description="tgt")
    (tmp_path / "plan").mkdir()
    (tmp_path / "run").mkdir()
    # neither writes: the plan and the run it predicts, side by side
    plan, run = clone_side_by_side(orgs, (tmp_path / "plan", ["--plan", "--on-conflict", "fail"]),
                                   (tmp_path / "run", ["--on-conflict", "fail"]))
    assert plan.returncode == 3, plan.stderr
    warnings = [line for line in plan.stderr.splitlines() if "Conflict:" in line]
    assert len(warnings) == 1 and "queue 'Sales'" in warnings[0], plan.stderr
    actions, _ = plan_actions(tmp_path / "plan")
    assert actions[("queues", "Sales")]["action"] == "conflict"
    assert actions[("skills", "Billing")]["action"] == "create"
    assert run.returncode == 1, run.stderr
    assert_one_line_error(run, "already exist", "Sales")
    assert writes_to(target) == []


# --- 10. a --mapping entry to a target id the target does not have -------------------------------------------

def test_mapping_to_an_id_the_target_lacks_is_planned_as_skip(orgs, tmp_path):
    source, target = orgs.orgs["source"], orgs.orgs["target"]
    qid = source.add_object("queues", "Sales", division=home_ref(source))
    kept = source.add_object("skills", "Billing", division=home_ref(source))
    target_skill = target.add_object("skills", "Billing (target)", division=home_ref(target))
    absent = str(uuid.uuid4())
    mapping = tmp_path / "input-mapping.json"
    mapping.write_text(json.dumps({"queues": {qid: absent}, "skills": {kept: target_skill}}))
    result = clone(orgs, tmp_path, "--plan", "--mapping", str(mapping))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 3), result.stderr  # planned, not an error
    actions, plan = plan_actions(tmp_path)
    sales = actions[("queues", "Sales")]
    assert sales["action"] == "skip" and sales["targetId"] is None, sales
    assert absent in sales["reason"] and "does not have" in sales["reason"], sales
    assert plan["idMap"].get(qid) != absent
    billing = actions[("skills", "Billing")]
    assert (billing["action"], billing["targetId"]) == ("reuse", target_skill), billing
    assert writes_to(target) == []


# --- 11. reading a flow export zip ------------------------------------------------------------------------------

def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_export_zip_ignores_members_that_are_not_utf8_text():
    first = _flow_yaml("INBOUNDCALL", "Main", "m", None, {})
    second = _flow_yaml("SECURECALL", "Secure", "s", None, {})
    content = _zip([("a.yaml", first), ("__MACOSX/._a.yaml", b"\x00\x05\x16\x07\xff\xfe\x80binary"),
                    ("b.yaml", second), ("logo.png", b"\x89PNG\r\n\x1a\n\xff\xd8")])
    documents = migrate.flow_export_documents(content, "flow export job J")
    assert documents == [first, second]
    assert [migrate.flow_document_identity(d) for d in documents] == [("INBOUNDCALL", "Main"), ("SECURECALL", "Secure")]


def test_export_zip_member_declaring_more_than_any_flow_is_refused_unread():
    """A zip whose member says it unpacks to more than FLOW_DOCUMENT_MAX_BYTES (a zip bomb) is refused from
    its header, before a byte of it is inflated."""
    first = _flow_yaml("INBOUNDCALL", "Main", "m", None, {})
    content = bytearray(_zip([("a.yaml", first), ("big.yaml", b"x")]))
    declared = migrate.FLOW_DOCUMENT_MAX_BYTES + 1
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = content.rfind(signature)
        content[at + offset:at + offset + 4] = declared.to_bytes(4, "little")
    with pytest.raises(migrate.MigrateError) as raised:
        migrate.flow_export_documents(bytes(content), "flow export job J")
    message = str(raised.value)
    assert "\n" not in message and "'big.yaml'" in message and str(declared) in message, message


def test_export_zip_member_larger_than_any_flow_is_refused(monkeypatch):
    first = _flow_yaml("INBOUNDCALL", "Main", "m", None, {})
    assert migrate.FLOW_DOCUMENT_MAX_BYTES >= 1 << 20  # a real flow fits
    monkeypatch.setattr(migrate, "FLOW_DOCUMENT_MAX_BYTES", 4096)
    bomb = _zip([("a.yaml", first), ("big.yaml", b"#" * 5000)])
    assert len(bomb) < 4096
    with pytest.raises(migrate.MigrateError) as raised:
        migrate.flow_export_documents(bomb, "flow export job J")
    message = str(raised.value)
    assert "\n" not in message and "big.yaml" in message and "flow export job J" in message, message
    assert migrate.flow_export_documents(_zip([("a.yaml", first), ("ok.yaml", b"#" * 4096)]), "j") == [first, "#" * 4096]
