"""Type checks for notebook parameters, so a bad papermill ``-p`` fails with a clear message."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_HINTS = {
    int: "a whole number, e.g. -p {name} 100",
    float: "a number, e.g. -p {name} 0.05",
    str: "a string, e.g. -p {name} shapes (or -r {name} VALUE to pass it raw)",
    bool: "True or False, e.g. -p {name} True",
    list: "a list, e.g. -y \"{name}: [0, 1, 2]\"",
}


def _accepts(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_parameters(values: Mapping[str, Any], spec: Mapping[str, type | tuple[type, ...]]) -> None:
    """Check that every parameter in ``spec`` is present in ``values`` with the expected type.

    Chapters call ``check_parameters(globals(), {...})`` right after their parameters cell.
    Papermill parses ``-p n_images 100`` as an int but ``-p n_images 1e3`` as a float and
    ``-r`` values as strings; catching the mismatch here gives one clear line instead of a
    traceback deep inside training. ``None`` is accepted where ``type(None)`` is in the spec.
    """
    for name, expected in spec.items():
        if name not in values:
            raise NameError(f"parameter {name!r} is missing; the parameters cell must define it")
        value = values[name]
        options = expected if isinstance(expected, tuple) else (expected,)
        if any(_accepts(value, t) for t in options):
            continue
        wanted = " or ".join("None" if t is type(None) else t.__name__ for t in options)
        hint = next((_HINTS[t].format(name=name) for t in options if t in _HINTS), "")
        raise TypeError(
            f"parameter {name!r} must be {wanted}, got {type(value).__name__} {value!r}"
            + (f"; pass {hint}" if hint else "")
        )
