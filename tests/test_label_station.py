"""`hilreward suspects` on injected label noise, the label station's API over real HTTP, and its page in a
real headless Chromium (Selenium + Debian's chromedriver)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hilreward.app import AppServer
from hilreward.app.label import LabelOptions, build
from hilreward.cli import main
from hilreward.config import DatasetConfig, compose
from hilreward.data import video
from hilreward.errors import ConfigError

from fixtures.datasets import DRAWER4
from support import assert_guarded, command, http

BENCH = Path(__file__).resolve().parents[1] / "bench"
# A tiny frozen encoder at 32x32 trains in seconds; 4 folds of drawer4 = each episode scored by a model that
# never saw it.
TINY = ["model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]", "training.threads=1",
        "training.eval_freq=0", "augmentation.enable=false", "folds=4", "fold_steps=40"]


def load_bench_suspects():
    spec = importlib.util.spec_from_file_location("bench_suspects", BENCH / "bench_suspects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """drawer4 with one onset moved 8 frames later and a 15-frame false success in the failed episode (made with
    relabel), then `hilreward suspects` on it through the CLI."""
    tmp = tmp_path_factory.mktemp("suspects")
    bench = load_bench_suspects()
    noisy = tmp / "noisy"
    injected = bench.inject_noise(DRAWER4, noisy, shifted=1, shift=8, false_span=15, seed=0)
    cache = str(tmp_path_factory.getbasetemp() / "hilreward-cache")
    args = [f"dataset.root={noisy}", f"output_dir={tmp / 'out'}", f"cache_dir={cache}", *TINY]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["suspects", *args]) == 0
    return {"dir": tmp / "out", "noisy": noisy, "injected": injected, "stdout": out.getvalue(), "args": args,
            "bench": bench, "cache": cache}


def test_suspects_rank_the_injected_frames_first(run):
    table = pq.read_table(run["dir"] / "suspects.parquet")
    result = run["bench"].recall_at_2n(table, run["injected"])
    assert result["injected_frames"] == 23
    assert result["recall"] >= 0.8, result
    (ep_false, a, b) = run["injected"][-1]
    assert f"episode {ep_false}, frames {a}-" in run["stdout"] and "labelled 1, model says no success" in run["stdout"]


def test_suspect_score_trusts_labels_the_models_fit():
    """Frames 3-6 of episodes 0 and 1 are labelled 0 and the out-of-fold model says success; only in episode 0 do
    the models trained on them keep saying so (a label error). In episode 1 they fit the label: the model's error.
    Episode 2 is labelled success throughout, the out-of-fold model is sure it is not, and the in-fold models
    memorised it: it stays a suspect."""
    from hilreward.curation.suspects import suspect_score

    episode = np.repeat([0, 1, 2], 10)
    labels = (episode == 2).astype(np.int64)
    out_of_fold = np.where(np.isin(np.arange(30) % 10, [3, 4, 5, 6]) & (episode < 2), 0.9, 0.02)
    in_fold = np.select([episode == 0, episode == 1], [out_of_fold, 0.02], 0.98)
    score = suspect_score(labels, out_of_fold, in_fold, episode, window=2, min_score=0.5)
    assert score[episode == 0][3:7].min() >= 0.5 > score[episode == 1].max()
    assert set(np.argsort(-score[episode < 2])[:4]) == {3, 4, 5, 6}
    assert score[episode == 2].min() >= 0.5


def test_suspects_outputs(run):
    table = pq.read_table(run["dir"] / "suspects.parquet").to_pydict()
    assert list(table) == ["episode_index", "frame_index", "label", "probability", "score", "span_id"]
    score = np.array(table["score"])
    assert len(score) == 596 and np.all(np.diff(score) <= 0)  # every frame, sorted by score
    assert len(set(zip(table["episode_index"], table["frame_index"]))) == 596
    p, y = np.array(table["probability"]), np.array(table["label"])
    assert np.all((p >= 0) & (p <= 1))
    meta = json.loads((run["dir"] / "spans.json").read_text())
    assert sorted(e for f in meta["folds"] for e in f["episodes"]) == [0, 1, 2, 3]  # each episode scored once
    assert all(Path(f["checkpoint"], "model.safetensors").is_file() for f in meta["folds"])
    spans = meta["spans"]
    assert spans and [s["span_id"] for s in spans] == list(range(len(spans)))
    sid = np.array(table["span_id"])
    for s in spans:  # every frame of a span carries its id, and the span's frames agree with their label
        rows = (np.array(table["episode_index"]) == s["episode_index"]) & \
               (np.array(table["frame_index"]) >= s["start"]) & (np.array(table["frame_index"]) < s["end"])
        assert rows.sum() == s["end"] - s["start"] and np.all(sid[rows] == s["span_id"]) and np.all(y[rows] == s["label"])
        assert s["score"] >= 0.5
    assert np.all(sid[score < 0.5] == -1)


def test_suspects_resume_without_retraining(run, capsys):
    before = (run["dir"] / "suspects.parquet").read_bytes()
    states = sorted((run["dir"] / "folds").glob("*/checkpoints/last/training_state.json"))
    stamps = [p.stat().st_mtime_ns for p in states]
    assert main(["suspects", *run["args"]]) == 0
    assert len(states) == 4 and [p.stat().st_mtime_ns for p in states] == stamps  # no fold model trained again
    assert (run["dir"] / "suspects.parquet").read_bytes() == before


def test_suspects_bad_input(run, tmp_path, capsys):
    from hilreward.curation.suspects import SuspectsOptions, find_suspects

    cfg = compose([f"dataset.root={run['noisy']}", f"output_dir={tmp_path}", f"cache_dir={run['cache']}",
                   *[a for a in TINY if not a.startswith("fold")]])
    for opts, match in [(SuspectsOptions(folds=1), "folds=1 must be between 2 and the number of episodes"),
                        (SuspectsOptions(folds=5), "folds=5 must be between 2 and the number of episodes \\(4\\)"),
                        (SuspectsOptions(min_score=0), "min_score=0"), (SuspectsOptions(window=-1), "window=-1"),
                        (SuspectsOptions(fold_steps=-1), "fold_steps=-1 must be >= 0")]:
        with pytest.raises(ConfigError, match=match):
            find_suspects(cfg, opts)
    assert main(["suspects", f"dataset.root={run['noisy']}", "folds=two"]) == 1
    assert "error: bad argument" in capsys.readouterr().err


# ---- the label station over HTTP --------------------------------------------------------------------
@pytest.fixture(scope="module")
def station(run, tmp_path_factory):
    edits = tmp_path_factory.mktemp("station") / "edits.json"
    app, s = build(LabelOptions(dataset=DatasetConfig(root=str(run["noisy"])), suspects=str(run["dir"]),
                                edits=str(edits), cache_dir=run["cache"]))
    with AppServer(app, port=0) as server:
        yield {"url": server.url, "station": s, "edits": edits, "app": app}


def test_station_api(station, run):
    url = station["url"]
    status, info, _ = http(f"{url}/api/label/info")
    assert status == 200 and info["label_key"] == "next.reward" and info["probability_source"].startswith("suspects")
    spans = json.loads((run["dir"] / "spans.json").read_text())["spans"]
    _, episodes, _ = http(f"{url}/api/label/episodes")
    assert [e["episode_index"] for e in episodes] == [0, 1, 2, 3]
    assert [e["suspects"] for e in episodes] == [sum(s["episode_index"] == i for s in spans) for i in range(4)]
    ep_false, a, b = run["injected"][-1]
    assert episodes[ep_false]["onset"] == a and episodes[ep_false]["positives"] == b - a
    _, detail, _ = http(f"{url}/api/label/episodes/{ep_false}")
    assert detail["length"] == 149 and len(detail["labels"]) == len(detail["probability"]) == 149
    assert detail["labels"] == detail["original"] and sum(detail["labels"]) == 15
    assert any(s["start"] >= a and s["end"] <= b and s["label"] == 1 for s in detail["spans"])

    decodes = video.DECODE_CALLS
    status, jpg, headers = http(f"{url}/api/label/frames/1/{ep_false}/{a}.jpg?v={info['fingerprint']}")
    assert status == 200 and headers["content-type"] == "image/jpeg" and "immutable" in headers["cache-control"]
    assert Image.open(io.BytesIO(jpg)).size == (128, 128)
    _, png, _ = http(f"{url}/api/label/frames/0/0/0.png")
    wanted = station["station"].ds.frames(["observation.images.front"], (128, 128), episodes=[0],
                                          cache_dir=run["cache"])["observation.images.front"][0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), wanted)  # the cached frame, losslessly
    assert video.DECODE_CALLS == decodes  # served from the frame cache, no decoding
    for path, match in [("frames/2/0/0.jpg", "camera 2 does not exist"), ("frames/0/0/149.jpg", "frame 149 is out of range"),
                        ("frames/0/7/0.jpg", "episode 7 is not in"), ("frames/0/0/0.gif", "'gif' is not served"),
                        ("episodes/9", "episode 9 is not in")]:
        status, body, _ = http(f"{url}/api/label/{path}")
        assert status == 400 and match in body["detail"], (path, body)

    # edits: saved at once, listed, undone; bad ones refused with the reason
    status, e, _ = http(f"{url}/api/label/edits", "POST", {"episode_index": ep_false, "start": a, "end": b, "label": 0})
    assert status == 200 and (e["index"], e["source"]) == (0, "label-station")
    assert json.loads(station["edits"].read_text())["edits"][0]["end"] == b
    _, detail, _ = http(f"{url}/api/label/episodes/{ep_false}")
    assert sum(detail["labels"]) == 0 and sum(detail["original"]) == 15
    _, episodes, _ = http(f"{url}/api/label/episodes")
    assert episodes[ep_false]["edited"] and episodes[ep_false]["onset"] is None
    http(f"{url}/api/label/edits", "POST", {"episode_index": 0, "start": 100, "end": 110, "label": 0})
    status, listed, _ = http(f"{url}/api/label/edits")
    assert [x["index"] for x in listed] == [0, 1]
    assert http(f"{url}/api/label/edits/0", "DELETE")[1]["episode_index"] == ep_false
    assert http(f"{url}/api/label/edits/undo", "POST")[1]["start"] == 100
    assert json.loads(station["edits"].read_text())["edits"] == []
    for body, match in [({"episode_index": 0, "start": 140, "end": 150, "label": 1}, "out of range"),
                        ({"episode_index": 0, "start": 0, "end": 5, "label": 1}, "frame 0 of episode 0 cannot be")]:
        status, err, _ = http(f"{url}/api/label/edits", "POST", body)
        assert status == 400 and match in err["detail"]
    status, err, _ = http(f"{url}/api/label/edits", "POST", {"episode_index": 0, "start": 3})
    assert status == 422 and err["detail"] == "body.end: Field required; body.label: Field required"
    # a NaN in the body got HTTP 500 with a traceback (FastAPI's answer echoed the NaN, which JSON cannot hold)
    for bad in (float("nan"), float("inf")):
        status, err, _ = http(f"{url}/api/label/edits", "POST", {"episode_index": 0, "start": bad, "end": 9, "label": 1})
        assert status == 422 and err["detail"] == "body.start: Input should be a finite number", err
    status, err, _ = http(f"{url}/api/label/edits/undo", "POST")
    assert status == 400 and "no edit to undo" in err["detail"]
    assert http(f"{url}/api/pages")[1] == [{"name": "label", "title": "Label station", "url": "/label/"}]


def test_foreign_hosts_and_cross_site_writes_are_refused(station, run, tmp_path):
    """DNS rebinding: a site whose name re-resolves to 127.0.0.1 sends its own name as Host (400); any other site's
    page sends its Origin with a write (403). Before, /api/pages answered 200 and a JSON edit was saved."""
    url, s = station["url"], station["station"]
    port = url.rsplit(":", 1)[1]
    edit = {"episode_index": 0, "start": 100, "end": 110, "label": 0}
    before = len(s.list_edits())
    assert_guarded(url, "/api/label/edits")
    assert http(f"{url}/api/label/edits", "POST", edit, {"Host": "attacker.example"})[0] == 400
    for origin in ("http://attacker.example", "null", f"http://localhost:{port}", f"http://127.0.0.1:{int(port) + 1}",
                   f"https://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"):  # another scheme is another origin
        for method, path, body in [("POST", "edits", edit), ("POST", "edits/undo", None), ("DELETE", "edits/0", None),
                                   ("PUT", "edits", edit), ("PATCH", "edits", edit)]:
            status, answer, _ = http(f"{url}/api/label/{path}", method, body, {"Origin": origin})
            assert status == 403 and "cross-site request refused" in answer["detail"], (origin, method, path)
    assert len(s.list_edits()) == before  # nothing was written
    assert http(f"{url}/api/label/edits", headers={"Origin": "http://attacker.example"})[0] == 200  # reads pass
    status, saved, _ = http(f"{url}/api/label/edits", "POST", edit, {"Origin": url})  # the page's own writes pass
    assert status == 200 and saved["start"] == 100
    assert http(f"{url}/api/label/edits/{saved['index']}", "DELETE", headers={"Origin": url})[0] == 200
    with AppServer(station["app"], port=0, allowed_hosts=["robot.lan"]) as other:
        assert_guarded(other.url, "/api/label/edits", allowed="robot.lan")
        robot = f"robot.lan:{other.port}"  # the page opened by that name writes too
        assert http(f"{other.url}/api/label/edits", "POST", edit, {"Host": robot, "Origin": f"http://{robot}"})[0] == 200
        assert http(f"{other.url}/api/label/edits/undo", "POST", headers={"Origin": other.url})[0] == 200
    # `hilreward label` passes allowed_hosts= to its server
    with command(["label", f"dataset.root={run['noisy']}", f"suspects={run['dir']}", f"cache_dir={run['cache']}",
                  f"edits={tmp_path / 'e.json'}", "allowed_hosts=[robot.lan]"], tmp_path) as cli_url:
        assert_guarded(cli_url, "/api/label/edits", allowed="robot.lan")


def test_an_origin_is_its_scheme_host_and_port():
    from hilreward.app.guard import same_origin

    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("HTTP://LocalHost:8000", "localhost:8000") and same_origin("http://[::1]:80", "[::1]")
    assert same_origin("https://robot.lan", "robot.lan:443", scheme="https")
    assert not same_origin("https://127.0.0.1:8000", "127.0.0.1:8000")  # the page was served over http
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1", "127.0.0.1:8000") and not same_origin("null", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:8000/x", "127.0.0.1:8000")  # an Origin has no path


def test_station_with_a_checkpoint_and_option_errors(run, tmp_path, capsys):
    checkpoint = json.loads((run["dir"] / "spans.json").read_text())["folds"][0]["checkpoint"]
    _, s = build(LabelOptions(dataset=DatasetConfig(root=str(run["noisy"])), checkpoint=checkpoint,
                              edits=str(tmp_path / "e.json"), cache_dir=run["cache"]))
    detail = s.episode(0)
    assert detail.probability is not None and all(0 <= p <= 1 for p in detail.probability) and detail.spans == []
    root = f"dataset.root={run['noisy']}"
    for args, match in [(["host=0.0.0.0"], "host=0.0.0.0 is reachable from other machines: set token="),
                        ([f"checkpoint={checkpoint}", f"suspects={run['dir']}"], "not both"),
                        ([f"suspects={tmp_path}"], "is not a `hilreward suspects` output"),
                        ([f"edits={run['noisy']}/e.json"], "inside the dataset")]:
        assert main(["label", root, *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    # suspects computed for another dataset (the clean drawer4) are refused
    assert main(["label", f"dataset.root={DRAWER4}", f"suspects={run['dir']}", f"edits={tmp_path / 'x.json'}",
                 f"cache_dir={run['cache']}"]) == 1
    assert "were computed for another dataset or before" in capsys.readouterr().err


def test_token_is_required_off_loopback(run, tmp_path):
    from hilreward.app import Page, create_app
    from hilreward.app.label import router

    app = create_app([Page("label", "Label station", router)], token="s3cret")
    with pytest.raises(ConfigError, match="reachable from other machines"):
        AppServer(app, host="0.0.0.0", port=0)
    with AppServer(app, port=0) as server:
        status, body, _ = http(f"{server.url}/api/pages")
        assert status == 401 and "missing or wrong token" in body["detail"]
        assert http(f"{server.url}/api/pages", headers={"Authorization": "Bearer nope"})[0] == 401
        assert http(f"{server.url}/api/pages", headers={"Authorization": "Bearer s3cret"})[0] == 200
        status, _, headers = http(f"{server.url}/api/pages?token=s3cret")
        assert status == 200 and "hilreward_token=s3cret" in headers["set-cookie"]
        assert http(f"{server.url}/api/pages", headers={"Cookie": "hilreward_token=s3cret"})[0] == 200


# ---- the page in headless Chromium --------------------------------------------------------------------
def test_page_keys_mark_a_span_and_the_edit_persists(station, run, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    ep_shifted, onset, _ = run["injected"][0]
    wait = WebDriverWait(browser, 30)
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
    browser.get(f"{station['url']}/label/#ep={ep_shifted}&f={onset - 2}")
    wait.until(lambda d: text("frame-info").startswith(f"frame {onset - 2} / 148"))
    keys = ActionChains(browser)
    keys.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT).perform()             # onset
    wait.until(lambda d: text("frame-info").startswith(f"frame {onset} /"))
    keys.send_keys("[").perform()
    keys.key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()   # +10
    keys.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT).perform()           # onset + 7
    wait.until(lambda d: text("frame-info").startswith(f"frame {onset + 7} /"))
    keys.send_keys("]").perform()
    wait.until(lambda d: f"span frames {onset}–{onset + 7}" in text("status"))
    keys.send_keys("1").perform()
    wait.until(lambda d: "saved" in text("status"))
    assert f"episode {ep_shifted}, frames {onset}–{onset + 7} → success" in text("edits")
    saved = json.loads(station["edits"].read_text())["edits"]
    assert [(e["episode_index"], e["start"], e["end"], e["label"]) for e in saved] == [(ep_shifted, onset, onset + 8, 1)]

    # The edit survives a reload (it is in the file and the page shows it); the page works on localhost too.
    browser.get(browser.current_url.replace("//127.0.0.1:", "//localhost:"))
    assert browser.current_url.startswith("http://localhost:")
    wait.until(lambda d: text("frame-info").startswith(f"frame {onset + 7} /") and "1 edit" in text("edit-count"))
    assert f"frames {onset}–{onset + 7} → success" in text("edits")
    assert "label 1 (was 0)" in text("frame-info")
    labels = browser.execute_script("return window.labelStation.ep.labels")
    assert labels[onset:onset + 8] == [1] * 8
    images = browser.execute_script("return Array.from(document.querySelectorAll('#cameras img'))"
                                    ".map(i => [i.complete, i.naturalWidth])")
    assert images == [[True, 128], [True, 128]]
    assert browser.execute_script("return window.labelStation.ep.probability.length") == 149

    keys.send_keys("u").perform()  # undo from the keyboard (a write from the localhost page) empties the file
    wait.until(lambda d: "0 edits" in text("edit-count"))
    assert json.loads(station["edits"].read_text())["edits"] == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_disagreement_scores_runs_of_doubt_within_an_episode_and_label():
    from hilreward.curation.suspects import disagreement, group_spans

    ep = np.repeat([0, 1, 2], [20, 10, 5])
    y = np.zeros(35, int)
    y[12:20] = 1                      # episode 0: labelled success from frame 12
    p = np.full(35, 0.01)
    p[8:12] = 0.9                     # ... but the model sees it from frame 8 (a late labelled onset)
    p[12:20] = 0.95
    p[16] = 0.2                       # one doubtful frame inside the success run
    p[20] = 0.9                       # episode 1: one doubtful frame at its start
    p[30:35] = 0.9                    # episode 2: success never labelled
    assert np.allclose(disagreement(y, p, ep, window=0), np.where(y == 1, 1 - p, p))
    s = disagreement(y, p, ep, window=2)
    assert s[8:12].min() > 0.5 and s[30:35].min() > 0.5           # runs of doubt stay suspects
    assert max(s[16], s[20], s[7]) < 0.5                          # isolated doubts and their neighbours do not
    assert s[29] == pytest.approx(0.01)                            # episode 2 does not leak into episode 1
    assert s[12] == pytest.approx(np.mean(1 - p[12:15]))           # nor label 0 frames into the success run
    spans, span_id = group_spans(ep, np.r_[np.arange(20), np.arange(10), np.arange(5)], y, p, s, 0.5)
    assert [(sp.episode_index, sp.start, sp.end, sp.label) for sp in spans] == [(2, 0, 5, 0), (0, 8, 12, 0)]
    assert spans[1].describe() == "episode 0, frames 8-11: labelled 0, model says success (p 0.90)"
    assert np.flatnonzero(span_id == 1).tolist() == [8, 9, 10, 11]
