"""The model card (``README.md``) ``hilreward push`` writes before it uploads: what the classifier judges, from
which data, how well per episode, at which threshold and on what evidence, and how to load it in hilreward and
in LeRobot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config import TrainConfig
from ..models.checkpoint import CONFIG_NAME, METRICS_NAME
from ..models.weights import looks_like_repo_id


@dataclass
class CardFacts:
    """What the card says, gathered from the checkpoint (and an evaluation) before any text is written."""

    repo_id: str
    revision: str
    config: dict[str, Any]
    """The checkpoint's config.json."""
    train: Optional[TrainConfig] = None
    """Its train_config.yaml (None: not saved with it)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Its metrics.json (training's held-out metrics, episodes trained on and held out)."""
    evaluation: Optional[dict[str, Any]] = None
    """metrics.json of ``hilreward eval`` on episodes the run did not train on (None: none)."""
    evaluated_on: str = ""
    """What ``evaluation`` was computed on, in words."""
    no_evaluation: str = ""
    """Why there is no evaluation, in words."""
    task: Optional[str] = None
    """The task in words (the dataset's, or given)."""


def read_facts(folder: Path, repo_id: str, revision: str, train: Optional[TrainConfig]) -> CardFacts:
    """The checkpoint's own facts (config.json, metrics.json, train_config.yaml)."""
    metrics_path = folder / METRICS_NAME
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return CardFacts(repo_id, revision, json.loads((folder / CONFIG_NAME).read_text()), train, metrics)


def model_card(f: CardFacts, lerobot_threshold: Optional[float]) -> str:
    """The card's Markdown (with the Hub's YAML header). ``lerobot_threshold``: the ``success_threshold`` an
    export for LeRobot's stock step needs, None when the model cannot be exported (not a ResNet-10)."""
    c, ds = f.config, f.train.dataset if f.train is not None else None
    header = ["---", "library_name: hilreward", "tags:", *[f"- {t}" for t in
                                                            ("hilreward", "reward-classifier", "hil-serl", "lerobot",
                                                             "robotics")]]
    if ds is not None and ds.repo_id:
        header += ["datasets:", f"- {ds.repo_id}"]
    if c.get("encoder_weights") and looks_like_repo_id(str(c["encoder_weights"])):
        header += [f"base_model: {c['encoder_weights']}"]
    header.append("---")
    at = f"@{f.revision}" if f.revision != "main" else ""
    h, w = c["image_size"]
    lines = [
        *header, "", f"# {f.repo_id}", "",
        "A success classifier for human-in-the-loop robot RL (HIL-SERL), trained with hilreward: the cameras' "
        "frames in, the probability that the task has succeeded out.", "",
        f"- **Task**: {f.task or 'not recorded with the data'}",
        f"- **Dataset**: {_dataset(f)}",
        f"- **Cameras**: {', '.join(f'`{k}`' for k in c['camera_keys'])}, at {h}x{w} (other sizes are resized)",
        f"- **Model**: encoder `{c['encoder']}`" + (f" (weights from `{c['encoder_weights']}`)"
                                                   if c.get("encoder_weights") else "")
        + f", {c.get('num_classes', 2)} classes; hilreward {c.get('version', '?')}",
        f"- **Episodes**: trained on {_episodes(f.metrics.get('train_episodes'))}, held out "
        f"{_episodes(f.metrics.get('val_episodes', f.train.split.val_episodes if f.train is not None else None))}",
        "", "## Threshold", "", _threshold(c), "", "## Per-episode metrics", "", *_per_episode(f), "",
        "## Use it", "", "In hilreward:", "", "```python", "from hilreward import RewardFunction", "",
        f'reward_fn = RewardFunction.from_pretrained("{f.repo_id}", revision="{f.revision}")   # the threshold above',
        'result = reward_fn({"front": front_uint8_hwc, ...})   # result.success, result.reward, result.terminate',
        "```", "",
        f"Every command takes it as a path: `hilreward serve checkpoint={f.repo_id}{at}`, `hilreward eval "
        f"checkpoint={f.repo_id}{at} dataset.root=...`. Pin the commit `hilreward push` printed for a model that "
        "never changes under you.", "",
        "In LeRobot's HIL-SERL actor, with hilreward's processor step (`pip install 'hilreward[lerobot]'`):", "",
        "```python", "from hilreward.integrations.lerobot import HilrewardRewardStep", "",
        f'step = HilrewardRewardStep(pretrained_path="{f.repo_id}", pretrained_revision="{f.revision}")',
        "```",
    ]
    if lerobot_threshold is not None:
        lines += [
            "", "With LeRobot's stock `RewardClassifierProcessorStep` and no hilreward in the actor: export a folder "
            "it loads by path, then point the env config at it:", "",
            "```bash", f"hilreward export checkpoint={f.repo_id}{at} format=lerobot output=reward-classifier",
            "```", "",
            "```json",
            f'"reward_classifier": {{"pretrained_path": "reward-classifier", "success_threshold": {lerobot_threshold}}}',
            "```", "",
            f"(LeRobot pays success *above* `success_threshold`; {lerobot_threshold} decides exactly as hilreward's "
            f"{c.get('threshold', 0.5):.6g}.)",
        ]
    return "\n".join(lines) + "\n"


def _dataset(f: CardFacts) -> str:
    ds = f.train.dataset if f.train is not None else None
    fingerprint = f.metrics.get("dataset_fingerprint")
    tail = f" (fingerprint `{fingerprint}`)" if fingerprint else ""
    if ds is None:
        return "not recorded (the checkpoint has no train_config.yaml)"
    label = f.train.label
    labels = f"; labels `{label.key}` (align `{label.align}`)"
    if ds.repo_id:
        return f"`{ds.repo_id}` at revision `{ds.revision or 'main'}`{tail}{labels}"
    name = Path(ds.root).name if ds.root else "?"
    return f"a local LeRobot dataset, `{name}` (not on the Hub){tail}{labels}"


def _episodes(episodes: Any) -> str:
    if episodes is None:
        return "(not recorded)"
    return f"{len(episodes)} episodes {list(episodes)}" if episodes else "none"


def _threshold(c: dict[str, Any]) -> str:
    t, cal = float(c.get("threshold", 0.5)), c.get("calibration") or {}
    temp = float(c.get("temperature", 1.0))
    scaled = f"; logits divided by the temperature {temp:.3g} first" if temp != 1.0 else ""
    if not cal:
        return f"Success at probability >= **{t:.6g}**{scaled}. Not calibrated: the default, resting on no evidence."
    where = {"heldout": "the held-out episodes", "cv": "out-of-fold probabilities of every episode"}.get(
        str(cal.get("method")), str(cal.get("method")))
    episodes = f" (episodes {cal['episodes']})" if cal.get("episodes") else ""
    return (f"Success at probability >= **{t:.6g}**{scaled}. Chosen on {where}{episodes}: {cal.get('reason', '')}. "
            f"Evidence: {cal.get('positives', '?')} positive frames in {cal.get('success_episodes', '?')} succeeding "
            f"and {cal.get('failed_episodes', '?')} failed episodes"
            + (f"; 95 % intervals over episodes: {json.dumps(cal['interval'])}" if cal.get("interval") else "") + ".")


def _per_episode(f: CardFacts) -> list[str]:
    e = f.evaluation
    if not e:
        return [f"None here: {f.no_evaluation}. `hilreward eval checkpoint=... dataset.episodes=...` on episodes it "
                "never trained on, then `hilreward push ... eval=<that output_dir>` puts them in this card."]
    rows = ["| episode | frames | outcome | true onset | first fire | onset error (frames) | max p before onset |",
            "|---|---|---|---|---|---|---|"]
    for ep in e.get("per_episode", []):
        rows.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            ep.get("episode"), ep.get("frames"), ep.get("outcome"), _dash(ep.get("onset_frame")),
            _dash(ep.get("firing_frame")), _dash(ep.get("onset_error_frames")),
            _dash(ep.get("max_probability_before_onset"), "{:.3f}")))
    summary = (f"On {f.evaluated_on}, at threshold {e.get('threshold', 0):.6g} with {e.get('consecutive', 1)} "
               f"frame(s) in a row: accuracy {100 * e.get('accuracy', 0):.2f} % over {e.get('frames')} frames, "
               f"{e.get('gross_false_terminations', 0)} gross false terminations (more than {e.get('tolerance_s')} s "
               f"early), {e.get('false_successes_in_failed_episodes', 0)} false successes in failed episodes, "
               f"{e.get('missed_successes', 0)} missed successes.")
    return [summary, "", *rows]


def _dash(value: Any, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)
