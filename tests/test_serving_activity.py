"""The server's recent-prediction log and query queue: both bounded, the queue keeps the neediest frames."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hilreward.errors import InputError
from hilreward.serving.activity import PredictionLog, QueryQueue, need


def _add(log: PredictionLog, p: float, episode: int = 0, step: int = 0, uncertainty: float | None = None, side=8):
    frames = {"observation.images.front": np.zeros((side, side, 3), np.uint8)}
    return log.add(episode_id=episode, step=step, frames=frames, probability=p, probabilities=p, uncertainty=uncertainty, threshold=0.5, success=p >= 0.5,
                   model_version="v")


def test_prediction_log_is_bounded_by_count_and_bytes():
    log = PredictionLog(size=5, max_mb=1.0)
    ids = [_add(log, 0.1).id for _ in range(12)]
    assert ids == list(range(1, 13)) and log.newest_id == 12
    assert [p.id for p in log.last(10)] == [8, 9, 10, 11, 12]
    with pytest.raises(InputError, match="prediction 3 is not in the server's buffer .* ids 8..12"):
        log.get([9, 3])
    queued = _add(PredictionLog(), 0.5)  # a queued frame outlives the log: it can still be labelled
    assert [p.id for p in log.get([9, 1], also={1: queued})] == [9, 1]
    big = PredictionLog(size=100, max_mb=1.0)  # 300 KiB frames: 3 fit in 1 MiB
    for _ in range(6):
        _add(big, 0.1, side=320)
    assert [p.id for p in big.last(100)] == [4, 5, 6]
    assert [p.episode_id for p in log.last(3, episode_id=0)] == [0, 0, 0] and log.last(3, episode_id=9) == []


def test_need_is_closeness_to_the_threshold_or_the_ensemble_spread():
    assert need(0.5, 0.5, None) == (1.0, "near the threshold")
    assert need(0.0, 0.5, None)[0] == 0.0 and need(0.75, 0.5, None)[0] == pytest.approx(0.5)
    assert need(0.95, 0.5, 0.2) == (pytest.approx(0.8), "the ensemble disagrees")
    # measured on its own side of the threshold: at 0.95, a confident 0.99 is not close (the queue filled with them)
    assert need(0.9, 0.8, None)[0] == pytest.approx(0.5) and need(0.99, 0.95, None)[0] == pytest.approx(0.2)
    assert need(0.6, 0.8, None)[0] == pytest.approx(0.75)


def test_a_success_claimed_on_an_unfamiliar_state_needs_a_human_first():
    """Hacking starts where the reward pays on a state no labelled success resembles: such a claim outranks every
    frame near the threshold, the more unfamiliar the higher; a familiar claim or an unfamiliar non-claim does not."""
    near = need(0.8, 0.8, None)
    far = need(0.99, 0.8, None, success=True, support=0.2, novelty=3.0)
    farther = need(0.99, 0.8, None, success=True, support=0.0, novelty=5.0)
    assert far[1] == "a success claimed on an unfamiliar state" and near[0] < far[0] < farther[0] <= 2.0
    assert need(0.99, 0.8, None, success=True, support=1.0, novelty=0.5)[1] == "near the threshold"
    assert need(0.3, 0.8, None, success=False, support=0.0, novelty=5.0)[1] == "near the threshold"
    assert need(0.99, 0.8, None, success=True, support=0.9, novelty=1.5)[1] == "a success claimed on an unfamiliar state"


def test_query_queue_is_bounded_keeps_the_neediest_and_one_frame_per_gap():
    rng = np.random.default_rng(0)
    log, queue = PredictionLog(size=1000), QueryQueue(size=4, min_need=0.5, min_gap=3)
    offered = []
    for episode in range(20):
        for step in range(20):
            p = _add(log, float(rng.uniform()), episode, step, uncertainty=float(rng.uniform(0, 0.1)))
            queue.offer(p)
            offered.append(p)
    items = queue.items()
    assert len(items) == 4
    assert [q.need for q in items] == sorted((q.need for q in items), reverse=True)
    scores = sorted((need(p.probability, 0.5, p.uncertainty)[0] for p in offered), reverse=True)
    assert items[0].need == pytest.approx(scores[0]) and min(q.need for q in items) >= 0.5
    assert items[-1].need >= scores[10]  # among the neediest of 400 (one per 3 steps of an episode)
    for a in items:
        for b in items:
            if a is not b and a.prediction.episode_id == b.prediction.episode_id:
                assert abs(a.prediction.step - b.prediction.step) >= 3
    assert len(queue.items(limit=2)) == 2
    queue.remove({items[0].prediction.id})
    assert len(queue.items()) == 3
    queue.rescore(lambda p: replace(p, probability=0.0))  # a new version is confident: nothing left to ask
    assert queue.items() == []
