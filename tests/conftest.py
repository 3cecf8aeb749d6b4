import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_genesys import FakeGenesys  # noqa: E402


@pytest.fixture
def fake():
    """Two started orgs ("source", "target") with fast job timings; stopped afterwards.  The client limit is
    raised to 6,000/min: the tool paces at the limit the org states, and tests about limits set their own."""
    f = FakeGenesys(("source", "target"), export_job_seconds=0.2, import_seconds_per_record=0.0001, rate_limit=6000)
    f.start()
    try:
        yield f
    finally:
        f.stop()
