"""Every evaluation metric on arrays small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hilreward.evaluation import calibration as C
from hilreward.evaluation import episodes as E
from hilreward.evaluation import metrics as M
from hilreward.evaluation import thresholds as T

# The classic 4-frame example: negatives 0.1, 0.4; positives 0.35, 0.8.
Y4 = np.array([0, 0, 1, 1])
P4 = np.array([0.1, 0.4, 0.35, 0.8])


def test_binary_metrics_at_05():
    m = M.binary_metrics(Y4, P4, 0.5)  # predicted [0, 0, 0, 1]
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 0, 1, 2)
    assert m["accuracy"] == 0.75
    assert m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["fpr"] == 0.0 and m["fnr"] == 0.5
    assert m["balanced_accuracy"] == 0.75  # (recall 0.5 + specificity 1.0) / 2


def test_binary_metrics_threshold_is_inclusive():
    m = M.binary_metrics(Y4, P4, 0.35)  # predicted [0, 1, 1, 1]
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 0, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0 and m["fpr"] == 0.5


def test_zero_denominators_give_zero():
    m = M.binary_metrics(np.array([0, 0]), np.array([0.1, 0.2]), 0.5)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["fnr"] == 0.0
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0  # only the negative class is present


def test_confusion_matrix_rows_true_columns_predicted():
    cm = M.confusion_matrix(Y4, (P4 >= 0.5).astype(int))
    assert cm.tolist() == [[2, 0], [1, 1]]
    cm3 = M.confusion_matrix([0, 1, 2, 2], [0, 1, 1, 2], 3)
    assert cm3.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_auroc_and_average_precision():
    assert M.auroc(Y4, P4) == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered right
    # thresholds 0.8: P=1 R=.5; 0.4: P=.5 R=.5; 0.35: P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert M.average_precision(Y4, P4) == pytest.approx(5 / 6)
    assert M.auroc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert M.average_precision([0, 1], [0.5, 0.5]) == 0.5
    assert M.auroc([1, 0], [0.9, 0.1]) == 1.0 and M.auroc([1, 0], [0.1, 0.9]) == 0.0
    assert M.auroc([1, 1], [0.2, 0.3]) is None and M.average_precision([0, 0], [0.2, 0.3]) is None


def test_roc_and_pr_curve_points():
    fpr, tpr, thr = M.roc_curve(Y4, P4)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thr[0] == np.inf and thr[1:].tolist() == [0.8, 0.4, 0.35, 0.1]
    precision, recall, thr = M.pr_curve(Y4, P4)  # ascending thresholds, p >= threshold
    assert thr.tolist() == [0.1, 0.35, 0.4, 0.8]
    assert precision.tolist() == pytest.approx([0.5, 2 / 3, 0.5, 1.0]) and recall.tolist() == [1, 1, 0.5, 0.5]


def test_ece_equal_width_bins():
    # bin 0: p=.05, 0 positive -> .05 * 1/4; bin 1: p=.15,.15, half positive -> .35 * 2/4; bin 9: .95, 1 -> .05 * 1/4
    ece = C.expected_calibration_error([0, 0, 1, 1], [0.05, 0.15, 0.15, 0.95])
    assert ece == pytest.approx(0.0125 + 0.175 + 0.0125)
    b = C.reliability_bins([0, 1, 1, 0], [0.3, 1.0, 0.0, 0.35])
    assert b["count"].tolist() == [1, 0, 1, 1, 0, 0, 0, 0, 0, 1]  # 0.3 -> (0.2, 0.3], 0.35 -> (0.3, 0.4]
    assert b["accuracy"][9] == 1.0 and b["confidence"][3] == pytest.approx(0.35) and np.isnan(b["accuracy"][1])
    assert C.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    # multi-class: top-label confidence .6 (right) and .8 (wrong) -> .4*.5 + .8*.5
    assert C.expected_calibration_error([0, 0], [[0.6, 0.4], [0.2, 0.8]]) == pytest.approx(0.6)


def test_fit_temperature_closed_form():
    # every |logit| = 1 and 3 of 4 right: the best calibrated probability is 0.75 -> 1/T = ln 3
    z = np.array([1, 1, 1, 1, -1, -1, -1, -1.0])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    assert C.fit_temperature(z, y) == pytest.approx(1 / math.log(3), rel=1e-5)
    assert C.fit_temperature(2 * z, y) == pytest.approx(2 / math.log(3), rel=1e-5)
    # the same problem as two-class softmax logits
    z2 = np.stack([np.zeros_like(z), z], axis=1)
    assert C.fit_temperature(z2, y) == pytest.approx(1 / math.log(3), rel=1e-5)
    # perfectly separated: the sharper the better, down to the lower bound
    assert C.fit_temperature(np.array([5.0, -5.0]), np.array([1, 0])) == pytest.approx(0.01, rel=1e-3)


def test_first_firing_debounce():
    p = [0.6, 0.2, 0.7, 0.8, 0.9]
    assert E.first_firing(p, 0.5, 1) == 0
    assert E.first_firing(p, 0.5, 2) == 3  # the firing frame is the k-th of the run
    assert E.first_firing(p, 0.5, 3) == 4
    assert E.first_firing(p, 0.5, 4) is None
    assert E.first_firing(p, 0.95, 1) is None


# Hand-made traces, 40 frames each at 10 fps (tolerance 0.5 s = 5 frames); rows shuffled below.
def _trace(onset=None, high=(), level=0.9, low=0.1):
    p = np.full(40, low)
    for a, b in high:
        p[a:b] = level
    y = np.zeros(40, int)
    if onset is not None:
        y[onset:] = 1
    return p, y


def _traces():
    t = {0: _trace(30, [(29, 40)]),                              # fires 1 frame early: jitter
         1: _trace(30, [(30, 40)], level=0.95),                  # ... and a 0.7 spike 20 frames early: gross
         2: _trace(None, [(15, 17)], level=0.8),                 # never succeeds, fires: a false success
         3: _trace(20, [], low=0.3),                             # succeeds, never fires: missed
         4: _trace(10, [(12, 40)]),                              # fires 2 frames late
         5: _trace(None)}                                        # never succeeds, never fires
    t[1][0][10] = 0.7
    return t


def _arrays(traces):
    ep = np.concatenate([[e] * 40 for e in traces])
    fr = np.concatenate([np.arange(40)] * len(traces))
    p = np.concatenate([traces[e][0] for e in traces])
    y = np.concatenate([traces[e][1] for e in traces])
    perm = np.random.default_rng(0).permutation(len(ep))
    return ep[perm], fr[perm], y[perm], p[perm]


def test_outcome_tolerance_edges():
    assert E.outcome(30, 25, 5.0) == "early"  # exactly the tolerance: jitter
    assert E.outcome(30, 24, 5.0) == "gross_early"
    assert E.outcome(30, 30, 5.0) == "detected" and E.outcome(None, 3, 5.0) == "false_success"
    assert E.outcome(30, None, 5.0) == "missed" and E.outcome(None, None, 5.0) == "no_success"
    assert E.tolerance_frames(0.5, 10) == 5.0
    with pytest.raises(ValueError, match="fps"):
        E.tolerance_frames(0.5, 0)


def test_episode_metrics_on_hand_made_traces():
    ep, fr, y, p = _arrays(_traces())
    m = E.episode_metrics(ep, fr, y, p, threshold=0.5, consecutive=1, fps=10, tolerance_s=0.5)
    rows = {r["episode"]: r for r in m["per_episode"]}
    assert [rows[e]["outcome"] for e in range(6)] == ["early", "gross_early", "false_success", "missed", "detected",
                                                      "no_success"]
    assert [rows[e]["onset_error_frames"] for e in range(6)] == [-1, -20, None, None, 2, None]
    assert rows[1]["onset_error_s"] == pytest.approx(-2.0) and rows[1]["firing_frame"] == 10
    assert (m["false_terminations"], m["gross_false_terminations"], m["false_successes_in_failed_episodes"],
            m["missed_successes"]) == (3, 2, 1, 1)
    assert m["onset_error_median_frames"] == 2.0  # |errors| 1, 20, 2
    assert m["onset_error_p90_frames"] == pytest.approx(16.4)  # linear interpolation between 2 and 20
    assert m["mean_detection_delay_frames"] == 2.0 and rows[0]["max_probability_before_onset"] == 0.9
    # a wider tolerance turns the 20-frame error into jitter; the false success stays gross
    wide = E.episode_metrics(ep, fr, y, p, 0.5, 1, fps=10, tolerance_s=2.0)
    assert (wide["false_terminations"], wide["gross_false_terminations"]) == (3, 1)


def test_episode_metrics_with_debounce_two():
    ep, fr, y, p = _arrays(_traces())
    m = E.episode_metrics(ep, fr, y, p, threshold=0.5, consecutive=2, fps=10)
    rows = {r["episode"]: r for r in m["per_episode"]}
    # the one-frame spike no longer fires; the two-frame false success still does; every fire is one frame later
    assert [rows[e]["outcome"] for e in range(6)] == ["detected", "detected", "false_success", "missed", "detected",
                                                      "no_success"]
    assert [rows[e]["onset_error_frames"] for e in (0, 1, 4)] == [0, 1, 3]
    assert (m["false_terminations"], m["gross_false_terminations"]) == (1, 1)


def test_zero_termination_thresholds():
    ep, fr, y, p = _arrays(_traces())
    # strict: the highest score before any onset is ep 0's 0.9 one frame early; the next probability up is 0.95
    assert T.zero_termination_threshold(ep, fr, y, p, 1, tolerance=0) == pytest.approx(0.925)
    # gross (5 frames): ep 0's jitter no longer counts; ep 2's false success at 0.8 does; next up is 0.9
    t = T.zero_termination_threshold(ep, fr, y, p, 1, tolerance=5)
    assert t == pytest.approx(0.85)
    m = E.episode_metrics(ep, fr, y, p, t, 1, fps=10)
    assert (m["gross_false_terminations"], m["false_terminations"]) == (0, 1)
    assert E.episode_metrics(ep, fr, y, p, 0.8, 1, fps=10)["gross_false_terminations"] == 1
    # k=2: the single frames at 0.7 / 0.9 cannot fire; ep 2's two frames at 0.8 still can
    assert T.zero_termination_threshold(ep, fr, y, p, 2, tolerance=0) == pytest.approx(0.85)
    # a negative frame with the top probability leaves no usable threshold
    assert T.zero_termination_threshold([0, 0], [0, 1], [0, 1], [0.9, 0.8], 1) is None


def test_precision_threshold_highest_recall():
    ep, fr, y, p = _arrays(_traces())
    # above 0.9 only ep 1's positives (precision 1, recall 10/70); (0.8, 0.9] adds 38 positives and 1 negative
    assert T.precision_threshold(y, p, 0.99) == pytest.approx(0.925)
    assert T.precision_threshold(y, p, 0.95) == pytest.approx(0.85)  # 48/49 precision, recall 48/70
    assert T.precision_threshold([0, 1], [0.9, 0.1], 0.99) is None
    assert T.precision_threshold([1, 0], [0.9, 0.1], 0.99) == pytest.approx(0.5)
    assert T.precision_threshold([1, 1], [0.9, 0.4], 0.99) == pytest.approx(0.2)  # 0 below the lowest


def test_rule_prefers_no_gross_errors_over_strict_when_strict_costs_recall():
    ep, fr, y, p = _arrays(_traces())
    unbounded = T.EvidenceRule(max_recall_loss=None)  # the rule itself, without the bound on the recall it loses
    choice = T.choose_threshold(ep, fr, y, p, fps=10, target_precision=0.95, rule=unbounded)
    # strict 0.925 would keep only ep 1's positives (recall 10/70 instead of 48/70) to remove one frame of jitter
    assert (choice.precision_threshold, choice.zero_gross_threshold, choice.zero_ft_threshold) == \
        pytest.approx((0.85, 0.85, 0.925))
    assert choice.threshold == pytest.approx(0.85) and choice.evidence["rule"] == "gross_at_precision_target"
    assert choice.evidence["enough"] and (choice.evidence["positives"], choice.evidence["success_episodes"],
                                          choice.evidence["failed_episodes"]) == (70, 4, 2)
    lo, hi = choice.interval["precision"]
    assert lo <= 48 / 49 <= hi and choice.interval["gross_false_termination_rate"] == [0.0, 0.0]
    # when recall does not matter, the strict threshold wins, once it may also miss succeeding episodes
    missing = T.choose_threshold(ep, fr, y, p, fps=10, target_precision=0.95,
                                 rule=T.EvidenceRule(max_recall_cost=1, max_recall_loss=None))
    assert missing.rule_threshold == pytest.approx(0.925) and missing.threshold == 0.5  # fires in ep 1 only
    assert missing.evidence["rule"] == "kept" and "never fires in 3 of the 4 succeeding episodes" in \
        missing.evidence["reason"]
    strict = T.choose_threshold(ep, fr, y, p, fps=10, target_precision=0.95,
                                rule=T.EvidenceRule(max_recall_cost=1, max_missed=1, max_recall_loss=None))
    assert strict.threshold == pytest.approx(0.925) and strict.evidence["rule"].startswith("strict")


def test_evidence_rule_refuses_two_tiny_episodes():
    traces = _traces()
    ep, fr, y, p = _arrays({0: traces[0], 5: traces[5]})  # 10 positive frames in 1 succeeding episode
    choice = T.choose_threshold(ep, fr, y, p, fps=10, fallback=0.6)
    assert choice.threshold == 0.6 and not choice.enough and choice.evidence["rule"] == "kept"
    assert choice.rule_threshold == pytest.approx(0.5)  # what the rule would say on so little
    assert "10 positive frames in 1 succeeding episodes" in choice.evidence["reason"]
    one = T.choose_threshold(*_arrays({0: traces[0]}), fps=10)
    assert one.interval is None  # no bootstrap over a single episode


def test_compute_metrics_binary():
    ep, fr, y, p = _arrays(_traces())
    out = M.compute_metrics(M.Predictions(ep, fr, y, p), threshold=0.5, consecutive=1, target_precision=0.95,
                            fps=10, checkpoint_threshold=0.6)
    assert list(out)[: len(M.STABLE_KEYS)] == list(M.STABLE_KEYS)
    assert (out["episodes"], out["frames"], out["positives"], out["negatives"]) == (6, 240, 70, 170)
    assert (out["false_terminations"], out["gross_false_terminations"], out["false_successes_in_failed_episodes"],
            out["missed_successes"]) == (3, 2, 1, 1)
    assert out["recommended_threshold"] == pytest.approx(0.85) and out["threshold"] == 0.5
    assert out["tolerance_s"] == 0.5 and out["tolerance_frames"] == 5.0
    names = [row["name"] for row in out["thresholds"]]
    assert names == ["0.5", "checkpoint", "target_precision", "zero_gross_false_terminations",
                     "zero_false_terminations", "recommended"]
    rec = out["thresholds"][-1]
    assert rec["gross_false_terminations"] == 0 and rec["false_terminations"] == 1 and rec["missed_successes"] == 1
    assert out["confusion_matrix"] == [[166, 4], [22, 48]]  # at 0.5: ep 0 frame 29, ep 1 frame 10, ep 2 x2
    given = M.compute_metrics(M.Predictions(ep, fr, y, p), threshold=0.7, checkpoint_threshold=0.6, fps=10)
    assert [r["name"] for r in given["thresholds"]][:3] == ["0.5", "checkpoint", "given"]
    assert given["thresholds"][2]["threshold"] == given["threshold"] == 0.7


def test_compute_metrics_multiclass():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]])
    out = M.compute_metrics(M.Predictions(np.zeros(4, int), np.arange(4), y, probs), threshold=0.5)
    assert set(M.STABLE_KEYS) <= set(out)
    assert out["accuracy"] == 0.75
    assert out["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert out["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert out["recommended_threshold"] is None and out["false_terminations"] is None
    # class 1 one-vs-rest: predicted twice, right once
    assert out["per_class"][1]["precision"] == 0.5


def test_recall_loss_bound_caps_the_threshold_and_says_so():
    """An out-of-fold episode fired early with certainty: the no-gross threshold lies above most successes; a bound
    on the recall lost against 0.5 keeps the highest threshold within it."""
    rng = np.random.default_rng(1)
    ep, fr, y, p = [], [], [], []
    for e in range(6):
        labels = (np.arange(40) >= 20).astype(int) if e < 5 else np.zeros(40, dtype=int)
        probs = np.where(labels == 1, rng.uniform(0.6, 0.99, 40), rng.uniform(0.0, 0.3, 40))
        if e == 5:
            probs[10:14] = 0.97  # a confident false success
        ep += [e] * 40
        fr += list(range(40))
        y += list(labels)
        p += list(probs)
    ep, fr, y, p = (np.asarray(a) for a in (ep, fr, y, p))
    plain = T.choose_threshold(ep, fr, y, p, fps=10, rule=T.EvidenceRule(max_recall_loss=None))
    assert plain.threshold > 0.97 and plain.evidence["rule"] != "recall_cap"  # no gross, few successes left
    capped = T.choose_threshold(ep, fr, y, p, fps=10, rule=T.EvidenceRule(max_recall_loss=0.1))
    default = T.choose_threshold(ep, fr, y, p, fps=10)  # the default bound, 0.02: a lower threshold still
    assert default.evidence["rule"] == "recall_cap" and 0.5 < default.threshold < capped.threshold
    recall = lambda t: np.mean(p[y == 1] >= t)  # noqa: E731
    assert capped.evidence["rule"] == "recall_cap" and 0.5 < capped.threshold < plain.threshold
    assert recall(capped.threshold) >= recall(0.5) - 0.1 > recall(capped.threshold + 0.01)
    assert "loses at most max_recall_loss of recall" in T.RULE_TEXT["recall_cap"]


def test_the_debounce_is_one_rule_step_by_step_and_over_an_episode():
    """first_firing (evaluation, the gate) and judge (the reward function, the server) count the same streak."""
    from hilreward.deploy.rule import RewardOptions, judge
    from hilreward.evaluation.episodes import first_firing

    rng = np.random.default_rng(0)
    for _ in range(200):
        probs = rng.random(int(rng.integers(1, 30)))
        threshold, consecutive = float(rng.choice([0.3, 0.5, 0.7])), int(rng.integers(1, 5))
        options, streak, fired = RewardOptions(consecutive=consecutive), 0, None
        for i, p in enumerate(probs):
            judged = judge(float(p), options, streak, threshold=threshold)
            streak = judged.streak
            if judged.success and fired is None:
                fired = i
        assert fired == first_firing(probs, threshold, consecutive)
