"""The package as Colab and pip users get it: a wheel, installed outside the checkout.

Builds the wheel, installs it (non-editable, --no-deps) into a fresh venv that sees the current
environment's packages (torch is not reinstalled) but not the checkout, and runs chapter 1 and the
results page with papermill from a temporary directory. Catches paths that only work from
``book/`` in a checkout and files the wheel forgets.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.wheel


def _run(cmd, cwd, env, timeout=300):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A venv holding only the dctutor wheel; torch & co. come from the current environment."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so that the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dctutor", src / "dctutor", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "benchmarks" / "results", src / "benchmarks" / "results")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", src, "-w", tmp / "dist"],
         tmp, env)
    wheel = next((tmp / "dist").glob("dctutor-*.whl"))
    _run([sys.executable, "-m", "venv", "--system-site-packages", tmp / "venv"], tmp, env)
    python = tmp / "venv" / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).strip())
    # --system-site-packages exposes the base interpreter's packages, not this venv's: a .pth adds
    # this environment's site-packages after the new venv's own, so the wheel wins over anything there.
    (site / "outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp, env)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return python, site, env, tmp


def test_the_wheel_is_what_gets_imported(venv):
    python, site, env, tmp = venv
    where = _run([python, "-c", "import dctutor, dctutor.paths as p; print(dctutor.__file__, p.checkout())"],
                 tmp, env).split()
    assert Path(where[0]).is_relative_to(site), f"dctutor imported from {where[0]}, not the wheel"
    assert where[1] == "None"
    assert ROOT not in Path(where[0]).parents


def test_chapter_1_and_the_results_page_run_outside_the_checkout(venv):
    python, site, env, tmp = venv
    work = tmp / "reader"  # a reader's working directory, far from the checkout
    work.mkdir()
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import dctutor; print(dctutor.__file__)")])
    nbformat.write(probe, work / "probe.ipynb")
    papermill = [python, "-m", "papermill", "-k", "python3", "--no-progress-bar"]
    _run(papermill + ["probe.ipynb", "probe_out.ipynb"], work, env)
    kernel_dctutor = nbformat.read(work / "probe_out.ipynb", as_version=4).cells[0].outputs[0].text.strip()
    assert Path(kernel_dctutor).is_relative_to(site), f"the kernel imported dctutor from {kernel_dctutor}"
    _run(papermill + [ROOT / "book" / "01_sobel.ipynb", "01.ipynb", "-p", "n_images", "1500", "-p", "k", "10",
                      "-y", "seeds: [0, 1]"], work, env)
    _run(papermill + [ROOT / "book" / "results.ipynb", "results.ipynb"], work, env)
    for name in ("01.ipynb", "results.ipynb"):
        nb = nbformat.read(work / name, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew nothing"
