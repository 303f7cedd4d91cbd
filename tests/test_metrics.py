"""Every evaluation metric on arrays small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hilreward.evaluation import metrics as M

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


def test_roc_curve_points():
    fpr, tpr, thr = M.roc_curve(Y4, P4)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thr[0] == np.inf and thr[1:].tolist() == [0.8, 0.4, 0.35, 0.1]


def test_ece_equal_width_bins():
    # bin 0: p=.05, 0 positive -> .05 * 1/4; bin 1: p=.15,.15, half positive -> .35 * 2/4; bin 9: .95, 1 -> .05 * 1/4
    ece = M.expected_calibration_error([0, 0, 1, 1], [0.05, 0.15, 0.15, 0.95])
    assert ece == pytest.approx(0.0125 + 0.175 + 0.0125)
    b = M.reliability_bins([0, 1, 1], [0.3, 1.0, 0.0])
    assert b["count"].tolist() == [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]  # 0.3 -> bin 3, 1.0 -> last bin
    assert M.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    # multi-class: top-label confidence .6 (right) and .8 (wrong) -> .4*.5 + .8*.5
    assert M.expected_calibration_error([0, 0], [[0.6, 0.4], [0.2, 0.8]]) == pytest.approx(0.6)


def test_fit_temperature_closed_form():
    # every |logit| = 1 and 3 of 4 right: the best calibrated probability is 0.75 -> 1/T = ln 3
    z = np.array([1, 1, 1, 1, -1, -1, -1, -1.0])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    assert M.fit_temperature(z, y) == pytest.approx(1 / math.log(3), rel=1e-5)
    assert M.fit_temperature(2 * z, y) == pytest.approx(2 / math.log(3), rel=1e-5)
    # the same problem as two-class softmax logits
    z2 = np.stack([np.zeros_like(z), z], axis=1)
    assert M.fit_temperature(z2, y) == pytest.approx(1 / math.log(3), rel=1e-5)
    # perfectly separated: the sharper the better, down to the lower bound
    assert M.fit_temperature(np.array([5.0, -5.0]), np.array([1, 0])) == pytest.approx(0.01, rel=1e-3)


def test_first_firing_debounce():
    p = [0.6, 0.2, 0.7, 0.8, 0.9]
    assert M.first_firing(p, 0.5, 1) == 0
    assert M.first_firing(p, 0.5, 2) == 3  # the firing frame is the k-th of the run
    assert M.first_firing(p, 0.5, 3) == 4
    assert M.first_firing(p, 0.5, 4) is None
    assert M.first_firing(p, 0.95, 1) is None


# Five episodes (frame_index 0..n-1 each), rows deliberately shuffled:
EPISODES = {
    0: ([0.1, 0.2, 0.3, 0.9, 0.95], [0, 0, 0, 1, 1]),  # detected on the onset
    1: ([0.1, 0.7, 0.2, 0.6, 0.9], [0, 0, 0, 1, 1]),   # a single early spike at frame 1
    2: ([0.2, 0.6, 0.1, 0.1], [0, 0, 0, 0]),           # never succeeds, one spike
    3: ([0.1, 0.2, 0.4, 0.3], [0, 0, 1, 1]),           # succeeds, never above 0.5
    4: ([0.1, 0.1, 0.1], [0, 0, 0]),                   # never succeeds, never fires
}


def _episode_arrays():
    ep, fr, p, y = [], [], [], []
    for e, (probs, labels) in EPISODES.items():
        ep += [e] * len(probs)
        fr += list(range(len(probs)))
        p += probs
        y += labels
    perm = np.random.default_rng(0).permutation(len(ep))
    return (np.array(ep)[perm], np.array(fr)[perm], np.array(y)[perm], np.array(p)[perm])


def test_episode_metrics_without_debounce():
    ep, fr, y, p = _episode_arrays()
    m = M.episode_metrics(ep, fr, y, p, threshold=0.5, consecutive=1, fps=10)
    outcomes = {r["episode"]: r["outcome"] for r in m["per_episode"]}
    assert outcomes == {0: "detected", 1: "false_termination", 2: "false_termination", 3: "missed",
                        4: "no_success"}
    assert (m["false_terminations"], m["missed_successes"], m["detected"]) == (2, 1, 1)
    assert m["mean_detection_delay_frames"] == 0.0
    rows = {r["episode"]: r for r in m["per_episode"]}
    assert rows[1]["firing_frame"] == 1 and rows[1]["onset_frame"] == 3
    assert rows[2]["onset_frame"] is None and rows[2]["firing_frame"] == 1
    assert rows[1]["max_probability_before_onset"] == 0.7


def test_episode_metrics_with_debounce_two():
    ep, fr, y, p = _episode_arrays()
    m = M.episode_metrics(ep, fr, y, p, threshold=0.5, consecutive=2, fps=10)
    rows = {r["episode"]: r for r in m["per_episode"]}
    # the spikes no longer fire; episodes 0 and 1 fire on frame 4, one frame after the onset
    assert [rows[e]["outcome"] for e in range(5)] == ["detected", "detected", "no_success", "missed", "no_success"]
    assert rows[0]["firing_frame"] == 4 and rows[0]["delay_frames"] == 1 and rows[0]["delay_s"] == 0.1
    assert (m["false_terminations"], m["missed_successes"]) == (0, 1)
    assert m["mean_detection_delay_frames"] == 1.0 and m["mean_detection_delay_s"] == pytest.approx(0.1)


def test_zero_false_termination_threshold():
    ep, fr, y, p = _episode_arrays()
    # k=1: the highest pre-onset probability is 0.7 (episode 1), the next probability above it 0.9
    assert M.zero_ft_threshold(ep, fr, y, p, 1) == pytest.approx(0.8)
    assert M.episode_metrics(ep, fr, y, p, 0.8, 1)["false_terminations"] == 0
    assert M.episode_metrics(ep, fr, y, p, 0.7, 1)["false_terminations"] == 1
    # k=2: the highest 2-frame-window minimum before any onset is 0.2, the next probability 0.3
    assert M.zero_ft_threshold(ep, fr, y, p, 2) == pytest.approx(0.25)
    m = M.episode_metrics(ep, fr, y, p, 0.25, 2)
    assert m["false_terminations"] == 0 and m["missed_successes"] == 0
    assert M.episode_metrics(ep, fr, y, p, 0.2, 2)["false_terminations"] > 0
    # a negative frame with the top probability leaves no usable threshold
    assert M.zero_ft_threshold([0, 0], [0, 1], [0, 1], [0.9, 0.8], 1) is None


def test_precision_threshold_highest_recall():
    ep, fr, y, p = _episode_arrays()
    # negatives top out at 0.7; above it three positives (0.95, 0.9, 0.9): precision 1, recall 1/2;
    # any threshold in (0.7, 0.9] gives these counts -> the midpoint 0.8
    assert M.precision_threshold(y, p, 0.99) == pytest.approx(0.8)
    # p >= 0.7 also reaches 0.75 (3/4) with the same recall; the tie goes to the higher precision
    assert M.precision_threshold(y, p, 0.75) == pytest.approx(0.8)
    assert M.precision_threshold(y, p, 0.7) == pytest.approx(0.35)  # p >= 0.4: 5/7 precision, recall 5/6
    assert M.precision_threshold(y, p, 0.6) == pytest.approx(0.25)  # p >= 0.3: 6/9, recall 1
    assert M.precision_threshold([0, 1], [0.9, 0.1], 0.99) is None
    assert M.precision_threshold([1, 0], [0.9, 0.1], 0.99) == pytest.approx(0.5)
    assert M.precision_threshold([1, 1], [0.9, 0.4], 0.99) == pytest.approx(0.2)  # 0 below the lowest


def test_recommended_threshold_is_the_larger():
    assert M.recommend_threshold(0.8, 0.9, 0.5) == 0.9
    assert M.recommend_threshold(None, 0.7, 0.5) == 0.7
    assert M.recommend_threshold(None, None, 0.5) == 0.5


def test_compute_metrics_binary():
    ep, fr, y, p = _episode_arrays()
    out = M.compute_metrics(M.Predictions(ep, fr, y, p), threshold=0.5, consecutive=1, target_precision=0.99,
                            fps=10, checkpoint_threshold=0.6)
    assert list(out)[: len(M.STABLE_KEYS)] == list(M.STABLE_KEYS)
    assert (out["episodes"], out["frames"], out["positives"], out["negatives"]) == (5, 21, 6, 15)
    assert (out["false_terminations"], out["missed_successes"]) == (2, 1)
    assert out["recommended_threshold"] == pytest.approx(0.8) and out["threshold"] == 0.5
    # at 0.5: positives .9 .95 .6 .9 predicted, .4 .3 missed; negatives .7 .6 predicted
    assert out["precision"] == pytest.approx(4 / 6) and out["recall"] == pytest.approx(4 / 6)
    assert out["confusion_matrix"] == [[13, 2], [2, 4]]
    names = [row["name"] for row in out["thresholds"]]
    assert names == ["0.5", "checkpoint", "target_precision", "zero_false_terminations", "recommended"]
    rec = out["thresholds"][-1]
    assert rec["threshold"] == pytest.approx(0.8) and rec["false_terminations"] == 0 and rec["precision"] == 1.0
    assert rec["recall"] == 0.5 and rec["missed_successes"] == 1
    assert out["thresholds"][1]["threshold"] == 0.6
    given = M.compute_metrics(M.Predictions(ep, fr, y, p), threshold=0.7, checkpoint_threshold=0.6)
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
