"""CorrectionStore on both engines (a real SQLite file; a real PostgreSQL cluster started for the tests):
the same promise (round trip, ack after commit, idempotent request_id, append-only, versioned schema,
concurrent writers) and `hilreward corrections export` / `migrate`; SQLite's WAL settings."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from hilreward.cli import main as cli_main
from hilreward.deploy.corrections import Correction, CorrectionSink
from hilreward.errors import ConfigError, InputError, ServingError
from hilreward.online.cli import export_corrections
from hilreward.online.store import Assessment, CorrectionStore
from hilreward.online.store.base import _png
from hilreward.online.store.postgresql import PostgresStore
from hilreward.online.store.sqlite import SQLiteStore

SCHEMA_VERSION = len(SQLiteStore.MIGRATIONS)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """Where a new store goes, on each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "c.sqlite")
    return request.getfixturevalue("pg_url")


def raw(location: str, sql: str, params: tuple = ()) -> None:
    """Run ``sql`` (``?`` placeholders) on the store's database behind its back, with a plain connection."""
    if "://" in location:
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s") if params else sql, params or None)
    else:
        db = sqlite3.connect(location, isolation_level=None)
        try:
            db.executescript(sql) if not params else db.execute(sql, params)
        finally:
            db.close()


def frame(seed: int, size=(24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def correction(i: int, label: int = 0, episode: int = 0, size=(24, 32)) -> Correction:
    return Correction(frames={"front": frame(2 * i, size), "observation.images.wrist": frame(2 * i + 1, size)},
                      label=label, probability=0.25 + 0.01 * i, model_version=f"v{i % 2}", time=1000.0 + i,
                      episode=episode, step=i, env_index=i % 3, source="keyboard")


def test_round_trip_is_exact_and_ordered(location):
    store = CorrectionStore(location)
    ids = [store.add(correction(i, label=i % 2), replica=f"r{i % 2}") for i in range(4)]
    assert ids == [1, 2, 3, 4] and len(store) == 4 and store.last_id() == 4
    back = store.read()
    for i, stored in enumerate(back):
        c, want = stored.correction, correction(i, label=i % 2)
        assert stored.id == i + 1 and stored.replica == f"r{i % 2}"
        assert set(c.frames) == {"observation.images.front", "observation.images.wrist"}  # full keys
        assert np.array_equal(c.frames["observation.images.front"], want.frames["front"])  # PNG is lossless
        assert np.array_equal(c.frames["observation.images.wrist"], want.frames["observation.images.wrist"])
        assert (c.label, c.probability, c.model_version, c.time, c.step, c.env_index, c.source) == \
            (want.label, want.probability, want.model_version, want.time, want.step, want.env_index, "keyboard")
    assert [s.id for s in store.read(after_id=2)] == [3, 4]
    assert [s.id for s in store.read(after_id=1, upto_id=3)] == [2, 3]
    multi = correction(9)
    multi.probability = [0.1, 0.2, 0.7]
    assert store.read(store.add(multi) - 1)[0].correction.probability == [0.1, 0.2, 0.7]
    store.close()


def test_engine_is_chosen_by_location(tmp_path, location):
    store = CorrectionStore(location)
    assert isinstance(store, PostgresStore if "://" in location else SQLiteStore)
    assert store.shared == ("://" in location) and store.schema_version == SCHEMA_VERSION
    store.close()
    with pytest.raises(ConfigError, match="unknown store scheme 'mysql'.*postgresql://"):
        CorrectionStore("mysql://db/x")


def test_sqlite_durability_settings_and_png_blobs(tmp_path):
    path = tmp_path / "c.sqlite"
    store = CorrectionStore(path)
    store.add(correction(0))
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    blob = raw.execute("SELECT png FROM frames LIMIT 1").fetchone()[0]
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    raw.close()


def test_postgresql_commits_durably_and_records_its_migrations(pg_url):
    import psycopg

    store = CorrectionStore(pg_url)
    store.add(correction(0))
    assert store._db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version, description FROM hilreward_schema ORDER BY version").fetchall()
        blob = conn.execute("SELECT png FROM frames LIMIT 1").fetchone()[0]
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert [r[1] for r in rows] == [m.description for m in PostgresStore.MIGRATIONS]
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    store.close()


def test_postgresql_store_reconnects_after_losing_its_connection(pg_url):
    store = CorrectionStore(pg_url)
    store.add(correction(0))
    raw(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")  # as when the server restarts or a network link drops
    with pytest.raises(ServingError, match="unreachable .*retry"):
        store.add(correction(1), request_id="r1")
    assert store.add(correction(1), request_id="r1") == 2 and len(store) == 2  # the retry connects again
    store.close()


def test_acknowledged_correction_is_visible_to_another_connection_at_once(location):
    writer = CorrectionStore(location)
    reader = CorrectionStore(location, readonly=True)
    assert len(reader) == 0
    writer.add(correction(0))
    assert len(reader) == 1 and reader.read()[0].correction.model_version == "v0"
    with pytest.raises(ServingError, match="read-only"):
        reader.add(correction(1))
    writer.close()
    reader.close()


def test_append_only(location):
    store = CorrectionStore(location)
    store.add(correction(0))
    store.add_reviews([1], "reject", reviewer="me")
    store.add_attempt(True, 1, "v-r1", "", {"heldout_accuracy": 0.9}, 1, [Assessment(1, "fixed", 0.1)])
    for sql in ("UPDATE corrections SET label = 1", "DELETE FROM corrections", "DELETE FROM frames",
                "UPDATE frames SET camera = 'x'", "UPDATE reviews SET verdict = 'accept'", "DELETE FROM reviews",
                "UPDATE attempts SET passed = 0", "DELETE FROM attempts", "UPDATE statuses SET status = 'x'",
                "DELETE FROM statuses"):
        with pytest.raises(Exception, match="append-only"):
            raw(location, sql)
    assert len(store) == 1 and store.read()[0].correction.label == 0
    store.close()


def test_request_id_makes_retries_idempotent(location):
    store = CorrectionStore(location)
    first = store.add(correction(0), request_id="abc")
    assert store.add(correction(0), request_id="abc") == first
    assert store.add(correction(1), request_id="def") == first + 1
    assert store.add(correction(2)) == first + 2 and store.add(correction(3)) == first + 3  # no id: always new
    other = CorrectionStore(location)  # another server on the same store: a retry sent there is known too
    assert other.add(correction(0), request_id="abc") == first
    assert len(store) == 4
    other.close()
    store.close()


def test_concurrent_writers_lose_nothing_and_ids_follow_commit_order(location):
    stores = [CorrectionStore(location) for _ in range(2)]  # two servers sharing the store, two threads each
    reader = CorrectionStore(location, readonly=True)
    ids: list[int] = []
    seen: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def work(k: int) -> None:
        for i in range(8):
            cid = stores[k % 2].add(correction(10 * k + i), request_id=f"{k}-{i}")
            with lock:
                ids.append(cid)

    def follow() -> None:  # a retrainer reading incrementally must never skip a row
        last = 0
        while not done.is_set() or last < reader.last_id():
            new = [c.id for c in reader.read(after_id=last)]
            seen.extend(new)
            last = new[-1] if new else last

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join()
    assert sorted(ids) == list(range(1, 33)) and len(stores[0]) == 32
    assert seen == list(range(1, 33))
    for s in (*stores, reader):
        s.close()


def test_is_a_deploy_correction_sink_and_rejects_bad_frames(location):
    store = CorrectionStore(location)
    assert isinstance(store, CorrectionSink)
    bad = correction(0)
    bad.frames["front"] = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(InputError, match="uint8 \\(H, W, 3\\)"):
        store.add(bad)
    with pytest.raises(InputError, match="at least one camera"):
        store.add(Correction(frames={}, label=0, probability=0.5, model_version="v", time=0.0, episode=0, step=0))
    assert len(store) == 0
    store.close()


def test_non_finite_numbers_and_oversized_text_are_refused_in_one_line(location):
    """A correction with time=inf was acknowledged and then crashed `corrections list` (OverflowError); a NaN
    probability broke the review page. The store is the boundary every transport reaches: nothing is stored."""
    store = CorrectionStore(location)
    cases = [(dict(time=float("inf")), "time=inf: must be a finite number"),
             (dict(probability=float("nan")), "probability=nan: must be a finite number"),
             (dict(probability=[0.2, float("inf"), 0.1]), "probability=inf: must be a finite number"),
             (dict(context={3: float("nan")}), "context[3]=nan: must be a finite number"),
             (dict(source="x" * 1_000_000), "source is 1,000,000 characters long; at most 64 are kept"),
             (dict(model_version="v" * 300), "model_version is 300 characters long; at most 256 are kept")]
    for change, message in cases:
        c = correction(0)
        for k, v in change.items():
            setattr(c, k, v)
        with pytest.raises(InputError, match=re.escape(message)):
            store.add(c)
    with pytest.raises(InputError, match="request_id is 257 characters long"):
        store.add(correction(0), request_id="r" * 257)
    assert len(store) == 0
    cid = store.add(correction(0))
    with pytest.raises(InputError, match="note is 1,000,000 characters long; at most 1000 are kept"):
        store.add_reviews([cid], "reject", note="n" * 1_000_000)
    assert store.reviews() == []
    store.add_attempt(False, -1, "", "refused", {"heldout_accuracy": float("nan"), "fixed": 1.0}, cid, [])
    assert store.attempts()[0].metrics == {"fixed": 1.0}  # not measured: not stored
    store.close()


def test_corrections_list_reads_a_time_stored_before_the_refusal(tmp_path, capsys):
    path = str(tmp_path / "old.sqlite")
    CorrectionStore(path).close()
    raw(path, "INSERT INTO corrections (time, label, probability, model_version, episode, step, env_index, source) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (float("inf"), 1, "0.5", "old", 0, 3, 0, "keyboard"))
    raw(path, "INSERT INTO frames VALUES (?, ?, ?, ?, ?)", (1, "observation.images.front", 24, 32, _png(frame(0))))
    assert cli_main(["corrections", "list", f"store={path}"]) == 0
    assert "     1  ?" in capsys.readouterr().out


def older_store(location: str, version: int = 1) -> None:
    """A store as an older hilreward wrote it (only the first ``version`` migrations), holding one correction."""
    if "://" in location:
        raw(location, "".join(m.sql for m in PostgresStore.MIGRATIONS[:version]) +
            "CREATE TABLE hilreward_schema (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
            "applied_unix DOUBLE PRECISION NOT NULL); " +
            "".join(f"INSERT INTO hilreward_schema VALUES ({v}, 'old', 0); " for v in range(1, version + 1)))
    else:
        raw(location, "".join(m.sql for m in SQLiteStore.MIGRATIONS[:version]) + f"PRAGMA user_version={version};")
    raw(location, "INSERT INTO corrections (time, label, probability, model_version, episode, step, env_index, "
                  "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (5.0, 1, "0.5", "old", 0, 3, 0, "keyboard"))
    raw(location, "INSERT INTO frames VALUES (?, ?, ?, ?, ?)",
        (1, "observation.images.front", 24, 32, _png(frame(0))))


def test_older_schema_is_upgraded_and_newer_is_refused(location, capsys):
    older_store(location)
    with pytest.raises(ServingError, match="schema version 1.*corrections migrate"):
        CorrectionStore(location, readonly=True)  # a reader never changes the store
    assert cli_main(["corrections", "migrate", f"store={location}"]) == 0
    assert f"schema version {SCHEMA_VERSION} (upgraded from 1)" in capsys.readouterr().out
    store = CorrectionStore(location)
    assert store.schema_version == SCHEMA_VERSION and store.upgraded_from is None
    assert store.add(correction(1), replica="r") == 2
    assert store.add_reviews([1], "accept") == [1]  # the review tables came with the upgrade
    old, new = store.read()  # the old row reads as before; the new column is filled from now on
    assert (old.correction.model_version, old.replica, new.replica) == ("old", "", "r")
    assert np.array_equal(old.correction.frames["observation.images.front"], frame(0))
    store.close()
    assert cli_main(["corrections", "migrate", f"store={location}"]) == 0
    assert "(up to date)" in capsys.readouterr().out

    newer = SCHEMA_VERSION + 1
    raw(location, f"INSERT INTO hilreward_schema VALUES ({newer}, 'from the future', 0)" if "://" in location
        else f"PRAGMA user_version={newer}")
    for readonly in (False, True):
        with pytest.raises(ServingError, match=f"schema version {newer}, this hilreward knows versions up to "
                                               f"{SCHEMA_VERSION}; upgrade hilreward"):
            CorrectionStore(location, readonly=readonly)


@pytest.mark.parametrize("found", [0, 3])
def test_stores_opened_at_once_upgrade_once(location, found):
    """Six servers opening an empty (or schema-3) store at the same moment: one upgrades it, the rest wait and use it."""
    if found:
        older_store(location, found)
    start, opened, errors = threading.Barrier(6), [], []

    def open_store() -> None:
        start.wait()
        try:
            opened.append(CorrectionStore(location))
        except Exception as exc:  # noqa: BLE001 (collected: the assertion below shows them)
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(opened) == 6
    assert sorted(s.upgraded_from for s in opened if s.upgraded_from is not None) == [found]
    assert {s.schema_version for s in opened} == {SCHEMA_VERSION} and len(opened[0]) == (1 if found else 0)
    for s in opened:
        s.close()


def test_refuses_foreign_files(tmp_path):
    with pytest.raises(ServingError, match="does not exist"):
        CorrectionStore(tmp_path / "missing.sqlite", readonly=True)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(ServingError, match="not a correction store"):
        CorrectionStore(other)
    (tmp_path / "text.sqlite").write_text("not a database at all, just text" * 10)
    with pytest.raises(ServingError, match="not a correction store"):
        CorrectionStore(tmp_path / "text.sqlite")


def test_refuses_foreign_databases(pg_url):
    with pytest.raises(ServingError, match="is empty"):
        CorrectionStore(pg_url, readonly=True)
    raw(pg_url, "CREATE TABLE corrections (x int)")
    with pytest.raises(ServingError, match="did not make; give the correction store a database of its own"):
        CorrectionStore(pg_url)
    raw(pg_url, "DROP TABLE corrections; CREATE TABLE frames (x int)")  # another program's table in the way
    with pytest.raises(ServingError, match='cannot upgrade the schema of correction store .*"frames" already exists; '
                                           "give the store a database of its own"):
        CorrectionStore(pg_url)
    gone = pg_url.replace("/t_", "/missing_")
    with pytest.raises(ServingError, match='cannot connect to correction store .*"missing_.*does not exist'):
        CorrectionStore(gone)


def test_password_never_shows_in_messages():
    from hilreward.online.store.postgresql import display_url

    pytest.importorskip("psycopg")
    url = "postgresql://robot:s3cret@127.0.0.1:1/db"
    assert display_url(url) == "postgresql://robot:***@127.0.0.1:1/db"
    with pytest.raises(ServingError) as err:
        CorrectionStore(url)  # nothing listens on port 1
    assert "s3cret" not in str(err.value) and "robot:***@127.0.0.1:1/db" in str(err.value)


def test_export_writes_a_readable_v30_dataset(tmp_path, location):
    from hilreward.data import LeRobotDataset

    store = CorrectionStore(location)
    for i in range(5):
        c = correction(i, label=int(i >= 3), episode=i // 3, size=(32, 32))
        c.env_index = 0
        c.frames = {k: np.full((32, 32, 3), 40 * i, dtype=np.uint8) for k in c.frames}  # flat: survives the codec
        store.add(c)
    odd = correction(5, label=1, episode=1, size=(16, 16))  # another frame size: resized on export
    odd.env_index = 0
    store.add(odd)
    store.close()
    out = tmp_path / "export"
    assert cli_main(["corrections", "export", f"store={location}", f"out={out}"]) == 0
    ds = LeRobotDataset.open(out)
    assert ds.version == "v3.0" and ds.camera_keys == ["observation.images.front", "observation.images.wrist"]
    assert [e.length for e in ds.episodes] == [3, 3]
    rows = ds.read_rows(["next.reward", "correction.id", "correction.step", "classifier.probability"])
    assert rows["correction.id"].ravel().tolist() == [1, 2, 3, 4, 5, 6]
    assert rows["next.reward"].ravel().tolist() == [0, 0, 0, 1, 1, 1]
    assert np.allclose(rows["classifier.probability"].ravel(), [0.25 + 0.01 * i for i in range(6)])
    frames = ds.frames(["observation.images.front"], (32, 32))["observation.images.front"]
    assert abs(int(frames[4].mean()) - 160) <= 4  # lossy video, flat frames
    lines = (out / "meta" / "corrections.jsonl").read_text().splitlines()
    assert len(lines) == 6 and '"source": "keyboard"' in lines[0]
    with pytest.raises(ConfigError, match="overwrite=true"):
        export_corrections(location, out)
    assert export_corrections(location, out, overwrite=True)["corrections"] == 6


def test_export_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["corrections", "export", f"store={tmp_path / 'none.sqlite'}", f"out={tmp_path / 'o'}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["corrections", "frobnicate"]) == 1
    assert "known actions: list, show, accept, reject, export, migrate" in capsys.readouterr().err
    CorrectionStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(ServingError, match="no corrections"):
        export_corrections(tmp_path / "empty.sqlite", tmp_path / "o")
    assert not Path(tmp_path / "o").exists()


def test_reviews_and_attempts_are_stored_and_only_status_changes_are_written(location):
    store = CorrectionStore(location)
    for i in range(3):
        store.add(correction(i))
    assert store.add_reviews([2, 1, 2], "reject", reviewer="ann", note="late", time=5.0) == [1, 2]
    assert store.add_reviews([2], "accept", reviewer="bob") == [3]
    verdicts = store.verdicts()
    assert (verdicts[1].verdict, verdicts[1].note, verdicts[2].verdict) == ("reject", "late", "accept")  # newest counts
    assert [r.verdict for r in store.reviews(2)] == ["reject", "accept"] and store.last_review_id() == 3
    with pytest.raises(InputError, match="no correction 7 in .* \\(ids run 1..3\\)"):
        store.add_reviews([1, 7], "reject")
    with pytest.raises(InputError, match="verdict 'maybe'"):
        store.add_reviews([1], "maybe")
    assert store.last_review_id() == 3  # nothing of a refused review was written

    first = store.add_attempt(True, 1, "v-r1", "", {"corrections_fixed": 1.0, "val_episodes": [2]}, 2,
                              [Assessment(1, "fixed", 0.1), Assessment(2, "contradicted", 0.6, "near #1")])
    second = store.add_attempt(False, -1, "", "held-out accuracy", {}, 3,
                               [Assessment(1, "fixed", 0.12), Assessment(2, "contradicted", 0.6, "near #1"),
                                Assessment(3, "unfixed", 0.8)])
    latest = store.latest_statuses()
    assert {k: (a.status, a.attempt_id) for k, a in latest.items()} == \
        {1: ("fixed", first), 2: ("contradicted", first), 3: ("unfixed", second)}  # unchanged rows not rewritten
    attempts = store.attempts()
    assert [(a.id, a.passed, a.number, a.reason) for a in attempts] == \
        [(second, False, -1, "held-out accuracy"), (first, True, 1, "")]
    assert attempts[1].metrics == {"corrections_fixed": 1.0} and store.last_attempt_id() == second
    assert [a.status for a in store.status_history(3)] == ["unfixed"]
    store.close()


def test_corrections_list_show_reject_accept_cli(tmp_path, location, capsys):
    path = location
    store = CorrectionStore(path)
    for i in range(4):
        store.add(correction(i, label=i % 2))
    store.add_attempt(True, 1, "v-r1", "", {}, 3, [
        Assessment(1, "fixed", 0.2), Assessment(2, "unfixed", 0.3),
        Assessment(3, "contradicted", 0.7, "near-identical to correction 1")])
    store.close()
    run = ["corrections"]
    assert cli_main(run + ["list", f"store={path}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:5]] == ["4", "3", "2", "1"]  # newest first
    assert "pending" in out[1] and "contradicted" in out[2] and "unfixed" in out[3] and "fixed" in out[4]
    assert out[-1] == ("4 total, 1 pending, 1 fixed, 1 unfixed, 0 boundary, 1 contradicted, 0 superseded, "
                       "0 conflicts_offline, 0 conflicts_live, 0 unusable, 0 rejected, 0 accepted")
    assert cli_main(run + ["reject", f"store={path}", "ids=[2,3]", "note=late keypress", "reviewer=ann"]) == 0
    assert "rejected corrections 2, 3: they never train again" in capsys.readouterr().out
    assert cli_main(run + ["accept", f"store={path}", "id=4"]) == 0
    capsys.readouterr()
    assert cli_main(run + ["list", f"store={path}", "status=rejected"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == ["3", "2"] and out[-1].endswith("2 rejected, 1 accepted")
    assert cli_main(run + ["show", f"store={path}", "id=3", f"out={tmp_path / 'frames'}"]) == 0
    out = capsys.readouterr().out
    assert "status: rejected (rejected by ann: late keypress)" in out
    assert "attempt 1: contradicted p=0.700 near-identical to correction 1" in out
    assert "rejected by ann" in out
    from PIL import Image

    saved = np.array(Image.open(tmp_path / "frames" / "correction-3-front.png"))
    assert np.array_equal(saved, correction(2).frames["front"])  # the stored frame, lossless
    assert cli_main(run + ["show", f"store={path}", "id=9"]) == 1
    assert "no correction 9" in capsys.readouterr().err
    assert cli_main(run + ["list", f"store={path}", "status=weird"]) == 1
    assert "unknown status 'weird'" in capsys.readouterr().err
    assert cli_main(run + ["reject", f"store={path}"]) == 1
    assert "needs id=<n>" in capsys.readouterr().err
