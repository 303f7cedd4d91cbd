"""LeRobot classifier training throughput: forward + backward + AdamW step at batch B from tensors.

Mirrors what lerobot-train does per step for ``reward_classifier`` (AdamW lr 1e-4, wd 0.01,
grad-clip 1.0), without its data loader, so it is the model's ceiling, not the trainer's.
Usage: python throughput.py ENCODER [--batch 32] [--steps 10] [--warmup 3] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from common import CAMERAS, build_classifier, emit, now, percentiles, set_threads, versions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("encoder")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)

    model = build_classifier(args.encoder)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.randn(args.batch, 3, 128, 128, generator=g) for k in CAMERAS}
    batch["next.reward"] = torch.randint(0, 2, (args.batch,), generator=g).float()

    times = []
    for i in range(args.warmup + args.steps):
        t0 = now()
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= args.warmup:
            times.append((now() - t0) * 1000)
    step = percentiles(times)
    receiving = sum(p.numel() for p in params if p.grad is not None and p.grad.abs().sum() > 0)
    emit({"side": "lerobot", "what": "train_step", "batch": args.batch, "threads": args.threads,
          "samples_per_s": args.batch * len(times) / (sum(times) / 1000), "step": step,
          "trainable_params": sum(p.numel() for p in params), "params_receiving_grad": receiving,
          "versions": versions()})


if __name__ == "__main__":
    main()
