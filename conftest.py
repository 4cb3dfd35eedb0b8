import os
from pathlib import Path

import pytest


def _shared_data() -> Path:
    """Real data for the `realdata` tests: $DCTUTOR_SHARED_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("DCTUTOR_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    return _shared_data()


SHARED_DATA = _shared_data()


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs `-n 2`), give each worker its share of the cores, and
    the notebook kernels and subprocesses it starts too: more threads than cores only adds waiting."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Units of work for pytest-xdist: one test module per worker, so that a module's fixtures (a
    built book, a wheel, a torchrun) are made once and never by two workers at once, and nbval's
    cells of one notebook, which share a kernel, run in order. Chapter 5 loads the network that
    chapter 4's run saves, so the two chapters are one unit, in that order. The papermill runs of
    test_notebooks.py are independent and among the longest tests: each is its own unit."""
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            if module.startswith(("book/04_", "book/05_")):
                return "chapters 4-5"
            return nodeid if module.endswith("test_notebooks.py") else module

    return Units(config, log)
