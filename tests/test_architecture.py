"""The package's seams, checked by reading its source: core vs labs, one home per idea."""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dctutor"
MODULES = sorted(PACKAGE.rglob("*.py"))
CORE = [p for p in MODULES if "labs" not in p.relative_to(PACKAGE).parts]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``path``, relative imports resolved to dctutor.*"""
    tree = ast.parse(path.read_text())
    package = ".".join(("dctutor", *path.relative_to(PACKAGE).parent.parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part) if node.level else node.module
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_never_imports_labs_figures_or_the_cli(path):
    for module, _ in _imports(path):
        assert not module.startswith("dctutor.labs"), f"{path.name} imports the lab {module}"
        assert not module.startswith("matplotlib"), f"{path.name} draws figures; figures live in dctutor.labs"
        if path.name not in ("cli.py", "__main__.py"):
            assert module != "dctutor.cli", f"{path.name} imports the CLI"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_private_name_and_each_says_its_job(path):
    for module, names in _imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{path.name} imports private {private} from {module}"
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and docstring.splitlines()[0].strip(), f"{path.name} has no one-line summary"


@pytest.mark.parametrize("pattern, home", [
    (r"normalized_mutual_info_score", "metrics.py"),
    (r"np\.exp\(-\(p \* np\.log\(p\)\)", "metrics.py"),
    (r"average_precision_score\(", "metrics.py"),
    (r"\* 0\.01", "models/__init__.py"),
    (r"< SMALL_INPUT_BELOW|< 128\b", "models/__init__.py"),
    (r"torch\.load\(", "runs.py"),
    (r"def jsonable", "runs.py"),
])
def test_each_idea_has_one_home(pattern, home):
    homes = [str(p.relative_to(PACKAGE)) for p in MODULES if re.search(pattern, p.read_text())]
    assert homes == [home], f"{pattern!r} is defined in {homes}, expected only {home}"


def test_benchmarks_and_chapters_rebuild_runs_through_the_package():
    root = PACKAGE.parent
    for path in [*root.glob("benchmarks/*.py"), *root.glob("book/*.ipynb")]:
        text = path.read_text()
        assert "torch.load(" not in text, f"{path.name} loads a run by hand; use dctutor.runs.load_model"
        assert "image_size < 128" not in text, f"{path.name} repeats the small-input rule; use small_input_for"


def test_no_merge_conflict_markers_in_tracked_files():
    import subprocess

    root = PACKAGE.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    marker = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.M)
    found = [name for name in files if (root / name).is_file() and (root / name).suffix != ".png"
             and marker.search((root / name).read_text(errors="ignore"))]
    assert not found, f"merge conflict markers left in {found}"
