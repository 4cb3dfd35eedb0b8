"""The chapters' folders resolve the same from any working directory."""
from pathlib import Path

import pytest

from dctutor import paths

REPO = Path(__file__).resolve().parents[1]


def test_from_a_checkout_the_folders_are_the_checkouts(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DCTUTOR_DATA", raising=False)
    assert paths.checkout() == REPO
    assert paths.data_root() == REPO / "data"
    assert paths.results_dir() == REPO / "benchmarks" / "results"
    assert list(paths.results_dir().glob("*.json"))


def test_an_explicit_root_or_the_environment_wins(monkeypatch, tmp_path):
    assert paths.data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("DCTUTOR_DATA", str(tmp_path / "env"))
    assert paths.data_root("") == tmp_path / "env"
    with pytest.raises(TypeError, match="root must be a path"):
        paths.data_root(3)


def test_outside_a_checkout_data_goes_to_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DCTUTOR_DATA", raising=False)
    monkeypatch.setattr(paths, "checkout", lambda: None)
    assert paths.data_root() == tmp_path / "data"
