"""The book as Colab users meet it: one repository URL, install cells and launch buttons that agree."""
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import sync_notebooks  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_install_cells_and_colab_metadata_agree_with_config():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_notebooks.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_notebook_installs_from_the_configured_repository_only():
    url, branch = sync_notebooks.repository()
    assert url == CONFIG["repository"]["url"].rstrip("/")
    assert CONFIG["launch_buttons"]["colab_url"], "the Colab launch button is built from repository.url"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        install = [c.source for c in nb.cells if c.cell_type == "code" and sync_notebooks.MARKER in c.source]
        assert len(install) == 1, f"{path.name}: one install cell"
        assert f'REPOSITORY = "{url}"' in install[0] and f"@ git+{{REPOSITORY}}@{branch}" in install[0]
        everything = "".join(c.source for c in nb.cells)
        assert everything.count("github.com") == 1, f"{path.name}: a second repository URL"


def test_one_faiss_per_install():
    for path in NOTEBOOKS:
        source = next(c.source for c in nbformat.read(path, as_version=4).cells if sync_notebooks.MARKER in c.source)
        assert "faiss" not in source.replace("GPU faiss", ""), f"{path.name}: faiss comes through an extra"
        assert source.count("[gpu]") <= 1 and "[cpu]" not in source


def test_chapters_ask_colab_for_a_gpu():
    for path in NOTEBOOKS:
        meta = nbformat.read(path, as_version=4).metadata
        assert "colab" in meta
        if path.name.startswith(("01", "02", "03", "04", "05")):
            assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"] == "T4"
