"""relabel_replay_buffer on LeRobot 0.6.1's own ReplayBuffer, run in LeRobot's venv (Python 3.12).

    PYTHONPATH=src $PEER/bin/python tests/peer_lerobot_buffer.py --old CKPT --new CKPT --dataset DIR --out result.json

Fills a ReplayBuffer (plain and ``optimize_memory``) with the dataset's frames as LeRobot stores them (float
(3, H, W) in [0, 1]), rewards and success dones from the old checkpoint, relabels it with the new one and
writes what the test asserts: the buffer's rewards and dones before and after, and the new version's own
rewards on the same frames.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    import torch
    from lerobot.rl.buffer import ReplayBuffer

    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.deploy import RewardFunction, relabel_rewards
    from hilreward.integrations.lerobot import relabel_replay_buffer

    data = load_frame_data(DatasetConfig(root=args.dataset), LabelConfig(), (64, 64))
    rows = np.arange(0, len(data.labels), 2)
    keys = list(data.camera_keys)
    frames = {k: torch.from_numpy(np.asarray(data.images[k][rows])).permute(0, 3, 1, 2).float() / 255 for k in keys}
    old = RewardFunction.from_pretrained(args.old, backend="torch")
    new = RewardFunction.from_pretrained(args.new, backend="torch")
    old_out = relabel_rewards(old, frames)
    expected = relabel_rewards(new, frames)
    truncated = np.zeros(len(rows), bool)
    truncated[::25] = True  # some transitions end their episode without success (time limit)
    result = {"expected": expected.rewards.tolist(), "old": old_out.rewards.tolist(),
              "expected_success": expected.success.tolist(), "truncated": truncated.tolist()}
    for optimize in (False, True):
        buffer = ReplayBuffer(capacity=len(rows) + 8, device="cpu", state_keys=keys + ["observation.state"],
                              use_drq=False, optimize_memory=optimize)
        n = len(rows) - 1 if optimize else len(rows)  # optimize_memory: next_state[i] is state[i + 1]
        for i in range(n):
            state = {k: frames[k][i][None] for k in keys}
            nxt = i + 1 if optimize else i
            next_state = {k: frames[k][nxt][None] for k in keys}
            state["observation.state"] = next_state["observation.state"] = torch.zeros(1, 4)
            reward = (old_out.rewards[nxt] if optimize else old_out.rewards[i]).item()
            done = bool(truncated[i]) or reward == 1.0
            buffer.add(state, torch.zeros(1, 4), reward, next_state, done, bool(truncated[i]))
        before = {"rewards": buffer.rewards[:n].tolist(), "dones": buffer.dones[:n].tolist()}
        stats = relabel_replay_buffer(buffer, new, batch_size=64)
        result["optimize" if optimize else "plain"] = {
            "before": before, "rewards": buffer.rewards[:n].tolist(), "dones": buffer.dones[:n].tolist(),
            "stats": stats, "n": n}
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
