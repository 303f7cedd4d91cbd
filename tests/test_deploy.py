"""RewardFunction, human override and corrections on a real (tiny, briefly trained) checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hilreward.deploy import (Correction, DatasetCorrectionSink, HumanOverride, KeyboardSource,
                              MemoryCorrectionSink, OverrideSource, RewardFunction)
from hilreward.errors import ConfigError, InputError
from hilreward.models import ClassifierConfig, RewardClassifier

CAMERAS = ["observation.images.front", "observation.images.wrist"]
WHITE = {"front": np.full((32, 32, 3), 255, np.uint8), "wrist": np.full((32, 32, 3), 255, np.uint8)}
BLACK = {"front": np.zeros((32, 32, 3), np.uint8), "wrist": np.zeros((32, 32, 3), np.uint8)}


def train_bright_is_success(num_classes: int = 2, steps: int = 60) -> RewardClassifier:
    """A tiny classifier trained a few steps: bright frames succeed, dark frames fail."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = ClassifierConfig(encoder="tiny", camera_keys=CAMERAS, image_size=[32, 32], num_classes=num_classes,
                           latent_dim=16, hidden_dim=16, spatial_features=4, threshold=0.6)
    model = RewardClassifier(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(steps):
        labels = rng.integers(0, 2, 16)
        level = np.where(labels == 1, rng.integers(180, 256, 16), rng.integers(0, 70, 16)).astype(np.uint8)
        frames = {k: np.broadcast_to(level[:, None, None, None], (16, 32, 32, 3)).copy() for k in CAMERAS}
        logits = model(model.preprocess(frames))
        if num_classes == 2:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels).float())
        else:
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels * (num_classes - 1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = train_bright_is_success()
    p_white, p_black = model.predict_proba(WHITE)[0], model.predict_proba(BLACK)[0]
    assert p_white > 0.95 and p_black < 0.05, (p_white, p_black)
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_threshold_from_checkpoint_and_override(checkpoint):
    assert RewardFunction.from_pretrained(checkpoint).options.success_threshold == pytest.approx(0.6)
    assert RewardFunction.from_pretrained(checkpoint, success_threshold=0.3).options.success_threshold == 0.3


def test_sparse_and_dense_rewards(checkpoint):
    sparse = RewardFunction.from_pretrained(checkpoint, success_reward=2.0)
    dense = RewardFunction.from_pretrained(checkpoint, success_reward=2.0, mode="dense")
    hit, miss = sparse(WHITE), sparse(BLACK)
    assert hit.success and hit.terminate and hit.reward == 2.0
    assert not miss.success and not miss.terminate and miss.reward == 0.0
    d_hit, d_miss = dense(WHITE), dense(BLACK)
    assert d_hit.reward == pytest.approx(2.0 * d_hit.probability) and d_hit.success
    assert d_miss.reward == pytest.approx(2.0 * d_miss.probability) and 0.0 < d_miss.reward < 0.1
    assert hit.model_version == dense(WHITE).model_version and len(hit.model_version) == 12
    assert hit.latency_ms > 0
    keep_going = RewardFunction.from_pretrained(checkpoint, terminate_on_success=False)
    r = keep_going(WHITE)
    assert r.success and not r.terminate


def test_inputs_full_keys_and_torch_tensors(checkpoint):
    fn = RewardFunction.from_pretrained(checkpoint)
    full = {f"observation.images.{k}": torch.from_numpy(v) for k, v in WHITE.items()}
    assert fn(full).probability == pytest.approx(fn(WHITE).probability, abs=1e-6)
    with pytest.raises(InputError, match="wrist"):
        fn({"front": WHITE["front"]})


def test_debounce_needs_consecutive_frames(checkpoint):
    fn = RewardFunction.from_pretrained(checkpoint, consecutive=3)
    seq = [WHITE, WHITE, BLACK, WHITE, WHITE, WHITE, WHITE]
    assert [fn(f).success for f in seq] == [False, False, False, False, False, True, True]
    fn.reset()
    assert [fn(f).success for f in [WHITE, WHITE, WHITE]] == [False, False, True]


def test_batch_equals_single_calls_with_per_env_state(checkpoint):
    batched = RewardFunction.from_pretrained(checkpoint, consecutive=2, mode="dense")
    singles = [RewardFunction.from_pretrained(checkpoint, consecutive=2, mode="dense") for _ in range(3)]
    script = [[WHITE, BLACK, WHITE], [WHITE, WHITE, BLACK], [BLACK, WHITE, WHITE]]  # step -> env -> frames
    for step in script:
        got = batched.batch(step)
        want = [fn(frames) for fn, frames in zip(singles, step)]
        for g, w in zip(got, want):
            assert g.probability == pytest.approx(w.probability, abs=1e-5)
            assert (g.success, g.terminate) == (w.success, w.terminate)
            assert g.reward == pytest.approx(w.reward, abs=1e-5)
    assert [r.success for r in got] == [False, True, False]
    # a dict of (N, H, W, 3) arrays is the same as a list of per-env dicts
    stacked = {k: np.stack([f[k] for f in script[0]]) for k in ("front", "wrist")}
    batched.reset()
    assert [r.success for r in batched.batch(stacked)] == [False, False, False]
    # reset of one env keeps the others' counters
    batched.batch(script[0])
    batched.reset(env_index=0)
    assert [r.success for r in batched.batch([WHITE, WHITE, WHITE])] == [False, False, True]


def test_relabel_matches_calls_and_keeps_state(checkpoint):
    fn = RewardFunction.from_pretrained(checkpoint, consecutive=2)
    frames = {k: np.stack([WHITE[k], BLACK[k], WHITE[k]]) for k in ("front", "wrist")}
    fn(WHITE)
    probs = fn.relabel(frames, batch_size=2)
    assert probs.shape == (3,)
    assert probs[0] == pytest.approx(fn.relabel({k: v[:1] for k, v in frames.items()})[0], abs=1e-6)
    assert probs[0] > 0.95 and probs[1] < 0.05
    assert fn(WHITE).success  # the streak from before relabel() continued


def test_multiclass_probabilities_and_success_class(tmp_path):
    ckpt = train_bright_is_success(num_classes=3).save_pretrained(tmp_path / "mc")
    fn = RewardFunction.from_pretrained(ckpt, mode="dense", success_threshold=0.5)
    r = fn(WHITE)
    assert isinstance(r.probability, list) and len(r.probability) == 3
    assert sum(r.probability) == pytest.approx(1.0, abs=1e-5)
    assert r.success and r.reward == pytest.approx(r.probability[-1])
    first = RewardFunction.from_pretrained(ckpt, success_class=0, success_threshold=0.5)
    assert first(BLACK).success and not first(WHITE).success


def test_bad_options_are_clear(checkpoint):
    with pytest.raises(ConfigError, match="mode"):
        RewardFunction.from_pretrained(checkpoint, mode="shaped")
    with pytest.raises(ConfigError, match="consecutive"):
        RewardFunction.from_pretrained(checkpoint, consecutive=0)
    with pytest.raises(ConfigError, match="backend"):
        RewardFunction.from_pretrained(checkpoint, backend="tensorrt")


def test_override_wins_and_disagreements_become_corrections(checkpoint):
    override, sink = HumanOverride(), MemoryCorrectionSink()
    fn = RewardFunction.from_pretrained(checkpoint, consecutive=2, override=override, corrections=sink)
    override.failure()
    r = fn(WHITE)  # classifier: not yet (debounce), human: failure -> agree, no correction
    assert (r.success, r.override) == (False, "failure") and not sink.corrections
    override.success()
    r = fn(BLACK)  # classifier says no, human says success
    assert (r.success, r.terminate, r.reward, r.override) == (True, True, 1.0, "success")
    assert fn(BLACK).override is None and not fn(BLACK).success  # the override held one step only
    fn(WHITE)
    override.failure()
    r = fn(WHITE)  # the classifier fires (2 in a row), the human vetoes
    assert (r.success, r.terminate, r.reward) == (False, False, 0.0)
    assert not fn(WHITE).success  # the veto reset the debounce counter
    labels = [(c.label, c.step, c.episode) for c in sink.corrections]
    assert labels == [(1, 1, 0), (0, 5, 0)]
    c = sink.corrections[0]
    assert c.frames["observation.images.front"].dtype == np.uint8 and c.frames["observation.images.front"].max() == 0
    assert c.probability < 0.05 and c.model_version == fn.model_version and c.source == "programmatic"


def test_override_per_env_in_batch_and_custom_source(checkpoint):
    class Pedal(OverrideSource):
        name = "pedal"

        def __init__(self):
            self.queue = [None, 1]

        def poll(self):
            return self.queue.pop(0) if self.queue else None

    pedal = Pedal()
    pedal.env_index = 1
    override, sink = HumanOverride([pedal]), MemoryCorrectionSink()
    fn = RewardFunction.from_pretrained(checkpoint, override=override, corrections=sink)
    override.failure(env=0)
    r = fn.batch([WHITE, BLACK])
    assert [x.success for x in r] == [False, False] and [x.override for x in r] == ["failure", None]
    r = fn.batch([BLACK, BLACK])
    assert [x.success for x in r] == [False, True] and r[1].override == "success"
    assert [(c.env_index, c.label, c.source) for c in sink.corrections] == [(0, 0, "programmatic"), (1, 1, "pedal")]


def test_dataset_sink_writes_a_lerobot_dataset(checkpoint, tmp_path):
    from hilreward.data import LeRobotDataset

    root = tmp_path / "corrections"
    override = HumanOverride()
    fn = RewardFunction.from_pretrained(checkpoint, override=override, corrections=DatasetCorrectionSink(root))
    override.success()
    fn(BLACK)
    fn(BLACK)
    fn.reset()  # episode end: flushed
    assert root.is_dir()
    override.failure()
    fn(WHITE)
    fn.close()
    ds = LeRobotDataset.open(root=root)
    assert ds.version == "v3.0" and len(ds.episodes) == 2
    assert sorted(ds.camera_keys) == CAMERAS
    rows = ds.read_rows(["next.reward", "classifier.probability", "correction.episode"])
    assert rows["next.reward"].ravel().tolist() == [1.0, 0.0]
    assert rows["correction.episode"].ravel().tolist() == [0, 1]
    frames = ds.frames(["observation.images.front"], size=(32, 32))["observation.images.front"]
    assert frames[0].mean() < 40 and frames[1].mean() > 200
    meta = [json.loads(line) for line in (root / "meta" / "corrections.jsonl").read_text().splitlines()]
    assert [m["model_version"] for m in meta] == [fn.model_version] * 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_correction_sink_protocol_accepts_any_object(checkpoint):
    class Sqlite:  # shape of a third-party sink: only add() and close()
        def __init__(self):
            self.rows: list[Correction] = []
            self.closed = False

        def add(self, correction):
            self.rows.append(correction)

        def close(self):
            self.closed = True

    sink, override = Sqlite(), HumanOverride()
    fn = RewardFunction.from_pretrained(checkpoint, override=override, corrections=sink)
    override.success()
    fn(BLACK)
    fn.reset()
    fn.close()
    assert len(sink.rows) == 1 and sink.closed
    with pytest.raises(ConfigError, match="add"):
        RewardFunction.from_pretrained(checkpoint, corrections=42)


def test_keyboard_source_without_pynput_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynput(name, *args, **kwargs):
        if name == "pynput" or name.startswith("pynput."):
            raise ImportError("No module named 'pynput'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynput)
    with pytest.raises(ConfigError, match=r"pip install 'hilreward\[keyboard\]'"):
        KeyboardSource()


def test_override_without_sink_records_to_a_local_dataset(checkpoint, tmp_path, monkeypatch):
    from hilreward.data import LeRobotDataset

    monkeypatch.chdir(tmp_path)
    override = HumanOverride()
    fn = RewardFunction.from_pretrained(checkpoint, override=override)
    assert isinstance(fn.corrections, DatasetCorrectionSink)
    override.success()
    fn(BLACK)
    fn.close()
    (folder,) = (tmp_path / "corrections").iterdir()
    assert folder.name.startswith(fn.model_version)
    assert LeRobotDataset.open(root=folder).num_frames == 1
