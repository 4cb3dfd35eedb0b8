"""Run every chapter through papermill with small, typed parameters, as CI and users do."""
import ast
from pathlib import Path

import nbformat
import papermill as pm
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(p.name for p in BOOK.glob("[0-9][0-9]_*.ipynb"))

# Small parameters per chapter: enough to exercise every cell, small enough for CI.
SMALL = {
    "01_sobel.ipynb": {"n_images": 1500, "seeds": [0, 1], "k": 10},
    "02_kmeans.ipynb": {"n_images": 500, "k": 30, "n_iter": 10},
    "03_sampling.ipynb": {"n_images": 1500, "largest": 200, "test_per_cluster": 20, "epochs": 6, "seeds": [0, 1],
                          "dc_images": 200, "dc_k": 20, "dc_epochs": 2, "dc_passes": 2, "dc_seeds": [0]},
    "04_deepcluster.ipynb": {"n_images": 400, "n_test": 200, "epochs": 2, "train_passes": 2, "k": 20,
                             "rgb_epochs": 1, "k_sweep": [10, 20], "sweep_epochs": 1, "probe_epochs": 3, "save_to": "",
                             "replicates": []},
    "05_voc_transfer.ipynb": {"n_train": 100, "image_size": 32, "pretrain_images": 500, "pretrain_epochs": 2,
                              "k": 20, "epochs_fc": 5, "epochs_all": 1, "n_crops": 2, "random_rgb": False, "checkpoint": ""},
    "06_what_makes_it_work.ipynb": {"n_images": 300, "n_test": 150, "k": 10, "ia_ks": [5, 10], "ia_seeds": 4,
                                    "n_runs": 3, "epochs": 2, "train_passes": 1, "k_sweep": [5, 10],
                                    "halt_sweep": [1], "probe_epochs": 2, "n_seeds": 2},
    "07_after_deepcluster.ipynb": {"n_images": 200, "n_test": 100, "k": 10, "epochs": 2, "train_passes": 1,
                                   "seeds": [0], "probe_epochs": 2},
}

# The parameter sets of each chapter's "Try it" exercises (one dict per exercise that changes a
# parameter), run on top of the chapter's SMALL parameters so that every exercise keeps working.
# A chapter that ends with a "## Try it" section needs an entry here (see the test below).
EXERCISES = {
    "01_sobel.ipynb": [{"n_images": 100}],
    "02_kmeans.ipynb": [{"seed": 1}],
    "03_sampling.ipynb": [{"zipf_exponent": 1.0}],
    "04_deepcluster.ipynb": [{"epochs": 1}],
    "05_voc_transfer.ipynb": [{"n_crops": 1}],
    "06_what_makes_it_work.ipynb": [{"ia_ks": [5, 10, 20]}],
    "07_after_deepcluster.ipynb": [{"sinkhorn_iters": 1}],
}
TRY_IT = "## Try it"


def _run(chapter: str, tmp_path: Path, parameters: dict) -> nbformat.NotebookNode:
    out = tmp_path / chapter
    pm.execute_notebook(str(BOOK / chapter), str(out), parameters=parameters, cwd=str(BOOK),
                        kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


def test_every_chapter_has_small_parameters():
    assert CHAPTERS, "no chapter found under book/"
    assert set(CHAPTERS) == set(SMALL)


def test_every_chapter_with_exercises_lists_their_parameters():
    """Chapters whose last section is "Try it" and the chapters of EXERCISES are the same, and every
    exercise sets parameters the chapter declares."""
    with_try_it = set()
    for chapter in CHAPTERS:
        nb = nbformat.read(BOOK / chapter, as_version=4)
        markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
        if any(TRY_IT in text for text in markdown):
            assert markdown[-1].lstrip().startswith(TRY_IT), f"{chapter}: 'Try it' is the last section"
            with_try_it.add(chapter)
    assert with_try_it == set(EXERCISES), "a chapter with a 'Try it' section needs an EXERCISES entry"
    for chapter, exercises in EXERCISES.items():
        declared = set(pm.inspect_notebook(str(BOOK / chapter)))
        assert exercises, f"{chapter}: at least one exercise runs as a parameter set"
        for exercise in exercises:
            assert set(exercise) <= declared, f"{chapter}: {exercise} sets an unknown parameter"


def _runs_clean_with_plots(nb: nbformat.NotebookNode) -> None:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2, "a chapter shows its results as plots"


# Chapters 4 and 5 run together in test_chapter_5_transfers_the_network_chapter_4_saved.
ALONE = [(chapter, exercise) for chapter in CHAPTERS if chapter not in ("04_deepcluster.ipynb", "05_voc_transfer.ipynb")
         for exercise in EXERCISES.get(chapter, [{}])]


@pytest.mark.notebook
@pytest.mark.parametrize("chapter, exercise", ALONE, ids=[chapter for chapter, _ in ALONE])
def test_chapter_runs_with_small_parameters_and_each_exercise(chapter, exercise, tmp_path):
    """Each chapter runs to the end on its SMALL parameters with one "Try it" exercise applied (the
    plain SMALL run is the same chapter with one parameter less changed, so it is not run again).
    An exercise's parameters are outside the range a claim was checked for: the chapter prints the
    claim's verdict and goes on, it never stops."""
    _runs_clean_with_plots(_run(chapter, tmp_path, SMALL[chapter] | exercise))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_parameters_are_documented(chapter):
    params = pm.inspect_notebook(str(BOOK / chapter))
    assert params, f"{chapter} has no cell tagged 'parameters'"
    undocumented = [name for name, p in params.items() if not p["help"]]
    assert not undocumented, f"{chapter}: parameters without a '# help' comment: {undocumented}"
    untyped = [name for name, p in params.items() if p["inferred_type_name"] in ("None", None)]
    assert not untyped, f"{chapter}: parameters without a type annotation (papermill shows Unknown type): {untyped}"


@pytest.mark.notebook
def test_wrong_parameter_type_fails_fast_with_a_clear_message(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="parameter 'n_images' must be int, got str"):
        _run("01_sobel.ipynb", tmp_path, {"n_images": "100"})


@pytest.mark.notebook
@pytest.mark.parametrize("parameters, message", [
    ({"k": 0}, r"ValueError: parameter 'k'=0 must be >= 2; e.g. -p k 2"),
    ({"n_image": 100}, r"NameError: unknown parameter 'n_image'=100 .*did you mean 'n_images'\?"),
])
def test_bad_parameter_value_or_name_fails_in_the_check_cell(parameters, message, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match=message) as error:
        _run("01_sobel.ipynb", tmp_path, {"n_images": 200} | parameters)
    assert "check_parameters(globals()" in error.value.source, "it fails before any work"


@pytest.mark.notebook
def test_chapter_5_transfers_the_network_chapter_4_saved(tmp_path):
    """Chapters 4 and 5 on their SMALL parameters and exercises: 4 saves its network, 5 loads it."""
    saved = tmp_path / "chapter4"
    ch4, ch5 = "04_deepcluster.ipynb", "05_voc_transfer.ipynb"
    _runs_clean_with_plots(_run(ch4, tmp_path, SMALL[ch4] | EXERCISES[ch4][0] | {"save_to": str(saved)}))
    assert (saved / "checkpoint.pt").is_file()
    # its own data_root: the nbval run of chapter 5 may be writing the checkout's stand-in meanwhile
    nb = _run(ch5, tmp_path, SMALL[ch5] | EXERCISES[ch5][0]
              | {"checkpoint": str(saved), "data_root": str(tmp_path / "data")})
    _runs_clean_with_plots(nb)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "loaded chapter 4's network from" in text and "NMI(clusters, shape labels)" not in text


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_nbval_checks_are_tags_readers_never_see(chapter):
    nb = nbformat.read(BOOK / chapter, as_version=4)
    checked = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked, f"{chapter}: no cell is compared by nbval"
    assert not [c for c in nb.cells if "NBVAL_" in c.source], f"{chapter}: nbval markers belong in cell tags"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_check_cell_declares_every_parameter_and_accepts_defaults_and_small_ones(chapter):
    nb = nbformat.read(BOOK / chapter, as_version=4)
    parameters = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    check = next(c.source for c in nb.cells if c.cell_type == "code" and "check_parameters(" in c.source and "globals()" in c.source)
    assert len(check.splitlines()) <= 15
    for overrides in ({}, SMALL[chapter]):
        namespace: dict = {}
        exec(parameters, namespace)
        namespace.update(overrides)
        exec(check, namespace)  # raises on a value out of range
    call = next(node for node in ast.walk(ast.parse(check)) if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "check_parameters")
    declared = {key.value for key in call.args[1].keys}
    assert declared == set(pm.inspect_notebook(str(BOOK / chapter))), "the check must know every parameter"


@pytest.mark.parametrize("chapter, overrides, error, message", [
    ("02_kmeans.ipynb", {"k": 600, "n_images": 500}, ValueError, r"k=600, n_images=500 must satisfy k < n_images"),
    ("05_voc_transfer.ipynb", {"image_size": 100000}, ValueError, r"'image_size'=100000 must be <= 256"),
    ("05_voc_transfer.ipynb", {"k": 5000}, ValueError, r"k=5000, pretrain_images=3000 must satisfy"),
    ("06_what_makes_it_work.ipynb", {"k_sweep": [5000]}, ValueError, r"k_sweep=\[5000\].* must satisfy"),
    ("06_what_makes_it_work.ipynb", {"ia_ks": [2.5]}, TypeError, r"'ia_ks'=\[2.5\] must hold only int"),
    ("06_what_makes_it_work.ipynb", {"k": 1000}, ValueError, r"k=1000, .*n_images=1000 must satisfy"),
])
def test_check_cell_refuses_parameters_that_clash(chapter, overrides, error, message):
    """A combination of values, each fine alone, that a later cell could not run fails in the check
    cell, naming the values the reader passed."""
    nb = nbformat.read(BOOK / chapter, as_version=4)
    parameters = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    check = next(c.source for c in nb.cells if c.cell_type == "code" and "check_parameters(" in c.source
                 and "globals()" in c.source)
    namespace: dict = {}
    exec(parameters, namespace)
    namespace.update(overrides)
    with pytest.raises(error, match=message):
        exec(check, namespace)
