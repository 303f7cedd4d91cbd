"""An RL-style env loop with a hilreward reward: per step, the reward, the termination and the model version.

    python examples/hil_env_loop.py --checkpoint runs/cls/checkpoints/best              # LeRobot's pipeline if installed
    python examples/hil_env_loop.py --checkpoint runs/cls/checkpoints/best --no-lerobot # gymnasium wrapper
    python examples/hil_env_loop.py --backend grpc --address 127.0.0.1:50051 --oracle   # versions hot-swap

The env is a rendered Meta-World task (``hilreward.sim``; MuJoCo offscreen, ``MUJOCO_GL=egl``)
with ``front`` and ``wrist`` cameras; Meta-World's scripted expert stands in for the RL policy.
With LeRobot installed the frames go through LeRobot's own processors
(``VanillaObservationProcessorStep`` -> ``HilrewardRewardStep`` -> ``AddBatchDimensionProcessorStep``),
as in its HIL-SERL actor; without it through ``RewardClassifierWrapper``.

``--oracle`` lets the env's own success check play the human: it labels every step (a LeRobot teleop
event, or a HumanOverride without LeRobot), and the steps where the classifier disagreed become
corrections. With ``--backend grpc`` they go to ``hilreward serve``, which retrains and swaps in a
new version: the loop prints ``model version A -> B`` when a result names a new one (at an episode's
first step: an episode keeps the version it started with).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any, Callable, Iterator, Optional

import gymnasium as gym

from hilreward.deploy import HumanOverride, OverrideSource, RewardClassifierWrapper, RewardFunction
from hilreward.sim.env import make_env
from hilreward.sim.policies import scripted_policy


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="hilreward or LeRobot reward_classifier checkpoint (not with grpc)")
    p.add_argument("--backend", default="auto", help="auto, torch, onnx or grpc")
    p.add_argument("--address", help="host:port of `hilreward serve` (grpc)")
    p.add_argument("--token", help="the server's token (grpc; default $HILREWARD_TOKEN)")
    p.add_argument("--task", default="drawer-open", help="Meta-World task (see `hilreward sim --help`)")
    p.add_argument("--image-size", type=int, default=128, help="rendered frame size (any: the model resizes)")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--steps", type=int, default=80, help="steps per episode at most")
    p.add_argument("--consecutive", type=int, default=1, help="frames in a row before success (debounce)")
    p.add_argument("--policy", default="expert", help="scripted stand-in for the RL policy: expert, noisy or random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle", action="store_true", help="the env's success check labels every step (a human)")
    p.add_argument("--no-lerobot", action="store_true", help="use the gymnasium wrapper even if LeRobot is there")
    return p.parse_args(argv)


class Truth(gym.Wrapper):
    """Keeps the env's own success check of the latest frame (what the oracle human sees)."""

    success = False

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.success = bool(info["success"])
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.success = bool(info["success"])
        return obs, reward, terminated, truncated, info


class Oracle(OverrideSource):
    """A 'human' who labels every step with the env's success check."""

    name = "oracle"

    def __init__(self, truth: Truth) -> None:
        self.truth = truth

    def poll(self) -> int:
        return int(self.truth.success)


def wrapper_loop(args: argparse.Namespace, env: Truth) -> Iterator[tuple[dict, bool]]:
    """(step record, the env's success) per step, through RewardClassifierWrapper."""
    override = HumanOverride([Oracle(env)]) if args.oracle else None
    reward_fn = RewardFunction.from_pretrained(args.checkpoint, backend=args.backend, address=args.address,
                                               token=args.token, consecutive=args.consecutive, override=override)
    wrapped = RewardClassifierWrapper(env, reward_fn)
    policy = scripted_policy(env, args.policy, seed=args.seed)
    try:
        for episode in range(args.episodes):
            obs, _ = wrapped.reset(seed=args.seed + episode)
            for t in range(args.steps):
                obs, reward, terminated, truncated, info = wrapped.step(policy(obs))
                yield {"episode": episode, "step": t, "reward": reward, "done": terminated, **info["reward_classifier"]}, env.success
                if terminated or truncated:
                    break
    finally:
        reward_fn.close()


def lerobot_loop(args: argparse.Namespace, env: Truth) -> Iterator[tuple[dict, bool]]:
    """The same through LeRobot's processors, as its HIL-SERL actor runs them."""
    from lerobot.processor import (AddBatchDimensionProcessorStep, DataProcessorPipeline, TransitionKey,
                                   VanillaObservationProcessorStep)
    from lerobot.processor.converters import create_transition, identity_transition
    from lerobot.teleoperators.utils import TeleopEvents

    from hilreward.integrations.lerobot import HilrewardRewardStep

    step = HilrewardRewardStep(pretrained_path=args.checkpoint, backend=args.backend, address=args.address,
                               token=args.token, consecutive=args.consecutive,
                               corrections="server" if args.oracle and args.backend == "grpc" else None)
    pipeline = DataProcessorPipeline([VanillaObservationProcessorStep(), step, AddBatchDimensionProcessorStep()],
                                     to_transition=identity_transition, to_output=identity_transition)
    policy = scripted_policy(env, args.policy, seed=args.seed)

    def events() -> dict:  # the oracle's teleop events, as LeRobot's gamepad would send them
        if not args.oracle:
            return {}
        return {TeleopEvents.SUCCESS: env.success, TeleopEvents.FAILURE: not env.success}

    try:
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=args.seed + episode)
            pipeline.reset()  # LeRobot resets every step at episode start: the debounce restarts
            pipeline(create_transition(observation=obs, info=events()))
            for t in range(args.steps):
                obs, _, _, truncated, _ = env.step(policy(obs))
                out = pipeline(create_transition(observation=obs, reward=0.0, truncated=truncated, info=events()))
                done = bool(out[TransitionKey.DONE])
                yield ({"episode": episode, "step": t, "reward": out[TransitionKey.REWARD], "done": done,
                        **out[TransitionKey.INFO]["reward_classifier"]}, env.success)
                if done or truncated:
                    break
    finally:
        step.close()


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> list[dict]:
    use_lerobot = not args.no_lerobot and importlib.util.find_spec("lerobot") is not None
    env = Truth(make_env(args.task, image_size=(args.image_size, args.image_size), seed=args.seed,
                         max_steps=args.steps))
    loop = lerobot_loop if use_lerobot else wrapper_loop
    echo(f"{args.task}: reward from {'LeRobot pipeline + HilrewardRewardStep' if use_lerobot else 'RewardClassifierWrapper'}"
         f", backend={args.backend}")
    records, version = [], None
    steps = loop(args, env)
    try:
        for record, truth in steps:
            if record["model_version"] != version:
                echo(f"model version {version} -> {record['model_version']}" if version else
                     f"model version {record['model_version']}")
                version = record["model_version"]
            p = record["probability"]
            echo(f"episode {record['episode']} step {record['step']:3d}  p={p if isinstance(p, list) else round(p, 3)}  "
                 f"reward={record['reward']:.2f}  done={record['done']}  env success={truth}"
                 + (f"  human={record['override']}" if record["override"] else ""))
            records.append({**record, "env_success": truth})
    finally:
        steps.close()
        env.close()
    return records


if __name__ == "__main__":
    run(parse())
