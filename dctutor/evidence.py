"""When a number decides something: intervals, verdicts worded by them, and a did-it-train check.

A comparison in the book ("X beats Y", "Z does not matter") is only as good as two things this
module measures:

* its **noise**: :func:`t_interval` over seeds (Student's t, for the mean of a few independent
  runs), or :func:`bootstrap_interval` over test images when one run is all the budget allows
  (a paired bootstrap: both models are scored on the same resampled images);
* whether the runs it compares **trained at all**: :func:`did_it_train` looks at the final
  pseudo-label loss against log k (the loss of a classifier that knows nothing about k balanced
  clusters) and at the trained-minus-random probe gap with its interval. A run that did not learn
  decides nothing, whatever its numbers say.

:func:`verdict` turns an interval into the words a sentence may use, so the text is chosen by the
numbers and never typed by hand.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from scipy import stats

from .validation import check_float, check_int

# A run "trained" when its final loss is below this share of log k: 0.9 log k is the loss of a
# classifier that puts about twice the uniform probability on the right cluster (for k = 100).
LOSS_SHARE = 0.9


def t_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean of ``values`` (one per seed) with its two-sided Student-t interval at ``level``.

    Returns ``{"mean", "low", "high", "half", "n", "method"}``. With one value the bounds are NaN:
    one seed says nothing about the seed-to-seed spread. Identical values give a zero-width interval.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"values must be a non-empty 1-d list of finite numbers (one per seed), got {values!r}")
    check_float(level, "level", 0, "level=0.95", high=1, strict_low=True, strict_high=True)
    mean = float(x.mean())
    if len(x) < 2:
        half = float("nan")
    else:
        half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "half": half, "n": len(x),
            "method": f"t over {len(x)} seed{'' if len(x) == 1 else 's'}"}


def bootstrap_interval(correct_a: Sequence[bool], correct_b: Sequence[bool] | None = None, *,
                       level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy of ``correct_a`` (one 0/1 per test image), or the paired difference
    accuracy(a) - accuracy(b) on the same images, with a percentile bootstrap interval.

    Resampling the test images answers "would another test set of this size agree?"; it ignores the
    training noise that :func:`t_interval` over seeds captures, so prefer seeds where affordable.
    """
    a = np.asarray(correct_a, dtype=np.float64)
    if a.ndim != 1 or len(a) == 0:
        raise ValueError("correct_a must be a non-empty 1-d array of 0/1, one per test image")
    if correct_b is not None:
        b = np.asarray(correct_b, dtype=np.float64)
        if b.shape != a.shape:
            raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must score the same test images")
        a = a - b
    check_float(level, "level", 0, "level=0.95", high=1, strict_low=True, strict_high=True)
    check_int(n_boot, "n_boot", 100, "n_boot=2000")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return {"mean": float(a.mean()), "low": float(low), "high": float(high), "half": float((high - low) / 2),
            "n": len(a), "method": f"bootstrap over {len(a)} test images"}


def verdict(interval: dict, better: str = "higher", worse: str = "lower", same: str = "within noise") -> str:
    """The word an interval allows: ``better`` when it lies above 0, ``worse`` below 0, ``same``
    when it contains 0 (or cannot be computed, e.g. from one seed)."""
    low, high = interval["low"], interval["high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return same
    if low > 0:
        return better
    if high < 0:
        return worse
    return same


def format_interval(interval: dict, scale: float = 1.0, digits: int = 1) -> str:
    """``"+6.1 [+4.0, +8.2] (t over 3 seeds)"``: the mean and bounds times ``scale``."""
    m, lo, hi = (scale * interval[key] for key in ("mean", "low", "high"))
    bounds = f"[{lo:+.{digits}f}, {hi:+.{digits}f}]" if math.isfinite(lo) else "[no interval]"
    return f"{m:+.{digits}f} {bounds} ({interval['method']})"


def did_it_train(final_losses: Sequence[float] | None, k: int, gaps: Sequence[float] | dict | None) -> dict:
    """Judge a setting from its runs: did the network learn anything worth comparing?

    ``final_losses`` are the last epoch's pseudo-label losses of each run (one per seed), ``k`` the
    number of clusters, ``gaps`` either the trained-minus-random probe accuracies (one per seed,
    summarised by :func:`t_interval`) or an interval already computed (e.g. a bootstrap).
    The loss must sit below ``LOSS_SHARE`` x log k in every run (the network fits its
    pseudo-labels), and the gap's interval must lie above 0 (the features beat a random twin's).
    Either may be None when a saved study did not record it; the verdict then says what cannot be
    told, and ``trained`` is False: an unjudged run decides nothing either.
    Returns ``{"trained", "fits_labels", "beats_random", "loss_share", "gap", "line"}`` (None for
    what was not recorded); ``line`` is what the book prints (three short lines, to fit its column).
    """
    check_int(k, "k", 2, "k=100")
    share = fits = gap = beats = None
    if final_losses is not None:
        losses = np.asarray(final_losses, dtype=np.float64)
        if losses.ndim != 1 or len(losses) == 0 or not np.isfinite(losses).all():
            raise ValueError(f"final_losses must be a non-empty list of finite losses (one per run), "
                             f"got {final_losses!r}")
        share = float(losses.max() / math.log(k))
        fits = share < LOSS_SHARE
    if gaps is not None:
        gap = gaps if isinstance(gaps, dict) else t_interval(gaps)
        if math.isfinite(gap["low"]):
            beats = verdict(gap) == "higher"
    trained = bool(fits and beats)
    if trained:
        why = "trained"
    elif fits is False:
        why = "did NOT train: its loss stayed near log k, so its numbers decide nothing"
    elif beats is False:
        why = "features not above a random twin's" + ("" if fits else " (loss not recorded)")
    elif gap is not None:
        why = "cannot tell: one run gives no interval on its gap over random"
    else:
        missing = [what for what, value in (("loss", fits), ("random twin", gap)) if value is None]
        why = f"cannot tell: no {' and no '.join(missing)} recorded"
    parts = [why]
    if share is not None:
        parts.append(f"loss {losses.max():.2f} = {share:.2f} x log k ({math.log(k):.2f})")
    if gap is not None:
        parts.append(f"best layer over random {format_interval(gap, 100)} points")
    line = "\n  ".join(parts)
    return {"trained": trained, "fits_labels": fits, "beats_random": beats, "loss_share": share, "gap": gap,
            "line": line}


def best_against_best(probe: list[dict], prefix: str = "conv") -> float:
    """The best trained layer's accuracy minus the best random layer's, over the rows of a
    :func:`dctutor.evaluate.compare_with_random` table whose layer starts with ``prefix``.

    The two best layers may differ: a fair headline compares each network at its best."""
    rows = [r for r in probe if r["layer"].startswith(prefix)]
    if not rows:
        raise ValueError(f"no layer of the table starts with {prefix!r}; pass one of its layer names' prefixes")
    return max(r["trained"] for r in rows) - max(r["random"] for r in rows)


def summarise_seeds(tables: Sequence[list[dict]], columns: Sequence[str] = ("trained", "random", "gain"),
                    key: str = "layer") -> dict:
    """One table per seed (rows keyed by ``key``) to ``{row: {column: t_interval}}`` over the seeds."""
    if not tables:
        raise ValueError("tables is empty; pass one table per seed")
    names = [row[key] for row in tables[0]]
    out = {}
    for name in names:
        rows = [next(r for r in table if r[key] == name) for table in tables]
        out[name] = {column: t_interval([r[column] for r in rows]) for column in columns}
    return out


class ClaimFailed(AssertionError):
    """A chapter's claim did not hold within the parameter range it was checked for."""


def claim(holds: bool, statement: str, *, checked: bool, where: str) -> str:
    """Check one claim a chapter makes, and print its verdict.

    Within the range the claim was checked for (``checked``: e.g. the defaults that CI runs) a
    claim that does not hold raises :class:`ClaimFailed`, so a chapter whose numbers drift stops
    being green. Outside it (a reader exploring other parameters) the verdict is printed and the
    chapter goes on: the claim was never made for those parameters. ``where`` names the checked
    range and this run's values, for both messages. The printed verdict is wrapped to the book's
    column (76 characters).
    """
    if checked and not holds:
        raise ClaimFailed(f"claim failed: {statement} ({where})")
    if checked:
        line = f"holds: {statement}"
    else:
        state = "holds here too" if holds else "does NOT hold here"
        line = f"not checked for these parameters ({where}); {statement}: {state}"
    print(textwrap.fill(line, width=76, subsequent_indent="  "))
    return line
