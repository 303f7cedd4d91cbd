"""Weights & Biases logging through the real ``wandb`` library (online, offline or disabled)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from ..config import WandbConfig, check_values
from ..utils import write_atomic
from ..utils import short_key

class WandbLogger:
    """Logs the config, scalar metrics by step, and an ``eval/prediction_samples`` table at each eval.

    The run id is kept in ``<output_dir>/wandb_run_id`` so a resumed training continues the same run.
    """

    def __init__(self, cfg: WandbConfig, output_dir: Path, config: dict, resume: bool):
        check_values(cfg, "wandb.")
        import wandb

        self._wandb = wandb
        self.num_samples = cfg.num_samples_to_log
        wandb_dir = Path(cfg.dir) if cfg.dir else Path(output_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        id_file = Path(output_dir) / "wandb_run_id"
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else uuid.uuid4().hex[:12]
        self.run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, dir=str(wandb_dir),
                              config=config, id=run_id, resume="allow", job_type="train-reward-classifier")
        write_atomic(id_file, run_id)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def log_samples(self, images: dict[str, np.ndarray], predicted: np.ndarray, true: np.ndarray,
                    confidence: np.ndarray, step: int) -> None:
        """One table row per sample: each camera's image, predicted label, true label, confidence."""
        wandb = self._wandb
        cams = list(images)
        columns = [short_key(c) for c in cams] + ["predicted", "true", "confidence"]
        table = wandb.Table(columns=columns)
        for i in range(len(predicted)):
            row = [wandb.Image(np.asarray(images[c][i])) for c in cams]
            table.add_data(*row, int(predicted[i]), int(true[i]), float(confidence[i]))
        self.run.log({"eval/prediction_samples": table}, step=step)

    def finish(self, failed: bool = False) -> None:
        """End the run once (a later call does nothing): ``failed`` marks it with exit code 1."""
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=1 if failed else 0)
