"""Intervals, verdicts and the did-it-train check, on cases whose answer is known."""
import math

import numpy as np
import pytest
from scipy import stats

from dctutor.evidence import bootstrap_interval, did_it_train, format_interval, t_interval, verdict


def test_t_interval_matches_the_textbook_formula_and_is_zero_wide_for_a_fixed_difference():
    x = [0.061, 0.083, 0.072]
    ci = t_interval(x)
    half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert ci["mean"] == pytest.approx(np.mean(x)) and ci["half"] == pytest.approx(half)
    assert ci["low"] < ci["mean"] < ci["high"] and ci["n"] == 3
    fixed = t_interval([0.05, 0.05, 0.05, 0.05])
    assert fixed["low"] == fixed["high"] == pytest.approx(0.05)
    assert verdict(fixed) == "higher" and verdict(t_interval([-0.02] * 3)) == "lower"


def test_one_seed_has_no_interval_and_decides_nothing():
    ci = t_interval([0.2])
    assert math.isnan(ci["low"]) and verdict(ci) == "within noise"
    assert "no interval" in format_interval(ci, 100)


def test_an_interval_straddling_zero_is_within_noise():
    assert verdict(t_interval([0.03, -0.02, 0.01])) == "within noise"


def test_paired_bootstrap_covers_the_true_difference_and_excludes_zero_only_when_it_should():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=4000) < 0.60
    b = rng.uniform(size=4000) < 0.50
    ci = bootstrap_interval(a, b)
    assert ci["low"] < 0.10 < ci["high"] and verdict(ci) == "higher"
    same = bootstrap_interval(a, a)
    assert same["low"] == same["high"] == 0.0 and verdict(same) == "within noise"
    noise = bootstrap_interval(rng.uniform(size=300) < 0.5, rng.uniform(size=300) < 0.5)
    assert noise["low"] < 0 < noise["high"]


def test_a_run_that_never_trained_is_flagged_whatever_its_gap():
    k = 100
    never = did_it_train([math.log(k) - 0.01, math.log(k)], k, [0.09, 0.10])
    assert not never["trained"] and not never["fits_labels"] and "did NOT train" in never["line"]
    learned = did_it_train([2.4, 2.5, 2.6], k, [0.08, 0.09, 0.10])
    assert learned["trained"] and learned["line"].startswith("trained")
    fits_only = did_it_train([2.4, 2.5, 2.6], k, [0.01, -0.01, 0.0])
    assert fits_only["fits_labels"] and not fits_only["trained"] and "not above a random" in fits_only["line"]


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="values"):
        t_interval([])
    with pytest.raises(ValueError, match="final_losses"):
        did_it_train([float("nan")], 10, [0.1])
    with pytest.raises(ValueError, match="same test images"):
        bootstrap_interval([1, 0], [1, 0, 1])


def test_a_claim_raises_only_inside_its_checked_range(capsys):
    from dctutor.evidence import ClaimFailed, claim

    assert claim(True, "NMI rises", checked=True, where="defaults").startswith("holds")
    with pytest.raises(ClaimFailed, match="NMI rises .*epochs 4"):
        claim(False, "NMI rises", checked=True, where="checked at epochs 4; here epochs=4")
    line = claim(False, "NMI rises", checked=False, where="checked at epochs 4; here epochs=1")
    assert "not checked" in line and "does NOT hold" in line and "epochs=1" in capsys.readouterr().out


def test_best_against_best_and_seed_summaries():
    from dctutor.evidence import best_against_best, summarise_seeds

    probe = [{"layer": "conv1", "trained": 0.60, "random": 0.58, "gain": 0.02},
             {"layer": "conv2", "trained": 0.70, "random": 0.55, "gain": 0.15},
             {"layer": "knn fc7", "trained": 0.90, "random": 0.10, "gain": 0.80}]
    assert best_against_best(probe) == pytest.approx(0.70 - 0.58)  # knn rows and layer pairing ignored
    other = [dict(r, trained=r["trained"] + 0.02, gain=r["gain"] + 0.02) for r in probe]
    summary = summarise_seeds([probe, other])
    assert summary["conv2"]["trained"]["mean"] == pytest.approx(0.71)
    assert summary["conv1"]["random"]["low"] == summary["conv1"]["random"]["high"] == pytest.approx(0.58)
    with pytest.raises(ValueError, match="prefix"):
        best_against_best(probe, prefix="fc")


def test_a_study_that_recorded_no_loss_or_no_twin_is_not_called_trained():
    no_loss = did_it_train(None, 100, [0.05, 0.06, 0.07])
    assert not no_loss["trained"] and no_loss["fits_labels"] is None and "cannot tell" in no_loss["line"]
    no_twin = did_it_train([2.0, 2.1], 100, None)
    assert not no_twin["trained"] and no_twin["fits_labels"] and "no random twin" in no_twin["line"]
    flat = did_it_train(None, 100, [0.01, -0.02, 0.0])
    assert not flat["trained"] and "not above a random twin" in flat["line"]


def test_one_seed_fits_but_cannot_be_called_trained():
    one = did_it_train([2.0], 100, [0.06])
    assert one["fits_labels"] and one["beats_random"] is None and not one["trained"]
    assert "one run gives no interval" in one["line"]
    assert "no loss and no random twin" in did_it_train(None, 10, None)["line"]


def test_a_sweep_compares_only_settings_that_trained_paired_by_seed():
    from dctutor.labs.replicates import summarise_sweep
    from dctutor.labs.tables import sweep_report

    rows = [{"k": k, "seed": s, "loss": loss, "acc": acc + 0.01 * s, "nmi_last": 0.3, "gain": 0.05 + 0.01 * s}
            for k, loss, acc in ((10, 0.5, 0.70), (30, 0.5, 0.68), (100, 4.6, 0.90)) for s in range(3)]
    summary = summarise_sweep(rows, "k", trained="acc", nmi="nmi_last")
    assert summary["left_out"] == [100], "k = 100 sits at log k: it decides nothing, however high its accuracy"
    assert summary["best"] == 10
    lead = summary["lead"][30]
    assert lead["mean"] == pytest.approx(0.02) and lead["low"] == pytest.approx(0.02), "the same lead every seed"
    lines, frame = sweep_report(summary)
    assert "k = 10 minus k = 30:\n  +2.0 [+2.0, +2.0] points, ahead" in lines
    assert "did not train, so left out: [100]" in lines
    assert list(frame.index) == [10, 30, 100] and frame.loc[10, "verdict"] == "higher"


def test_the_successors_report_leaves_out_a_combination_that_did_not_fit_and_states_its_budget():
    from dctutor.labs.replicates import summarise_sweep
    from dctutor.labs.results import SOLO_LEARN_DCV2, successors, successors_report

    rows = [{"setting": name, "seed": s, "k": 100, "loss": loss, "nmi": 0.2, "trained": acc + 0.01 * s,
             "gain": 0.04, "epochs": 20, "train_minutes": minutes, "ids_changed": 0.9, "ids_moved": 0.8}
            for name, loss, acc, minutes in (("v1", 3.0, 0.50, 8.0), ("v2", 3.2, 0.47, 6.0), ("stuck", 4.6, 0.6, 5.0))
            for s in range(3)]
    saved = {"rows": rows, "n_train": 5000, "threads": 1, "summary": summarise_sweep(rows, by="setting")}
    report = successors_report(saved)
    assert "v1 minus v2:\n  +3.0 [+3.0, +3.0] points, ahead" in report
    assert "did not train, so left out: ['stuck']" in report, "a run at log k decides nothing"
    assert "v1: best conv layer 51.0 %\n  after 20 epochs over 5000 images, 8.0 min on 1 thread(s)" in report
    assert f"{SOLO_LEARN_DCV2['accuracy']} % linear" in report
    learned, behaved = successors(saved)
    assert list(learned.index) == list(behaved.index) == ["v1", "v2", "stuck"]
    assert learned.loc["v1", "verdict"] == "higher" and behaved.loc["v1", "min"] == 8.0


def test_a_chapter_whose_claim_failed_under_one_shift_is_reported_as_such():
    from dctutor.labs.results import chapter_seeds

    held = {"shift": 3, "parameters": {"seed": 3, "save_to": ""}, "held": True, "error": None,
            "claims": ["holds: the loss falls", "holds: NMI rises"], "minutes": 11.0}
    saved = {"chapter": "04_deepcluster", "rows": [held]}
    frame, line = chapter_seeds(saved)
    assert line == "04_deepcluster: every claim held under each of 1 seed shift"
    assert frame.loc[3, "claims"] == frame.loc[3, "asserted"] == 2 and frame.loc[3, "seeds"] == "seed 3"
    verdicts = held | {"claims": ["holds: the loss falls", "not checked for these parameters (seed 0); NMI rises: "
                                  "holds here too"]}
    frame, _ = chapter_seeds(saved | {"rows": [verdicts]})
    assert (frame.loc[3, "claims"], frame.loc[3, "asserted"], frame.loc[3, "all held"]) == (2, 1, "yes")
    failed = held | {"shift": 6, "held": False, "error": "ClaimFailed: claim failed: NMI rises", "claims": []}
    frame, line = chapter_seeds(saved | {"rows": [held, failed]})
    assert line.startswith("04_deepcluster: a claim failed under shift(s) [6]: ClaimFailed")
    assert list(frame["all held"]) == ["yes", "NO"]


def _probe(conv: float, random: float) -> list[dict]:
    return [{"layer": layer, "trained": conv - 0.01 * i, "random": random} for i, layer in
            enumerate(("conv1", "conv2", "conv3", "conv4", "conv5"))]


def test_knob_command_gives_the_budget_only_when_timed_and_never_the_varied_knob_twice():
    from dctutor.labs.results import knob_command

    args = {"flag": "k", "values": [10, 100], "n": 5000, "n_test": 5000, "epochs": 35, "k": 100, "width": 0.25,
            "seeds": [0, 1, 2]}
    for untimed in (None, float("nan")):
        lines = knob_command(args | {"minutes": untimed})
        assert lines[2] == "--n 5000 --n-test 5000 --epochs 35" and lines[3] == "--width 0.25"
    lines = knob_command(args | {"flag": "width", "values": [0.25, 0.5], "minutes": 9.0})
    assert lines[1:4] == ["--values 0.25 0.5", "--n 5000 --n-test 5000 --epochs 35 --minutes 9", "--k 100"]


def test_knob_values_are_compared_paired_by_seed_and_only_when_both_trained():
    from dctutor.labs.results import knob

    runs = [{"value": value, "seed": s, "loss_last": 2.0, "nmi_last": 0.2, "epochs": epochs + s % 2,
             "train_minutes": 9.0 + s, "probe": _probe(acc + 0.01 * s, 0.45)}
            for value, acc, epochs in ((0.25, 0.50, 20), (0.5, 0.53, 7)) for s in range(3)]
    saved = {"args": {"k": 100, "flag": "width", "values": [0.25, 0.5]}, "runs": runs}
    table, lines = knob(saved)
    assert list(table["trained?"]) == ["yes", "yes"] and table.loc["0.5", "best conv %"] == 54.0
    assert list(table["epochs"]) == ["20-21", "7-8"] and list(table["train min"]) == [10.0, 10.0]
    assert "--width 0.5 minus --width 0.25:\n  +3.0 [+3.0, +3.0] points, ahead" in lines
    stuck = [r | {"loss_last": 4.6} if r["value"] == 0.5 else r for r in runs]
    table, lines = knob(saved | {"runs": stuck})
    assert "did not train, so left out: [0.5]" in lines and "minus" not in lines
    # Varying k moves log k: a loss of 2.5 fits k = 100's labels, not k = 10's (log 10 = 2.3).
    ks = [r | {"value": {0.25: 10, 0.5: 100}[r["value"]], "loss_last": 2.5} for r in runs]
    table, lines = knob(saved | {"args": saved["args"] | {"flag": "k"}, "runs": ks})
    assert list(table["trained?"]) == ["no", "yes"] and "did not train, so left out: [10]" in lines
    with pytest.raises(ValueError, match="re-run benchmarks/bench_knob.py"):
        knob(saved | {"runs": [{k: v for k, v in r.items() if k != "loss_last"} for r in runs]})


def test_a_voc_variant_is_measured_against_the_books_recipe_in_its_own_setting_paired_by_seed():
    from dctutor.labs.results import voc_protocol_effects

    rows = [{"variant": variant, "mode": mode, "init": init, "seed": s, "map": base + 0.01 * s + shift}
            for s in range(3) for init in ("DeepCluster", "Random")
            for variant, mode, base, shift in (("dctutor", "fc6-8", 0.30, 0), ("dctutor", "all", 0.20, 0),
                                                ("frozen", "all", 0.20, 0.02), ("same", "fc6-8", 0.30, 0))]
    table = voc_protocol_effects({"rows": rows})
    assert table.loc[("frozen", "ALL"), "change [95 % CI]"] == "+2.0 [+2.0, +2.0]"
    assert table.loc[("frozen", "ALL"), "verdict"] == "raises it", "compared with ALL, not with FC6-8"
    assert table.loc[("same", "FC6-8"), "verdict"] == "within noise"
    assert list(table["seeds"]) == [3, 3]
    with pytest.raises(ValueError, match="variant dctutor too"):
        voc_protocol_effects({"rows": [r for r in rows if r["variant"] != "dctutor"]})
