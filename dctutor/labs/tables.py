"""Tables the chapters show as HTML (pandas), sized for the book's column: intervals as text."""
from __future__ import annotations

import math

import pandas as pd

from ..evidence import verdict


def interval_text(interval: dict, scale: float = 100, digits: int = 1) -> str:
    """``"+6.1 [+4.0, +8.2]"``: an interval's mean and 95 % bounds times ``scale``."""
    mean, low, high = (scale * interval[key] for key in ("mean", "low", "high"))
    if not math.isfinite(low):
        return f"{mean:+.{digits}f} (1 seed)"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def interval_frame(summary: dict, *, means: dict[str, str] | None = None, intervals: dict[str, str] | None = None,
                   verdict_on: str | None = None, scale: float = 100, digits: int = 1, index: str = "layer",
                   words: tuple[str, str, str] = ("higher", "lower", "within noise")) -> pd.DataFrame:
    """One row per entry of ``summary`` (``{row: {column: t_interval}}``, e.g.
    :func:`dctutor.evidence.summarise_seeds`): the mean of each column of ``means`` (column ->
    header), each column of ``intervals`` as "mean [low, high]", and, for ``verdict_on``, the word its
    interval allows (``words``: above 0, below 0, containing 0)."""
    rows = []
    for name, cells in summary.items():
        row = {index: name}
        row |= {title: round(scale * cells[key]["mean"], digits) for key, title in (means or {}).items()}
        row |= {title: interval_text(cells[key], scale, digits) for key, title in (intervals or {}).items()}
        if verdict_on is not None:
            row["verdict"] = verdict(cells[verdict_on], *words)
        rows.append(row)
    return pd.DataFrame(rows).set_index(index)


def verdict_lines(summary: dict, *, label=str, lead_prefix: str = "", check_lines: int | None = None) -> list[str]:
    """The lines under a sweep's table (:func:`dctutor.labs.replicates.summarise_sweep`'s
    ``summary``): each setting's did-it-train verdict (its first ``check_lines`` lines, all when
    None), the best setting's lead over each other one (paired by seed, with the word its interval
    allows), and the settings left out for not training. ``label`` names a setting in the text."""
    lines = [f"{label(name)}:\n  " + "\n".join(cells["check"]["line"].splitlines()[:check_lines])
             for name, cells in summary["per"].items()]
    lines += [f"{lead_prefix}{label(summary['best'])} minus {label(name)}:\n  {interval_text(lead)} points, "
              f"{verdict(lead, 'ahead', 'behind')}" for name, lead in summary["lead"].items()]
    if summary["left_out"]:
        lines.append(f"did not train, so left out: {summary['left_out']}")
    return lines


def sweep_report(summary: dict, *, index: str = "k", layer: str = "conv5") -> tuple[str, pd.DataFrame]:
    """What a chapter prints for :func:`dctutor.labs.replicates.summarise_sweep`'s ``summary``:
    :func:`verdict_lines` with each setting named ``index = value``, and a table of the NMI, the
    mean accuracy of ``layer`` and its gain over the random twins, one row per setting."""
    lines = verdict_lines(summary, label=lambda name: f"{index} = {name}", lead_prefix=f"{layer}, ", check_lines=1)
    frame = interval_frame(summary["per"], means={"nmi": "NMI"}, scale=1, digits=3, index=index).join(
        interval_frame(summary["per"], means={"trained": f"{layer} %"}, intervals={"gain": "gain [95 % CI]"},
                       verdict_on="gain", index=index))
    return "\n".join(lines), frame
