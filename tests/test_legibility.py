"""Chapter code and printed outputs fit the book's code column: no reader scrolls sideways."""
from collections import Counter
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(p.name for p in BOOK.glob("*.ipynb"))
# Measured in Chromium on the built book: at a 1280 x 800 window (tests/test_browser.py) the
# code column holds 76 characters of 14 px monospace; wider windows hold more (89 at 1440 px),
# so 76 is what every reader with a laptop-sized window can read without scrolling.
MAX_CHARS = 76


def _code_cells(notebook: str) -> list[tuple[int, nbformat.NotebookNode]]:
    nb = nbformat.read(BOOK / notebook, as_version=4)
    return [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_code_line_is_wider_than_the_code_column(notebook):
    wide = [f"cell {i}: {line}" for i, cell in _code_cells(notebook)
            for line in cell.source.splitlines() if len(line) > MAX_CHARS]
    assert not wide, f"{notebook}: lines over {MAX_CHARS} characters:\n" + "\n".join(wide)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_printed_line_is_wider_than_the_code_column(notebook):
    """Printed text (stdout, and plain-text results that have no HTML or image form) fits too;
    tables are HTML DataFrames, which the browser test checks at 1280 px."""
    wide = []
    for i, cell in _code_cells(notebook):
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stdout":
                text = output.text
            elif output.output_type in ("execute_result", "display_data") and not (
                    {"text/html", "image/png", "image/svg+xml"} & set(output.data)):
                text = output.data.get("text/plain", "")
            else:
                continue
            wide += [f"cell {i}: {line}" for line in text.splitlines() if len(line) > MAX_CHARS]
    assert not wide, f"{notebook}: printed lines over {MAX_CHARS} characters:\n" + "\n".join(wide)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_code_cell_repeats_a_comment_line(notebook):
    """A rewrapping script that adds a comment line above a parameter each time it runs (how
    chapter 3's parameters cell came to say the same thing four times) fails here."""
    repeated = [f"cell {i}: {line!r} x{n}" for i, cell in _code_cells(notebook)
                for line, n in Counter(line.strip() for line in cell.source.splitlines()
                                       if line.strip().startswith("#")).items() if n > 1]
    assert not repeated, f"{notebook}: comment lines repeated in one cell:\n" + "\n".join(repeated)
