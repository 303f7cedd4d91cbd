"""Typed configuration: one dataclass per Hydra group, a docstring per field.

The dataclasses hold every key and its default, once. ``conf/train.yaml`` only chooses the
groups (``model: resnet10``), and a group's file (``conf/model/scratch.yaml``) only the keys
that preset changes; :func:`compose` resolves them with ``key=value`` overrides exactly as the
CLI does, validates the result against these dataclasses, and returns a :class:`TrainConfig`
(``compose([])`` is ``TrainConfig()``). The model keys a checkpoint keeps
(:class:`ModelSettings`) are shared with the checkpoint's own config, ``ClassifierConfig``.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, make_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError
from .usage import HelpRequested, wants_help
from .constants import REWARD_KEY

CONF_DIR = Path(__file__).parent / "conf"
SCHEMA_NAME = "hilreward_schema"
"""The dataclasses as the first entry of ``conf/train.yaml``'s defaults: the keys and defaults the YAML omits."""

Alignment = Literal["auto", "current", "next"]
"""How a label column lines up with the frames (``label.align``)."""
Freeze = Literal["all", "last", "none"]
"""What of a pretrained encoder trains (``model.freeze``)."""
FeatureCache = Literal["auto", "off"]
"""When training computes frozen-encoder features once (``training.feature_cache``)."""
FeatureDtype = Literal["float16", "float32"]
"""How cached encoder features are stored (``training.feature_dtype``)."""
WandbMode = Literal["online", "offline", "disabled"]
"""How W&B logs (``wandb.mode``)."""
Calibrate = Literal["auto", "heldout", "cv", "off"]
"""How the end of a run chooses temperature and threshold (``training.calibrate``)."""
CALIBRATE_ALIASES = {"true": "heldout", "false": "off"}
"""``training.calibrate`` values from before ``cv`` existed, and what they mean now."""


@dataclass
class DatasetConfig:
    root: Optional[str] = None
    """Local LeRobotDataset folder (v3.0 or v2.1). Takes precedence over ``repo_id``."""
    repo_id: Optional[str] = None
    """Hugging Face dataset repo id, read through the local snapshot cache (works with HF_HUB_OFFLINE=1 when cached)."""
    revision: Optional[str] = None
    """Hub revision (branch, tag or commit) for ``repo_id``."""
    episodes: Optional[list[int]] = None
    """Episode indices to use; None means all."""
    cameras: Optional[list[str]] = None
    """Camera keys (``observation.images.front`` or ``front``); None means every ``observation.images.*`` feature."""


@dataclass
class LabelConfig:
    key: str = REWARD_KEY
    """Column holding the success signal."""
    threshold: float = 0.5
    """Float labels are positive when ``value >= threshold`` (ignored for multi-class integer labels)."""
    align: Alignment = "auto"
    """``auto``: shift ``next.*`` keys (``current``), read every other key (``observation.*``,
    ``complementary_info.*``, ...) as recorded (``next``). ``current``: a frame gets the value that arrived at it
    (the previous row's value in the episode, 0 for the first frame); ``next``: the row's own value (for
    ``next.reward`` LeRobot's pairing, which fires one step early)."""


@dataclass
class SplitConfig:
    val_fraction: float = 0.2
    """Fraction of episodes held out for evaluation (split by episode, never by frame)."""
    val_episodes: Optional[list[int]] = None
    """Explicit held-out episodes; overrides ``val_fraction``."""
    seed: int = 0
    """Seed of the episode shuffle."""


@dataclass
class SamplerConfig:
    balanced: bool = True
    """Weighted random sampling with weight 1/count(class), as HIL-SERL."""


@dataclass
class TrainingConfig:
    steps: int = 1000
    """Optimizer steps (ignored when ``epochs`` is set)."""
    epochs: Optional[int] = None
    """Passes over the training frames; when set, ``steps = epochs * ceil(frames / batch_size)``."""
    batch_size: int = 32
    """Frames per step, all processes together: launched as N processes, each takes ``batch_size / N`` of them."""
    lr: float = 3e-4
    """AdamW learning rate (cosine-decayed to 10 % over the run)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip_norm: float = 1.0
    """Gradient-norm clip; 0 disables."""
    num_workers: int = 0
    """DataLoader workers (frames come from a memory-mapped cache, so 0 is usually fastest)."""
    amp: bool = False
    """bfloat16 autocast (CUDA only; ignored on CPU)."""
    eval_freq: int = 200
    """Evaluate on the held-out episodes every N steps (and at the end); 0 disables periodic eval."""
    save_freq: int = 500
    """Write ``checkpoints/<step>/`` every N steps (``last`` and ``best`` are always kept)."""
    log_freq: int = 20
    """Log training metrics every N steps."""
    seed: int = 0
    """Seed of weights, sampling and augmentation."""
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu`` or ``cuda``."""
    feature_cache: FeatureCache = "auto"
    """``auto``: precompute frozen-encoder features when the encoder is frozen; ``off``: always run the encoder."""
    augment_views: int = 4
    """With augmentation and a frozen encoder, precomputed views per training frame: the unshifted frame
    and ``augment_views - 1`` random shifts (held-out frames get the unshifted view only)."""
    feature_dtype: FeatureDtype = "float16"
    """Storage dtype of cached encoder features: ``float16`` (half the disk and page cache; logits within
    about 1e-3 of the pixel path) or ``float32`` (logits equal to the pixel path's within 1e-5)."""
    threads: Optional[int] = None
    """torch intra-op threads (per process); None leaves torch's default (1 per process under ``accelerate launch``)."""
    calibrate: Calibrate = "auto"
    """How the end of the run chooses temperature and threshold under the evidence rule
    (hilreward.evaluation.thresholds), stored in ``checkpoints/best`` (see hilreward.training.calibrate):
    ``heldout``: on the held-out episodes; ``cv``: on out-of-fold probabilities of every episode (``calibrate_folds``
    fold models, each trained without its episodes), the final model then training on every episode (nothing is
    held out); ``auto``: ``heldout`` when the held-out episodes hold enough evidence, else ``cv``; ``off``.
    ``true`` / ``false`` (before ``cv`` existed) mean ``heldout`` / ``off``."""
    calibrate_folds: int = 4
    """Folds of ``calibrate=cv``: groups of episodes, succeeding and failing ones spread evenly; it needs at least two
    episodes per fold (else it calibrates on the held-out episodes and says why)."""
    calibrate_fold_steps: Optional[int] = None
    """Training steps of each fold model of ``calibrate=cv``; None: the run's own steps."""

    def __post_init__(self) -> None:
        if isinstance(self.calibrate, (str, bool)):  # any case, and the values from before cv (check_choices checks)
            value = str(self.calibrate).lower()
            self.calibrate = CALIBRATE_ALIASES.get(value, value)  # type: ignore[assignment]


@dataclass
class ModelSettings:
    """The model keys a checkpoint keeps: ``model.*`` of training and, with the cameras and what calibration and
    the encoder add, a checkpoint's ``config.json`` (``ClassifierConfig`` extends this)."""

    encoder: str = "resnet10"
    """Encoder registry name: resnet10, tiny, small_cnn, hf:<repo|folder>, timm:<name>, torchvision:<name>."""
    freeze: Freeze = "all"
    """``all`` (frozen encoder, the default), ``last`` (fine-tune the last stage) or ``none`` (train everything)."""
    num_classes: int = 2
    """2: binary (one logit, sigmoid probability); >2: multi-class (softmax over logits)."""
    image_size: list[int] = field(default_factory=lambda: [128, 128])
    """Model input size [height, width]; frames are resized once in the frame cache (inputs of any other size are
    resized by the model)."""
    spatial_features: int = 8
    """Learned spatial-embedding features per camera."""
    latent_dim: int = 256
    """Per-camera projection width."""
    hidden_dim: int = 256
    """Width of the hidden layer after the cameras are concatenated."""
    dropout: float = 0.1
    """Dropout in the head."""
    threshold: float = 0.5
    """Default success threshold stored in the checkpoint (a probability of the success class, after the
    checkpoint's temperature)."""


@dataclass
class ModelConfig(ModelSettings):
    """``model.*``: the model to train (HIL-SERL's frozen, pretrained ResNet-10 by default; ``model=scratch``: a
    small CNN trained from scratch)."""

    pretrained: bool = True
    """Load pretrained encoder weights (needs the Hub, its cache, or ``weights``)."""
    weights: Optional[str] = None
    """Local folder or Hub repo id with the encoder's weights (e.g. ``helper2424/resnet10``)."""


@dataclass
class AugmentationConfig:
    enable: bool = True
    """Augment training frames (never held-out ones): the random shift, and the colour jitter where its strengths
    are above 0."""
    pad: int = 4
    """Padding in pixels of the random shift (pad then random crop), as HIL-SERL's DrQ augmentation; 0: no shift."""
    brightness: float = 0.0
    """Colour jitter: brightness factor drawn from [1 - b, 1 + b] per frame and camera; 0: none."""
    contrast: float = 0.0
    """Colour jitter: contrast factor from [1 - c, 1 + c]; 0: none."""
    saturation: float = 0.0
    """Colour jitter: saturation factor from [1 - s, 1 + s]; 0: none."""
    hue: float = 0.0
    """Colour jitter: hue turned by up to this fraction of a full circle (at most 0.5); 0: none."""


@dataclass
class WandbConfig:
    enable: bool = False
    """Log to Weights & Biases."""
    project: str = "hilreward"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (team or user)."""
    mode: WandbMode = "online"
    """``online``, ``offline`` or ``disabled``."""
    num_samples_to_log: int = 16
    """Rows of the ``eval/prediction_samples`` table at each eval."""
    dir: Optional[str] = None
    """Where W&B writes its files (default: ``output_dir``)."""


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    output_dir: str = "outputs/train"
    """Run directory: checkpoints, config, logs."""
    resume: bool = False
    """Continue the run in ``output_dir`` from ``checkpoints/last`` exactly."""
    cache_dir: Optional[str] = None
    """Frame and feature cache root (default ``$HILREWARD_CACHE`` or ``~/.cache/hilreward``)."""


def compose(overrides: list[str] | None = None, config_name: str = "train") -> TrainConfig:
    """Resolve ``conf/<config_name>.yaml`` with Hydra overrides into a validated TrainConfig."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    # LeRobot's tutorial spells it dataset_repo_id=...; accept that too.
    overrides = [("dataset.repo_id=" + o.split("=", 1)[1]) if o.startswith("dataset_repo_id=") else o
                 for o in overrides]
    GlobalHydra.instance().clear()
    ConfigStore.instance().store(name=SCHEMA_NAME, node=structured(TrainConfig))  # every key, with its default
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            raw = hydra_compose(config_name=config_name, overrides=overrides)
        merged = OmegaConf.merge(structured(TrainConfig), raw)
        cfg = build(TrainConfig, OmegaConf.to_container(merged))
    except (HydraException, OmegaConfBaseException) as exc:
        msg = str(exc).strip().splitlines()[0]
        cause = str(exc.__cause__ or "").strip().splitlines()
        msg += f" ({cause[0]})" if cause and cause[0] not in msg else ""
        raise ConfigError(f"bad config override: {msg} (see `hilreward train --help` for the keys)") from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(cfg, TrainConfig)
    return cfg


def to_yaml(cfg: Any) -> str:
    """The config as YAML, as printed at start and saved with every checkpoint."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(asdict(cfg)))


def from_yaml(text: str) -> TrainConfig:
    """Parse a saved ``train_config.yaml`` back into a TrainConfig."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(structured(TrainConfig), OmegaConf.create(text))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid train_config.yaml: {str(exc).splitlines()[0]}") from None
    return build(TrainConfig, OmegaConf.to_container(merged))


def parse_overrides(schema: type, args: list[str]) -> Any:
    """Parse ``key=value`` arguments (dotted keys, Hydra-style values) into dataclass ``schema``.

    Used by the commands other than ``train`` (inspect, eval, predict, export, serve, sim),
    whose options are a small dataclass each.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if wants_help(args):
        raise HelpRequested(schema)
    bad = [a for a in args if "=" not in a]
    if bad:
        raise ConfigError(f"expected key=value arguments, got {bad[0]!r}")
    args = [("dataset.repo_id=" + a.split("=", 1)[1]) if a.startswith("dataset_repo_id=") else a for a in args]
    try:
        merged = OmegaConf.merge(structured(schema), OmegaConf.from_dotlist(args))
        return build(schema, OmegaConf.to_container(merged))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"bad argument{f' {key}' if key else ''}: {str(exc).strip().splitlines()[0]}") from None


# ---- choices: a field typed ``Literal[...]`` takes one of its values (``list[Literal[...]]``: several)
def one_of(value: Any, choices: Any, key: str) -> Any:
    """``value`` when it is one of ``choices`` (a ``Literal`` type, or a tuple of values), else ConfigError naming
    ``key`` and the choices."""
    allowed = get_args(choices) if get_origin(choices) is Literal else tuple(choices)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: use one of {', '.join(map(str, allowed))}")
    return value


def check_choices(obj: Any, prefix: str = "") -> Any:
    """ConfigError naming the key, the value and the choices when a ``Literal`` field of dataclass ``obj`` (or
    of the dataclasses it nests) holds another value; ``obj`` when all are right. The one place choices are
    checked: option parsing calls it, and so may any options object built in Python."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value, tp = getattr(obj, f.name), hints[f.name]
        if is_dataclass(value):
            check_choices(value, f"{prefix}{f.name}.")
            continue
        choices = _choices(tp)
        if choices is None or value is None:
            continue
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            one_of(v, choices, f"{prefix}{f.name}")
    return obj


def _choices(tp: Any) -> tuple | None:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return args
    if origin in (list, tuple, Union) or str(origin) == "<class 'types.UnionType'>":
        found = [c for a in args if (c := _choices(a)) is not None]
        return found[0] if found else None
    return None


def _plain(tp: Any) -> Any:
    """``tp`` with each ``Literal`` replaced by its values' type and each dataclass by its mirror (OmegaConf
    knows no ``Literal``)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return type(args[0])
    if is_dataclass(tp):
        return _mirror(tp)
    if origin is list:
        return list[_plain(args[0])]
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        rest = [a for a in args if a is not type(None)]
        return Optional[_plain(rest[0])] if len(rest) == 1 and len(args) == 2 else tp
    return tp


@lru_cache(maxsize=None)
def _mirror(cls: type) -> type:
    """A dataclass like ``cls`` whose fields OmegaConf can type (see :func:`_plain`)."""
    hints = get_type_hints(cls)
    specs, changed = [], False
    for f in fields(cls):
        tp = hints[f.name]
        plain = _plain(tp)
        changed |= plain is not tp
        if is_dataclass(tp) and plain is not tp:  # a nested group: its default is the mirror's
            default = {"default_factory": plain}
        else:
            default = {"default_factory": f.default_factory} if f.default_factory is not MISSING else \
                {"default": f.default} if f.default is not MISSING else {}
        specs.append((f.name, plain, field(**default)))
    return make_dataclass(cls.__name__, specs) if changed else cls


def structured(cls: type) -> Any:
    """``OmegaConf.structured`` of dataclass ``cls`` (choices typed ``Literal`` are held as their values' type)."""
    from omegaconf import OmegaConf

    return OmegaConf.structured(_mirror(cls))


def build(cls: type, data: dict) -> Any:
    """Dataclass ``cls`` from a plain container (nested dicts for nested dataclasses), choices checked."""
    return check_choices(_construct(cls, data))


def _construct(cls: type, data: dict) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            value, tp = data[f.name], hints[f.name]
            kwargs[f.name] = _construct(tp, value) if is_dataclass(tp) and isinstance(value, dict) else value
    return cls(**kwargs)
