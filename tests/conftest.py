import os
from pathlib import Path

import pytest


def _shared_data() -> Path:
    """Real data for the `realdata` tests: $DCTUTOR_SHARED_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("DCTUTOR_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    return _shared_data()


SHARED_DATA = _shared_data()
