"""One reward rule: a 3-class model whose success class (1) is not the last gives the same decisions in-process,
over the reward server, when relabelled, in ``hilreward predict``, in the corrections the server stores, in the
review and the CLI, and in the retrainer's assessment of them. The decision is the success class's probability at the
threshold (hilreward.success), never the arg-max. Real rendered frames (drawer4), a real server with retraining."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from hilreward.config import DatasetConfig, LabelConfig, compose
from hilreward.data import load_frame_data
from hilreward.deploy import Correction, RewardFunction, RewardOptions, judge, relabel_rewards, success_probability
from hilreward.errors import ConfigError
from hilreward.evaluation import predict
from hilreward.models.loading import load_classifier
from hilreward.online import review
from hilreward.online.cli import main as corrections_main
from hilreward.online.options import RetrainOptions
from hilreward.serving import RewardClient
from hilreward.serving.client import GrpcCorrectionSink
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from hilreward.success import check_success_class, decided_classes
from hilreward.training import train
from support import TOKEN, step_images
from test_train import write_phase_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

SUCCESS = 1
"""The success class: not the last, so a rule that takes the last class as success disagrees with this one."""
OPTS = dict(success_threshold=0.5, consecutive=2, mode="dense", success_reward=2.0, success_class=SUCCESS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    root = write_phase_dataset(tmp_path_factory.mktemp("phase") / "set", success_class=SUCCESS)
    out = tmp_path_factory.mktemp("run")
    train(compose([f"dataset.root={root}", "label.key=phase", "model.num_classes=3", "model.encoder=tiny",
                   "model.pretrained=false", "model.image_size=[32,32]", "split.val_episodes=[2]",
                   "training.threads=1", "training.steps=150", "training.eval_freq=50", "training.lr=2e-3",
                   "training.batch_size=64", "training.calibrate=off", f"output_dir={out}", f"cache_dir={cache_dir}"]))
    data = load_frame_data(DatasetConfig(root=str(root)), LabelConfig(key="phase"), (128, 128), cache_dir=cache_dir)
    return root, out / "checkpoints" / "best", data


@pytest.mark.slow
def test_success_class_1_decides_alike_everywhere(trained, tmp_path, cache_dir, capsys):
    root, ckpt, data = trained
    local = RewardFunction.from_pretrained(ckpt, backend="torch", **OPTS)
    rows = np.flatnonzero(data.episode_index == 2)[::3]  # the held-out episode, every third frame
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token=TOKEN,
                      cache_dir=cache_dir, dataset=DatasetConfig(root=str(root)),
                      retrain=RetrainOptions(every=5, min_interval_s=0.0, ensemble=0), **OPTS)
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=20) as client:
        remote = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token=TOKEN, **OPTS)
        probs = local.relabel({k.rsplit(".", 1)[-1]: data.images[k][rows] for k in data.camera_keys})
        streak, served = 0, []
        for step, i in enumerate(rows):
            want = judge(probs[step], RewardOptions(**OPTS), streak)
            streak = want.streak
            images = step_images(data, i)
            a, b, r = local(images), remote(images), client.predict(images, episode_id=5, step=step)
            for got in (a, b, r):
                assert (got.success, got.terminate) == (want.success, want.terminate), (step, got, want)
                assert got.reward == pytest.approx(want.reward, abs=1e-4)
            served.append(r.success)
        remote.close()
        assert set(served) == {True, False}
        assert ((probs[:, SUCCESS] >= 0.5) != (probs[:, -1] >= 0.5)).sum() >= 10  # the last class would differ

        # relabelling: the same rule frame by frame (no debounce)
        out = relabel_rewards(local, {k.rsplit(".", 1)[-1]: data.images[k][rows] for k in data.camera_keys})
        assert list(out.success) == list(probs[:, SUCCESS] >= 0.5)

        # evaluation: `hilreward predict` decides success by the same rule, at the checkpoint's threshold
        assert load_classifier(ckpt).threshold == OPTS["success_threshold"]
        table = pq.read_table(predict(ckpt, DatasetConfig(root=str(root), episodes=[2]), tmp_path / "p.parquet",
                                      cache_dir=cache_dir, success_class=SUCCESS)).to_pydict()
        p_success, p_last = np.array(table[f"prob_class_{SUCCESS}"]), np.array(table["prob_class_2"])
        assert table["success"] == list(p_success >= 0.5)
        assert (p_success >= 0.5).tolist() != (p_last >= 0.5).tolist()  # the last class would differ

        # corrections: the server keeps every class, a sink sends the success class's; each view shows that one.
        # Labels are class indices: the true phase of frames of the training episodes, wrong ones first.
        candidates = np.flatnonzero(data.episode_index != 2)
        judged = local.relabel({k.rsplit(".", 1)[-1]: data.images[k][candidates] for k in data.camera_keys})
        wrong = candidates[judged.argmax(1) != data.labels[candidates]]
        picked = [int(i) for i in [*wrong[:3], *candidates[::97][:5 - min(3, len(wrong))]]]
        before = {}
        for n, i in enumerate(picked):
            images = step_images(data, i)
            before[n + 1] = client.predict(images).class_probabilities[SUCCESS]
            if n == 0:  # through the sink a RewardFunction with an override uses
                sink = GrpcCorrectionSink(server.address, token=TOKEN)
                p = client.predict(images)
                sink.add(Correction(frames=images, label=int(data.labels[i]), probability=p.class_probabilities,
                                    model_version=p.model_version, time=1.0, episode=100, step=0,
                                    success_class=SUCCESS))
                sink.close()
            else:  # scored by the server
                client.submit_correction(images, label=int(data.labels[i]), episode_id=100 + n, step=0)
        views = {v.id: v for v in review.views(server.servicer.store, SUCCESS)}
        assert {c: v.probability for c, v in views.items()} == pytest.approx(before, abs=1e-5)
        assert {c.id: c.probability for c in client.list_corrections().corrections} == pytest.approx(before, abs=1e-5)

        # the retrainer: its assessment of each correction is the success class's probability and class decision
        # under the version it publishes
        deadline = time.monotonic() + 90
        while client.get_model().corrections_used < len(picked) and time.monotonic() < deadline:
            time.sleep(0.1)
        info = client.get_model()
        assert info.corrections_used == len(picked), info.retrainer_status
        for c in client.list_corrections().corrections:
            assert c.status in ("fixed", "unfixed"), (c.id, c.status, c.status_detail)
            now = client.predict(step_images(data, picked[c.id - 1])).class_probabilities
            assert c.probability_now == pytest.approx(now[SUCCESS], abs=0.02)  # features (float16) vs pixels
            assert (c.status == "fixed") == (decided_classes(np.array([now]), 0.5, SUCCESS)[0] == c.label)
    store = str(tmp_path / "state" / "corrections.sqlite")
    assert corrections_main(["list", f"store={store}", f"success_class={SUCCESS}", "limit=0"]) == 0
    printed = capsys.readouterr().out
    assert all(f"p {p:.3f}" in printed for p in before.values())
    assert success_probability([0.2, 0.7, 0.1], SUCCESS) == 0.7


def test_the_class_decision_is_the_success_decision_not_the_arg_max():
    """The retrainer judges corrections and offline frames by :func:`decided_classes`: success where the reward rule
    says success (class 1's probability at the threshold), else the most probable other class. The arg-max would
    call the first row a success at 0.5 and miss the second at 0.3."""
    probs = np.array([[0.30, 0.45, 0.25], [0.50, 0.35, 0.15], [0.10, 0.70, 0.20], [0.20, 0.10, 0.70]])
    for threshold, want in ((0.5, [0, 0, 1, 2]), (0.3, [1, 1, 1, 2])):
        decided = decided_classes(probs, threshold, SUCCESS)
        assert decided.tolist() == want
        options = RewardOptions(success_threshold=threshold, success_class=SUCCESS)
        assert [d == SUCCESS for d in decided] == [judge(p, options).success for p in probs]
    assert decided_classes(np.array([0.2, 0.5, 0.7]), 0.5).tolist() == [0, 1, 1]  # binary: p >= threshold
    check_success_class(3, -3)
    with pytest.raises(ConfigError, match="success_class=3: this model has 3 classes"):
        check_success_class(3, 3)  # hilreward predict says so in one line
