"""hilreward inside LeRobot 0.6.1's own processors, run in LeRobot's venv (Python 3.12, torch 2.11).

    PYTHONPATH=src $PEER/bin/python tests/peer_lerobot.py --checkpoint CKPT --dataset DATASET --out result.json

On every frame of the dataset's episodes (reset at each episode start, as LeRobot's actor does),
records the reward / done sequences of
- ``RewardFunction`` (consecutive 2 and 1),
- LeRobot's gym_hil env pipeline from its own ``make_processors`` with ``with_reward_step``
  (consecutive 2), then the same pipeline saved and rebuilt from its config,
- LeRobot's stock ``RewardClassifierProcessorStep`` with ``reward_classifier()`` (consecutive 1),
and checks the registry, the debounce reset, human teleop events recorded as corrections, and
(when MuJoCo and Meta-World are installed there) the example loop. tests/test_integrations_lerobot.py
runs it and asserts on the JSON it writes; run by hand on any dataset, it is the check that
LeRobot's pipeline gives RewardFunction's rewards.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import runpy
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--episodes", type=int, nargs="*", help="default: all")
    p.add_argument("--window", type=int, nargs=2, metavar=("START", "STOP"), help="only these frames of each episode")
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--example", action="store_true", help="also run examples/hil_env_loop.py briefly")
    args = p.parse_args(argv)

    import lerobot
    import torch
    from lerobot.envs.configs import HILSerlRobotEnvConfig
    from lerobot.processor import (AddBatchDimensionProcessorStep, DataProcessorPipeline, ProcessorStepRegistry,
                                   RewardClassifierProcessorStep, TransitionKey, VanillaObservationProcessorStep)
    from lerobot.processor.converters import create_transition, identity_transition
    from lerobot.rl.gym_manipulator import make_processors
    from lerobot.teleoperators.utils import TeleopEvents

    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import LeRobotDataset, load_frame_data
    from hilreward.deploy import RewardFunction
    from hilreward.integrations.lerobot import REGISTRY_NAME, HilrewardRewardStep, reward_classifier, with_reward_step

    out: dict = {"python": sys.version.split()[0], "torch": torch.__version__, "lerobot": lerobot.__version__,
                 "onnxruntime": importlib.util.find_spec("onnxruntime") is not None}
    ckpt = args.checkpoint
    data = load_frame_data(DatasetConfig(root=args.dataset), LabelConfig(), (128, 128))
    episodes = args.episodes if args.episodes else sorted(set(int(e) for e in data.episode_index))
    cams = {key.rsplit(".", 1)[-1]: key for key in data.camera_keys}

    def frames_of(episode: int) -> list[dict]:
        rows = np.flatnonzero(data.episode_index == episode)
        rows = rows[slice(*args.window)] if args.window else rows
        return [{cam: np.array(data.images[key][r]) for cam, key in cams.items()} for r in rows]

    def gym_obs(images: dict) -> dict:  # what gym-hil / hilreward.sim envs return
        return {"pixels": images, "agent_pos": np.zeros(4, np.float32)}

    def run_reward_fn(fn: RewardFunction) -> list:
        seq = []
        for ep in episodes:
            fn.reset()
            seq.append([(r.reward, r.terminate) for r in map(fn, frames_of(ep))])
        return seq

    def run_pipeline(pipeline) -> list:
        seq = []
        for ep in episodes:
            pipeline.reset()
            ep_seq = []
            for images in frames_of(ep):
                t = pipeline(create_transition(observation=gym_obs(images), reward=0.0, done=False, info={}))
                ep_seq.append((float(t[TransitionKey.REWARD]), bool(t[TransitionKey.DONE])))
            seq.append(ep_seq)
        return seq

    reference = RewardFunction.from_pretrained(ckpt, consecutive=2, backend=args.backend)
    out["backend"] = type(reference.backend).__name__
    out["reward_function"] = run_reward_fn(reference)
    out["reward_function_consecutive_1"] = run_reward_fn(
        RewardFunction.from_pretrained(ckpt, consecutive=1, backend=args.backend))

    # LeRobot's own gym_hil env pipeline, our step put where LeRobot puts its reward step.
    env_cfg = HILSerlRobotEnvConfig(name="gym_hil", fps=10)
    make = with_reward_step(make_processors, pretrained_path=ckpt, consecutive=2, backend=args.backend)
    env_processor, _ = make(None, None, env_cfg, "cpu")
    env_processor.to_transition = env_processor.to_output = identity_transition
    out["pipeline_steps"] = [type(s).__name__ for s in env_processor.steps]
    out["hilreward_step"] = run_pipeline(env_processor)

    # Saved to disk and rebuilt from its config (LeRobot's own step loses its pretrained_path here).
    with tempfile.TemporaryDirectory() as tmp:
        env_processor.save_pretrained(tmp, config_filename="env_processor.json")
        saved = json.loads((Path(tmp) / "env_processor.json").read_text())
        rebuilt = DataProcessorPipeline.from_pretrained(tmp, config_filename="env_processor.json",
                                                        to_transition=identity_transition, to_output=identity_transition)
    step_cfg = next(s for s in saved["steps"] if s.get("registry_name") == REGISTRY_NAME)
    out["saved_step_config"] = step_cfg["config"]
    out["rebuilt_step"] = type(rebuilt.steps[out["pipeline_steps"].index("HilrewardRewardStep")]).__name__
    out["rebuilt"] = run_pipeline(rebuilt)
    out["registry"] = ProcessorStepRegistry.get(REGISTRY_NAME) is HilrewardRewardStep
    out["lerobot_step_config_keys"] = sorted(RewardClassifierProcessorStep().get_config())

    # LeRobot's stock step with the adapter.
    stock = RewardClassifierProcessorStep()
    stock.reward_classifier = reward_classifier(ckpt, backend=args.backend)
    stock.success_threshold = stock.reward_classifier.threshold
    out["stock_step"] = run_pipeline(DataProcessorPipeline(
        [VanillaObservationProcessorStep(), stock, AddBatchDimensionProcessorStep()],
        to_transition=identity_transition, to_output=identity_transition))

    # success_when: our step reads observation.state (gym-hil's agent_pos, mapped by LeRobot's observation step)
    # and gates success as RewardFunction does given the same state.
    gate = "state[0] > 0.5"
    gated = RewardFunction.from_pretrained(ckpt, backend=args.backend, success_when=gate)
    gate_pipe = DataProcessorPipeline(
        [VanillaObservationProcessorStep(), HilrewardRewardStep(pretrained_path=ckpt, backend=args.backend,
                                                                success_when=gate), AddBatchDimensionProcessorStep()],
        to_transition=identity_transition, to_output=identity_transition)
    want, got = [], []
    for ep in episodes:
        gated.reset()
        gate_pipe.reset()
        for t, images in enumerate(frames_of(ep)):
            pos = np.array([float(t % 3 == 0), 0.0, 0.0, 0.0], np.float32)
            want.append(gated(images, state=pos).terminate)
            t_out = gate_pipe(create_transition(observation={"pixels": images, "agent_pos": pos}, reward=0.0,
                                                done=False, info={}))
            got.append(bool(t_out[TransitionKey.DONE]))
    out["success_when"] = {"step": got, "reward_function": want}

    # Debounce restarts at episode start: two success frames in a row succeed only without a reset between.
    success_frames = [f for ep in episodes for f, (_, done) in zip(frames_of(ep), out["reward_function_consecutive_1"][
        episodes.index(ep)]) if done]
    if success_frames:
        step = HilrewardRewardStep(pretrained_path=ckpt, consecutive=2, backend=args.backend)
        obs = gym_obs(success_frames[-1])
        pipe = DataProcessorPipeline([VanillaObservationProcessorStep(), step], to_transition=identity_transition,
                                     to_output=identity_transition)
        done = [bool(pipe(create_transition(observation=obs))[TransitionKey.DONE]) for _ in range(2)]
        pipe.reset()
        done.append(bool(pipe(create_transition(observation=obs))[TransitionKey.DONE]))
        out["debounce_done_then_after_reset"] = done

    # Human teleop events become corrections; an env's own info["success"] is no human.
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corrections"
        step = HilrewardRewardStep(pretrained_path=ckpt, backend=args.backend, corrections=str(folder))
        pipe = DataProcessorPipeline([VanillaObservationProcessorStep(), step], to_transition=identity_transition,
                                     to_output=identity_transition)
        first = frames_of(episodes[0])[0]
        events = [{"success": True}, {TeleopEvents.SUCCESS: True, TeleopEvents.IS_INTERVENTION: True},
                  {TeleopEvents.TERMINATE_EPISODE: True, TeleopEvents.RERECORD_EPISODE: True}]
        if success_frames:
            events.append({TeleopEvents.TERMINATE_EPISODE: True})
        human = []
        for i, info in enumerate(events):
            images = success_frames[-1] if i == 3 else first
            t = pipe(create_transition(observation=gym_obs(images), info=info))
            verdict = t[TransitionKey.INFO]["reward_classifier"]
            human.append({"override": verdict["override"], "success": verdict["success"],
                          "reward": float(t[TransitionKey.REWARD]), "done": bool(t[TransitionKey.DONE]),
                          "model_version": verdict["model_version"]})
        step.close()
        out["human_events"] = human
        stored = LeRobotDataset.open(folder)
        out["corrections_labels"] = [float(x) for x in np.asarray(stored.read_rows(["next.reward"])["next.reward"]).ravel()]
        out["corrections_sources"] = [json.loads(line)["source"] for line in
                                      (folder / "meta" / "corrections.jsonl").read_text().splitlines()]

    if args.example:
        if importlib.util.find_spec("metaworld") is None:
            out["example"] = "skipped: MuJoCo / Meta-World are not installed in this venv"
        else:
            example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "hil_env_loop.py"))
            lines: list[str] = []
            records = example["run"](example["parse"](["--checkpoint", ckpt, "--episodes", "1", "--steps", "6",
                                                       "--image-size", "64"]), echo=lines.append)
            out["example"] = {"lines": lines, "records": len(records),
                              "versions": sorted({r["model_version"] for r in records})}
    Path(args.out).write_text(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
