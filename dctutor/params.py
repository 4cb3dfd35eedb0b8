"""Checks for notebook parameters, so a bad papermill ``-p`` fails in the cell after the parameters
with one clear line, before any work: a wrong type, a value out of range, a misspelt name."""
from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_HINTS = {
    int: "a whole number, e.g. -p {name} 100",
    float: "a number, e.g. -p {name} 0.05",
    str: "a string, e.g. -p {name} shapes (or -r {name} VALUE to pass it raw)",
    bool: "True or False, e.g. -p {name} True",
    list: "a list, e.g. -y \"{name}: [0, 1, 2]\"",
}


@dataclass(frozen=True)
class Param:
    """The type of a parameter and the values it may take, declared in a chapter's spec.

    ``low``/``high`` bound a number, or every entry of a list (``above=True``: ``low`` itself is
    excluded, as for a learning rate); ``item`` is the type every entry of a list must have;
    ``min_len`` is the fewest entries a list may have; ``choices``
    are the allowed values, where a choice ending in ``<path>`` (``"folder:<path>"``) allows any
    value that starts with what comes before it. ``example`` is a valid value for the message
    (default: the bound, or the first choice). For instance::

        {"k": Param(int, low=2), "lr": Param(float, low=0, above=True, example=0.05),
         "seeds": Param(list, item=int, low=0, min_len=1), "dataset": Param(str, choices=DATASETS)}
    """

    type: type | tuple[type, ...]
    low: float | None = None
    high: float | None = None
    above: bool = False
    item: type | None = None
    min_len: int = 0
    choices: Iterable[Any] | None = None
    example: Any = None


def _accepts(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _how_to_pass(name: str, value: Any) -> str:
    return f"-y \"{name}: {value!r}\"" if isinstance(value, list) else f"-p {name} {value}"


def _matches(value: Any, choice: Any) -> bool:
    if isinstance(choice, str) and choice.endswith("<path>") and isinstance(value, str):
        prefix = choice[:-len("<path>")]
        return value.startswith(prefix) and bool(value[len(prefix):].strip())
    return value == choice and type(value) is type(choice)


def _out_of_range(param: Param, number: float) -> str:
    if param.low is not None and (number < param.low or (param.above and number == param.low)):
        return f"{'>' if param.above else '>='} {param.low}"
    if param.high is not None and number > param.high:
        return f"<= {param.high}"
    return ""


def _check_value(name: str, value: Any, param: Param) -> None:
    choices = list(param.choices) if param.choices is not None else None
    example = param.example
    if example is None:
        example = (choices[0] if choices else param.low + (1 if param.above else 0) if param.low is not None
                   else param.high)
    if isinstance(value, list) and example is not None and not isinstance(example, list):
        example = [example]
    hint = f"; e.g. {_how_to_pass(name, example)}" if example is not None else ""
    if choices is not None and value is not None and not any(_matches(value, c) for c in choices):
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"parameter {name!r}={value!r} is not one of {', '.join(map(str, choices))}{guess}"
                         + ("" if guess else hint))
    if isinstance(value, list) and len(value) < param.min_len:
        raise ValueError(f"parameter {name!r}={value!r} needs at least {param.min_len} entries{hint}")
    for entry in value if isinstance(value, list) else [value]:
        if isinstance(value, list) and param.item is not None and not _accepts(entry, param.item):
            raise TypeError(f"parameter {name!r}={value!r} must hold only {param.item.__name__} values, "
                            f"got {entry!r}{hint}")
        if isinstance(entry, bool) or not isinstance(entry, (int, float)):
            if isinstance(value, list) and (param.low is not None or param.high is not None):
                raise TypeError(f"parameter {name!r}={value!r} must hold numbers, got {entry!r}{hint}")
            continue
        bound = _out_of_range(param, entry)
        if bound:
            which = f" has entry {entry!r}, each must be" if isinstance(value, list) else " must be"
            raise ValueError(f"parameter {name!r}={value!r}{which} {bound}{hint}")


def injected_names(values: Mapping[str, Any]) -> set[str]:
    """The names papermill assigned in its injected cell, read from IPython's input history.

    Papermill only warns about a parameter the notebook does not declare and injects it anyway, so
    a misspelt ``-p n_image 100`` would run the chapter at the default ``n_images``. The kernel is
    not told which names were injected, but the injected cell is the last input in ``In`` (IPython's
    history, a global of every notebook) that starts with papermill's ``# Parameters`` comment; its
    assignments are parsed, not executed. Outside IPython or papermill this is the empty set.
    """
    history = values.get("In")
    if not isinstance(history, list):
        return set()
    source = next((cell for cell in reversed(history) if isinstance(cell, str)
                   and cell.lstrip().startswith("# Parameters")), None)
    try:
        tree = ast.parse(source or "")
    except SyntaxError:
        return set()
    return {target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)}


def check_parameters(values: Mapping[str, Any], spec: Mapping[str, type | tuple[type, ...] | Param],
                     relations: Mapping[str, str] | None = None) -> None:
    """Check a chapter's parameters against ``spec``: names, types, ranges, and the relations
    between them.

    Chapters call ``check_parameters(globals(), {...})`` right after their parameters cell. A spec
    entry is a type, a tuple of types (``(int, type(None))`` accepts None) or a :class:`Param` that
    also says which values are valid. Raises, naming the parameter, the value and a valid example:

    * ``NameError`` for a parameter papermill injected that ``spec`` does not know (see
      :func:`injected_names`), with the closest known name, or for one the notebook lacks;
    * ``TypeError`` for a wrong type: papermill parses ``-p n_images 100`` as an int but
      ``-p n_images 1e3`` as a float and ``-r`` values as strings;
    * ``ValueError`` for a value out of range or not among the choices (``k=0``, ``seed=-1``), or
      for values that break one of ``relations``.

    ``relations`` maps a Python expression over the parameters to the reason the chapter needs it,
    e.g. ``{"k < n_images": "k-means needs more images than clusters"}``. They are checked once
    every parameter has its type, so a chapter never fails minutes later, in another cell, on a
    combination each value of which was fine alone.
    """
    unknown = sorted(injected_names(values) - set(spec))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(spec), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise NameError(f"unknown parameter {name!r}={values.get(name)!r} (this chapter would ignore it); "
                        f"{guess}the parameters are {', '.join(spec)}")
    for name, expected in spec.items():
        if name not in values:
            raise NameError(f"parameter {name!r} is missing; the parameters cell must define it")
        param = expected if isinstance(expected, Param) else Param(expected)
        value = values[name]
        options = param.type if isinstance(param.type, tuple) else (param.type,)
        if not any(_accepts(value, t) for t in options):
            wanted = " or ".join("None" if t is type(None) else t.__name__ for t in options)
            hint = next((_HINTS[t].format(name=name) for t in options if t in _HINTS), "")
            raise TypeError(
                f"parameter {name!r} must be {wanted}, got {type(value).__name__} {value!r}"
                + (f"; pass {hint}" if hint else "")
            )
        _check_value(name, value, param)
    for expression, why in (relations or {}).items():
        _check_relation(expression, why, {name: values[name] for name in spec})


_SAFE_BUILTINS = {"all": all, "any": any, "len": len, "max": max, "min": min, "sum": sum}


def _check_relation(expression: str, why: str, values: Mapping[str, Any]) -> None:
    nodes = [node for node in ast.walk(ast.parse(expression, mode="eval")) if isinstance(node, ast.Name)]
    names = [node.id for node in sorted(nodes, key=lambda node: node.col_offset)]
    unknown = sorted({n for n in names if n not in values and n not in _SAFE_BUILTINS})
    if unknown:
        raise NameError(f"relation {expression!r} names {unknown[0]!r}, which is not a parameter")
    if eval(expression, {"__builtins__": _SAFE_BUILTINS}, dict(values)):  # the chapter's own text, not input
        return
    used = list(dict.fromkeys(n for n in names if n in values))
    shown = ", ".join(f"{n}={values[n]!r}" for n in used)
    raise ValueError(f"parameters {shown} must satisfy {expression} ({why}); change "
                     + " or ".join(used))
