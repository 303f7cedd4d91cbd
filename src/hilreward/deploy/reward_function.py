"""The reward function an RL actor calls every step: frames in, (probability, success, reward, terminate) out.

    reward_fn = RewardFunction.from_pretrained("outputs/train/checkpoints/best", consecutive=2)
    result = reward_fn({"front": front_uint8_hwc, "wrist": wrist_uint8_hwc})
    if result.terminate: ...
    reward_fn.reset()            # at each episode start

Success is ``probability >= success_threshold`` held for ``consecutive`` frames in a row
(per environment for ``batch``), by the one reward rule of :mod:`hilreward.deploy.rule` (the reward
server's too). A :class:`~hilreward.deploy.override.HumanOverride` label wins for its step; when it
disagrees with the classifier it is recorded as a correction.

A version never changes inside an episode: with a backend whose version can change (a reward
server that hot-swaps retrained versions), each environment's episode keeps the version that
judged its first step, and the next ``reset`` takes the newest.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputError, ServingError
from ..images import to_uint8_hwc
from .backends import Backend, BackendOptions, EpisodeStep, Scores, create_backend, pick_camera, score
from .corrections import Correction, CorrectionSink, make_sink
from .override import HumanOverride
from .rule import RewardOptions, judge

log = logging.getLogger(__name__)

@dataclass
class RewardResult:
    """What the reward function says about one step of one environment."""

    probability: float | list[float]
    """Success probability (binary) or class probabilities (multi-class)."""
    success: bool
    """Success after threshold, debounce and human override."""
    reward: float
    """``success_reward`` on success (sparse) or ``probability * success_reward`` (dense)."""
    terminate: bool
    """``success and terminate_on_success``."""
    model_version: str
    """Short stable id of the model that judged the frames."""
    latency_ms: float
    """Wall time of the call that produced this result (a batched call: the whole batch)."""
    override: Optional[str] = None
    """``"success"`` / ``"failure"`` when a human override decided this step, else None."""
    uncertainty: Optional[float] = None
    """Spread of the success probability over an ensemble of heads (std, 0..0.5), when the backend has one
    (a reward server with retraining); None otherwise."""
    episode_id: int = 0
    """The episode's id (unique within one RewardFunction; a reward server sees it with every step)."""
    step: int = 0
    """Step of the episode (0 = the first judged after a reset)."""
    support: Optional[float] = None
    """The share of successes among the frame's nearest labelled frames (:mod:`hilreward.models.support`;
    ``cautious=True`` pays success only at 0.5 or more); computed with ``cautious`` (a reward server always sends
    it), None otherwise or when the model has no support bank."""
    novelty: Optional[float] = None
    """The frame's distance to the nearest labelled success, in units of the familiar radius (above 1: a state
    unlike every labelled success); None when the model has no support bank."""


@dataclass
class _EnvState:
    streak: int = 0
    step: int = 0
    episode: int = 0
    episode_id: int = 0
    version: Optional[str] = None
    """The version this episode keeps (set by its first step)."""


class RewardFunction:
    """Reward from camera frames for an RL loop; see the module docstring."""

    def __init__(self, backend: Backend, model_version: str | None = None,
                 options: RewardOptions | None = None, override: HumanOverride | None = None,
                 corrections: CorrectionSink | str | None = None) -> None:
        """``backend``: any registered backend's object; ``model_version`` defaults to the backend's."""
        self.backend = backend
        self._model_version = model_version or backend.model_version
        self.options = options or RewardOptions()
        self.options.validate()
        model = getattr(backend, "model", None)
        if self.options.cautious and model is not None and getattr(model, "support", None) is None:
            raise ConfigError("cautious=True needs a checkpoint with a support bank (hilreward train writes one; this "
                              "one has none): retrain it, or leave cautious off")
        if self.options.success_threshold is None:  # the checkpoint's (a reward server's: the one serving now)
            self.options = replace(self.options, success_threshold=float(getattr(backend, "threshold", 0.5)))
        served_gate = getattr(backend, "success_when", None)
        if self.options.success_when is None and served_gate:  # a reward server's gate, as its threshold
            self.options = replace(self.options, success_when=served_gate,
                                   state_names=self.options.state_names or getattr(backend, "state_names", None))
            self.options.validate()
            log.info("success_when=%r: the reward server's (pass success_when= to choose)", served_gate)
        self.override = override
        if override is not None and corrections is None:
            corrections = default_corrections_dir(self._model_version)
            log.info("human corrections go to %s (pass corrections=<folder or sink> to choose)", corrections)
        self.corrections = make_sink(corrections)
        self._states: list[_EnvState] = [_EnvState()]
        self._episode_ids = itertools.count(1)
        self._lost_versions: set[str] = set()

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path | None, success_threshold: float | None = None,
                        success_reward: float = 1.0, terminate_on_success: bool = True, mode: str = "sparse",
                        consecutive: int = 1, device: str = "cpu", backend: str = "auto", *,
                        compile: bool = False, channels_last: bool = False, success_class: int = -1,
                        threads: int | None = None, success_when: str | None = None,
                        state_names: Sequence[str] | None = None, revision: str | None = None,
                        cautious: bool = False,
                        override: HumanOverride | None = None,
                        corrections: CorrectionSink | str | None = None,
                        address: str | None = None, token: str | None = None,
                        timeout_s: float = 5.0) -> "RewardFunction":
        """Load a hilreward checkpoint (folder or Hub repo) or a LeRobot ``reward_classifier`` checkpoint.

        ``success_threshold=None`` uses the threshold stored in the checkpoint (0.5 if none).
        ``backend`` names an entry of the backend registry (:func:`~hilreward.deploy.register_backend`):
        ``auto`` (ONNX Runtime on the CPU when the model exports and matches torch, else torch),
        ``torch``, ``onnx`` (``<dir>/model.onnx``, or one exported once into hilreward's cache) or
        ``grpc``. ``compile=True`` wraps the torch forward in ``torch.compile``; ``channels_last=True``
        runs the torch model in NHWC memory layout (both choose torch under ``auto``). ``threads``:
        ONNX Runtime intra-op threads (the torch backend uses ``torch.get_num_threads()``).
        ``cautious=True`` pays success only where the checkpoint's support bank backs the head (see
        :mod:`hilreward.deploy.rule`). With an ``override``, disagreements go to ``corrections`` (a folder for a LeRobot v3.0
        dataset, or any CorrectionSink); by default the backend's place (the server for ``grpc``), else
        ``./corrections/<model_version>-<time>``.
        ``backend="grpc"`` asks a running ``hilreward serve`` at ``address`` (``path_or_repo`` is
        not loaded and may be None; ``token``, ``timeout_s`` as for RewardClient): the threshold
        (and ``success_when``) default to the server's, and each result names the version that judged it
        (it changes when the server swaps models).
        ``success_when``: a condition on the robot state that success must also meet (``"state[2] > 0.4"``,
        :mod:`hilreward.deploy.condition`); each call then takes the step's ``state`` (``state_names`` name
        its entries). ``revision``: the Hub revision (branch, tag or commit) when ``path_or_repo`` is a repo
        id (``"user/repo@v2"`` says the same).
        """
        options = RewardOptions(success_threshold=success_threshold, success_reward=success_reward,
                                terminate_on_success=terminate_on_success, mode=mode, consecutive=consecutive,
                                success_class=success_class, success_when=success_when,
                                state_names=state_names, cautious=cautious)
        options.validate()  # before the model loads: a bad argument is said at once
        runner = create_backend(backend, BackendOptions(
            checkpoint=path_or_repo, device=device, threads=threads, compile=compile, channels_last=channels_last,
            address=address, token=token, timeout_s=timeout_s, revision=revision))
        if override is not None and corrections is None and hasattr(runner, "correction_sink"):
            corrections = runner.correction_sink()
        return cls(runner, options=options, override=override, corrections=corrections)

    # ------------------------------------------------------------------ calls
    @property
    def model_version(self) -> str:
        """The version judging now: a remote backend's latest (the server may have swapped), else the checkpoint's."""
        return getattr(self.backend, "model_version", None) or self._model_version

    @property
    def camera_keys(self) -> list[str]:
        return self.backend.camera_keys

    def __call__(self, images: dict[str, Any], state: Any = None) -> RewardResult:
        """Judge one step of one environment: ``images`` maps camera -> uint8 (H, W, 3); ``state``: the step's
        ``observation.state`` (a vector, or a dict of named numbers), which ``success_when`` needs."""
        batched = {}
        for key in self.camera_keys:
            frame = pick_camera(images, key)
            batched[key] = frame[None] if _is_tensorlike(frame) else np.asarray(frame)[None]
        return self._judge(batched, 1, [state])[0]

    def batch(self, images: Sequence[dict[str, Any]] | dict[str, Any], states: Any = None) -> list[RewardResult]:
        """Judge one step of N environments at once (a list of per-env dicts, or a dict of (N, H, W, 3)).

        Each environment keeps its own debounce counter; results equal N single calls. ``states``: each
        environment's ``observation.state`` (N rows, or a list), which ``success_when`` needs.
        """
        if isinstance(images, dict):
            batched = {key: pick_camera(images, key) for key in self.camera_keys}
        else:
            if not images:
                raise InputError("batch() got an empty list of environments")
            batched = {key: _stack([pick_camera(env, key) for env in images], key) for key in self.camera_keys}
        sizes = {len(v) for v in batched.values()}
        if len(sizes) != 1:
            raise InputError(f"every camera needs the same batch size, got { {k: len(v) for k, v in batched.items()} }")
        n = sizes.pop()
        rows = [None] * n if states is None else list(states)
        if len(rows) != n:
            raise InputError(f"{len(rows)} states for {n} environments")
        return self._judge(batched, n, rows)

    def relabel(self, frames: dict[str, Any], batch_size: int = 64, version: str | None = None) -> np.ndarray:
        """Probabilities for stored frames (camera -> (B, H, W, 3)), e.g. to relabel a replay buffer.

        ``version``: the version that must judge them (a reward server's, while it holds it); ServingError when
        it cannot. Does not touch debounce state or overrides. :func:`~hilreward.deploy.relabel_rewards` turns
        the probabilities into rewards.
        """
        return self.relabel_scores(frames, batch_size, version).probabilities

    def relabel_scores(self, frames: dict[str, Any], batch_size: int = 64, version: str | None = None) -> Scores:
        """:meth:`relabel`, with the frames' support when the model has a support bank (``cautious`` needs it)."""
        frames = {key: pick_camera(frames, key) for key in self.camera_keys}
        n = {len(v) for v in frames.values()}
        if len(n) != 1:
            raise InputError(f"every camera needs the same number of frames, got { {k: len(v) for k, v in frames.items()} }")
        total = n.pop()
        can_pin = getattr(self.backend, "predict_pinned", None) is not None  # a backend whose version can change
        if version is not None and not can_pin and version != self.model_version:
            raise ConfigError(f"this reward function runs version {self.model_version}, not {version}; load that "
                              "version's checkpoint")
        pinned = version is not None and can_pin
        probs, support = [], []
        for i in range(0, total, batch_size):
            chunk = {k: v[i:i + batch_size] for k, v in frames.items()}
            rows = len(next(iter(chunk.values())))
            scores = score(self.backend, chunk, [EpisodeStep(version=version)] * rows if pinned else None,
                           support=self.options.cautious)
            used = scores.versions or []
            if pinned and any(v != version for v in used):
                raise ServingError(f"version {version} is no longer served (the server answered with "
                                   f"{sorted(set(used))}); relabel with the version serving now")
            probs.append(scores.probabilities)
            support.append(scores.support)
        whole = None if not support or any(s is None for s in support) else np.concatenate(support)
        return Scores(np.concatenate(probs) if probs else np.zeros((0,), dtype=np.float32), whole)

    def reset(self, env_index: int | None = None) -> None:
        """Start a new episode for ``env_index`` (every environment when None): clears the debounce counter."""
        targets = self._states if env_index is None else [self._state(env_index)]
        for state in targets:
            if state.step:  # an episode happened: the next one gets a new number (a reset before any step does not)
                state.episode += 1
            state.streak, state.step = 0, 0
        if self.override is not None and env_index is None:
            self.override.clear()
        flush = getattr(self.corrections, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Write pending corrections, release override devices and close a remote backend's channel."""
        if self.corrections is not None:
            self.corrections.close()
        if self.override is not None:
            self.override.close()
        backend_close = getattr(self.backend, "close", None)
        if backend_close is not None:
            backend_close()

    # ------------------------------------------------------------------ internals
    def _state(self, index: int) -> _EnvState:
        while len(self._states) <= index:
            self._states.append(_EnvState())
        return self._states[index]

    def _predict(self, batched: dict[str, Any], states: list[_EnvState],
                 robot: list[Any]) -> tuple[np.ndarray, list[str], np.ndarray | None]:
        """Probabilities, the version that judged each row and the support (None without a support bank); every
        episode keeps the version of its first step. ``robot``: each row's robot state (travels to a reward
        server, which may gate on it too)."""
        for state in states:
            if state.step == 0:
                state.episode_id, state.version = next(self._episode_ids), None
        scores = score(self.backend, batched, [EpisodeStep(s.episode_id, s.step, s.version, r)
                                               for s, r in zip(states, robot)], support=self.options.cautious)
        versions = scores.versions or [self.model_version] * len(states)
        for state, version in zip(states, versions):
            if state.version is not None and version != state.version and state.version not in self._lost_versions:
                self._lost_versions.add(state.version)
                log.warning("model version %s is no longer served; episode %d goes on with %s", state.version,
                            state.episode_id, version)
            state.version = version
        return scores.probabilities, versions, scores.support

    def _judge(self, batched: dict[str, Any], n: int, robot: list[Any]) -> list[RewardResult]:
        start = time.perf_counter()
        states = [self._state(i) for i in range(n)]
        if self.options.success_when is not None and any(r is None for r in robot):
            raise InputError(f"success_when={self.options.success_when!r} needs the robot state: pass state= "
                             "(observation.state) with the frames")
        probs, versions, support = self._predict(batched, states, robot)
        labels = self.override.take(n) if self.override is not None else [None] * n
        latency = (time.perf_counter() - start) * 1e3
        opts = self.options
        results = []
        for i, state in enumerate(states):
            version, p = versions[i], probs[i]
            label, source = labels[i] if labels[i] is not None else (None, None)
            backing, novelty = (None, None) if support is None else (float(support[i][0]), float(support[i][1]))
            judged = judge(p, opts, state.streak, label=label, state=robot[i], support=backing)
            override = None
            if label is not None:
                override = "success" if label else "failure"
                classifier = judge(p, opts, state.streak, state=robot[i], support=backing)
                if judged.success != classifier.success and self.corrections is not None:
                    self.corrections.add(Correction(
                        frames={k: to_uint8_hwc(v[i], k) for k, v in batched.items()}, label=int(label),
                        probability=_probability(p), model_version=version, time=time.time(),
                        episode=state.episode, step=state.step, env_index=i, source=source,
                        success_class=opts.success_class))
            state.streak = judged.streak
            results.append(RewardResult(
                probability=_probability(p), success=judged.success, reward=judged.reward,
                terminate=judged.terminate, model_version=version, latency_ms=latency, override=override,
                episode_id=state.episode_id, step=state.step, support=backing, novelty=novelty))
            state.step += 1
        return results


def _probability(p: np.ndarray) -> float | list[float]:
    return [float(x) for x in p] if p.ndim else float(p)


def _is_tensorlike(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


def _stack(frames: list[Any], key: str) -> Any:
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1:
        raise InputError(f"camera {key!r}: environments gave frames of different shapes {sorted(shapes)}")
    if isinstance(frames[0], torch.Tensor):
        return torch.stack(frames)
    return np.stack([np.asarray(f) for f in frames])


def default_corrections_dir(version: str) -> Path:
    """``./corrections/<model_version>-<UTC time>``: where corrections go when no sink is given."""
    return Path("corrections") / f"{version}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


__all__ = ["RewardFunction", "RewardResult"]
