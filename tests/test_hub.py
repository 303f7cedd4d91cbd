"""``hilreward push`` and loading by repo id and revision, against a Hub faked at huggingface_hub's HTTP layer
(tests/fake_hub.py): huggingface_hub's own upload, download and cache code runs; no network is used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import constants

from hilreward.cli import main
from hilreward.deploy import RewardFunction
from hilreward.errors import ConfigError, HubError
from hilreward.hub import PushOptions, push

from fake_hub import FakeHub
from support import DRAWER4, step_images

pytestmark = pytest.mark.usefixtures("one_thread")

TOKEN = "hf_fake_write_token"


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Network allowed (the fake answers) and a Hugging Face cache of this test's own."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return monkeypatch


def test_push_writes_the_card_first_then_loads_back_by_repo_id_and_revision(ckpt, frames, online, capsys):
    with FakeHub(TOKEN) as hub:
        assert main(["push", f"checkpoint={ckpt}", "repo_id=lab/drawer-success", "revision=v1", "private=true",
                     f"token={TOKEN}"]) == 0
        done = json.loads(capsys.readouterr().out)
        card = (ckpt / "README.md").read_text()
        repo = hub.repos["lab/drawer-success"]
        assert repo.private and repo.branches["v1"] == done["commit"] and repo.branches["main"] != done["commit"]
        pushed = repo.files("v1")
        assert sorted(pushed) == ["README.md", "config.json", "model.safetensors", "train_config.yaml"]
        assert pushed["README.md"].decode() == card and pushed["model.safetensors"] == (ckpt / "model.safetensors"
                                                                                     ).read_bytes()
        writes = [p for m, p in hub.requests if m == "POST"]
        assert writes[0] == "/api/repos/create" and writes[-1].endswith("/commit/v1")

        # the card: task, dataset, cameras, per-episode metrics of the held-out episodes, threshold, how to load
        assert "library_name: hilreward" in card and "- **Task**: open the drawer" in card
        assert "a local LeRobot dataset, `drawer4`" in card and "`observation.images.front`" in card
        assert "held out 2 episodes [2, 3]" in card
        assert "On the 2 episodes the run held out, [2, 3]" in card and "| 2 | 149 | detected |" in card
        assert "Success at probability >= **0.5**" in card and "resting on no evidence" in card
        assert 'RewardFunction.from_pretrained("lab/drawer-success", revision="v1")' in card
        assert 'HilrewardRewardStep(pretrained_path="lab/drawer-success", pretrained_revision="v1")' in card
        assert "format=lerobot" not in card  # a tiny encoder: LeRobot's stock step cannot load it, the card says so

        local = RewardFunction.from_pretrained(ckpt, backend="torch")
        fetched = RewardFunction.from_pretrained("lab/drawer-success", revision="v1", backend="torch")
        asked = len(hub.requests)
        online.setattr(constants, "HF_HUB_OFFLINE", True)  # from the local cache only, from here on
        cached = RewardFunction.from_pretrained("lab/drawer-success", revision="v1", backend="torch")
        pinned = RewardFunction.from_pretrained(f"lab/drawer-success@{done['commit']}", backend="torch")
        assert len(hub.requests) == asked
        with pytest.raises(Exception, match="lab/drawer-success.*at revision 'v2'"):
            RewardFunction.from_pretrained("lab/drawer-success@v2", backend="torch")
    for i in (100, 400):
        want = local(step_images(frames, i)).probability
        for fn in (fetched, cached, pinned):
            assert fn(step_images(frames, i)).probability == pytest.approx(want, abs=1e-7)
    assert cached.model_version == local.model_version == pinned.model_version


def test_push_refusals_are_one_line(ckpt, online, tmp_path, capsys):
    with FakeHub(TOKEN) as hub:
        assert main(["push", f"checkpoint={ckpt}", "repo_id=lab/x", "token=wrong"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: the Hub refused the push to lab/x") and "hf auth login" in err
        assert "\n" not in err and "lab/x" not in hub.repos
        assert main(["push", f"checkpoint={ckpt}", "repo_id=not a repo"]) == 1
        assert "is not a Hub repo id: write user/name" in capsys.readouterr().err
        card = push(PushOptions(checkpoint=str(ckpt), repo_id="lab/x", card_only=True))
        assert card.commit == "" and (ckpt / "README.md").is_file() and "lab/x" not in hub.repos
        online.setattr(constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set"):
            push(PushOptions(checkpoint=str(ckpt), repo_id="lab/x", token=TOKEN))


def test_an_eval_on_trained_episodes_is_named_so(ckpt, tmp_path, online):
    metrics = {"per_episode": [{"episode": 0, "frames": 149, "outcome": "detected", "onset_frame": 86,
                                "firing_frame": 86, "onset_error_frames": 0, "max_probability_before_onset": 0.2}],
               "threshold": 0.5, "consecutive": 1, "accuracy": 0.99, "frames": 149, "tolerance_s": 0.5}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (ckpt / "metrics.json").write_text(json.dumps({"train_episodes": [0, 1], "val_episodes": [2, 3]}))
    try:
        push(PushOptions(checkpoint=str(ckpt), repo_id="lab/x", eval=str(tmp_path / "eval"), card_only=True))
        card = (ckpt / "README.md").read_text()
    finally:
        (ckpt / "metrics.json").unlink()
    assert "episodes [0] (`hilreward eval`); of these, [0] were trained on: not held out" in card
    with pytest.raises(ConfigError, match="no metrics.json there"):
        push(PushOptions(checkpoint=str(ckpt), repo_id="lab/x", eval=str(tmp_path), card_only=True))


def test_a_local_directory_takes_no_revision(ckpt):
    with pytest.raises(ConfigError, match="a revision .* applies to Hub repos only"):
        RewardFunction.from_pretrained(ckpt, revision="v1")
    assert np.isfinite(RewardFunction.from_pretrained(str(ckpt)).options.success_threshold)
