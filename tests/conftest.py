import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_genesys import FakeGenesys  # noqa: E402


@pytest.fixture
def fake():
    """Two started orgs ("source", "target") with fast job timings; stopped afterwards."""
    f = FakeGenesys(("source", "target"), export_job_seconds=0.2, import_seconds_per_record=0.0001)
    f.start()
    try:
        yield f
    finally:
        f.stop()
