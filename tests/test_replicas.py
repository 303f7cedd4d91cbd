"""Several `hilreward serve` replicas on one PostgreSQL store (a real cluster started for the tests) and
one versions folder: corrections sent to either replica end up in one version that both serve, and
after `kill -9` of the leader the other replica takes over retraining; leader election and
announcements on their own; publishing with several writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hilreward.deploy import RewardFunction
from hilreward.online.store import CorrectionStore
from hilreward.online.store.postgresql import LEADER_LOCK, PostgresStore
from hilreward.online.versions import VersionStore
from hilreward.serving import RewardClient
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from support import DRAWER4, TOKEN, false_positive, step_images
from test_online_store import older_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

WAIT_S = 60.0
"""Longest wait for a replica to start or a version to arrive (the suite shares 2 CPU cores)."""
TAKEOVER_S = 10.0
"""A killed leader's retraining must move to another replica within this (measured: ~1 s)."""


def wait_for(what: str, check, timeout: float = WAIT_S, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def launch_replica(args: list[str], folder: Path) -> tuple[subprocess.Popen, Path]:
    """`hilreward serve` in a process group of its own (so its retrainer is cleaned up too), not waited for."""
    folder.mkdir(parents=True)
    log = open(folder / "log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", "serve", *args, "port=0",
                             f"port_file={folder / 'port'}"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, folder


def serving_address(proc: subprocess.Popen, folder: Path) -> str:
    """The address of a launched replica once it serves (AssertionError with its log when it dies instead)."""
    port_file = folder / "port"
    wait_for(f"replica in {folder} to start ({(folder / 'log').read_text()[-1500:]})",
             lambda: port_file.exists() or proc.poll() is not None, timeout=90, every=0.1)
    assert proc.poll() is None, (folder / "log").read_text()[-2000:]
    return f"127.0.0.1:{port_file.read_text().strip()}"


def start_replica(args: list[str], folder: Path) -> tuple[subprocess.Popen, str]:
    proc, folder = launch_replica(args, folder)
    return proc, serving_address(proc, folder)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def serving(client: RewardClient, used: int):
    """The client's replica's model info once it serves a version trained on ``used`` corrections."""
    info = client.get_model()
    return info if info.corrections_used == used else None


def agree(*clients: RewardClient) -> None:
    infos = [c.get_model() for c in clients]
    keys = [(i.version, i.created_unix, i.corrections_total, i.corrections_used, i.metrics) for i in infos]
    assert all(k == keys[0] for k in keys), keys


def test_two_replicas_share_corrections_and_survive_kill_9_of_the_leader(ckpt, frames, tmp_path, cache_dir,
                                                                         pg_url):
    base_fn = RewardFunction.from_pretrained(ckpt)
    fp = false_positive(frames)
    # Frames of the training episodes the checkpoint already gets right: corrections it can keep right.
    sure = [i for i in (40, 150, 310, 480) if frames.episode_index[i] in (0, 1)
            and abs(base_fn(step_images(frames, i)).probability - frames.labels[i]) < 0.3]
    assert len(sure) >= 2 and base_fn(fp).success, "preconditions on the fixture"
    state = tmp_path / "state"  # the versions folder every replica shares
    common = [f"checkpoint={ckpt}", f"state_dir={state}", f"store={pg_url}", f"token={TOKEN}", "threads=1"]
    retrain = [f"dataset.root={DRAWER4}", f"cache_dir={cache_dir}", "retrain.min_interval_s=0"]
    procs, clients = {}, {}
    try:
        for name in ("a", "b"):  # two replicas with a retrainer each, started together: one leads
            procs[name] = start_replica(common + retrain + [f"replica={name}"], tmp_path / name)
        for name, (_, address) in procs.items():
            clients[name] = RewardClient(address, token=TOKEN, timeout_s=20)
        status = {}
        wait_for("one leader and one standby", lambda: sorted(
            status.update({n: c.get_model().retrainer_status for n, c in clients.items()}) or status.values())
            == ["ready", "standby"])
        leader = next(n for n, st in status.items() if st == "ready")
        other = "b" if leader == "a" else "a"
        lead, stay = clients[leader], clients[other]
        agree(lead, stay)

        # One correction to each replica: one version, trained on both, served by both.
        assert lead.submit_correction(fp, label=0, source="keyboard").correction_id == 1
        ack = stay.submit_correction(step_images(frames, sure[0]), label=int(frames.labels[sure[0]]))
        assert (ack.correction_id, ack.corrections_total) == (2, 2)
        wait_for("a version with both corrections on both replicas", lambda: serving(lead, 2) and serving(stay, 2))
        agree(lead, stay)
        first = stay.get_model()
        assert first.metrics["corrections_fixed"] == 1.0 and lead.get_model().retrainer_status.startswith("published")
        for client in (lead, stay):
            after = client.predict(fp)
            assert after.model_version == first.version and not after.success, "fixed on every replica"

        # kill -9 the leader: the other replica takes over retraining.
        os.kill(procs[leader][0].pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for("the standby takes over", lambda: stay.get_model().retrainer_status == "ready", timeout=TAKEOVER_S)
        print(f"takeover after kill -9 of the leader: {time.monotonic() - killed:.2f} s")
        # A replica (re)joins, serving only, and hears of the new leader's next version through the announcement.
        cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), store=pg_url, token=TOKEN,
                          replica="c")
        with RewardServer(cfg) as c, RewardClient(c.address, token=TOKEN, timeout_s=20) as joined:
            assert joined.get_model().version == first.version  # the newest version when it starts
            ack = stay.submit_correction(step_images(frames, sure[1]), label=int(frames.labels[sure[1]]))
            assert ack.correction_id == 3
            wait_for("the new leader's version on both replicas", lambda: serving(stay, 3) and serving(joined, 3))
            agree(joined, stay)
            assert joined.predict(fp).model_version == stay.get_model().version != first.version
    finally:
        for client in clients.values():
            client.close()
        for proc, _ in procs.values():
            kill_group(proc)
    assert VersionStore(state / "versions").numbers()[-1] >= 2
    assert not [p.name for p in (state / "versions").iterdir() if p.name.startswith(".")]  # no partial versions
    with CorrectionStore(pg_url, readonly=True) as store:
        assert [(s.id, s.replica) for s in store.read()] == [(1, leader), (2, other), (3, other)]


@pytest.mark.parametrize("found", [0, 3])
def test_four_replicas_started_at_once_all_serve(ckpt, frames, tmp_path, pg_url, found):
    """Four `hilreward serve` processes started together on an empty store (or one at schema version 3, holding a
    correction): one upgrades it under the store's lock, the others wait for it, and all four serve."""
    if found:
        older_store(pg_url, found)
    common = [f"checkpoint={ckpt}", f"state_dir={tmp_path / 'state'}", f"store={pg_url}", "threads=1"]
    launched = [launch_replica(common + [f"replica=r{i}"], tmp_path / f"r{i}") for i in range(4)]
    try:
        for address in [serving_address(*replica) for replica in launched]:
            with RewardClient(address, timeout_s=20) as client:
                assert client.get_model().corrections_total == (1 if found else 0)
                assert 0.0 <= client.predict(step_images(frames, 40)).probability <= 1.0
    finally:
        for proc, _ in launched:
            kill_group(proc)
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version, description FROM hilreward_schema ORDER BY version").fetchall()
    assert [v for v, _ in rows] == list(range(1, len(PostgresStore.MIGRATIONS) + 1))
    assert [d for _, d in rows[found:]] == [m.description for m in PostgresStore.MIGRATIONS[found:]]


def test_leader_lock_moves_when_its_holder_is_killed_and_announcements_reach_listeners(pg_url):
    store = CorrectionStore(pg_url)
    holder = subprocess.Popen(  # a leader in another process (plain psycopg: starts in a blink)
        [sys.executable, "-c", "import sys, time, psycopg; conn = psycopg.connect(sys.argv[1], autocommit=True); "
         f"assert conn.execute('SELECT pg_try_advisory_lock({LEADER_LOCK})').fetchone()[0]; "
         "print('leading', flush=True); time.sleep(600)", pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "leading"
        standby = store.leadership()
        assert not standby.try_acquire() and not standby.held()
        with store.watch_versions() as watch:
            holder.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            wait_for("the lock is free", standby.try_acquire, timeout=TAKEOVER_S)
            assert time.monotonic() - killed < 2.0, "a killed holder's session ends at once"
            assert standby.held() and standby.try_acquire()  # holding it: asking again keeps it
            other = store.leadership()
            assert not other.try_acquire()
            standby.announce(7)
            assert wait_for("the announcement", lambda: watch.wait(timeout=1.0)) == [7]
            standby.close()
            wait_for("the lock free again once its holder closes", other.try_acquire, timeout=TAKEOVER_S)
            other.close()
    finally:
        holder.kill()
        holder.wait(30)
        store.close()


def test_sqlite_store_is_its_own_leader_and_has_no_announcements(tmp_path):
    with CorrectionStore(tmp_path / "c.sqlite") as store:
        lead = store.leadership()
        assert not store.shared and lead.try_acquire() and lead.held() and store.watch_versions() is None


def test_publishing_with_two_writers_never_overwrites_a_version(tmp_path):
    versions = VersionStore(tmp_path / "versions")
    versions.root.mkdir()
    (versions.root / "0").mkdir()
    (versions.root / "0" / "version.json").write_text(
        '{"number": 0, "version": "base", "created_unix": 0, "base_fingerprint": "x"}')

    def fill(text: str):
        def write(tmp: Path, version: str) -> None:
            (tmp / "model.txt").write_text(f"{text} as {version}")
            if text == "slow" and not versions.numbers()[1:]:  # meanwhile another writer publishes number 1
                versions.publish(fill("fast"), lambda n: f"base-r{n}", {}, 1, 1)
        return write

    slow = versions.publish(fill("slow"), lambda n: f"base-r{n}", {}, 2, 2)
    assert versions.numbers() == [0, 1, 2] and slow.number == 2 and slow.version == "base-r2"
    assert (versions.path(1) / "model.txt").read_text() == "fast as base-r1"
    assert (versions.path(2) / "model.txt").read_text() == "slow as base-r2"  # written again under its number
    assert not [p for p in versions.root.iterdir() if p.name.startswith(".")]
    # A writer killed mid-publish leaves a temporary folder; the next leader removes it (not a starting base copy).
    (versions.root / ".3.tmp-dead").mkdir()
    (versions.root / ".0.tmp-starting").mkdir()
    assert versions.remove_partial() == [".3.tmp-dead"] and (versions.root / ".0.tmp-starting").is_dir()
    assert np.array_equal(versions.numbers(), [0, 1, 2])
