"""``hilreward push checkpoint=<dir> repo_id=<user/name> [revision=<branch>] [private=true]``: a checkpoint on the
Hugging Face Hub, its model card first.

The card (:mod:`.card`, ``README.md``) is written into the checkpoint folder, then the folder's checkpoint files
(config.json, model.safetensors, train_config.yaml, metrics.json, README.md; never the resume state or exports)
go up in one commit to ``revision`` (a branch, made when missing; default ``main``). Per-episode metrics come from
``eval=<output_dir of hilreward eval>``, else from evaluating the episodes the run held out when its dataset is
on this machine. Loading back works everywhere a checkpoint path does: ``user/name`` or ``user/name@revision``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from ..config import parse_overrides
from ..errors import CheckpointError, ConfigError, HilrewardError, HubError
from ..models.checkpoint import (CONFIG_NAME, METRICS_NAME, TRAIN_CONFIG_NAME, WEIGHTS_NAME, resolve_checkpoint,
                                 split_revision)
from ..models.weights import looks_like_repo_id
from ..utils import write_atomic
from .card import CardFacts, model_card, read_facts

CARD_NAME = "README.md"
UPLOADED = (CONFIG_NAME, WEIGHTS_NAME, TRAIN_CONFIG_NAME, METRICS_NAME, CARD_NAME)
"""The files a push uploads (those the checkpoint has)."""


@dataclass
class PushOptions:
    """Options of ``hilreward push``."""

    checkpoint: str = ""
    """Checkpoint folder to push (e.g. outputs/train/checkpoints/best), or a Hub repo (``user/name@revision``)."""
    repo_id: str = ""
    """The Hub model repo to push to, ``user/name`` (made when missing)."""
    revision: str = "main"
    """Branch to commit to (made from main when missing)."""
    private: bool = False
    """Make the repo private when it is created (an existing repo keeps its visibility)."""
    token: Optional[str] = None
    """Hub token with write access; default: $HF_TOKEN or the login of `hf auth login`."""
    eval: Optional[str] = None
    """Output folder of `hilreward eval` (its metrics.json) whose per-episode metrics go into the card; default: the
    run's held-out episodes, evaluated now when its dataset is here."""
    task: Optional[str] = None
    """The task in words for the card; default: the dataset's task."""
    commit_message: str = "Upload hilreward reward classifier"
    """Message of the commit."""
    card_only: bool = False
    """Write the card into the checkpoint folder and stop (nothing is uploaded): to read it first."""


@dataclass
class Pushed:
    """What ``hilreward push`` did."""

    repo_id: str
    revision: str
    commit: str
    """The commit id: ``user/name@<commit>`` loads exactly this upload."""
    url: str
    card: str
    """Where the card was written."""
    files: list[str]


def push(opts: PushOptions) -> Pushed:
    """The card, then the upload (see the module doc); HubError when the Hub refuses or cannot be reached."""
    if not opts.checkpoint or not opts.repo_id:
        raise ConfigError("push needs checkpoint=<folder> and repo_id=<user/name>")
    if not looks_like_repo_id(opts.repo_id):
        raise ConfigError(f"repo_id={opts.repo_id!r} is not a Hub repo id: write user/name")
    name, rev = split_revision(opts.checkpoint)
    local = Path(name).expanduser().is_dir()
    folder = resolve_checkpoint(name, rev)
    from ..evaluation.evaluate import load_train_config
    from ..models.loading import load_classifier

    model = load_classifier(folder)  # refuses a checkpoint that does not load, before anything is written
    if not hasattr(model.config, "temperature"):
        raise CheckpointError(f"{folder} is a LeRobot checkpoint; push hilreward checkpoints (LeRobot pushes its own)")
    facts = read_facts(folder, opts.repo_id, opts.revision, load_train_config(folder))
    facts.task = opts.task or _task(facts)
    _evaluation(facts, folder, opts.eval)
    card = model_card(facts, _lerobot_threshold(model))
    staging = Path(tempfile.mkdtemp(prefix="hilreward-push-"))
    try:
        for f in UPLOADED[:-1]:
            if (folder / f).is_file():
                shutil.copy2(folder / f, staging / f)
        write_atomic(staging / CARD_NAME, card)
        card_path = folder / CARD_NAME if local else staging / CARD_NAME
        if local:
            write_atomic(card_path, card)
        files = sorted(p.name for p in staging.iterdir())
        if opts.card_only:
            return Pushed(opts.repo_id, opts.revision, "", "", str(card_path), files)
        commit = _upload(staging, opts)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pushed(opts.repo_id, opts.revision, commit.oid, commit.commit_url, str(card_path), files)


def _upload(staging: Path, opts: PushOptions) -> Any:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=opts.token)
    try:
        api.create_repo(opts.repo_id, private=opts.private, exist_ok=True)
        if opts.revision != "main":
            api.create_branch(opts.repo_id, branch=opts.revision, exist_ok=True)
        return api.upload_folder(repo_id=opts.repo_id, folder_path=str(staging), revision=opts.revision,
                                 commit_message=opts.commit_message)
    except OfflineModeIsEnabled:
        raise HubError("pushing needs the network, and HF_HUB_OFFLINE=1 is set: unset it for this command") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = {401: "log in with `hf auth login` or pass token=<a write token>",
                403: f"this token cannot write to {opts.repo_id}: use one with write access to it"}.get(status, "")
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HubError(f"the Hub refused the push to {opts.repo_id} ({first[:200]})" + (f"; {hint}" if hint else "")) \
            from None
    except (OSError, ValueError) as exc:  # no route to the Hub, a proxy, a refused connection
        raise HubError(f"cannot reach the Hub to push {opts.repo_id} ({type(exc).__name__}: {str(exc)[:160]})") \
            from None


def _task(facts: CardFacts) -> Optional[str]:
    """The dataset's task(s), when its folder is here."""
    ds = facts.train.dataset if facts.train is not None else None
    if ds is None or not ds.root or not Path(ds.root).is_dir():
        return None
    try:
        from ..data import LeRobotDataset

        tasks = sorted({t for e in LeRobotDataset.open(ds.root).episodes for t in e.tasks})
    except HilrewardError:
        return None
    return "; ".join(tasks) or None


def _evaluation(facts: CardFacts, folder: Path, given: Optional[str]) -> None:
    """Fill ``facts.evaluation``: the given eval output, else the run's held-out episodes evaluated now."""
    trained = set(facts.metrics.get("train_episodes") or [])
    if given is not None:
        path = Path(given) / METRICS_NAME if Path(given).is_dir() else Path(given)
        if not path.is_file():
            raise ConfigError(f"eval={given}: no {METRICS_NAME} there; pass the output_dir of `hilreward eval`")
        facts.evaluation = json.loads(path.read_text())
        episodes = [int(e["episode"]) for e in facts.evaluation.get("per_episode", [])]
        seen = sorted(set(episodes) & trained)
        facts.evaluated_on = f"episodes {episodes} (`hilreward eval`)" + (
            f"; of these, {seen} were trained on: not held out" if seen else ", none of them trained on")
        return
    val = facts.metrics.get("val_episodes")
    if val is None and facts.train is not None:
        val = facts.train.split.val_episodes
    held = [e for e in val or [] if e not in trained]
    ds = facts.train.dataset if facts.train is not None else None
    if not held:
        facts.no_evaluation = "the run trained on every episode (nothing held out to evaluate)"
        return
    if ds is None or not ((ds.root and Path(ds.root).is_dir()) or ds.repo_id):
        facts.no_evaluation = f"the run's dataset is not on this machine to evaluate its held-out episodes {held}"
        return
    from ..evaluation import evaluate

    try:
        with tempfile.TemporaryDirectory(prefix="hilreward-card-") as out:
            facts.evaluation = evaluate(str(folder), dataset=replace(ds, episodes=held), output_dir=out, report=False)
    except HilrewardError as exc:
        facts.no_evaluation = f"evaluating the held-out episodes {held} failed ({exc})"
        return
    facts.evaluated_on = f"the {len(held)} episodes the run held out, {held}"


def _lerobot_threshold(model: Any) -> Optional[float]:
    from ..models.lerobot_export import check_exportable, strict_threshold

    try:
        check_exportable(model)
    except CheckpointError:
        return None
    return strict_threshold(model.threshold)


def main(args: list[str]) -> int:
    done = push(parse_overrides(PushOptions, args))
    print(json.dumps(done.__dict__))
    return 0
