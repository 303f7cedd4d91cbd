"""One reward rule: a 3-class model whose success class is not the last gives the same decisions in-process, over
the reward server, when relabelled, and in the corrections the server stores, the review and the CLI show."""

from __future__ import annotations

import numpy as np
import pytest

from hilreward.deploy import Correction, RewardFunction, judge, relabel_rewards
from hilreward.deploy.rule import RewardOptions
from hilreward.online import review
from hilreward.online.cli import main as corrections_main
from hilreward.serving import RewardClient
from hilreward.serving.client import GrpcCorrectionSink
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from test_deploy import train_bright_is_success

SUCCESS_CLASS = 0  # not the last class: a rule that takes the last class as success disagrees with this one


def grey(level: int) -> dict[str, np.ndarray]:
    return {k: np.full((32, 32, 3), level, np.uint8) for k in ("front", "wrist")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = train_bright_is_success(num_classes=3)
    ckpt = model.save_pretrained(tmp_path_factory.mktemp("mc") / "ckpt")
    levels = [0, 40, 80, 100, 110, 120, 130, 140, 150, 120, 110, 0, 160, 170, 180, 200, 255]
    probs = np.concatenate([model.predict_proba(grey(v)) for v in levels])
    threshold = 0.9
    # the levels must tell the two rules apart, or the test could not fail
    assert ((probs[:, SUCCESS_CLASS] >= threshold) != (probs[:, -1] >= threshold)).sum() >= 10, probs
    return ckpt, levels, probs, threshold


def test_three_class_decisions_are_the_same_everywhere(setup, tmp_path, capsys):
    ckpt, levels, probs, threshold = setup
    opts = dict(success_threshold=threshold, consecutive=2, mode="dense", success_reward=2.0,
                success_class=SUCCESS_CLASS)
    local = RewardFunction.from_pretrained(ckpt, backend="torch", **opts)
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token="t", **opts)
    with RewardServer(cfg) as server, RewardClient(server.address, token="t", timeout_s=10) as client:
        remote = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token="t", **opts)
        streak, served = 0, []
        for step, level in enumerate(levels):
            want = judge(probs[step], RewardOptions(**opts), streak)
            streak = want.streak
            a, b = local(grey(level)), remote(grey(level))
            r = client.predict(grey(level), episode_id=5, step=step)
            for got in (a, b):
                assert (got.success, got.terminate) == (want.success, want.terminate), (step, got, want)
                assert got.reward == pytest.approx(want.reward, abs=1e-5)
            assert (r.success, r.terminate) == (want.success, want.terminate)
            assert r.probability == pytest.approx(list(probs[step]), abs=1e-5)  # every class, as in-process
            assert r.reward == pytest.approx(want.reward, abs=1e-5)
            served.append(r.success)
        assert set(served) == {True, False}  # both outcomes covered
        remote.close()

        # relabelling: the same rule frame by frame (no debounce)
        frames = {k: np.stack([grey(v)[k] for v in levels]) for k in ("front", "wrist")}
        out = relabel_rewards(local, frames)
        assert out.probabilities == pytest.approx(probs[:, SUCCESS_CLASS], abs=1e-5)
        assert list(out.success) == list(probs[:, SUCCESS_CLASS] >= threshold)

        # corrections: the server keeps every class; a sink sends the success class's; every view shows that
        i = int(np.argmax(np.abs(probs[:, SUCCESS_CLASS] - probs[:, -1])))
        client.submit_correction(grey(levels[i]), label=1, episode_id=9, step=i)  # scored by the server
        sink = GrpcCorrectionSink(server.address, token="t")
        sink.add(Correction(frames=grey(levels[i]), label=0, probability=[float(x) for x in probs[i]],
                            model_version=r.model_version, time=1.0, episode=10, step=i, success_class=SUCCESS_CLASS))
        sink.close()
        want = probs[i][SUCCESS_CLASS]
        assert [v.probability for v in review.views(server.servicer.store, SUCCESS_CLASS)] == \
            pytest.approx([want, want], abs=1e-5)
        assert [v.probability for v in client.list_corrections().corrections] == pytest.approx([want, want], abs=1e-5)
    store = str(tmp_path / "state" / "corrections.sqlite")
    assert corrections_main(["list", f"store={store}", f"success_class={SUCCESS_CLASS}"]) == 0
    assert capsys.readouterr().out.count(f"p {want:.3f}") == 2
