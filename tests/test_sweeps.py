"""A papermill sweep over a notebook gives one row per run: its parameters and its printed numbers."""
import nbformat
import pytest

from dctutor.sweeps import RESULT_TAG, collect, grid, read_result, run_name, run_sweep


def _notebook(path, tagged=True):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("k: int = 3  # clusters\nseed: int = 0  # seed")
    params.metadata["tags"] = ["parameters"]
    result = nbformat.v4.new_code_cell('import json\nprint("some text first")\n'
                                       'print(json.dumps({"score": k * 10 + seed}))')
    if tagged:
        result.metadata["tags"] = [RESULT_TAG]
    nb.cells = [params, nbformat.v4.new_code_cell("square = k * k"), result]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_grid_is_every_combination():
    assert grid(k=[10, 30], seed=[0, 1, 2])[:2] == [{"k": 10, "seed": 0}, {"k": 10, "seed": 1}]
    assert len(grid(k=[10, 30], seed=[0, 1, 2])) == 6
    assert run_name({"k": 10, "dataset": "folder:/a b"}) == "k=10,dataset=folder__a_b.ipynb"
    with pytest.raises(ValueError, match="k must be a non-empty list"):
        grid(k=10)


@pytest.mark.notebook
def test_a_sweep_produces_one_row_per_run(tmp_path):
    source = _notebook(tmp_path / "chapter.ipynb")
    points = grid(k=[1, 2], seed=[0, 5])
    paths = run_sweep(source, points, tmp_path / "sweep")
    rows = collect(paths)
    assert len(rows) == len(points) == 4
    for point, row in zip(points, rows):
        assert row == {"notebook": run_name(point), **point, "score": point["k"] * 10 + point["seed"]}


def test_an_unexecuted_or_untagged_notebook_is_named(tmp_path):
    with pytest.raises(ValueError, match="printed nothing"):
        read_result(_notebook(tmp_path / "a.ipynb"))
    with pytest.raises(ValueError, match="0 code cells tagged 'sweep-result'"):
        read_result(_notebook(tmp_path / "b.ipynb", tagged=False))
    nb = nbformat.read(tmp_path / "a.ipynb", as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="not json\n")]
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="must print one JSON object"):
        read_result(tmp_path / "a.ipynb")
    with pytest.raises(FileNotFoundError):
        run_sweep(tmp_path / "missing.ipynb", [{}], tmp_path / "out")
