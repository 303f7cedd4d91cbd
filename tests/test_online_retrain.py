"""The ever-correcting loop against a real server: a corrected false positive is fixed in a newly
published version without losing held-out accuracy, contradictory corrections never stall it, a
review changes what trains, the gate refuses harmful corrections (offline and on held-out
corrections), versions are immutable and survive restarts, and `kill -9` right after an ack loses
no correction."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hilreward.config import DatasetConfig
from hilreward.deploy import RewardFunction
from hilreward.deploy.corrections import Correction
from hilreward.online.retrainer import _STOP, quiet
from hilreward.online.holdout import conflicts_of
from hilreward.online.sorting import Batch
from hilreward.online.trainer import HeadRetrainer, RetrainSpec
from hilreward.online.store import CorrectionStore
from hilreward.models.loading import checkpoint_hash
from hilreward.online.versions import VersionStore
from hilreward.serving import RewardClient
from hilreward.online.options import RetrainOptions
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
# instantiated again for this module.
from support import (DELAY_S, DRAWER4, TOKEN, false_positive, make_checkpoint, settled, start_serve, step_images,
                     wait_model)

TOLERANCE = 0.01

pytestmark = pytest.mark.usefixtures("one_thread")


def heldout_accuracy(reward_fn: RewardFunction, frames) -> float:
    rows = np.flatnonzero(np.isin(frames.episode_index, [2, 3]))
    batch = {k: np.array(v[rows]) for k, v in frames.images.items()}
    probs = reward_fn.relabel(batch)
    return float(((probs >= reward_fn.options.success_threshold) == frames.labels[rows]).mean())


def test_corrections_become_versions_contradictions_never_stall_and_review_changes_what_trains(
        ckpt, frames, tmp_path, cache_dir):
    state = tmp_path / "state"
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), token=TOKEN, cache_dir=cache_dir,
                      dataset=DatasetConfig(root=str(DRAWER4)),
                      retrain=RetrainOptions(every=1, min_interval_s=0.0, min_fixed=1.0,
                                             ensemble=2, ensemble_steps=50))
    fp = false_positive(frames)
    base_fn = RewardFunction.from_pretrained(ckpt)
    assert base_fn(fp).success, "precondition: the served checkpoint calls this failure a success"
    base_accuracy = heldout_accuracy(base_fn, frames)
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=10) as client:
        watch = client.watch_model(timeout_s=DELAY_S)
        base = next(watch)
        before = client.predict(fp)
        assert before.success and before.model_version == base.version == base_fn.model_version
        submitted = time.monotonic()
        ack = client.submit_correction(fp, label=0, model_version=before.model_version,
                                       probability=before.probability, source="keyboard", episode_id=1)
        assert ack.correction_id == 1 and ack.corrections_total == 1
        new = next(watch, None)
        assert new is not None, f"no new version within {DELAY_S} s"
        elapsed = time.monotonic() - submitted
        after = client.predict(fp)
        assert new.version != base.version and after.model_version == new.version
        assert not after.success and after.probability < before.probability, "the false positive is fixed"
        assert new.corrections_used == 1 and new.corrections_total == 1
        assert new.metrics["corrections_fixed"] == 1.0
        assert new.metrics["heldout_accuracy"] >= new.metrics["heldout_accuracy_base"] - TOLERANCE
        assert client.get_model().version == new.version
        assert client.get_model().retrainer_status == f"published {new.version}"

        # The stall case: the same frames labelled both ways (twice), then a correct correction: still published.
        # The newest word wins: #5 (success) trains, #3 agrees with it; #2 and #4 are superseded (never trained).
        same = step_images(frames, 60)
        for label in (0, 1, 0, 1):
            client.submit_correction(same, label=label, episode_id=2, step=60)
        second = false_positive(frames, success_episode=1, failure_episode=0)
        client.submit_correction(second, label=0, episode_id=3)
        info = wait_model(client, lambda i: i.corrections_total == 6 and settled(i),
                          "version trained after all 6 corrections")
        assert info.corrections_used == 4  # 1, 3, 5, 6: never two labels on one state
        listing = client.list_corrections()
        status = {c.id: c.status for c in listing.corrections}
        assert (status[1], status[2], status[4], status[6]) == ("fixed", "superseded", "superseded", "fixed")
        assert status[3] == status[5] and status[5] in ("fixed", "unfixed", "contradicted")
        detail = {c.id: c.status_detail for c in listing.corrections}
        assert "superseded by correction 5 labelled 1" in detail[2] and "superseded by correction 5" in detail[4]
        assert (listing.counts.superseded, listing.counts.pending) == (2, 0)
        assert {2, 4} <= set(info.needs_review) and info.corrections.superseded == 2
        assert not client.predict(fp).success and not client.predict(second).success

        # Review: rejecting the correct corrections makes the next version forget them.
        client.reject([1, 6], note="test: undo")
        again = wait_model(client, lambda i: i.version != info.version, "version after the review")
        assert again.corrections_used == 2 and client.predict(fp).success
        rejected = client.list_corrections(statuses=["rejected"]).corrections
        assert [(c.id, c.review.verdict) for c in rejected] == [(6, "reject"), (1, "reject")]
        timeline = client.versions()
        assert timeline.versions[-1].serving and timeline.versions[-1].version == again.version
        assert all(a.passed for a in timeline.attempts) and timeline.attempts[0].version == again.version

        # Uncertainty: the ensemble heads are trained while the retrainer is idle.
        assert server.ensemble_ready.wait(DELAY_S)
        result = client.predict(fp)
        assert result.uncertainty is not None and 0.0 <= result.uncertainty <= 0.5
        assert client.get_model().ensemble_size == 2
        newest = again.version
    print(f"correction -> new version serving: {elapsed:.1f} s")

    # Independent check of the first published version, loaded as an RL actor would load it.
    versions = VersionStore(state / "versions")
    assert versions.numbers()[:2] == [0, 1]
    published = RewardFunction.from_pretrained(versions.path(1))
    assert published.model_version == new.version
    assert not published(fp).success
    assert heldout_accuracy(published, frames) >= base_accuracy - TOLERANCE
    assert checkpoint_hash(versions.path(0)) == checkpoint_hash(ckpt)  # version 0 untouched
    assert not [p.name for p in (state / "versions").iterdir() if p.name.startswith(".")]  # no temp leftovers

    # A restarted server (here without retraining) serves the newest version and keeps the store and the reviews.
    restart = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), token=TOKEN)
    with RewardServer(restart) as server, RewardClient(server.address) as client:
        info = client.get_model()
        assert (info.version, info.corrections_total, info.corrections.rejected) == (newest, 6, 2)
        assert client.predict(fp).model_version == newest


def _add(store: CorrectionStore, frames, i: int, label: int, episode: int = 0, images=None) -> int:
    images = images or {k: np.array(v[i]) for k, v in frames.images.items()}
    return store.add(Correction(frames=images, label=label, probability=0.5, model_version="base", time=0.0,
                                episode=episode, step=int(i)))


def _trainer(tmp_path, store: CorrectionStore, cache_dir: str, **options) -> HeadRetrainer:
    return HeadRetrainer(RetrainSpec(versions_root=str(tmp_path / "versions"), store=str(store.path),
                                     dataset=DatasetConfig(root=str(DRAWER4)), options=RetrainOptions(**options),
                                     cache_dir=cache_dir))


def test_contradicted_corrections_are_reported_not_gated_until_a_review_accepts_them(ckpt, frames, tmp_path,
                                                                                      cache_dir):
    VersionStore(tmp_path / "versions").init_base(ckpt, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    # A confused labeller marks 30 success frames of the training episodes as failures: each is the very
    # frame the offline data labels a success.
    ids = [_add(store, frames, i, 0) for i in
           np.flatnonzero((frames.labels == 1) & np.isin(frames.episode_index, [0, 1]))[::4][:30]]
    trainer = _trainer(tmp_path, store, cache_dir, correction_weight=100.0, min_fixed=1.0)
    assert trainer.val_episodes == [2, 3]
    attempt = trainer.attempt(store.read(), store.verdicts())
    assert attempt.passed, attempt.reason  # reported, trained like one offline frame each: harmless
    assert {a.status for a in attempt.assessments} == {"contradicted"}
    assert all("near-identical to offline frame (episode" in a.detail and "labelled 1" in a.detail
               for a in attempt.assessments)
    assert attempt.metrics["corrections_contradicted"] == 30 and attempt.metrics["corrections_gated"] == 0
    assert attempt.metrics["heldout_accuracy"] >= trainer.base_accuracy - TOLERANCE

    # A review that insists on them makes them train fully, and the held-out gate refuses the result.
    store.add_reviews(ids, "accept", reviewer="test")
    attempt = trainer.attempt(store.read(), store.verdicts())
    assert not attempt.passed and "offline held-out episode" in attempt.reason and "missed" in attempt.reason
    assert attempt.metrics["heldout_accuracy"] < trainer.base_accuracy - TOLERANCE
    assert {a.status for a in attempt.assessments} <= {"fixed", "unfixed"}
    store.close()


def test_contradictory_corrections_never_stall_the_gate(ckpt, frames, tmp_path, cache_dir):
    VersionStore(tmp_path / "versions").init_base(ckpt, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    for label in (0, 1, 0, 1, 1, 0):  # the same frames labelled both ways, three times
        _add(store, frames, 50, label)
    fp = _add(store, frames, 0, 0, episode=1, images=false_positive(frames))  # then one correct correction
    trainer = _trainer(tmp_path, store, cache_dir, min_fixed=1.0, steps=300)
    attempt = trainer.attempt(store.read(), store.verdicts())
    assert attempt.passed, attempt.reason
    status = {a.correction_id: a.status for a in attempt.assessments}
    # the newest word (#6, failure) wins: the success labels #2, #4, #5 are superseded, never trained; the failure
    # labels #1, #3, #6 agree with it (and with the offline data) and train
    assert status == {1: "fixed", 2: "superseded", 3: "fixed", 4: "superseded", 5: "superseded", 6: "fixed",
                      fp: "fixed"}
    assert attempt.metrics["corrections_superseded"] == 3
    assert attempt.metrics["corrections_fixed"] == 1.0 and attempt.metrics["corrections_gated"] == 4
    assert 100 <= attempt.metrics["train_steps"] < 300  # min_steps, then stopped once the gated one was fixed
    store.close()


def test_gate_sees_a_regression_on_corrections_it_did_not_train_on(ckpt, frames, tmp_path, cache_dir):
    """Corrections of held-out episode 2 (true success labels) train version 1; then wrong labels on episode 0's
    success frames arrive. The offline gates are disabled; only the held-out-corrections gate can see that
    training on the new batch, without episode 2's corrections, now gets them wrong. It does not publish that
    head: both sides of the conflict go to review (contradicted), and the version it publishes instead has not
    learnt the wrong labels."""
    VersionStore(tmp_path / "versions").init_base(ckpt, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    options = dict(veto=[], min_fixed=0.0, contradiction_radius=0.0, holdout_episodes=1, holdout_tolerance=0.2,
                   correction_weight=200.0, ensemble=0)
    trainer = _trainer(tmp_path, store, cache_dir, **options)
    for i in np.flatnonzero((frames.labels == 1) & (frames.episode_index == 2))[::6][:5]:
        _add(store, frames, i, 1, episode=2)
    first = trainer.attempt(store.read(), store.verdicts())
    assert first.passed and "holdout_accuracy" not in first.metrics  # nothing older to hold out
    trainer.publish(first)
    for i in np.flatnonzero((frames.labels == 1) & (frames.episode_index == 0))[::3][:10]:
        _add(store, frames, i, 0, episode=0)
    attempt = trainer.attempt(store.read(), store.verdicts())
    assert attempt.passed, attempt.reason
    status = {a.correction_id: a for a in attempt.assessments}
    found = {i for i, a in status.items() if "held-out corrections gate" in a.detail}
    assert found & set(range(1, 6)) and found & set(range(6, 16))
    assert attempt.metrics["corrections_conflicting"] == len(found)
    assert all("made wrong by newer corrections" in status[i].detail for i in found if i < 6)
    assert all("makes held-out corrections" in status[i].detail for i in found if i >= 6)
    # every wrong label is contradicted now (near-identical to an offline frame, or in conflict): none learnt
    assert all(status[i].status == "contradicted" and status[i].detail.endswith("classified otherwise")
               for i in range(6, 16))
    store.close()


def test_a_conflict_blames_the_new_corrections_labelled_otherwise_or_else_all_new_ones():
    def batch(labels: list[int]) -> Batch:
        n = len(labels)
        return Batch(np.arange(1, n + 1), np.arange(n), np.array(labels), [(0, 0)] * n, np.zeros(n, bool),
                      np.zeros(n, bool), {}, {}, n)

    broken, new = np.array([True, False, False, False]), np.array([False, False, True, True])
    conflicts = conflicts_of(batch([1, 1, 0, 1]), broken, new)
    assert sorted(conflicts) == [1, 3] and "made wrong by newer corrections [3]" in conflicts[1]
    assert "makes held-out corrections [1]" in conflicts[3]
    assert sorted(conflicts_of(batch([1, 1, 1, 1]), broken, new)) == [1, 3, 4]  # none otherwise


def test_a_burst_of_corrections_is_waited_for_and_trains_as_one_attempt():
    triggers, woken = mp.get_context("spawn").Queue(), []

    def burst() -> None:
        for i in range(5):
            triggers.put(i)
            time.sleep(0.02)

    sender = threading.Thread(target=burst)
    start = time.monotonic()
    sender.start()
    assert not quiet(triggers, woken, quiet_s=0.5)
    sender.join()
    assert woken == [0, 1, 2, 3, 4] and time.monotonic() - start < 2.0 + 0.1  # at most 4 x quiet_s
    triggers.put(_STOP)
    assert quiet(triggers, woken, quiet_s=0.5)  # told to stop meanwhile


@pytest.mark.slow
def test_kill_9_right_after_ack_loses_no_correction(ckpt, frames, tmp_path):
    args = [f"checkpoint={ckpt}", f"state_dir={tmp_path / 'state'}", f"token={TOKEN}", "threads=1"]
    proc, address = start_serve(args, tmp_path / "port1")
    acks = []
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            for n, i in enumerate((3, 150, 310, 480)):
                acks.append(client.submit_correction(step_images(frames, i), label=n % 2, episode_id=n, step=i))
            os.kill(proc.pid, signal.SIGKILL)  # at once, no graceful shutdown
    finally:
        proc.kill()
        proc.wait(30)
    assert [a.correction_id for a in acks] == [1, 2, 3, 4] and acks[-1].corrections_total == 4

    proc, address = start_serve(args, tmp_path / "port2")
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            assert client.get_model().corrections_total == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # graceful stop on SIGTERM
    with CorrectionStore(tmp_path / "state" / "corrections.sqlite", readonly=True) as store:
        stored = store.read()
    assert [(s.id, s.correction.label, s.correction.step) for s in stored] == \
        [(1, 0, 3), (2, 1, 150), (3, 0, 310), (4, 1, 480)]
    assert np.array_equal(stored[2].correction.frames["observation.images.wrist"], step_images(frames, 310)["wrist"])


@pytest.mark.slow
def test_kill_9_mid_attempt_loses_no_correction_or_review_and_the_next_start_resumes(ckpt, frames, tmp_path,
                                                                                     cache_dir):
    common = [f"checkpoint={ckpt}", f"state_dir={tmp_path / 'state'}", f"token={TOKEN}", "threads=1",
              f"dataset.root={DRAWER4}", f"cache_dir={cache_dir}", "retrain.min_interval_s=0", "retrain.ensemble=0"]
    slow = ["retrain.steps=20000", "retrain.min_steps=20000", "retrain.check_every=20000"]  # an attempt of seconds
    proc, address = start_serve([*common, *slow], tmp_path / "port1")
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            wait_model(client, lambda i: i.retrainer_status == "ready", "the retrainer ready")
            fp = client.submit_correction(false_positive(frames), label=0, episode_id=1)
            other = client.submit_correction(step_images(frames, 390), label=1, episode_id=2, step=5)
            client.reject([other.correction_id], note="test: wrong")
            wait_model(client, lambda i: i.retrainer_status.startswith("training"), "an attempt under way")
            os.kill(proc.pid, signal.SIGKILL)  # mid-attempt, no graceful shutdown
    finally:
        proc.kill()
        proc.wait(30)
    proc, address = start_serve(common, tmp_path / "port2")
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            info = wait_model(client, lambda i: i.corrections_used == 1 and i.number == 1, "the resumed loop's version")
            assert info.corrections_total == 2 and info.corrections.rejected == 1
            listing = {c.id: c for c in client.list_corrections().corrections}
            assert listing[fp.correction_id].status == "fixed"
            assert listing[other.correction_id].review.note == "test: wrong"
            assert not client.predict(false_positive(frames)).success
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append((int(stat.parent.name), (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_mid_publish_records_the_version_and_statuses_and_the_retrainer_dies_with_its_server(
        ckpt, frames, tmp_path, cache_dir):
    """The retrainer outlived a server killed while it published: the version was written, no attempt and no
    status were recorded, and the restarted server saw nothing to do (corrections pending for 8 minutes)."""
    state = tmp_path / "state"
    common = [f"checkpoint={ckpt}", f"state_dir={state}", f"token={TOKEN}", "threads=1", f"dataset.root={DRAWER4}",
              f"cache_dir={cache_dir}", "retrain.min_interval_s=0", "retrain.ensemble=0", "retrain.holdout_episodes=0"]
    proc, address = start_serve(common, tmp_path / "port1")
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            wait_model(client, lambda i: i.retrainer_status == "ready", "the retrainer ready")
            retrainer = [pid for pid, cmd in _children(proc.pid) if "spawn_main" in cmd]
            assert len(retrainer) == 1, _children(proc.pid)
            sent = [client.submit_correction(false_positive(frames), label=0, episode_id=1),
                    client.submit_correction(step_images(frames, 390), label=1, episode_id=2, step=5),
                    client.submit_correction(step_images(frames, 20), label=0, episode_id=2, step=6)]
            deadline = time.monotonic() + DELAY_S
            while not any(p.name.startswith(".1.tmp-") for p in (state / "versions").iterdir()):
                assert not (state / "versions" / "1").exists(), "version 1 was published before the kill could land"
                assert time.monotonic() < deadline, "no publish within the deadline"
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)  # mid-publish, no graceful shutdown
    finally:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 10
    while _alive(retrainer[0]):
        assert time.monotonic() < deadline, "the retrainer outlived its server"
        time.sleep(0.05)
    with CorrectionStore(state / "corrections.sqlite", readonly=True) as store:  # whoever finished it recorded it
        attempts, statuses = store.attempts(), store.latest_statuses()
    assert [(a.passed, a.number) for a in attempts] == [(True, 1)] and (state / "versions" / "1").is_dir()
    assert sorted(statuses) == [c.correction_id for c in sent]
    proc, address = start_serve(common, tmp_path / "port2")
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            info = wait_model(client, lambda i: i.number == 1 and i.retrainer_status == "ready", "version 1 served")
            assert info.corrections_used == 3 and info.corrections.pending == 0
            assert not client.predict(false_positive(frames)).success
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.slow
def test_a_version_published_without_a_record_is_recorded_and_what_was_pending_trains(ckpt, frames, tmp_path,
                                                                                      cache_dir):
    """A retrainer killed between writing a version and recording it (or an older hilreward's, whose server did
    the recording) leaves a version no attempt names: the next leader records it and trains the corrections no
    attempt assessed."""
    state = tmp_path / "state"
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), token=TOKEN, cache_dir=cache_dir,
                      dataset=DatasetConfig(root=str(DRAWER4)), retrain=RetrainOptions(min_interval_s=0, ensemble=0))
    RewardServer(cfg).stop()  # versions/0 and the store
    with CorrectionStore(state / "corrections.sqlite") as store:
        ids = [_add(store, frames, i, label) for i, label in ((30, 0), (420, 1))]
    versions = VersionStore(state / "versions")
    versions.publish(lambda tmp, version: shutil.copytree(versions.path(0), tmp, dirs_exist_ok=True),
                     lambda number: f"{versions.get(0).version}-r{number}", {"heldout_accuracy": 0.9}, 2, ids[-1])
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN) as client:
        info = wait_model(client, lambda i: i.number == 2 and i.corrections.pending == 0, "the pending ones trained")
        assert info.corrections_used == 2
        attempts = sorted(server.store.attempts(), key=lambda a: a.id)
        assert [(a.passed, a.number) for a in attempts] == [(True, 1), (True, 2)]
        assert "recorded when a retrainer took over" in attempts[0].reason


def test_state_dir_of_another_checkpoint_is_refused(ckpt, tmp_path, cache_dir):
    from hilreward.errors import ConfigError

    other = make_checkpoint(tmp_path / "other", cache_dir, steps=5)
    state = tmp_path / "state"
    RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state))).stop()
    with pytest.raises(ConfigError, match="fresh state_dir"):
        RewardServer(ServeConfig(checkpoint=str(other), port=0, state_dir=str(state)))


SHIFT = Path(__file__).parent / "fixtures" / "drawer_shift"
"""Two expert drawer-open episodes on other layouts under a dimmer, warmer light (tests/fixtures/make_fixtures.py)."""


def late_labels(y: np.ndarray) -> np.ndarray:
    """An episode's labels as a key pressed one frame after each change gives them."""
    out = y.copy()
    out[1:] = y[:-1]
    return out


@pytest.mark.slow
def test_a_shift_corrected_a_keypress_late_is_published_with_boundary_frames_reported(ckpt, tmp_path, cache_dir):
    from hilreward.config import LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.evaluation.episodes import first_firing

    shifted = load_frame_data(DatasetConfig(root=str(SHIFT)), LabelConfig(), (128, 128), cache_dir=cache_dir)
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token=TOKEN, cache_dir=cache_dir,
                      dataset=DatasetConfig(root=str(DRAWER4)), retrain=RetrainOptions(min_interval_s=0.0, ensemble=0))
    episodes = {e: np.flatnonzero(shifted.episode_index == e) for e in (0, 1)}
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=20) as client:
        base = client.get_model()
        sent, fired = [], {}
        for e, rows in episodes.items():  # every frame the served version gets wrong, labelled a keypress late
            results = client.predict_many([step_images(shifted, r) for r in rows], episode_id=e + 1)
            fired[e] = first_firing(np.array([r.probability for r in results]), base.threshold)
            late = late_labels(shifted.labels[rows])
            for label in (0, 1):
                picks = [r.prediction_id for r, y in zip(results, late) if y == label and r.success != bool(y)]
                if picks:
                    sent += client.correct_recent(label, prediction_ids=picks, source="keyboard").correction_ids
        onset = int(np.argmax(shifted.labels[episodes[1]]))
        assert sent and fired[1] - onset > 5, "precondition: the served version fires late on the new layout"
        info = wait_model(client, lambda i: i.corrections_used == len(sent), "a version trained on every correction")
        assert info.number == base.number + 1  # the first attempt published
        listing = client.list_corrections()
        status = {c.step: c.status for c in listing.corrections}
        # the frames right after the change: a keypress away from it, trained lightly and reported, never blocking
        assert {s for s, st in status.items() if st == "boundary"} == {onset + 1, onset + 2}
        assert set(status.values()) == {"fixed", "boundary"}
        assert "label change" in next(c.status_detail for c in listing.corrections if c.status == "boundary")
        after = client.predict_many([step_images(shifted, r) for r in episodes[1]], episode_id=9)
        assert first_firing(np.array([r.probability for r in after]), info.threshold) - onset <= 5  # within 0.5 s
        attempt = client.versions().attempts[0]
        assert attempt.passed and attempt.metrics["corrections_boundary"] == 2


def test_a_correction_that_makes_an_offline_episode_wrong_is_named_and_a_review_relabels_it(ckpt, frames, tmp_path,
                                                                                             cache_dir):
    """Frames of held-out episode 3 (random actions, never a success) labelled success: training on them makes the
    candidate fire in that episode. They are named conflicts_offline with the episode and frames, left out, and the
    version publishes without them (with the good correction). A review that accepts one relabels those offline
    frames (an edits file in the state dir), so they stop vetoing: the next attempt trains it and publishes."""
    from hilreward.curation.edits import EditsFile
    from hilreward.data.reader import open_dataset

    VersionStore(tmp_path / "versions").init_base(ckpt, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    ep3 = np.flatnonzero(frames.episode_index == 3)
    wrong = [_add(store, frames, i, 1, episode=7) for i in ep3[60:64]]
    good = _add(store, frames, 0, 0, episode=8, images=false_positive(frames))
    trainer = _trainer(tmp_path, store, cache_dir, contradiction_radius=0.0, correction_weight=200.0, ensemble=0)
    attempt = trainer.attempt(store.read(), store.verdicts())
    assert attempt.passed, attempt.reason
    by_id = {a.correction_id: a for a in attempt.assessments}
    assert by_id[good].status == "fixed"
    named = [i for i in wrong if by_id[i].status == "conflicts_offline"]
    assert named, {i: by_id[i].status for i in wrong}
    conflict = by_id[named[0]].conflict
    assert conflict["episode"] == 3 and conflict["kind"] == "false_success" and conflict["label"] == 0
    assert conflict["start"] <= conflict["frame"] < conflict["end"]
    assert f"offline held-out episode 3 false success (frames {conflict['start']}-" in by_id[named[0]].detail
    assert attempt.metrics["corrections_named_offline"] >= len(named) and attempt.metrics["reruns"] >= 1
    assert attempt.metrics["heldout_false_success"] == 0  # what was published does not fire in episode 3
    trainer.publish(attempt)
    store.add_attempt(True, 1, "v1", "", attempt.metrics, attempt.last_correction_id, attempt.assessments)

    store.add_reviews([named[0]], "accept", reviewer="test")
    trainer.remember(store.latest_statuses())
    again = trainer.attempt(store.read(), store.verdicts())
    edits = EditsFile.open(open_dataset(DatasetConfig(root=str(DRAWER4))), tmp_path / "offline-edits.json").edits
    assert [(e.episode_index, e.start, e.end, e.label) for e in edits] == \
        [(3, conflict["start"], conflict["end"], 1)]
    assert edits[0].source == f"review of correction {named[0]} (by test)"
    assert again.passed, again.reason
    status = {a.correction_id: a.status for a in again.assessments}
    assert status[named[0]] == "fixed" and again.metrics["offline_relabels"] == 1
    assert trainer.attempt(store.read(), store.verdicts()).metrics["offline_relabels"] == 0  # once per review
    store.close()


def test_unusable_and_contradictory_corrections_get_a_status_and_never_block(ckpt, frames, tmp_path, cache_dir):
    VersionStore(tmp_path / "versions").init_base(ckpt, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    blank = {k: np.zeros_like(v) for k, v in step_images(frames, 5).items()}
    zero = _add(store, frames, 0, 1, images=blank)
    other = _add(store, frames, 0, 1, images={"front": step_images(frames, 5)["front"]})  # another camera set
    both = [_add(store, frames, 40, label) for label in (0, 1)]  # the same frames labelled both ways
    good = _add(store, frames, 0, 0, episode=1, images=false_positive(frames))
    attempt = _trainer(tmp_path, store, cache_dir, ensemble=0).attempt(store.read(), store.verdicts())
    assert attempt.passed, attempt.reason
    by_id = {a.correction_id: a for a in attempt.assessments}
    assert (by_id[zero].status, by_id[other].status) == ("unusable", "unusable")
    assert "blank" in by_id[zero].detail and "no frame of camera(s) observation.images.wrist" in by_id[other].detail
    # the newest word (success) wins over the older failure label; the offline frame (a failure) contradicts it
    assert [by_id[i].status for i in both] == ["superseded", "contradicted"] and by_id[good].status == "fixed"
    assert attempt.metrics["corrections_unusable"] == 2
    store.close()


@pytest.mark.slow
def test_scope_last_adapts_the_encoders_last_stage_and_the_server_serves_it(ckpt, frames, tmp_path, cache_dir):
    from hilreward.models.checkpoint import read_weights

    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token=TOKEN, cache_dir=cache_dir,
                      dataset=DatasetConfig(root=str(DRAWER4)),
                      retrain=RetrainOptions(min_interval_s=0.0, ensemble=2, ensemble_steps=20, scope="last"))
    fp = false_positive(frames)
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=20) as client:
        client.submit_correction(fp, label=0, episode_id=1)
        info = wait_model(client, lambda i: i.number == 1, "an adapted version")
        versions = VersionStore(tmp_path / "state" / "versions")
        before, after = read_weights(versions.path(0)), read_weights(versions.path(1))
        changed = sorted(k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy()))
        last = "encoder.backbone.1."  # tiny: stages 0 and 1
        assert any(k.startswith(last) for k in changed) and any(k.startswith("reward_head.") for k in changed)
        assert all(k.startswith((last, "reward_head.")) for k in changed)  # the trunk never moves
        assert client.versions().attempts[0].metrics["adapted_last_stage"] == 1
        served = client.predict(fp)
        local = RewardFunction.from_pretrained(versions.path(1))(fp)
        assert not served.success and served.model_version == info.version
        assert abs(served.probability - local.probability) < 1e-4  # the server runs the adapted encoder
        members = tmp_path / "state" / "ensembles" / "1.safetensors"  # the uncertainty heads of the adapted version
        wait_model(client, lambda i: members.is_file() and i.ensemble_size == 2, "version 1's ensemble")
        assert client.predict(fp).uncertainty is not None
