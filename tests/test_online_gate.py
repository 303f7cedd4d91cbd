"""The retrainer's gate on what RL feels (online.gate), boundary frames of late keypresses, and the split of an
encoder at its last stage (online.adapt): the rules on hand-made traces and tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hilreward.errors import ConfigError
from hilreward.online import gate
from hilreward.online.sorting import boundary_steps

FPS, TOL = 10.0, 0.5  # 5 frames of tolerance


def held(episodes: list[int], length: int = 40) -> gate.HeldOut:
    return gate.HeldOut(np.repeat(episodes, length), np.tile(np.arange(length), len(episodes)), FPS, TOL)


def trace(length: int = 40, onset: int | None = 30, fire: int | None = 30) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of one episode: success from ``onset``, the model firing from ``fire``."""
    y = np.zeros(length, int)
    p = np.full(length, 0.1)
    if onset is not None:
        y[onset:] = 1
    if fire is not None:
        p[fire:] = 0.9
    return y, p


def test_regressions_count_what_rl_feels_not_jitter():
    h = held([0, 1, 2])
    (y0, s0), (_, early), (_, jitter) = trace(), trace(fire=10), trace(fire=27)
    (y1, s1), (_, missed) = trace(onset=20, fire=21), trace(onset=20, fire=None)
    (y2, s2), (_, false) = trace(onset=None, fire=None), trace(onset=None, fire=5)
    labels, serving = np.concatenate([y0, y1, y2]), np.concatenate([s0, s1, s2])

    found, before, after = gate.regressions(h, labels, serving, np.concatenate([jitter, s1, s2]), 0.5,
                                            gate.DEFAULT_VETO)
    assert found == [] and after["gross_early"] == 0  # 3 frames early: jitter, never a regression
    found, before, after = gate.regressions(h, labels, serving, np.concatenate([early, missed, false]), 0.5,
                                            gate.DEFAULT_VETO)
    assert [(r.episode, r.kind, r.serving, r.label) for r in found] == [
        (0, "gross_early", "detected", 0), (1, "missed", "detected", 1), (2, "false_success", "no_success", 0)]
    assert list(h.frame_index[found[0].rows]) == list(range(10, 30))  # the frames it now fires on wrongly
    assert list(h.frame_index[found[1].rows]) == list(range(21, 40))  # frame 20 was wrong already
    assert before == {"gross_early": 0, "false_success": 0, "missed": 0, "late": 0}
    assert after == {"gross_early": 1, "false_success": 1, "missed": 1, "late": 0}
    assert "episode 0 gross early (frames 10-29; serving: detected)" == found[0].describe(h.frame_index)
    # veto names what counts: a late firing (beyond the tolerance) only when asked for
    late = np.concatenate([trace(fire=38)[1], s1, s2])
    assert gate.regressions(h, labels, serving, late, 0.5, gate.DEFAULT_VETO)[0] == []
    assert [r.kind for r in gate.regressions(h, labels, serving, late, 0.5, ("late",))[0]] == ["late"]


def test_a_worse_error_is_a_regression_the_same_or_a_lesser_one_is_not():
    h = held([0])
    y, late = trace(fire=37)
    assert gate.outcomes(h, y, late, 0.5) == {0: "late"}
    assert [r.kind for r in gate.regressions(h, y, late, trace(fire=None)[1], 0.5, gate.DEFAULT_VETO)[0]] == ["missed"]
    y, early = trace(fire=5)
    assert gate.regressions(h, y, early, trace(fire=None)[1], 0.5, gate.DEFAULT_VETO)[0] == []  # one error for another
    # success starting within the tolerance of the recording's end: no firing cannot be told from jitter
    y, p = trace(onset=37, fire=None)
    assert gate.outcomes(h, y, p, 0.5) == {0: "undecided"}
    assert gate.regressions(h, y, trace(onset=37, fire=37)[1], p, 0.5, gate.DEFAULT_VETO)[0] == []


def test_blame_names_the_corrections_labelled_otherwise_most_alike_the_wrong_frames():
    h = held([0])
    y, serving = trace()
    found, _, _ = gate.regressions(h, y, serving, trace(fire=10)[1], 0.5, gate.DEFAULT_VETO)
    held_repr = np.zeros((40, 3))
    held_repr[:, 0] = 1.0  # every held-out frame points along x
    corr_repr = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [1, 0, 0], [0.8, 0, 0.2]], float)
    labels = np.array([1, 1, 1, 0, 1])  # the one labelled 0 agrees with the wrong frames: never blamed
    eligible = np.array([True, True, True, True, False])  # e.g. a boundary frame or an accepted one
    picked = gate.blame(found, held_repr, corr_repr, labels, eligible, per_regression=2)
    assert sorted(picked) == [0, 1]
    reg, row = picked[0]
    record = gate.conflict_record(reg, row, h.frame_index)
    assert record == {"episode": 0, "start": 10, "end": 30, "frame": int(h.frame_index[row]), "kind": "gross_early",
                      "label": 0}


def test_boundary_frames_are_edges_of_runs_not_islands():
    served = {s: (0.9 if s >= 10 else 0.1) for s in range(2, 19)}  # the server fired from step 10

    def flags(items, window=2):
        return boundary_steps([(s, y, served) for s, y in items], 0.5, window).tolist()

    assert flags([(10, 0)]) == [True]  # a keypress one step late: the first success step labelled failure
    assert flags([(5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0)]) == [False, False, False, False, True, True]
    assert flags([(14, 0)]) == [False]  # alone inside a run served otherwise: gated as usual
    assert flags([(10, 0)], window=0) == [False]
    assert flags([(13, 1)]) == [False]  # agrees with its neighbours: no label change near it
    assert flags([(11, 1)]) == [True]  # two steps from where the served labels change
    assert boundary_steps([(10, 0, None)], 0.5, 2).tolist() == [False]  # nothing known around it


def test_last_stage_splits_sequential_encoders_and_refuses_others():
    from hilreward.models import ClassifierConfig, RewardClassifier
    from hilreward.online.adapt import LastStage

    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(encoder="small_cnn", camera_keys=["front"], image_size=[48, 48],
                                              latent_dim=8, hidden_dim=8)).eval()
    stage = LastStage(model)
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(stage.module(stage.trunk(x)), model.encoder(x))
    assert stage.trunk(x).shape[1] == 64 and tuple(model.encoder(x).shape[1:]) == (64, 3, 3)
    with torch.no_grad():
        for p in stage.module.parameters():
            p.add_(1.0)
    stage.load(None)  # back to the checkpoint's weights
    with torch.no_grad():
        torch.testing.assert_close(stage.module(stage.trunk(x)), model.encoder(x))

    class Pooled(torch.nn.Module):  # computes its output after its last stage: cannot adapt that stage alone
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return self.backbone(x) * 0.5

    model.encoder.backbone = Pooled(model.encoder.backbone)
    with pytest.raises(ConfigError, match="retrain.scope=head"):
        LastStage(model)
