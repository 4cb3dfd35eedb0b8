"""Chapter code fits the book's code column: no reader scrolls sideways."""
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
# Measured in Chromium on the built book: sphinx-book-theme's widest code block is 754 px of text
# at 8.43 px per character (14 px monospace), 89 characters. Narrower windows wrap the column
# further (76 characters at 1280 px), so this is an upper bound, not a target.
MAX_CHARS = 88


@pytest.mark.parametrize("notebook", sorted(p.name for p in BOOK.glob("*.ipynb")))
def test_no_code_line_is_wider_than_the_code_column(notebook):
    nb = nbformat.read(BOOK / notebook, as_version=4)
    wide = [f"cell {i}: {line}" for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_CHARS]
    assert not wide, f"{notebook}: lines over {MAX_CHARS} characters:\n" + "\n".join(wide)
