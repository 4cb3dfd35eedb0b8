"""Where real data sets and the benchmarks' saved numbers live, whatever the working directory.

The chapters used to say ``data_root="../data"``, which only meant something when run from
``book/`` in a checkout. These functions give the same folders from a checkout, from an installed
wheel and from Colab.
"""
from __future__ import annotations

import os
from pathlib import Path

# The folder above the package: the repository root when dctutor runs from a checkout.
_ABOVE = Path(__file__).resolve().parents[1]


def checkout() -> Path | None:
    """The repository root when dctutor is imported from a checkout (editable install or
    PYTHONPATH), None when it is an installed wheel."""
    is_checkout = (_ABOVE / "pyproject.toml").is_file() and (_ABOVE / "benchmarks").is_dir()
    return _ABOVE if is_checkout else None


def data_root(root: str | os.PathLike = "") -> Path:
    """The folder for real data sets: ``root`` when given, else ``$DCTUTOR_DATA``, else the
    checkout's ``data/``, else ``data/`` in the working directory (``/content/data`` in Colab)."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path or '', got {type(root).__name__}")
    if str(root):
        return Path(root)
    if os.environ.get("DCTUTOR_DATA"):
        return Path(os.environ["DCTUTOR_DATA"])
    repo = checkout()
    return repo / "data" if repo is not None else Path.cwd() / "data"


def results_dir() -> Path:
    """The benchmarks' saved numbers (``*.json``): the checkout's ``benchmarks/results``, or the
    copy the wheel ships as ``dctutor/benchmark_results`` (see pyproject.toml's package-dir)."""
    repo = checkout()
    found = repo / "benchmarks" / "results" if repo is not None else Path(__file__).parent / "benchmark_results"
    if not found.is_dir():
        raise FileNotFoundError(f"no saved benchmark results at {found}; reinstall dctutor from its repository "
                                "(the wheel ships them) or run the benchmarks")
    return found
