"""Helpers shared by the tests: run the CLI against the fake, build clients, make inputs."""

import gzip
import json
import os
import subprocess
import sys
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIGRATE = os.path.join(ROOT, "migrate.py")
sys.path.insert(0, ROOT)

import migrate  # noqa: E402
from fake_genesys import generate_interactions  # noqa: E402

MAPPING_KEYS = {"skills": "skills", "languages": "languages", "wrapupcodes": "wrapupCodes", "queues": "queues",
                "flows": "flows", "users": "users", "divisions": "divisions"}


def org_env(fake, **labels):
    """Environment for the CLI: GENESYS_<LABEL>_* pointing at fake orgs, e.g. org_env(fake, source="source")."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENESYS_")}
    for label, name in labels.items():
        org = fake.orgs[name]
        prefix = f"GENESYS_{label.upper()}_"
        env.update({prefix + "CLIENT_ID": org.client_id, prefix + "CLIENT_SECRET": org.client_secret,
                    prefix + "LOGIN_URL": org.login_url, prefix + "API_URL": org.api_url})
    return env


def run_cli(args, env=None, cwd=None, timeout=120, stdin=subprocess.DEVNULL):
    """Runs `python migrate.py ARGS` as an operator would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, MIGRATE, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=stdin)


# Spawns the CLI and reports its own peak RSS.  A child spawned straight from pytest inherits the
# parent's high-water mark at exec (Linux keeps it in ru_maxrss), so a bloated test process would
# count against the CLI; through this small parent the figure is the CLI's own.
MEASURING_PARENT = ("import os, subprocess, sys\n"
                    "child = subprocess.Popen(sys.argv[2:])\n"
                    "_, status, usage = os.wait4(child.pid, 0)\n"
                    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
                    "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_cli_measuring_memory(args, env=None, cwd=None, timeout=120):
    """Like run_cli; also returns the CLI's peak resident memory in MB."""
    report = os.path.join(cwd or ".", ".peak_rss")
    result = subprocess.run([sys.executable, "-c", MEASURING_PARENT, report, sys.executable, MIGRATE, *args],
                            env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    with open(report) as handle:
        return result, int(handle.read()) / 1024


def start_cli(args, env=None, cwd=None):
    return subprocess.Popen([sys.executable, MIGRATE, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def client_for(org, label="source", workers=8, max_rps=1000.0, status_rps=1000.0):
    settings = migrate.OrgSettings(label=label, client_id=org.client_id, client_secret=org.client_secret,
                                   login_url=org.login_url, api_url=org.api_url, api_url_overridden=True)
    return migrate.ApiClient(settings, workers=workers, max_rps=max_rps, status_rps=status_rps)


def mapping_between(source_refs, target_refs, **fallbacks):
    """The mapping clone would write for two orgs populated with the same seed (same names, same order)."""
    mapping = {key: dict(zip(source_refs.get(kind, []), target_refs.get(kind, []))) for kind, key in MAPPING_KEYS.items()}
    mapping["fallbacks"] = fallbacks
    return mapping


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    return str(path)


def write_export(path, records):
    """An export file as the export command writes it: a gzip JSON array."""
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as handle:
        handle.write("[")
        for index, record in enumerate(records):
            if index:
                handle.write(",\n")
            handle.write(json.dumps(record))
        handle.write("]")
    return str(path)


def many_records(refs, n):
    """n distinct records, cheaply: generated ones repeated with a new id and case number."""
    base = list(generate_interactions(refs, 1000, seed=10))
    for index in range(n):
        record = dict(base[index % len(base)], id=str(uuid.UUID(int=index, version=4)))
        record["attributes"] = dict(record["attributes"], caseNumber=f"CS-{index:08d}")
        yield record
