"""Strip what changes on every run from executed chapters, so committed notebooks diff cleanly.

Removes papermill's per-cell and per-notebook timestamps and durations, and the text progress
bars tqdm prints to stderr (they are useful live, noise in the rendered book).
"""
from __future__ import annotations

import sys

import nbformat

_TIMING = ("start_time", "end_time", "duration")


def _is_progress_bar(output: dict) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr" and (
        "it/s]" in output.get("text", "") or "s/it]" in output.get("text", "") or "%|" in output.get("text", ""))


def clean(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for key in _TIMING:
        nb.metadata.get("papermill", {}).pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for key in _TIMING:
            cell.metadata.get("papermill", {}).pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_progress_bar(o)]
    nbformat.write(nb, path)


if __name__ == "__main__":
    for notebook in sys.argv[1:]:
        clean(notebook)
