import pytest

from dctutor.device import pick_device
from dctutor.params import check_parameters


def test_accepts_right_types_and_int_for_float():
    check_parameters({"n": 3, "lr": 1, "name": "x", "seeds": [0], "flag": True, "opt": None},
                     {"n": int, "lr": float, "name": str, "seeds": list, "flag": bool, "opt": (int, type(None))})


@pytest.mark.parametrize("values, spec, message", [
    ({"n": "100"}, {"n": int}, r"parameter 'n' must be int, got str '100'; pass a whole number, e.g. -p n 100"),
    ({"n": 1.5}, {"n": int}, "parameter 'n' must be int, got float"),
    ({"n": True}, {"n": int}, "parameter 'n' must be int, got bool"),
    ({"seeds": 0}, {"seeds": list}, "parameter 'seeds' must be list"),
    ({}, {"k": int}, "parameter 'k' is missing"),
])
def test_rejects_wrong_types_with_a_fix(values, spec, message):
    with pytest.raises((TypeError, NameError), match=message):
        check_parameters(values, spec)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        pick_device("gpu0")
    with pytest.raises(TypeError, match="device must be a string"):
        pick_device(3)


from dctutor.params import Param, injected_names  # noqa: E402

SPEC = {"k": Param(int, low=2), "seed": Param(int, low=0), "n_images": Param(int, low=1),
        "width": Param(float, low=0, above=True, example=0.5), "lr": Param(float, low=0, above=True, example=0.05),
        "seeds": Param(list, low=0, min_len=1), "k_sweep": Param(list, low=2),
        "dataset": Param(str, choices=("shapes", "digits", "folder:<path>")), "n_crops": Param(int, choices=(1, 2, 10))}
GOOD = {"k": 10, "seed": 0, "n_images": 100, "width": 0.5, "lr": 0.05, "seeds": [0, 1], "k_sweep": [],
        "dataset": "folder:/data/x", "n_crops": 10}


def test_values_in_range_pass():
    check_parameters(GOOD, SPEC)
    check_parameters(GOOD | {"dataset": "digits", "width": 2, "k_sweep": [2, 30]}, SPEC)


@pytest.mark.parametrize("bad, message", [
    ({"k": 0}, r"parameter 'k'=0 must be >= 2; e.g. -p k 2"),
    ({"seed": -1}, r"parameter 'seed'=-1 must be >= 0; e.g. -p seed 0"),
    ({"n_images": -5}, r"parameter 'n_images'=-5 must be >= 1"),
    ({"width": 0.0}, r"parameter 'width'=0.0 must be > 0; e.g. -p width 0.5"),
    ({"lr": -0.1}, r"parameter 'lr'=-0.1 must be > 0; e.g. -p lr 0.05"),
    ({"seeds": [0, -1]}, r"parameter 'seeds'=\[0, -1\] has entry -1, each must be >= 0; e.g. -y \"seeds: \[0\]\""),
    ({"seeds": []}, r"parameter 'seeds'=\[\] needs at least 1 entries"),
    ({"seeds": ["a"]}, r"parameter 'seeds'=\['a'\] must hold numbers"),
    ({"dataset": "mnist"}, r"parameter 'dataset'='mnist' is not one of shapes, digits, folder:<path>; e.g. -p dataset"),
    ({"dataset": "shape"}, r"'shape' is not one of .*; did you mean 'shapes'\?"),
    ({"dataset": "folder:"}, r"'folder:' is not one of"),
    ({"n_crops": 3}, r"parameter 'n_crops'=3 is not one of 1, 2, 10"),
])
def test_values_out_of_range_name_the_parameter_value_and_an_example(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        check_parameters(GOOD | bad, SPEC)


def test_a_misspelt_injected_name_points_to_the_closest_known_one():
    # IPython's history as papermill leaves it: the parameters cell, then the injected one.
    history = ["", 'k: int = 10  # clusters\nn_images: int = 2000  # images', "# Parameters\nn_image = 100\nk = 5\n"]
    assert injected_names({"In": history}) == {"n_image", "k"}
    with pytest.raises(NameError, match=r"unknown parameter 'n_image'=100 .*did you mean 'n_images'\?"):
        check_parameters(GOOD | {"In": history, "n_image": 100}, SPEC)
    check_parameters(GOOD | {"In": history[:2]}, SPEC)  # nothing injected: nothing to compare
    assert injected_names({"In": ["# Parameters\nthis is not python("]}) == set()


def test_cuda_without_a_gpu_says_how_to_switch_the_colab_runtime(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ValueError, match=r"Runtime > Change runtime type") as info:
        pick_device("cuda")
    assert "\n" not in str(info.value)


def test_a_list_of_whole_numbers_refuses_a_fraction():
    spec = SPEC | {"k_sweep": Param(list, item=int, low=2)}
    with pytest.raises(TypeError, match=r"parameter 'k_sweep'=\[2.5\] must hold only int values, got 2.5"):
        check_parameters(GOOD | {"k_sweep": [2.5]}, spec)
    check_parameters(GOOD | {"k_sweep": [2, 3]}, spec)


RELATIONS = {"k < n_images": "k-means needs more images than clusters",
             "max(k_sweep, default=2) < n_images": "each k of the sweep too"}


@pytest.mark.parametrize("bad, message", [
    ({"k": 100, "n_images": 100},
     r"parameters k=100, n_images=100 must satisfy k < n_images \(k-means needs more images than clusters\); "
     r"change k or n_images"),
    ({"k_sweep": [10, 5000]}, r"k_sweep=\[10, 5000\], n_images=100 must satisfy max\(k_sweep, default=2\)"),
])
def test_a_broken_relation_between_parameters_names_both_values(bad, message):
    with pytest.raises(ValueError, match=message):
        check_parameters(GOOD | bad, SPEC, RELATIONS)
    check_parameters(GOOD, SPEC, RELATIONS)
    check_parameters(GOOD | {"k_sweep": []}, SPEC, RELATIONS)


def test_a_relation_is_checked_only_after_every_type_and_cannot_name_an_unknown_parameter():
    with pytest.raises(TypeError, match="parameter 'k' must be int"):
        check_parameters(GOOD | {"k": "big"}, SPEC, RELATIONS)
    with pytest.raises(NameError, match="relation 'k < n_img' names 'n_img', which is not a parameter"):
        check_parameters(GOOD, SPEC, {"k < n_img": "typo"})


@pytest.mark.parametrize("device", ["mps", "meta", "xpu"])
def test_a_device_dctutor_does_not_support_is_refused_at_the_api(device):
    with pytest.raises(ValueError, match=rf"device='{device}' is not supported by dctutor .*use 'auto', 'cpu' or 'cuda'"):
        pick_device(device)
