"""A ``hilreward export format=lerobot`` folder inside LeRobot 0.6.1's own code, run in LeRobot's venv.

    PYTHONPATH=src $PEER/bin/python tests/peer_lerobot_export.py --checkpoint CKPT --export DIR --dataset DATASET \
        --episodes 2 3 --window 75 135 --out result.json

On the dataset's frames (float CHW in [0, 1], as LeRobot's observation step makes them), records
- the keys LeRobot's ``Classifier.from_pretrained`` reports missing or unexpected (its load is not strict),
- LeRobot's probabilities against hilreward's (``RewardClassifier.predict_proba`` on the same frames),
- the reward / done sequence of LeRobot's stock ``RewardClassifierProcessorStep(pretrained_path=DIR)`` in a
  gym_hil-style pipeline, against ``RewardFunction`` with the checkpoint's threshold,
and the same probabilities on frames of another size (LeRobot's step does not resize; the encoder does).
tests/test_lerobot_export.py runs it and asserts on the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True, help="the hilreward checkpoint exported")
    p.add_argument("--export", required=True, help="the folder hilreward export format=lerobot wrote")
    p.add_argument("--dataset", required=True)
    p.add_argument("--episodes", type=int, nargs="*", help="default: all")
    p.add_argument("--window", type=int, nargs=2, metavar=("START", "STOP"), help="only these frames of each episode")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import lerobot
    import torch
    from lerobot.processor import (AddBatchDimensionProcessorStep, DataProcessorPipeline,
                                   RewardClassifierProcessorStep, TransitionKey, VanillaObservationProcessorStep)
    from lerobot.processor.converters import create_transition, identity_transition
    from lerobot.rewards.classifier.modeling_classifier import Classifier

    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.deploy import RewardFunction
    from hilreward.models import RewardClassifier

    export = json.loads((Path(args.export) / "hilreward_export.json").read_text())
    out: dict = {"python": sys.version.split()[0], "torch": torch.__version__, "lerobot": lerobot.__version__,
                 "success_threshold": export["success_threshold"], "threshold": export["threshold"]}

    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger().addHandler(Keep())
    classifier = Classifier.from_pretrained(args.export).eval()
    out["load_warnings"] = [w for w in warnings if "key" in w.lower()]
    out["encoder_class"] = type(classifier.encoder).__name__

    data = load_frame_data(DatasetConfig(root=args.dataset), LabelConfig(), (128, 128))
    episodes = args.episodes if args.episodes else sorted(set(int(e) for e in data.episode_index))
    cams = {key.rsplit(".", 1)[-1]: key for key in data.camera_keys}
    rows = []
    for ep in episodes:
        ep_rows = np.flatnonzero(data.episode_index == ep)
        rows.append(ep_rows[slice(*args.window)] if args.window else ep_rows)

    def floats(r: np.ndarray, size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """Frames as LeRobot's observation step makes them: float (B, 3, H, W) in [0, 1]."""
        batch = {key: torch.from_numpy(np.array(data.images[key][r])).permute(0, 3, 1, 2).float() / 255.0
                 for key in data.camera_keys}
        if size is not None:  # another camera resolution (LeRobot's crop / resize step, or none)
            batch = {k: torch.nn.functional.interpolate(v, size=size, mode="bilinear", align_corners=False)
                     for k, v in batch.items()}
        return batch

    ours = RewardClassifier.from_pretrained(args.checkpoint)
    everything = np.concatenate(rows)
    out["frames"] = int(len(everything))
    for name, size in (("same_size", None), ("other_size", (112, 150))):
        frames = floats(everything, size)
        with torch.inference_mode():
            theirs = classifier.predict([frames[k] for k in data.camera_keys]).probabilities.float().numpy()
        mine = ours.predict_proba(frames)
        out[name] = {"max_abs_diff": float(np.max(np.abs(theirs - mine))), "min": float(mine.min()),
                     "max": float(mine.max())}

    # LeRobot's stock step, given only the path, in a gym_hil-style pipeline; RewardFunction with the same frames
    step = RewardClassifierProcessorStep(pretrained_path=args.export, success_threshold=export["success_threshold"],
                                         terminate_on_success=True)
    pipeline = DataProcessorPipeline([VanillaObservationProcessorStep(), step, AddBatchDimensionProcessorStep()],
                                     to_transition=identity_transition, to_output=identity_transition)
    reward_fn = RewardFunction.from_pretrained(args.checkpoint, backend="torch")
    stock, reference = [], []
    for ep_rows in rows:
        pipeline.reset()
        reward_fn.reset()
        for r in ep_rows:
            images = {cam: np.array(data.images[key][r]) for cam, key in cams.items()}
            t = pipeline(create_transition(observation={"pixels": images, "agent_pos": np.zeros(4, np.float32)},
                                           reward=0.0, done=False, info={}))
            stock.append((float(t[TransitionKey.REWARD]), bool(t[TransitionKey.DONE])))
            result = reward_fn(images)
            reference.append((float(result.reward), bool(result.terminate)))
    out["stock_step"], out["reward_function"] = stock, reference
    Path(args.out).write_text(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
