"""The operator console and review pages against a real reward server on 127.0.0.1, driven in a real headless
Chromium: Predict calls update the live trace and frames, the big buttons and keys store corrections, a review
on the page decides what the retrainer trains, bad input gets a clear error, and `hilreward serve
console=true` serves the page from the server's process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hilreward.app import AppServer
from hilreward.app.console import build
from hilreward.cli import main
from hilreward.online.store import CorrectionStore
from hilreward.serving import RewardClient
from hilreward.serving.config import QueryOptions, RecentOptions, ServeConfig
from hilreward.serving.server import RewardServer

from support import DRAWER4, TOKEN, assert_guarded, command, http, step_images, wait_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ROWS = list(range(390, 402))
"""drawer4 frames around episode 2's success onset: both sides of the threshold."""


@pytest.fixture(scope="module")
def console(ckpt, tmp_path_factory):
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path_factory.mktemp("state")), token=TOKEN,
                      recent=RecentOptions(size=64), queries=QueryOptions(size=4, min_need=0.0, min_gap=0))
    with RewardServer(cfg) as srv, RewardClient(srv.address, token=TOKEN) as client:
        app, service = build(srv.address, TOKEN, last_k=5)
        try:
            with AppServer(app, port=0, token=TOKEN) as web:
                yield {"server": srv, "client": client, "url": web.url, "service": service}
        finally:
            service.close()


def stored(srv: RewardServer) -> list:
    with CorrectionStore(srv.store.path, readonly=True) as db:
        return db.read(frames=False)


def predict_episode(client: RewardClient, frames, episode: int, rows=ROWS) -> list:
    return [client.predict(step_images(frames, i), episode_id=episode, step=s) for s, i in enumerate(rows)]


def read(browser, element_id: str) -> str:
    """An element's text in one step (the pages re-render parts of themselves on every event)."""
    return browser.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                  element_id)


def wait_until(browser, condition, what: str, timeout: float = 30):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} within {timeout} s; status: {read(browser, 'status')!r}; "
                             f"log: {browser.get_log('browser')}") from None


def click(browser, css: str, what: str) -> None:
    """Click an element, finding it again if the page re-rendered it between the find and the click."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_until(browser, clicked, what)


def test_live_trace_follows_predict_and_buttons_and_keys_store_corrections(console, frames, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    srv, client = console["server"], console["client"]
    text = lambda element_id: read(browser, element_id)  # noqa: E731
    browser.get(f"{console['url']}/console/?token={TOKEN}")
    version = client.get_model().version
    wait_until(browser, lambda d: version in text("version") and "live" in text("conn-text"), "the server's version")
    assert "waiting for the first Predict call" in text("point-info")

    results = predict_episode(client, frames, episode=7)
    trace = "const t = consoleState.traces.get(consoleState.newest); return t ? t.points : []"
    points = wait_until(browser, lambda d: len(d.execute_script(trace)) == len(ROWS) and d.execute_script(trace),
                        "the trace of 12 Predict calls")
    assert [p["prediction_id"] for p in points] == [r.prediction_id for r in results]
    assert [p["probability"] for p in points] == pytest.approx([r.probability for r in results], abs=1e-6)
    assert text("live-title") == "Episode 7" and text("point-info").startswith(f"step {len(ROWS) - 1} · p ")
    wait_until(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#cameras img')].map(i => i.complete && i.naturalWidth)") == [128, 128],
        "the live frames of both cameras")
    # the query queue, shown first, offers the frames nearest the threshold
    queue = "return [...document.querySelectorAll('#queue .query')].map(c => Number(c.dataset.prediction))"
    wait_until(browser, lambda d: len(d.execute_script(queue)) == 4, "four queued frames")
    queued = int(browser.execute_script(  # answering a query stores it as a correction (one step: cards re-render)
        "const card = document.querySelector('#queue .query'); card.querySelector('button.ok').click(); "
        "return card.dataset.prediction"))
    wait_until(browser, lambda d: "stored #1 " in text("status"), "the query's answer")
    assert [(s.correction.source, s.correction.step) for s in stored(srv)] == [("query", queued - results[0].prediction_id)]
    wait_until(browser, lambda d: queued not in d.execute_script(queue),
               "the answered query to leave the queue")

    click(browser, "#false-success", "the false-success button")  # the last k=5 frames are not success
    wait_until(browser, lambda d: "stored #2–#6" in text("status"), "the button's corrections")
    ActionChains(browser).send_keys("-", "-", "s").perform()  # k=3, then "missed success" from the keyboard
    wait_until(browser, lambda d: "stored #7–#9" in text("status"), "the key's corrections")
    rows = stored(srv)[1:]
    assert [(s.correction.label, s.correction.step, s.correction.episode, s.correction.source) for s in rows] == \
        [(0, step, 7, "console") for step in range(7, 12)] + [(1, step, 7, "console") for step in range(9, 12)]
    assert [s.correction.probability for s in rows[:5]] == pytest.approx([r.probability for r in results[7:]], abs=1e-6)
    assert "episode 7, steps 9–11 → success" in text("acks")

    browser.set_window_size(390, 844)  # a phone: one column, both big buttons visible side by side
    sizes = browser.execute_script("return ['false-success', 'missed-success', 'trace'].map(id => "
                                   "document.getElementById(id).getBoundingClientRect().width)")
    assert all(w > 120 for w in sizes[:2]) and sizes[2] <= 390
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_review_page_decides_what_the_retrainer_trains(console, frames, browser, cache_dir):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from hilreward.config import DatasetConfig
    from hilreward.online.trainer import HeadRetrainer, RetrainSpec
    from hilreward.online.versions import VersionStore
    from hilreward.online.options import RetrainOptions

    srv, client = console["server"], console["client"]
    predict_episode(client, frames, episode=8, rows=ROWS[-2:])
    a, b = client.correct_recent(label=1, last_k=2, episode_id=8).correction_ids
    text = lambda element_id: read(browser, element_id)  # noqa: E731
    browser.get(f"{console['url'].replace('//127.0.0.1:', '//localhost:')}/review/?token={TOKEN}")  # localhost too
    wait_until(browser, lambda d: "Nothing to review" in text("corrections"), "the empty review list")
    wait_until(browser, lambda d: "#0 · " in text("timeline"), "the versions timeline")  # loads on its own
    assert "serving" in browser.find_element(By.CSS_SELECTOR, "#timeline .what").get_attribute("class")
    Select(browser.find_element(By.ID, "filter")).select_by_value("")  # all corrections
    row = lambda cid: f"#corrections tr[data-id='{cid}']"  # noqa: E731
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row(a)), "correction rows")
    click(browser, row(a), "the first correction's row")
    wait_until(browser, lambda d: text("detail-title") == f"Correction #{a}", "the correction's detail")
    assert browser.execute_script("return [...document.querySelectorAll('#detail img')].map(i => i.naturalWidth)") \
        == [128, 128]  # its stored frames, at their recorded size
    browser.find_element(By.ID, "note").send_keys("arm still moving")
    click(browser, "#reject", "the reject button")
    wait_until(browser, lambda d: f"rejected #{a}" in text("status"), "the rejection")
    click(browser, row(b), "the second correction's row")
    wait_until(browser, lambda d: text("detail-title") == f"Correction #{b}", "the second correction")
    browser.find_element(By.TAG_NAME, "body").send_keys("a")  # accept from the keyboard
    wait_until(browser, lambda d: f"accepted #{b}" in text("status"), "the acceptance")
    assert client.get_correction(a).view.status_detail == "rejected by console: arm still moving"

    # What the retrainer reads: the rejected correction never trains, the accepted one does.
    versions = Path(srv.cfg.state_dir) / "test-versions"
    VersionStore(versions).init_base(Path(srv.cfg.checkpoint), "base", {})
    with CorrectionStore(srv.store.path, readonly=True) as db:
        trainer = HeadRetrainer(RetrainSpec(versions_root=str(versions), store=str(db.path),
                                            dataset=DatasetConfig(root=str(DRAWER4)), options=RetrainOptions(),
                                            cache_dir=cache_dir))
        batch = trainer.prepare(db.read(), db.verdicts())
    active = dict(zip(batch.ids.tolist(), batch.active.tolist()))
    assert (active[a], active[b]) == (False, True)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_review_page_shows_a_refused_attempt_and_a_conflict_beside_its_offline_frame(ckpt, frames, browser,  # noqa: F811
                                                                                       tmp_path, cache_dir):  # noqa: F811
    """Success labels on frames of held-out episode 3 (random actions, never a success): the first is named
    conflicts_offline and shown beside the offline frame it makes wrong; the second, accepted by review before the
    retrainer saw it, cannot be left out, so that attempt is refused and the page says why."""
    from selenium.webdriver.common.by import By

    from hilreward.config import DatasetConfig
    from hilreward.online.options import RetrainOptions


    retrain = RetrainOptions(min_interval_s=0.0, quiet_s=1.5, ensemble=0, contradiction_radius=0.0,
                             correction_weight=200.0)
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token=TOKEN,
                      cache_dir=cache_dir, dataset=DatasetConfig(root=str(DRAWER4)), retrain=retrain)
    ep3 = [i for i in range(len(frames.episode_index)) if frames.episode_index[i] == 3]
    text = lambda element_id: read(browser, element_id)  # noqa: E731
    with RewardServer(cfg) as srv, RewardClient(srv.address, token=TOKEN) as client:
        app, service = build(srv.address, TOKEN)
        try:
            with AppServer(app, port=0, token=TOKEN) as web:
                wait_model(client, lambda i: i.retrainer_status == "ready", "the retrainer ready")
                a = client.submit_correction(step_images(frames, ep3[60]), label=1, episode_id=7, step=60).correction_id
                wait_model(client, lambda i: i.corrections.conflicts_offline == 1, "the conflict named")
                b = client.submit_correction(step_images(frames, ep3[61]), label=1, episode_id=7, step=61).correction_id
                client.review([b], "accept", note="test: insist")  # before the retrainer's quiet wait ends
                wait_model(client, lambda i: i.retrainer.rejected >= 1, "the refused attempt")
                reason = client.versions().attempts[0].reason
                assert "offline held-out episode 3 false success" in reason and "accepted by review" in reason

                browser.get(f"{web.url}/review/?token={TOKEN}")
                row = f"#corrections tr[data-id='{a}']"
                wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the conflict in the list")
                wait_until(browser, lambda d: "refused by the gate" in text("timeline"), "the refused attempt")
                assert "offline held-out episode 3 false success" in text("timeline")
                click(browser, row, "the conflict's row")
                wait_until(browser, lambda d: text("detail-title") == f"Correction #{a}", "the conflict's detail")
                captions = browser.execute_script(
                    "return [...document.querySelectorAll('#detail figcaption')].map(c => c.innerText)")
                assert len(captions) == 4 and all(c.startswith("this correction") for c in captions[:2])
                conflict = client.get_correction(a).view.conflict
                assert all(c.startswith(f"offline ep 3 frame {conflict['frame']}") for c in captions[2:])
                assert browser.execute_script(
                    "return [...document.querySelectorAll('#detail img')].every(i => i.naturalWidth > 0)")
                assert "offline conflict" in text("detail") and f"episode 3 frames {conflict['start']}" in text("detail")
                click(browser, "#accept", "the accept button")
                wait_until(browser, lambda d: "offline frames it conflicts with are relabelled" in text("status"),
                           "the acceptance")
                wait_model(client, lambda i: (tmp_path / "state" / "offline-edits.json").is_file(), "the relabel written")
                assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
        finally:
            service.close()


def test_bad_input_gets_a_clear_error(console, capsys):
    url, auth = console["url"], {"Authorization": f"Bearer {TOKEN}"}
    for path, body, status, match in [
            ("console/corrections", {"label": 3, "last_k": 1}, 400, "label=3"),
            ("console/corrections", {"label": 1, "prediction_ids": [10 ** 6]}, 400, "is not in the server's buffer"),
            ("console/corrections", {"label": 1, "last_k": 2, "episode_id": 99}, 400, "no recent prediction"),
            ("review/reviews", {"ids": [10 ** 6], "verdict": "reject"}, 400, "no correction 1000000"),
            ("review/reviews", {"ids": [1], "verdict": "maybe"}, 422, "'accept' or 'reject'")]:
        code, answer, _ = http(f"{url}/api/{path}", "POST", body, auth)
        assert code == status and match in str(answer["detail"]), (path, body, answer)
    code, answer, _ = http(f"{url}/api/review/corrections?status=weird", headers=auth)
    assert code == 400 and "unknown status 'weird'" in answer["detail"]
    assert http(f"{url}/api/console/snapshot")[0] == 401  # the page needs the token too

    for args, match in [(["host=0.0.0.0"], "host=0.0.0.0 is reachable from other machines: set token="),
                        (["last_k=0"], "last_k=0"), (["port=70000"], "port=70000")]:
        assert main(["console", *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    app, service = build("127.0.0.1:1")  # nothing listens there: the page says so and retries
    try:
        deadline = time.monotonic() + 20
        while "retrying" not in service.feed.snapshot().connection.message and time.monotonic() < deadline:
            time.sleep(0.05)
        connection = service.feed.snapshot().connection
        assert not connection.connected and "127.0.0.1:1" in connection.message and "retrying" in connection.message
        with AppServer(app, port=0) as web:  # a call that needs the reward server: 503, the one error map's status
            code, answer, _ = http(f"{web.url}/api/review/corrections")
        assert code == 503 and "reward server at 127.0.0.1:1 unavailable" in answer["detail"]
    finally:
        service.close()


def test_console_refuses_foreign_hosts_and_cross_site_writes(console, tmp_path):
    srv, auth = console["server"], {"Authorization": f"Bearer {TOKEN}"}

    def writes() -> tuple[int, int]:
        with CorrectionStore(srv.store.path, readonly=True) as db:
            return len(db), len(db.reviews())

    before = writes()
    assert_guarded(console["url"], "/api/console/corrections", auth)
    for path, body in [("console/corrections", {"label": 0, "last_k": 1}),
                       ("review/reviews", {"ids": [1], "verdict": "reject"})]:
        status, answer, _ = http(f"{console['url']}/api/{path}", "POST", body, {**auth, "Origin": "null"})
        assert status == 403 and "cross-site request refused" in answer["detail"], answer
    assert writes() == before
    # `hilreward console` passes allowed_hosts= to its server
    with command(["console", f"address={srv.address}", f"token={TOKEN}", "allowed_hosts=[robot.lan]"], tmp_path) as url:
        assert_guarded(url, "/api/review/reviews", auth, allowed="robot.lan")


def test_serve_console_true_serves_the_page_from_the_server_process(ckpt, tmp_path):  # noqa: F811
    ports = {name: tmp_path / name for name in ("grpc", "web")}
    proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", "serve", f"checkpoint={ckpt}", f"token={TOKEN}",
                             f"state_dir={tmp_path / 'state'}", "threads=1", "port=0", f"port_file={ports['grpc']}",
                             "console=true", "console_port=0", f"console_port_file={ports['web']}",
                             "allowed_hosts=[robot.lan]"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not ports["web"].exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no console within 90 s"
            time.sleep(0.1)
        url, auth = f"http://127.0.0.1:{ports['web'].read_text().strip()}", {"Authorization": f"Bearer {TOKEN}"}
        with RewardClient(f"127.0.0.1:{ports['grpc'].read_text().strip()}") as client:
            version = client.get_model().version
        deadline = time.monotonic() + 30
        while not (snapshot := http(f"{url}/api/console/snapshot", headers=auth)[1])["connection"]["connected"]:
            assert time.monotonic() < deadline, snapshot
            time.sleep(0.05)
        assert snapshot["model"]["version"] == version and snapshot["retrainer"]["state"] == "off"
        code, page, _ = http(f"{url}/console/", headers=auth)
        assert code == 200 and b"False success" in page
        assert_guarded(url, "/api/console/corrections", auth, allowed="robot.lan")
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out[-2000:]
    assert f"operator console for 127.0.0.1:{ports['grpc'].read_text().strip()}: open http://127.0.0.1:" in out


def test_the_console_shows_the_hacking_monitor(ckpt, frames, browser, tmp_path, cache_dir, capsys):
    """Per served version: the live episodes where it claimed success, how many claims were on unfamiliar states,
    the false-success flags it got; in GetModel, on the page (text and a small plot) and in `corrections list`."""
    import shutil

    import numpy as np

    from hilreward.training.support_bank import attach_support

    supported = tmp_path / "ckpt"
    shutil.copytree(ckpt, supported)
    attach_support(supported, frames, np.flatnonzero(np.isin(frames.episode_index, [0, 1])), 4000, cache_dir)
    state = tmp_path / "state"
    cfg = ServeConfig(checkpoint=str(supported), port=0, state_dir=str(state), token=TOKEN)
    with RewardServer(cfg) as srv, RewardClient(srv.address, token=TOKEN) as client:
        app, service = build(srv.address, TOKEN, last_k=5)
        try:
            with AppServer(app, port=0, token=TOKEN) as web:
                success = np.flatnonzero((frames.labels == 1) & (frames.episode_index == 2))
                claimed = predict_episode(client, frames, episode=1,  # an episode into its success: a claim
                                          rows=list(range(int(success[0]) - 3, int(success[-1]), 4)))
                assert any(r.success for r in claimed) and all(r.support is not None for r in claimed)
                predict_episode(client, frames, episode=2, rows=ROWS[:3])  # no claim
                first = next(r for r in claimed if r.success)
                client.correct_recent(0, [first.prediction_id])  # "that was no success"
                watched = client.get_model().monitor[-1]
                assert (watched.version, watched.episodes, watched.claimed, watched.false_success_flags) == \
                    (srv.slot.current.version, 2, 1, 1)
                assert watched.claimed_unknown == 0 and watched.claimed_unfamiliar in (0, 1)

                browser.get(f"{web.url}/console/?token={TOKEN}")
                text = lambda: read(browser, "monitor-text")  # noqa: E731
                wait_until(browser, lambda d: "claimed success in 1 of 2 live episodes (50 %)" in text(),
                           "the monitor's line")
                assert "1 false-success flag" in text() and "claims on unfamiliar states" in text()
                painted = browser.execute_script(
                    "const c = document.getElementById('monitor'); const g = c.getContext('2d');"
                    "return g.getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0)")
                assert painted, "the plot is drawn"
                assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
        finally:
            service.close()
    capsys.readouterr()
    assert main(["corrections", "list", f"store={state / 'corrections.sqlite'}"]) == 0
    out = capsys.readouterr().out
    assert "hacking monitor" in out and "claimed success in 1/2 live episodes (50 %)" in out
    assert "1 false-success flag(s)" in out
