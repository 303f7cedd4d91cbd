"""Scripted policies for the generator: expert, noisy expert, random (a registry by name).

Each factory takes the env and a seed and returns ``policy(obs) -> action`` (float32 (4,)).
The expert is Meta-World's own scripted policy for the task; it reads the env's full state.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .env import MetaWorldPixelEnv
from ..utils import Registry

Policy = Callable[[dict], np.ndarray]
POLICIES: Registry[Callable[[MetaWorldPixelEnv, int], Policy]] = Registry("policy")

NOISY_SIGMA = 0.4  # std of the Gaussian noise added to the expert's actions (actions are in [-1, 1])
NOISY_BURST = 0.02  # chance per step of starting a 10-step burst of random actions
RANDOM_HOLD = 5  # the random policy holds each uniform action this many steps (the arm wanders)


def register_policy(name: str):
    """Decorator: make a policy factory available to :func:`scripted_policy` under ``name``."""
    return POLICIES.register(name)


def list_policies() -> list[str]:
    return sorted(POLICIES.names())


def scripted_policy(env, kind: str, seed: int = 0) -> Policy:
    """A ``policy(obs) -> action`` of ``kind`` (``expert``, ``noisy``, ``random``) for ``env``."""
    return POLICIES.get(kind)(env.unwrapped, seed)


def _expert_action(env: MetaWorldPixelEnv) -> Callable[[], np.ndarray]:
    import warnings

    from metaworld.policies import ENV_POLICY_MAP

    expert = ENV_POLICY_MAP[env.task.env_name]()

    def act() -> np.ndarray:
        with warnings.catch_warnings():  # Meta-World warns that its gains saturate the actions
            warnings.simplefilter("ignore", UserWarning)
            return np.clip(expert.get_action(env.state), -1, 1).astype(np.float32)
    return act


@register_policy("expert")
def _expert(env: MetaWorldPixelEnv, seed: int) -> Policy:
    act = _expert_action(env)
    return lambda obs: act()


@register_policy("noisy")
def _noisy(env: MetaWorldPixelEnv, seed: int) -> Policy:
    """The expert with strong Gaussian action noise and short random bursts: succeeds sometimes."""
    act = _expert_action(env)
    rng = np.random.default_rng(seed)
    burst = {"left": 0, "action": np.zeros(4, np.float32)}

    def policy(obs: dict) -> np.ndarray:
        if burst["left"] == 0 and rng.random() < NOISY_BURST:
            burst["left"], burst["action"] = 10, rng.uniform(-1, 1, 4).astype(np.float32)
        if burst["left"] > 0:
            burst["left"] -= 1
            return burst["action"]
        return np.clip(act() + rng.normal(0.0, NOISY_SIGMA, 4), -1, 1).astype(np.float32)
    return policy


@register_policy("random")
def _random(env: MetaWorldPixelEnv, seed: int) -> Policy:
    """Uniform random actions, each held for a few steps."""
    rng = np.random.default_rng(seed)
    state = {"t": 0, "action": np.zeros(4, np.float32)}

    def policy(obs: dict) -> np.ndarray:
        if state["t"] % RANDOM_HOLD == 0:
            state["action"] = rng.uniform(-1, 1, 4).astype(np.float32)
        state["t"] += 1
        return state["action"]
    return policy


def policy_for_episode(episode_index: int) -> str:
    """Episodes by index mod 4: 0 and 1 expert, 2 noisy expert, 3 random."""
    return ("expert", "expert", "noisy", "random")[episode_index % 4]
