"""Derive every notebook's Colab install cell and Colab metadata from _config.yml.

The public repository URL lives in ONE place, ``repository.url`` (and ``repository.branch``) in
``_config.yml``: Jupyter Book builds the launch buttons from it, and this script writes it into the
install cell of every notebook under ``book/``. Run it after changing the URL or merging:

    python tools/sync_notebooks.py          # rewrite the notebooks that disagree
    python tools/sync_notebooks.py --check  # exit 1, naming them, if any disagrees (tests/test_colab.py)

It edits sources and metadata only, never outputs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = '"google.colab" in sys.modules'
# Chapters that train or extract features: Colab should offer them a GPU runtime.
# The results page only reads JSON and draws it.
NO_GPU = {"results.ipynb"}
# The book's code column at a 1280 px window (tests/test_legibility.py checks every code line).
MAX_LINE = 76


def repository(config: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """(url, branch) of the public repository, from _config.yml."""
    repo = yaml.safe_load(config.read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def install_cell(url: str, branch: str, gpu: bool) -> str:
    """The source of the install cell: a no-op outside Colab.

    Every line fits the book's code column (MAX_LINE characters), so the comments sit on lines
    of their own; a URL or branch too long for that is refused rather than written.
    """
    extra, why = ("[gpu]", "with GPU faiss") if gpu else ("", "torch is preinstalled")
    source = (f"import sys\n\n# _config.yml's repository.url\nREPOSITORY = \"{url}\"\n\n"
              f"# Colab: install dctutor ({why})\nif {MARKER}:\n"
              f'    %pip install -q "dctutor{extra} @ git+{{REPOSITORY}}@{branch}"')
    wide = [line for line in source.splitlines() if len(line) > MAX_LINE]
    if wide:
        raise ValueError(f"the install cell would have lines over {MAX_LINE} characters (the book's "
                         f"code column): {wide}; shorten repository.url or repository.branch in "
                         "_config.yml")
    return source


def colab_metadata(gpu: bool) -> dict:
    """Notebook metadata that makes Colab offer a T4 GPU runtime (``gpu``) or a plain one."""
    return {"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"}} if gpu else {
        "colab": {"provenance": []}}


def synced(path: Path, url: str, branch: str) -> str | None:
    """The notebook's text brought in line with _config.yml, or None when it already is."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    gpu = path.name not in NO_GPU
    source = install_cell(url, branch, gpu)
    cells = [c for c in nb.cells if c.cell_type == "code" and MARKER in c.source]
    if len(cells) > 1:
        raise ValueError(f"{path}: {len(cells)} install cells; keep one")
    if cells:
        cells[0].source = source
    else:  # right after the title cell
        nb.cells.insert(1, nbformat.v4.new_code_cell(source))
    nb.metadata.pop("accelerator", None)
    nb.metadata.update(colab_metadata(gpu))
    after = nbformat.writes(nb)
    return None if after == before else after + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a notebook disagrees")
    args = parser.parse_args(argv)
    url, branch = repository()
    stale = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        text = synced(path, url, branch)
        if text is not None:
            stale.append(path.name)
            if not args.check:
                path.write_text(text)
    verb = ("disagree with _config.yml; run python tools/sync_notebooks.py" if args.check
            else "updated")
    print(f"{', '.join(stale)}: {verb}" if stale else f"every notebook installs from {url}@{branch}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
