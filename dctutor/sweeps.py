"""Parameter sweeps over a chapter: run it with papermill over a grid, read one row per run back.

A chapter built for sweeps ends with a code cell tagged ``sweep-result`` (``RESULT_TAG``) that
prints its headline numbers as one JSON object. :func:`run_sweep` executes the notebook once per
point of a :func:`grid` with papermill; :func:`collect` reads each executed notebook with nbformat
and returns one row per run: the parameters papermill injected, then the printed numbers. Nothing
else is needed (``papermill.read_notebook`` and scrapbook are gone from recent papermill).
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import nbformat

RESULT_TAG = "sweep-result"


def grid(**values: Sequence) -> list[dict]:
    """Every combination of the given parameter values: ``grid(k=[10, 30], seed=[0, 1])`` is four dicts."""
    for name, options in values.items():
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence) or not options:
            raise ValueError(f"{name} must be a non-empty list of values, e.g. {name}=[{options!r}]")
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*values.values())]


def run_name(parameters: Mapping) -> str:
    """A file name for one run, from its parameters: ``k=10,seed=0.ipynb``."""
    text = ",".join(f"{key}={value}" for key, value in parameters.items()) or "defaults"
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in text) + ".ipynb"


def run_sweep(notebook: str | Path, points: Iterable[Mapping], out_dir: str | Path, *,
              cwd: str | Path | None = None, kernel_name: str = "python3", progress_bar: bool = False) -> list[Path]:
    """Execute ``notebook`` once per parameter dict in ``points`` (papermill), into ``out_dir``.

    ``cwd`` is the folder the kernel starts in (default: the notebook's). A run that raises stops
    the sweep with papermill's error; the executed notebooks already written are kept. Returns the
    paths of the executed notebooks, in the order of ``points``.
    """
    try:
        import papermill as pm
    except ImportError as err:
        raise ImportError("run_sweep needs papermill: pip install papermill") from err
    source = Path(notebook)
    if not source.is_file():
        raise FileNotFoundError(f"notebook {source} does not exist")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for parameters in points:
        target = out / run_name(parameters)
        pm.execute_notebook(str(source), str(target), parameters=dict(parameters),
                            cwd=str(cwd if cwd is not None else source.parent), kernel_name=kernel_name,
                            progress_bar=progress_bar)
        paths.append(target)
    return paths


def read_result(path: str | Path, tag: str = RESULT_TAG) -> dict:
    """One row for one executed notebook: ``notebook`` (its file name), the parameters papermill
    injected (``metadata.papermill.parameters``) and the JSON object printed by the cell tagged ``tag``."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path} has {len(cells)} code cells tagged {tag!r}; a sweepable chapter has exactly one")
    text = "".join(o.get("text", "") for o in cells[0].outputs if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: the cell tagged {tag!r} printed nothing; was the notebook executed to the end?")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the cell tagged {tag!r} must print one JSON object, got {lines[-1][:80]!r}") from err
    parameters = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    return {"notebook": path.name, **parameters, **result}


def collect(paths: Iterable[str | Path], tag: str = RESULT_TAG) -> list[dict]:
    """:func:`read_result` of every executed notebook: one row per run."""
    return [read_result(path, tag) for path in paths]
