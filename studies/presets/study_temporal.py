"""Experiment: does temporal context help the soft edges? (issue 14; the answer on 9 tasks was no)

Runs ``study_presets.py`` with each camera's previous frame (same episode; frame 0 repeats itself) added as
an extra camera ``<camera>_prev``: the scratch encoder sees both frames and the head gets the previous frame's
features next to the current one, without changing the model. The frame loader and the evaluation's camera
check are wrapped in this process only; nothing here is part of hilreward.

Settings: ``s600-prevs`` (a frame and its previous one get the same random shift) and ``s600-prev`` (each
camera its own shift). Results land beside the preset study's (``--out``), and ``study_presets.py report``
reads them like any setting.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python studies/presets/study_temporal.py run --settings s600-prevs \\
        --sim /work/data-sim --out /work/data-sim/study-temporal
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study_presets  # noqa: E402

import hilreward.data  # noqa: E402
import hilreward.evaluation.evaluate  # noqa: E402,F401
import hilreward.training.batches  # noqa: E402
import hilreward.training.loop as _train  # noqa: E402

SUFFIX = "_prev"
_load = hilreward.data.load_frame_data
_evaluate = sys.modules["hilreward.evaluation.evaluate"]
_check_cameras = _evaluate._check_cameras
_draw_offsets = hilreward.training.batches.shift_offsets


def load_with_previous(dataset, label, image_size, cache_dir=None, require_labels=True):
    """``load_frame_data`` plus ``<camera>_prev`` (the same episode's previous frame) for every camera."""
    asked = list(dataset.cameras or [])
    data = _load(replace(dataset, cameras=[c for c in asked if not c.endswith(SUFFIX)] or None), label, image_size,
                 cache_dir=cache_dir, require_labels=require_labels)
    episode = data.episode_index
    first = np.r_[True, episode[1:] != episode[:-1]]
    previous = np.arange(len(episode)) - 1
    previous[first] = np.flatnonzero(first)
    images = dict(data.images)
    for camera in data.camera_keys:
        images[camera + SUFFIX] = np.asarray(images[camera])[previous]
    keys = asked if any(c.endswith(SUFFIX) for c in asked) else \
        [*data.camera_keys, *(c + SUFFIX for c in data.camera_keys)]
    return replace(data, images={k: images[k] for k in keys}, camera_keys=keys)


_drawn: list = []


def shared_offsets(n, pad, generator=None):
    """Called once per camera per batch, cameras first and their ``_prev`` after: the ``_prev`` ones reuse
    their camera's offsets (two cameras)."""
    if len(_drawn) == 4:
        _drawn.clear()
    out = _draw_offsets(n, pad, generator) if len(_drawn) < 2 else _drawn[len(_drawn) - 2]
    _drawn.append(out)
    return out


def main(argv: list[str]) -> int:
    hilreward.data.load_frame_data = load_with_previous  # read at call time by evaluate and the study's scoring
    _train.load_frame_data = load_with_previous  # imported by name at module level
    _evaluate._check_cameras = lambda ds, keys, folder: _check_cameras(
        ds, [k for k in keys if not k.endswith(SUFFIX)], folder)
    study_presets.SETTINGS["s600-prevs"] = ["training.steps=600"]
    study_presets.SETTINGS["s600-prev"] = ["training.steps=600"]
    if "s600-prevs" in argv:
        if "s600-prev" in argv:
            raise SystemExit("run s600-prevs and s600-prev in separate processes (the shift patch is global)")
        hilreward.training.batches.shift_offsets = shared_offsets
    return study_presets.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
