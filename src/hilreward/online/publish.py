"""Publishing a candidate (step 5 of :mod:`.retrainer`): the next immutable version, with its support bank.

A version's support bank (:mod:`hilreward.models.support`, what the cautious reward compares with) is the
checkpoint's plus the corrections the version trains on (not contradicted): the humans' labels in new states. A
version whose encoder's last stage adapted describes frames differently: its bank is built again, on the offline
training frames (as many as the checkpoint's bank holds) and the corrections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..models.checkpoint import update_config
from ..models.support import Support, pool_numpy
from ..training.support_bank import pick_rows
from .model import RetrainModel, State
from .pool import FeaturePool
from .sorting import Batch
from .versions import VersionRecord, VersionStore


def version_support(net: RetrainModel, pool: FeaturePool, state: State, batch: Batch) -> Support | None:
    """The support bank of a version with weights ``state`` trained on ``batch`` (None: the checkpoint has none)."""
    base = net.support
    if base is None:
        return None
    own = batch.active & ~batch.contradicted
    ids = batch.ids[own]
    success = net.is_success(batch.labels[own]).astype(bool)
    keys = net.keys
    if base.encoder is not None:  # its own frozen encoder: the corrections' vectors were computed with it
        vectors = np.stack([pool.support_vector_of[int(i)] for i in ids]) if len(ids) else np.zeros((0, 1))
        return base.extended(vectors, success)
    if state.last is None:  # the checkpoint's encoder: the corrections' pooled features
        return base.extended(pool_numpy({k: pool.features[k][batch.rows[own]] for k in keys}, keys), success)
    assert pool.trunk is not None
    offline = pool.offline_labels
    offline_success = net.is_success(offline).astype(bool)
    picked = pick_rows(offline, offline_success, int(base.vectors.shape[0]))
    rows = np.concatenate([picked, batch.rows[own]]).astype(np.int64)
    labels = np.concatenate([offline_success[picked], success])
    episodes = np.concatenate([pool.train_at[0][picked],
                               -1 - np.array([batch.groups[i][0] for i in np.flatnonzero(own)], np.int64)])
    net.load_last(state.last)
    features = {k: net.last_stage(pool.trunk[k][rows]) for k in keys}
    return Support.build(pool_numpy(features, keys), labels, episodes, k=base.k)


def publish_version(net: RetrainModel, versions: VersionStore, state: State, support: Support | None,
                    metrics: dict[str, Any], record_metrics: dict[str, float], corrections_used: int,
                    last_correction_id: int, train_config_yaml: str | None) -> VersionRecord:
    """Write the model with ``state`` and ``support`` as the next immutable version (named after version 0's,
    ``<base>-r<n>``): ``metrics`` go to its checkpoint, ``record_metrics`` to its record."""
    net.load(state)
    net.model.set_support(support, net.success_class)
    base_version = versions.get(0).version

    def fill(tmp: Path, version: str) -> None:
        net.model.save_pretrained(tmp, train_config_yaml=train_config_yaml, metrics=metrics)
        update_config(tmp, {"model_version": version})  # RewardFunction.from_pretrained(versions/<n>) names it too

    return versions.publish(fill, lambda number: f"{base_version}-r{number}", record_metrics, corrections_used,
                            last_correction_id)
