"""LeRobot classifier inference latency, batch 1, from uint8 frames, preprocessing included.

Per call, as LeRobot's HIL-SERL actor path does it: ``VanillaObservationProcessorStep`` (uint8 HWC ->
float CHW in [0, 1]), the classifier's preprocessor (``NormalizerProcessorStep`` with the dataset's
mean/std: the normalisation the model was trained with), then ``Classifier.predict_reward`` under
``torch.inference_mode``.
Usage: python latency.py ENCODER FRAMES.npz --dataset ROOT [--checkpoint DIR] [--calls 60] [--warmup 10]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from common import build_classifier, build_config, dataset_stats, emit, now, percentiles, set_threads, versions


def load_model(encoder: str, checkpoint: str | None, root: str):
    """The classifier and its preprocessor: from a lerobot-train checkpoint, or fresh with the dataset stats."""
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.rewards.classifier.modeling_classifier import Classifier
    from lerobot.rewards.classifier.processor_classifier import make_classifier_processor

    if checkpoint:
        model = Classifier.from_pretrained(checkpoint)
        pre = PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename="classifier_preprocessor.json")
    else:
        model = build_classifier(encoder)
        pre, _ = make_classifier_processor(build_config(encoder), dataset_stats=dataset_stats(root))
    return model.eval(), pre


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("encoder")
    ap.add_argument("frames")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    from lerobot.processor.observation_processor import VanillaObservationProcessorStep

    frames = np.load(args.frames)
    front, wrist = frames["front"], frames["wrist"]
    model, pre = load_model(args.encoder, args.checkpoint, args.dataset)
    to_tensor = VanillaObservationProcessorStep()

    def step(i: int) -> float:
        j = i % len(front)
        obs = to_tensor.observation({"pixels": {"front": front[j], "wrist": wrist[j]}})
        batch = pre(obs)
        with torch.inference_mode():
            return float(model.predict_reward(batch)[0])

    times, outs = [], []
    for i in range(args.warmup + args.calls):
        t0 = now()
        outs.append(step(i))
        if i >= args.warmup:
            times.append((now() - t0) * 1000)
    emit({"side": "lerobot", "what": "latency", "backend": "torch", "threads": args.threads,
          "checkpoint": args.checkpoint, **percentiles(times), "positives": int(sum(outs)),
          "versions": versions()})


if __name__ == "__main__":
    main()
