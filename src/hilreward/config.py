"""Typed configuration: one dataclass per Hydra group, a docstring per field.

The dataclasses hold every key and its default, once. ``conf/train.yaml`` only chooses the
groups (``model: resnet10``), and a group's file (``conf/model/scratch.yaml``) only the keys
that preset changes; :func:`compose` resolves them with ``key=value`` overrides exactly as the
CLI does, validates the result against these dataclasses, and returns a :class:`TrainConfig`
(``compose([])`` is ``TrainConfig()``). The model keys a checkpoint keeps
(:class:`ModelSettings`) are shared with the checkpoint's own config, ``ClassifierConfig``.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, make_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError
from .utils import did_you_mean
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
    """Episode indices to use; None means all. On the command line ranges work: ``0-15`` (both ends included),
    ``0-15,20``, ``[0-3, 8]``."""
    cameras: Optional[list[str]] = None
    """Camera keys (``observation.images.front`` or ``front``); None means every ``observation.images.*`` feature.
    One name needs no brackets: ``dataset.cameras=front``; several: ``front,wrist``."""


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
    """Explicit held-out episodes (ranges as in ``dataset.episodes``: ``16-19``); overrides ``val_fraction``."""
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
    ``heldout``: on the held-out episodes; ``cv``: on out-of-fold probabilities of every training episode
    (``calibrate_folds`` fold models, each trained without its fold; the held-out episodes stay held out): with a
    frozen encoder fold heads trained in one pass on the cached features beside the final head, with an encoder
    that trains the fold models themselves, deployed as an ensemble (``members``); ``auto``: ``heldout`` when the
    held-out episodes hold enough evidence, else ``cv``; ``off``. ``true`` / ``false`` (before ``cv`` existed) mean
    ``heldout`` / ``off``."""
    calibrate_folds: int = 4
    """Folds of ``calibrate=cv``: groups of episodes, succeeding and failing ones spread evenly; it needs at least two
    episodes per fold (else it calibrates on the held-out episodes and says why)."""
    calibrate_fold_steps: Optional[int] = None
    """Training steps of each fold model of ``calibrate=cv``: the fold heads' pass (frozen encoder), or each ensemble
    member (an encoder that trains); None: the run's own steps for the fold heads, and for the members
    ``MEMBER_BUDGET`` (1.25) times the run's steps shared among them (hilreward.training.calibrate)."""
    support_frames: int = 4000
    """Labelled training frames the checkpoint keeps as its support bank (what the cautious reward and the hacking
    monitor compare new frames with: :mod:`hilreward.models.support`), evenly spread over successes and failures;
    0: no support bank."""

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

    overrides = forgive(TrainConfig, list(overrides or []), presets(), command="train")
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
    args = forgive(schema, args)
    try:
        merged = OmegaConf.merge(structured(schema), OmegaConf.from_dotlist(args))
        return build(schema, OmegaConf.to_container(merged))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"bad argument{f' {key}' if key else ''}: {_plain_message(exc)}") from None


# ---- what a person types: ranges, one name for a list, keys and presets checked with a suggestion
ALIASES = {"dataset_repo_id": "dataset.repo_id"}
"""Keys spelt as elsewhere (LeRobot's tutorial writes ``dataset_repo_id=...``) -> ours."""
_RANGE = re.compile(r"^\s*(-?\d+)\s*-\s*(-?\d+)\s*$")


def presets() -> dict[str, list[str]]:
    """Config groups of ``conf/`` (``model``) -> their presets (``resnet10``, ``scratch``)."""
    return {d.name: sorted(f.stem for f in d.glob("*.yaml")) for d in sorted(CONF_DIR.iterdir()) if d.is_dir()}


def forgive(schema: type, args: list[str], groups: dict[str, list[str]] | None = None,
            command: str | None = None) -> list[str]:
    """``key=value`` arguments as a person types them, made exact for ``schema``, or ConfigError naming the key.

    - an unknown key (or preset of a config group in ``groups``) is an error with the closest known one;
    - a list of integers takes ranges: ``0-15`` (both ends included), ``0-15,20``, ``[0-3, 8]``;
    - a list of strings takes one name without brackets (``front``) or several separated by commas.
    """
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        key = ALIASES.get(key, key)
        bare = key.lstrip("+~")
        if not sep or "@" in bare:  # Hydra's own syntax (``~key``, ``key@package=``): Hydra checks it
            out.append(arg)
            continue
        if groups and bare in groups:
            if value not in groups[bare]:
                raise ConfigError(f"{bare}={value}: no such preset{did_you_mean(value, groups[bare])}; presets: "
                                  f"{', '.join(groups[bare])}")
            out.append(f"{key}={value}")
            continue
        tp = key_type(schema, bare)
        if tp is None and not key.startswith("+"):
            raise ConfigError(f"unknown key {bare!r}{did_you_mean(bare, all_keys(schema))}; "
                              f"`{f'hilreward {command} ' if command else ''}--help` lists the keys")
        out.append(f"{key}={_typed(tp, value)}")
    return out


def all_keys(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of dataclass ``schema`` (nested dataclasses flattened)."""
    hints = get_type_hints(schema)
    out = []
    for f in fields(schema):
        tp = hints[f.name]
        out += all_keys(tp, f"{prefix}{f.name}.") if is_dataclass(tp) else [f"{prefix}{f.name}"]
    return out


_ANY = object()


def key_type(schema: type, key: str) -> Any:
    """The type of dotted ``key`` in dataclass ``schema``; None when there is no such key (a key inside a dict
    field, or a whole nested group, is found and typed ``Any``)."""
    tp: Any = schema
    for part in key.split("."):
        if tp is _ANY:
            return Any
        if not is_dataclass(tp):
            return Any if get_origin(_unwrap(tp)) is dict or _unwrap(tp) in (dict, Any) else None
        hints = get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return Any if is_dataclass(tp) else tp


def _unwrap(tp: Any) -> Any:
    """``Optional[X]`` -> ``X``."""
    if get_origin(tp) is Union or str(get_origin(tp)) == "<class 'types.UnionType'>":
        rest = [a for a in get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _typed(tp: Any, value: str) -> str:
    """``value`` rewritten in the list syntax a ``list[int]`` / ``list[str]`` field needs (else as it was)."""
    inner = _unwrap(tp)
    if get_origin(inner) is not list or value.strip().lower() in ("null", "none", "~", ""):
        return value
    item = _unwrap(get_args(inner)[0]) if get_args(inner) else Any
    text = value.strip()
    body = text[1:-1] if text.startswith("[") and text.endswith("]") else None
    parts = [p.strip() for p in (body if body is not None else text).split(",") if p.strip()]
    if item is int:
        numbers_ = []
        for part in parts:
            m = _RANGE.match(part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ConfigError(f"range {part!r}: the end comes before the start; write {hi}-{lo}")
                numbers_ += list(range(lo, hi + 1))
            elif re.fullmatch(r"-?\d+", part):
                numbers_.append(int(part))
            else:
                return value  # not ours to read: the parser says what is wrong
        return "[" + ",".join(map(str, numbers_)) + "]"
    if body is None and item in (str, Any) or get_origin(item) is Literal:
        return "[" + ",".join(parts) + "]"
    return value


def _plain_message(exc: Exception) -> str:
    """OmegaConf's first line without the names of hilreward's option classes (``... in 'EvalOptions'``)."""
    msg = str(exc).strip().splitlines()[0]
    return re.sub(r"\s*(?:not )?in '\w+(?:Options|Config|Command)'", "", msg)


# ---- values: each field holds its type, a field typed ``Literal[...]`` one of its values (``list[Literal]``: several)
def one_of(value: Any, choices: Any, key: str) -> Any:
    """``value`` when it is one of ``choices`` (a ``Literal`` type, or a tuple of values), else ConfigError naming
    ``key`` and the choices."""
    allowed = get_args(choices) if get_origin(choices) is Literal else tuple(choices)
    if value not in allowed:
        hint = did_you_mean(value, map(str, allowed)) if isinstance(value, str) else ""
        raise ConfigError(f"{key}={value!r}{hint}: use one of {', '.join(map(str, allowed))}")
    return value


def check_values(obj: Any, prefix: str = "") -> Any:
    """ConfigError naming the key and the value when a field of dataclass ``obj`` (or of the dataclasses it nests)
    holds a value of another type (``success_threshold="high"``), or a ``Literal`` field another value (with the
    choices); ``obj`` when all are right. The one place values are checked: option parsing calls it, and so does
    every options object built in Python (``RewardFunction.from_pretrained(...)``, ``train(cfg)``)."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value, tp = getattr(obj, f.name), hints[f.name]
        if is_dataclass(value):
            check_values(value, f"{prefix}{f.name}.")
            continue
        _check_type(value, tp, f"{prefix}{f.name}")
        choices = _choices(tp)
        if choices is None or value is None:
            continue
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            one_of(v, choices, f"{prefix}{f.name}")
    return obj


_KINDS: dict[Any, tuple[str, Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool) or type(v).__name__ == "bool_"),
    int: ("an integer", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)),
    str: ("a string", lambda v: isinstance(v, (str, os.PathLike))),
}


def _check_type(value: Any, tp: Any, key: str) -> None:
    """ConfigError when ``value`` is not of the plain type ``tp`` (bool, int, float, str, their lists, Optional)."""
    optional = _unwrap(tp) is not tp or tp is type(None)
    inner = _unwrap(tp)
    if value is None:
        if not optional and inner in _KINDS:
            raise ConfigError(f"{key}=None: give {_KINDS[inner][0]}")
        if not optional and get_origin(inner) is Literal:
            raise ConfigError(f"{key}=None: use one of {', '.join(map(str, get_args(inner)))}")
        return
    if get_origin(inner) is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r}: give a list")
        item = get_args(inner)[0] if get_args(inner) else Any
        for v in value:
            _check_type(v, item, key)
        return
    kind = _KINDS.get(inner)
    if kind is not None and not kind[1](value):
        raise ConfigError(f"{key}={value!r}: give {kind[0]}")


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
    """Dataclass ``cls`` from a plain container (nested dicts for nested dataclasses), values checked."""
    return check_values(_construct(cls, data))


def _construct(cls: type, data: dict) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            value, tp = data[f.name], hints[f.name]
            kwargs[f.name] = _construct(tp, value) if is_dataclass(tp) and isinstance(value, dict) else value
    return cls(**kwargs)
