"""hilreward inside LeRobot's HIL-SERL loop (LeRobot is optional: ``pip install 'hilreward[lerobot]'``).

Two ways in, both on LeRobot's observations (``observation.images.<cam>`` float (B, 3, H, W) in
[0, 1], any size, cropped or not):

- LeRobot's stock ``RewardClassifierProcessorStep`` with a hilreward classifier::

      step.reward_classifier = reward_classifier("runs/cls/checkpoints/best")

  :func:`reward_classifier` gives an object with LeRobot's classifier contract,
  ``predict_reward(batch, threshold) -> Tensor``, over any hilreward backend (auto, torch, onnx, grpc).
  It is stateless: LeRobot's step never resets its classifier, so it has no debounce.

- :class:`HilrewardRewardStep`, a LeRobot ``ProcessorStep`` registered as
  ``hilreward_reward_classifier`` (when LeRobot is importable): LeRobot's fields plus
  ``consecutive``, ``mode``, ``backend``, ``address``, ``token`` and ``corrections``. It resets its
  debounce when the pipeline resets (episode start), writes probability, success and
  model_version to ``info["reward_classifier"]``, lets LeRobot's human success / failure events
  decide their step and, with ``corrections`` set, records the ones that disagree with the
  classifier as corrections (as :class:`~hilreward.deploy.HumanOverride` does). Its
  ``get_config()`` holds everything needed to rebuild it (LeRobot's own step drops
  ``pretrained_path``). :func:`add_reward_step` puts it where LeRobot puts its own (before the
  batch dimension is added); :func:`with_reward_step` does that to ``make_processors``, so LeRobot's
  actor runs unchanged.

- :func:`relabel_replay_buffer`: the rewards (and success terminations) of every transition in LeRobot's
  ``ReplayBuffer`` as a new version gives them; with :class:`~hilreward.integrations.versions.ServedVersions`,
  on every version a reward server publishes::

      update = versions.poll()
      if update is not None:
          relabel_replay_buffer(replay_buffer, update.reward_fn, version=update.pin)

This module imports without LeRobot; only the step needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from ..access import resolve_token
from ..deploy.override import HumanOverride
from ..deploy.replay import relabel_rewards
from ..deploy.reward_function import RewardFunction
from ..deploy.rule import success_probabilities
from ..errors import ConfigError, InputError
from ..utils import CAMERA_PREFIX

try:
    from lerobot.processor import ProcessorStep, ProcessorStepRegistry, TransitionKey
    from lerobot.teleoperators.utils import TeleopEvents
except ImportError:  # LeRobot is optional
    ProcessorStep, ProcessorStepRegistry, TransitionKey, TeleopEvents = object, None, None, None

REGISTRY_NAME = "hilreward_reward_classifier"
STATE_KEY = "observation.state"
"""LeRobot's key of the robot state (what ``success_when`` reads)."""
INFO_KEYS = ("probability", "success", "model_version", "override", "latency_ms", "support", "novelty")
"""What the step puts into ``info["reward_classifier"]`` (one value, or one per environment)."""


def lerobot_images(observation: Mapping[str, Any], camera_keys: list[str]) -> dict[str, Any]:
    """The checkpoint's cameras from a LeRobot observation (or the ``images`` dict LeRobot's step builds).

    A camera is found under its full key (``observation.images.front``) or its short name; a
    one-camera checkpoint also takes the only image key there is (e.g. ``observation.image``).
    """
    images = {k: v for k, v in observation.items() if "image" in k}
    out = {}
    for key in camera_keys:
        short = key[len(CAMERA_PREFIX):] if key.startswith(CAMERA_PREFIX) else key
        found = next((observation[k] for k in (key, CAMERA_PREFIX + short, short) if k in observation), None)
        if found is None and len(camera_keys) == 1 and len(images) == 1:
            found = next(iter(images.values()))
        if found is None:
            raise InputError(f"camera {key!r} is not in the observation (image keys: {sorted(images)}); name the "
                             f"cameras as in training (observation.images.{short})")
        out[key] = found
    return out


def lerobot_states(observation: Mapping[str, Any], reward_fn: RewardFunction, images: Mapping[str, Any]) -> Any:
    """Each environment's ``observation.state`` row when ``reward_fn`` gates success on it, else None."""
    if reward_fn.options.success_when is None:
        return None
    state = observation.get(STATE_KEY)
    if state is None:
        raise InputError(f"success_when={reward_fn.options.success_when!r} reads the robot state, and the observation "
                         f"has no {STATE_KEY!r} (keys: {sorted(observation)})")
    rows = state.detach().cpu().numpy() if isinstance(state, torch.Tensor) else np.asarray(state)
    frames = next(iter(images.values()))
    batched = getattr(frames, "ndim", 3) == 4  # (B, 3, H, W) or (B, H, W, 3)
    return list(rows.reshape(len(frames), -1)) if batched else [rows.reshape(-1)]


class PredictRewardAdapter:
    """A hilreward RewardFunction behind LeRobot's reward-classifier contract (see :func:`reward_classifier`)."""

    def __init__(self, reward_fn: RewardFunction) -> None:
        self.reward_fn = reward_fn

    @property
    def threshold(self) -> float:
        """The reward function's success threshold (the checkpoint's unless one was given)."""
        return self.reward_fn.options.success_threshold

    def probabilities(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Success probability per sample, float (B,) on the input's device.

        ``batch``: LeRobot's images (float (B, 3, H, W) in [0, 1], or uint8 (B, H, W, 3)), keyed as in
        :func:`lerobot_images`. Multi-class models give their ``success_class``'s probability.
        """
        images = lerobot_images(batch, self.reward_fn.camera_keys)
        probs = self.reward_fn.relabel(images)
        score = success_probabilities(probs, self.reward_fn.options.success_class)
        device = next((v.device for v in images.values() if isinstance(v, torch.Tensor)), "cpu")
        return torch.from_numpy(np.ascontiguousarray(score, dtype=np.float32)).to(device)

    def predict_reward(self, batch: Mapping[str, Any], threshold: float = 0.5) -> torch.Tensor:
        """LeRobot's contract: 1.0 where the success probability is >= ``threshold``, else 0.0 (float (B,))."""
        return (self.probabilities(batch) >= threshold).float()

    # LeRobot calls these on the classifiers it loads itself; they cost nothing here.
    def to(self, *args: Any, **kwargs: Any) -> "PredictRewardAdapter":
        return self

    def eval(self) -> "PredictRewardAdapter":
        return self


def reward_classifier(checkpoint: str | Path | None, **options: Any) -> PredictRewardAdapter:
    """``RewardFunction.from_pretrained(checkpoint, **options)`` behind LeRobot's ``predict_reward`` contract.

    For ``step.reward_classifier = reward_classifier("<checkpoint>")`` on LeRobot's
    ``RewardClassifierProcessorStep``; set ``step.success_threshold`` to ``.threshold`` to use the
    checkpoint's threshold. Debounce, human overrides and corrections need state across a
    pipeline's resets: use :class:`HilrewardRewardStep` for them.
    """
    stateful = sorted(k for k in ("consecutive", "override", "corrections") if options.get(k) not in (None, 1))
    if stateful:
        raise ConfigError(f"reward_classifier() is stateless (LeRobot's step never resets it), so {stateful} "
                          "cannot apply; use HilrewardRewardStep, which resets at every episode start")
    return PredictRewardAdapter(RewardFunction.from_pretrained(checkpoint, **options))


class _Unrecorded:
    """The correction sink of a step without ``corrections``: human events decide their step, nothing is kept."""

    def add(self, correction: Any) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class HilrewardRewardStep(ProcessorStep):
    """hilreward's reward step for LeRobot pipelines (see the module docstring)."""

    pretrained_path: Optional[str] = None
    """hilreward or LeRobot ``reward_classifier`` checkpoint (folder or Hub repo id); None with backend='grpc'."""
    device: str = "cpu"
    """torch device of the model."""
    success_threshold: Optional[float] = None
    """Success when the probability is >= this; None: the checkpoint's (or the server's)."""
    success_reward: float = 1.0
    """Reward on success (sparse), or the scale of the probability (dense)."""
    terminate_on_success: bool = True
    """Set the transition's done on success."""
    consecutive: int = 1
    """Frames in a row at or above the threshold before success (reset at every episode start)."""
    mode: str = "sparse"
    """``sparse``: success_reward on success, else the transition's reward is kept (as LeRobot's step);
    ``dense``: probability * success_reward."""
    cautious: bool = False
    """Pay success only where the checkpoint's support bank backs the head (:mod:`hilreward.deploy.rule`)."""
    backend: str = "auto"
    """A registered backend: auto, torch, onnx or grpc."""
    address: Optional[str] = None
    """``host:port`` of ``hilreward serve`` for backend='grpc'."""
    token: Optional[str] = None
    """The server's token; None: ``$HILREWARD_TOKEN`` (keeps the secret out of saved pipeline configs)."""
    corrections: Optional[str] = None
    """Where human events that disagree with the classifier are recorded: a folder (LeRobot v3.0
    dataset), or ``"server"`` (backend='grpc'); None: not recorded."""
    success_when: Optional[str] = None
    """A condition on ``observation.state`` that success must also meet (``"state[2] > 0.4"``, as HIL-SERL
    per task); None: the classifier alone (with backend='grpc': the server's)."""
    state_names: Optional[list[str]] = None
    """Names of ``observation.state``'s entries, for ``success_when`` to read by name."""
    pretrained_revision: Optional[str] = None
    """Hub revision (branch, tag or commit) of ``pretrained_path`` when it is a repo id."""
    reward_fn: Optional[RewardFunction] = field(default=None, repr=False)
    """The loaded reward function (built from the fields above when None; not part of the config)."""

    def __post_init__(self) -> None:
        if ProcessorStepRegistry is None:
            raise ConfigError("HilrewardRewardStep is a LeRobot processor step: `pip install 'hilreward[lerobot]'`; "
                              "without LeRobot use RewardFunction or RewardClassifierWrapper")
        if self.reward_fn is None:
            self.reward_fn = self._load()

    def _load(self) -> RewardFunction:
        if self.corrections == "server" and self.backend != "grpc":
            raise ConfigError("corrections='server' sends them to the reward server: it needs backend='grpc'")
        sink = None if self.corrections == "server" else (self.corrections or _Unrecorded())
        return RewardFunction.from_pretrained(
            self.pretrained_path, success_threshold=self.success_threshold, success_reward=self.success_reward,
            terminate_on_success=self.terminate_on_success, mode=self.mode, consecutive=self.consecutive,
            device=self.device, backend=self.backend, address=self.address, cautious=self.cautious,
            token=resolve_token(self.token), success_when=self.success_when, state_names=self.state_names,
            revision=self.pretrained_revision, override=HumanOverride(), corrections=sink)

    def __call__(self, transition: dict) -> dict:
        new = transition.copy()
        observation = new.get(TransitionKey.OBSERVATION)
        if not observation or not any("image" in k for k in observation):
            return new
        info = dict(new.get(TransitionKey.INFO) or {})
        label = human_label(info)
        if label is not None:
            mark = self.reward_fn.override.success if label[0] else self.reward_fn.override.failure
            mark(source=label[1])
        start = time.perf_counter()
        images = lerobot_images(observation, self.reward_fn.camera_keys)
        results = self.reward_fn.batch(images, states=lerobot_states(observation, self.reward_fn, images))
        n = len(results)
        old_rewards = _per_env(new.get(TransitionKey.REWARD, 0.0), n)
        old_dones = _per_env(new.get(TransitionKey.DONE, False), n)
        # sparse keeps the transition's reward unless the step succeeds or a human decided it (as LeRobot's step)
        rewards = [r.reward if (r.success or r.override or self.mode == "dense") else float(old)
                   for r, old in zip(results, old_rewards)]
        dones = [bool(old) or r.terminate for r, old in zip(results, old_dones)]
        new[TransitionKey.REWARD] = rewards[0] if n == 1 else torch.tensor(rewards)
        new[TransitionKey.DONE] = dones[0] if n == 1 else torch.tensor(dones)
        info["reward_classifier"] = {key: getattr(results[0], key) if n == 1 else [getattr(r, key) for r in results]
                                     for key in INFO_KEYS}
        info["reward_classifier_frequency"] = 1.0 / max(time.perf_counter() - start, 1e-9)  # LeRobot's key
        new[TransitionKey.INFO] = info
        return new

    def reset(self) -> None:
        """Episode start (LeRobot resets the pipeline): clears the debounce and pending human labels."""
        self.reward_fn.reset()

    def get_config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reward_fn"}

    def transform_features(self, features: Any) -> Any:
        return features

    def close(self) -> None:
        """Write pending corrections and release the backend."""
        self.reward_fn.close()


def human_label(info: Mapping[Any, Any]) -> Optional[tuple[int, str]]:
    """(1 success / 0 failure, source) from LeRobot's teleop events in ``info``, or None.

    Only LeRobot's ``TeleopEvents`` keys count (an env's own ``info["success"]`` is no human).
    ``SUCCESS`` is a success; ``FAILURE``, or ``TERMINATE_EPISODE`` without success and without
    ``RERECORD_EPISODE`` (gamepad "failure", keyboard "q"), is a failure. The source is
    ``lerobot_intervention`` while the human is intervening, else ``lerobot_teleop``. An
    intervention alone is no label: the human steering says nothing about success.
    """
    if TeleopEvents is None:
        return None
    source = "lerobot_intervention" if info.get(TeleopEvents.IS_INTERVENTION) else "lerobot_teleop"
    if info.get(TeleopEvents.SUCCESS):
        return 1, source
    if info.get(TeleopEvents.FAILURE) or (info.get(TeleopEvents.TERMINATE_EPISODE)
                                          and not info.get(TeleopEvents.RERECORD_EPISODE)):
        return 0, source
    return None


def _per_env(value: Any, n: int) -> list:
    """A transition's reward or done as one value per environment (a scalar applies to all)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        values = value.reshape(-1).tolist()
        return values if len(values) == n else values[:1] * n
    return [value] * n


RELABEL_CHUNK = 4096
"""Transitions judged per relabel_rewards call (bounds the copy of frames)."""


def relabel_replay_buffer(buffer: Any, reward_fn: RewardFunction, version: Optional[str] = None,
                          batch_size: int = 256) -> dict[str, Any]:
    """Relabel a LeRobot 0.6 ``ReplayBuffer`` in place: each stored transition's reward as ``reward_fn`` judges
    its next observation's cameras, and (sparse mode, ``terminate_on_success``) its done.

    A transition ends its episode when it ended for another reason (its done without a success reward) or when
    the new version calls it a success. With ``optimize_memory`` the buffer keeps no next observation of a
    terminal transition, so dones are only ever set there, never cleared. ``version``: the version that must
    judge (``update.pin`` of :class:`~hilreward.integrations.versions.ServedVersions`). Returns counts:
    transitions, changed, to_success, to_failure.
    """
    opts = reward_fn.options
    with buffer._lock:
        n = int(buffer.size)
        stats = {"transitions": n, "changed": 0, "to_success": 0, "to_failure": 0}
        if n == 0:
            return stats
        cameras = lerobot_images(buffer.next_states, reward_fn.camera_keys)
        for start in range(0, n, RELABEL_CHUNK):
            rows = slice(start, min(start + RELABEL_CHUNK, n))
            if buffer.optimize_memory:  # next_states[i] is states[i + 1]
                index = (torch.arange(rows.start, rows.stop) + 1) % buffer.capacity
                frames = {k: v[index] for k, v in cameras.items()}
            else:
                frames = {k: v[rows] for k, v in cameras.items()}
            old = buffer.rewards[rows].cpu().numpy().copy()  # numpy() shares the tensor's memory
            states = None
            if opts.success_when is not None:
                if STATE_KEY not in buffer.next_states:
                    raise InputError(f"success_when={opts.success_when!r} reads the robot state, and the replay "
                                     f"buffer keeps no {STATE_KEY!r}")
                stored = buffer.next_states[STATE_KEY]
                states = (stored[index] if buffer.optimize_memory else stored[rows]).reshape(len(old), -1).cpu().numpy()
            out = relabel_rewards(reward_fn, frames, previous=old, version=version, batch_size=batch_size,
                                  states=states)
            stats["changed"] += out.changed
            stats["to_success"] += out.to_success
            stats["to_failure"] += out.to_failure
            buffer.rewards[rows] = torch.from_numpy(out.rewards).to(buffer.rewards.device)
            if out.was_success is not None and opts.terminate_on_success:  # sparse: a reward says a success
                done = buffer.dones[rows].cpu().numpy()
                other = done if buffer.optimize_memory else done & ~out.was_success
                buffer.dones[rows] = torch.from_numpy(other | out.success).to(buffer.dones.device)
    return stats


def add_reward_step(pipeline: Any, step: HilrewardRewardStep) -> Any:
    """Put ``step`` into a LeRobot env pipeline where LeRobot puts its own (before the batch dimension is added)."""
    names = [type(s).__name__ for s in pipeline.steps]
    at = names.index("AddBatchDimensionProcessorStep") if "AddBatchDimensionProcessorStep" in names else len(names)
    pipeline.steps.insert(at, step)
    return pipeline


def with_reward_step(make_processors: Callable[..., tuple[Any, Any]], **step_fields: Any) -> Callable[..., tuple[Any, Any]]:
    """LeRobot's ``make_processors`` with a :class:`HilrewardRewardStep` (built from ``step_fields``) in its env pipeline.

        import lerobot.rl.actor as actor
        if __name__ == "__main__":
            actor.make_processors = with_reward_step(actor.make_processors, pretrained_path="runs/cls/checkpoints/best")
            actor.actor_cli()
    """

    def make(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        env_processor, action_processor = make_processors(*args, **kwargs)
        return add_reward_step(env_processor, HilrewardRewardStep(**step_fields)), action_processor

    return make


if ProcessorStepRegistry is not None and REGISTRY_NAME not in ProcessorStepRegistry._registry:
    ProcessorStepRegistry.register(REGISTRY_NAME)(HilrewardRewardStep)
