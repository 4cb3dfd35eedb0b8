"""Input checks shared by every public function: one idiom, one message style (name, value, fix).

In the spirit of scikit-learn's parameter validation: each helper checks one kind of value and
raises ``TypeError`` for a wrong type or ``ValueError`` for a wrong value, with a message that
names the parameter, repeats what was given and shows a valid example.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, low: int | None = None, example: str = "", high: int | None = None) -> int:
    """``value`` as an int, or an error naming ``name`` when it is not a whole number in [low, high]."""
    hint = f"; e.g. {example}" if example else ""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}){hint}")
    if low is not None and value < low:
        raise ValueError(f"{name}={value} must be at least {low}{hint}")
    if high is not None and value > high:
        raise ValueError(f"{name}={value} must be at most {high}{hint}")
    return int(value)


def check_float(value: Any, name: str, low: float | None = None, example: str = "", *, high: float | None = None,
                strict_low: bool = False, strict_high: bool = False) -> float:
    """``value`` as a finite float in the given range (bounds strict when asked), or a clear error."""
    hint = f"; e.g. {example}" if example else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){hint}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}={value} must be a finite number{hint}")
    if low is not None and (number < low or (strict_low and number == low)):
        raise ValueError(f"{name}={value} must be {'>' if strict_low else '>='} {low}{hint}")
    if high is not None and (number > high or (strict_high and number == high)):
        raise ValueError(f"{name}={value} must be {'<' if strict_high else '<='} {high}{hint}")
    return number


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is True or False, else a ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` that lists them."""
    options = list(choices)
    if not any(value == option and type(value) is type(option) for option in options):
        raise ValueError(f"{name}={value!r} is unknown; use one of {', '.join(map(repr, options))}")
    return value


def check_labels(labels: Sequence[int] | np.ndarray | torch.Tensor, name: str = "labels") -> np.ndarray:
    """Cluster ids as a non-empty 1-D int64 array of values >= 0 (one per image)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    elif not isinstance(labels, (np.ndarray, Sequence)) or isinstance(labels, (str, bytes)):
        raise TypeError(f"{name} must be a 1-D sequence, numpy array or torch tensor of cluster ids, "
                        f"got {type(labels).__name__}; e.g. {name}=kmeans(...).labels")
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one cluster id per image), got shape {array.shape}; "
                         f"flatten it, e.g. {name}.reshape(-1)")
    if len(array) == 0:
        raise ValueError(f"{name} is empty; pass one cluster id per image of the data set")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer cluster ids, got dtype {array.dtype}; "
                        f"convert them, e.g. {name}.astype(np.int64)")
    if array.min() < 0:
        raise ValueError(f"{name} must be cluster ids >= 0, got {array.min()}; "
                         f"drop or relabel the images marked negative")
    return array.astype(np.int64, copy=False)


def check_matrix(values: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """A finite float32 ``(n_samples, n_features)`` tensor, n_samples >= 1, from an array or tensor."""
    if not isinstance(values, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(values).__name__}")
    # torch cannot wrap numpy views with negative strides (e.g. x[::-1]); copy only those.
    matrix = torch.as_tensor(np.ascontiguousarray(values) if isinstance(values, np.ndarray) else values).detach()
    if matrix.ndim != 2 or len(matrix) == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n_samples, n_features), got shape "
                         f"{tuple(matrix.shape)}; flatten each sample, e.g. {name}.reshape(len({name}), -1)")
    if matrix.dtype.is_complex or matrix.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {matrix.dtype}")
    matrix = matrix.to(torch.float32)
    bad = int((~torch.isfinite(matrix)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} NaN or infinite values; remove or fix them before clustering")
    return matrix
