"""Writes the bundled sample: tests/data/sample_export.json.gz and mapping.example.json.

Both come from the fake org's generators with a fixed seed, so running this again
gives the same bytes.  The sample holds 300 synthetic v2.1 records exported from
a "source" org; the mapping sends every id they use to a "target" org populated
with the same names, plus a fallback wrap-up code, as `clone` would write it.
"""

import gzip
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fake_genesys import FakeOrg, generate_interactions, populate_reference_objects  # noqa: E402

SAMPLE_RECORDS = 300
SEED = 7
MAPPING_KEYS = {"skills": "skills", "languages": "languages", "wrapupcodes": "wrapupCodes", "queues": "queues",
                "flows": "flows", "users": "users", "divisions": "divisions"}


def sample_orgs():
    """The source and target orgs the sample and the example mapping describe."""
    source, target = FakeOrg(None, "source"), FakeOrg(None, "target")
    return (source, populate_reference_objects(source, seed=SEED)), (target, populate_reference_objects(target, seed=SEED))


def example_mapping(source_refs, target_refs):
    mapping = {key: dict(zip(source_refs.get(kind, []), target_refs.get(kind, [])))
               for kind, key in MAPPING_KEYS.items()}
    mapping["fallbacks"] = {"wrapupCodes": target_refs["wrapupcodes"][0]}
    mapping["timeZones"] = {"America/Indianapolis": "America/Indiana/Indianapolis"}
    return mapping


def main():
    (_, source_refs), (_, target_refs) = sample_orgs()
    records = list(generate_interactions(source_refs, SAMPLE_RECORDS, seed=SEED))
    data = json.dumps(records, ensure_ascii=False, indent=1).encode("utf-8")
    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    with open(os.path.join(HERE, "data", "sample_export.json.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(data)
    with open(os.path.join(HERE, "..", "mapping.example.json"), "w", encoding="utf-8") as handle:
        json.dump(example_mapping(source_refs, target_refs), handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
