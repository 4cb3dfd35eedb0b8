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


def test_cuda_without_a_gpu_says_how_to_switch_the_colab_runtime(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ValueError, match=r"Runtime > Change runtime type") as info:
        pick_device("cuda")
    assert "\n" not in str(info.value)
