"""The reference-results page: each benchmark's saved JSON as an HTML table, with intervals and the
did-it-train verdict of every setting it compares (:mod:`dctutor.evidence`)."""
from __future__ import annotations

import math

import pandas as pd

from ..evidence import best_against_best, did_it_train, summarise_seeds, t_interval, verdict
from .replicates import summarise_sweep
from .tables import interval_frame, interval_text, verdict_lines

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def headline(saved: dict) -> dict:
    """``bench_deepcluster.py``'s runs (one per seed; an older single-run file counts as one seed):
    ``runs``, ``table`` (per layer, means and the gain's interval over the seeds), ``best`` (best
    trained conv layer minus best random conv layer, interval over seeds) and ``check``."""
    runs = saved.get("runs") or [saved]
    k = (saved.get("settings", {}).get("knobs") or saved["args"])["k"]
    gaps = [best_against_best(run["probe"]) for run in runs]
    summary = summarise_seeds([run["probe"] for run in runs])
    table = interval_frame(summary, means={"trained": "DC %", "random": "random %"},
                           intervals={"gain": "gain [95 % CI]"}, verdict_on="gain")
    return {"runs": runs, "table": table, "best": t_interval(gaps),
            "check": did_it_train([run["history"][-1]["loss"] for run in runs], k, gaps)}


def epoch_seconds(history: list[dict], skip_first: bool = True) -> float:
    """Mean seconds per epoch (extraction + clustering + training), leaving out epoch 0 by default:
    its time includes one-off warm-up (cuDNN autotuning, allocator growth)."""
    rows = history[1:] if skip_first and len(history) > 1 else history
    return sum(r["time_extract"] + r["time_cluster"] + r["time_train"] for r in rows) / len(rows)


def knob(saved: dict) -> tuple[pd.DataFrame, str]:
    """bench_knob.py's runs, one row per value of the knob it varied (epochs and mean minutes of
    training, best conv layer's accuracy, best-against-best gain over the random twin with its
    interval over the seeds, did it train), and the lines under the table
    (:func:`dctutor.labs.tables.verdict_lines`): a value's lead over another, paired by seed, counts
    only between values whose runs fit their pseudo-labels."""
    if not all("loss_last" in r for r in saved["runs"]):
        raise ValueError("this benchmark file records no final losses: re-run benchmarks/bench_knob.py")
    flag = saved["args"]["flag"]
    rows = [{"value": r["value"], "seed": r["seed"], "loss": r["loss_last"],
             "k": int(r["value"]) if flag == "k" else saved["args"]["k"],
             "nmi": r["nmi_last"], "trained": max(p["trained"] for p in r["probe"] if p["layer"] in CONVS),
             "gain": best_against_best(r["probe"])} for r in saved["runs"]]
    summary = summarise_sweep(rows, by="value")
    epochs = {value: [r["epochs"] for r in saved["runs"] if r["value"] == value] for value in summary["per"]}
    minutes = {value: sum(r["train_minutes"] for r in saved["runs"] if r["value"] == value) / len(epochs[value])
               for value in summary["per"]}
    table = pd.DataFrame([{f"--{flag}": f"{value:g}", "epochs": f"{min(epochs[value])}-{max(epochs[value])}"
                           if min(epochs[value]) != max(epochs[value]) else str(epochs[value][0]),
                           "train min": round(minutes[value], 1),
                           "best conv %": round(100 * cell["trained"]["mean"], 1),
                           "best vs random": interval_text(cell["gain"]),
                           "trained?": "yes" if cell["check"]["trained"] else "no"}
                          for value, cell in summary["per"].items()]).set_index(f"--{flag}")
    return table, "\n".join(verdict_lines(summary, label=lambda value: f"--{flag} {value:g}"))


def knob_command(args: dict) -> list[str]:
    """The ``bench_knob.py`` command that made a saved file, a few options per line."""
    minutes = args.get("minutes")  # None in the file, NaN once the results page has read it
    budget = f"--epochs {args['epochs']}" + (f" --minutes {minutes:g}" if minutes and math.isfinite(minutes) else "")
    fixed = " ".join(f"--{name} {args[name]:g}" for name in ("k", "width") if name != args["flag"])
    return [f"python benchmarks/bench_knob.py --flag {args['flag']}",
            "--values " + " ".join(f"{value:g}" for value in args["values"]),
            f"--n {args['n']} --n-test {args['n_test']} {budget}", fixed,
            "--seeds " + " ".join(map(str, args["seeds"]))]


def collapse(grid: dict) -> pd.DataFrame:
    """bench_collapse.py's summary rows, with the loss check per setting: the last loss of every run
    that did not diverge, against log k (no probe was run, so no random twin)."""
    rows = []
    for t in grid["summary"]:
        mine = [r for r in grid["runs"] if (r["regime"], r["defences"]) == (t["regime"], t["defences"])]
        losses = [r["history"][-1]["loss"] for r in mine if not isinstance(r["error"], str)]
        fits = did_it_train(losses, t["k"], None)["fits_labels"] if losses else None
        rows.append({"regime": t["regime"], "defences": t["defences"].replace("defences ", ""),
                     "coll.": t.get("collapsed", 0), "div.": t.get("diverged", 0),
                     "largest %": round(100 * t["final_largest"]["mean"], 1),
                     "eff k/k": round(t["worst_eff_frac"]["min"], 2),
                     "loss/log k": round(max(losses) / math.log(t["k"]), 2) if losses else float("nan"),
                     "fits?": {True: "yes", False: "no", None: "-"}[fits]})
    return pd.DataFrame(rows).set_index(["regime", "defences"])


def gap_over_seeds(rows: list[dict], value: str, key: str, better: str = "DeepCluster",
                   worse: str = "Random") -> dict:
    """Paired by seed: ``value`` of the ``better`` init minus the ``worse`` one's, as a t interval."""
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r[key]] = r[value]
    return t_interval([v[better] - v[worse] for v in by_seed.values() if better in v and worse in v])


def voc_protocol(saved: dict) -> pd.DataFrame:
    """Per VOC-protocol variant and setting: both networks' mAP (mean over seeds) and the
    DeepCluster-minus-random gap with its interval over seeds."""
    rows = []
    for variant, mode in dict.fromkeys((r["variant"], r["mode"]) for r in saved["rows"]):
        mine = [r for r in saved["rows"] if (r["variant"], r["mode"]) == (variant, mode)]
        mean = {init: 100 * sum(r["map"] for r in mine if r["init"] == init) / sum(r["init"] == init for r in mine)
                for init in ("DeepCluster", "Random")}
        gap = gap_over_seeds(mine, "map", "init")
        rows.append({"variant": variant, "setting": mode.upper(), "DC": round(mean["DeepCluster"], 1),
                     "random": round(mean["Random"], 1), "gap [95 % CI]": interval_text(gap),
                     "verdict": verdict(gap, "DC higher", "DC lower")})
    return pd.DataFrame(rows).set_index(["variant", "setting"])


def voc_protocol_effects(saved: dict, init: str = "DeepCluster") -> pd.DataFrame:
    """Per VOC-protocol variant: how far its one change moves ``init``'s mAP from the book's recipe
    in the same setting (the "dctutor" row of FC6-8 or ALL), paired by seed, with the word its
    interval allows. What the protocol page needs to say whether a departure matters."""
    base = {(r["mode"], r["seed"]): r["map"] for r in saved["rows"]
            if r["variant"] == "dctutor" and r["init"] == init}
    if not base:
        raise ValueError(f"no 'dctutor' rows of the {init} network to compare the variants with: run "
                         f"bench_voc_protocol.py with the variant dctutor too")
    rows = []
    for variant, mode in dict.fromkeys((r["variant"], r["mode"]) for r in saved["rows"]):
        if variant == "dctutor":
            continue
        mine = [r for r in saved["rows"] if (r["variant"], r["mode"], r["init"]) == (variant, mode, init)
                and (mode, r["seed"]) in base]
        if not mine:  # no seed that the book's recipe ran too
            continue
        change = t_interval([r["map"] - base[mode, r["seed"]] for r in mine])
        rows.append({"variant": variant, "setting": mode.upper(), "seeds": len(mine),
                     "change [95 % CI]": interval_text(change),
                     "verdict": verdict(change, "raises it", "lowers it", "within noise")})
    return pd.DataFrame(rows).set_index(["variant", "setting"])


def probe_recipes(saved: dict) -> dict[str, dict]:
    """Per probe recipe of ``bench_probe_recipe.py``: the did-it-train verdict of its one network
    (best DeepCluster conv layer minus best random one; no loss or seeds were recorded)."""
    out = {}
    for recipe in dict.fromkeys(r["recipe"] for r in saved["rows"]):
        table = [{"layer": layer, "trained": acc["DeepCluster"], "random": acc["random"]}
                 for layer, acc in _by_layer(saved["rows"], recipe).items()]
        out[recipe] = did_it_train(None, saved["args"]["run"]["k"], [best_against_best(table)])
    return out


def _by_layer(rows: list[dict], recipe: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        if r["recipe"] == recipe:
            out.setdefault(r["layer"], {})[r["init"]] = r["accuracy"]
    return out


def recipe_search(saved: dict) -> pd.DataFrame:
    """bench_recipe.py's candidates, one row each: what they change, the loss check, NMI, and the best
    conv layer on the held-out training images against the best random layer."""
    rows = []
    for r in saved["rows"]:
        check = did_it_train([r["loss"][-1]], r["settings"]["k"], None)
        rows.append({"recipe": r["recipe"], "epochs": r["epochs"],
                     "loss/log k": round(check["loss_share"], 2),
                     "NMI": round(r["nmi_labels"][-1], 3), "best": r["best_layer"],
                     "val %": round(100 * r["best_trained"], 1),
                     "gap": round(100 * r["gap"], 1)})
    return pd.DataFrame(rows).set_index("recipe").sort_values("gap", ascending=False)


def _mean_of(saved: dict, setting: str, key: str) -> float:
    """The mean of ``key`` over the saved runs of one setting (one per seed)."""
    mine = [r[key] for r in saved["rows"] if r["setting"] == setting]
    return sum(mine) / len(mine)


def successors(saved: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """bench_successors.py's four combinations as two tables that fit the book's column, one row per
    combination in each: what they learned (seeds, the loss check, the best conv layer over the
    best random one with its interval over the seeds and its verdict), then how they behaved (the
    share of ids that changed and of images that moved between clusterings, training minutes)."""
    learned, behaved = [], []
    for name, cell in saved["summary"]["per"].items():
        learned.append({"setting": name, "seeds": cell["gain"]["n"],
                        "loss/log k": round(cell["check"]["loss_share"], 2),
                        "gap [95 % CI]": interval_text(cell["gain"]),
                        "verdict": verdict(cell["gain"]) if cell["gain"]["n"] > 1 else "1 seed"})
        behaved.append({"setting": name, "ids changed": round(_mean_of(saved, name, "ids_changed"), 2),
                        "moved": round(_mean_of(saved, name, "ids_moved"), 2),
                        "min": round(_mean_of(saved, name, "train_minutes"), 1)})
    return pd.DataFrame(learned).set_index("setting"), pd.DataFrame(behaved).set_index("setting")


# The CIFAR-10 table of solo-learn's README: DeepCluster-v2, ResNet-18, 1 000 epochs, linear top-1 (%).
SOLO_LEARN_DCV2 = {"backbone": "ResNet-18", "epochs": 1000, "accuracy": 88.85}


def successors_report(saved: dict) -> str:
    """The lines under :func:`successors`' tables: :func:`dctutor.labs.tables.verdict_lines`, then
    how far the fixed budget got (best conv layer, epochs, minutes) beside solo-learn's published
    DeepCluster-v2 on the whole of CIFAR-10 (:data:`SOLO_LEARN_DCV2`)."""
    summary = saved["summary"]
    lines = verdict_lines(summary)
    for name, cell in summary["per"].items():
        epochs = next(r["epochs"] for r in saved["rows"] if r["setting"] == name)
        lines.append(f"{name}: best conv layer {100 * cell['trained']['mean']:.1f} %\n  after {epochs} "
                     f"epochs over {saved['n_train']} images, {_mean_of(saved, name, 'train_minutes'):.1f} min "
                     f"on {saved['threads']} thread(s)")
    anchor = SOLO_LEARN_DCV2
    lines.append(f"solo-learn's DeepCluster-v2 ({anchor['backbone']}, {anchor['epochs']} epochs over\n"
                 f"  the 50000 training images, on a GPU): {anchor['accuracy']} % linear")
    return "\n".join(lines)


def chapter_seeds(saved: dict) -> tuple[pd.DataFrame, str]:
    """bench_chapter_seeds.py's re-executions of one chapter under shifted seeds: a row per shift
    (the seed parameters it ran with, how many claims it printed, how many of them were asserted,
    the others being outside the parameters they were checked for and printed as verdicts, whether
    it finished with every claim holding, minutes), and a line saying whether the chapter's claims
    survived every shift."""
    rows = [{"shift": r["shift"],
             "seeds": ", ".join(f"{k} {v}" for k, v in r["parameters"].items() if k != "save_to"),
             "claims": len(r["claims"]),
             "asserted": sum(line.startswith("holds:") for line in r["claims"]),
             "all held": "yes" if r["held"] else "NO",
             "min": round(r["minutes"], 1)} for r in saved["rows"]]
    failed = [r for r in saved["rows"] if not r["held"]]
    shifts = f"{len(rows)} seed shift{'s' if len(rows) != 1 else ''}"
    line = (f"{saved['chapter']}: every claim held under each of {shifts}" if not failed else
            f"{saved['chapter']}: a claim failed under shift(s) {[r['shift'] for r in failed]}: {failed[0]['error']}")
    return pd.DataFrame(rows).set_index("shift"), line
