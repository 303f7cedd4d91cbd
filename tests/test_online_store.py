"""CorrectionStore (real SQLite: WAL, synchronous=FULL, append-only, schema version) and `hilreward corrections export`."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from hilreward.cli import main as cli_main
from hilreward.deploy.corrections import Correction, CorrectionSink
from hilreward.errors import ConfigError, InputError, ServingError
from hilreward.online.cli import export_corrections
from hilreward.online.store import SCHEMA_VERSION, CorrectionStore


def frame(seed: int, size=(24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def correction(i: int, label: int = 0, episode: int = 0, size=(24, 32)) -> Correction:
    return Correction(frames={"front": frame(2 * i, size), "observation.images.wrist": frame(2 * i + 1, size)},
                      label=label, probability=0.25 + 0.01 * i, model_version=f"v{i % 2}", time=1000.0 + i,
                      episode=episode, step=i, env_index=i % 3, source="keyboard")


def test_round_trip_is_exact_and_ordered(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    ids = [store.add(correction(i, label=i % 2)) for i in range(4)]
    assert ids == [1, 2, 3, 4] and len(store) == 4 and store.last_id() == 4
    back = store.read()
    for i, stored in enumerate(back):
        c, want = stored.correction, correction(i, label=i % 2)
        assert stored.id == i + 1
        assert set(c.frames) == {"observation.images.front", "observation.images.wrist"}  # full keys
        assert np.array_equal(c.frames["observation.images.front"], want.frames["front"])  # PNG is lossless
        assert np.array_equal(c.frames["observation.images.wrist"], want.frames["observation.images.wrist"])
        assert (c.label, c.probability, c.model_version, c.time, c.step, c.env_index, c.source) == \
            (want.label, want.probability, want.model_version, want.time, want.step, want.env_index, "keyboard")
    assert [s.id for s in store.read(after_id=2)] == [3, 4]
    assert [s.id for s in store.read(after_id=1, upto_id=3)] == [2, 3]
    store.close()


def test_durability_settings_schema_version_and_png_blobs(tmp_path):
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


def test_acknowledged_correction_is_visible_to_another_connection_at_once(tmp_path):
    writer = CorrectionStore(tmp_path / "c.sqlite")
    reader = CorrectionStore(tmp_path / "c.sqlite", readonly=True)
    assert len(reader) == 0
    writer.add(correction(0))
    assert len(reader) == 1 and reader.read()[0].correction.model_version == "v0"
    with pytest.raises(ServingError, match="read-only"):
        reader.add(correction(1))
    writer.close()
    reader.close()


def test_append_only(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    store.add(correction(0))
    for sql in ("UPDATE corrections SET label = 1", "DELETE FROM corrections", "DELETE FROM frames",
                "UPDATE frames SET camera = 'x'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store._db.execute(sql)
    assert len(store) == 1 and store.read()[0].correction.label == 0
    store.close()


def test_request_id_makes_retries_idempotent(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    first = store.add(correction(0), request_id="abc")
    assert store.add(correction(0), request_id="abc") == first
    assert store.add(correction(1), request_id="def") == first + 1
    assert store.add(correction(2)) == first + 2 and store.add(correction(3)) == first + 3  # no id: always new
    assert len(store) == 4
    store.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    ids: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(5):
            cid = store.add(correction(10 * k + i))
            with lock:
                ids.append(cid)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 21)) and len(store) == 20
    store.close()


def test_is_a_deploy_correction_sink_and_rejects_bad_frames(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    assert isinstance(store, CorrectionSink)
    bad = correction(0)
    bad.frames["front"] = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(InputError, match="uint8 \\(H, W, 3\\)"):
        store.add(bad)
    with pytest.raises(InputError, match="at least one camera"):
        store.add(Correction(frames={}, label=0, probability=0.5, model_version="v", time=0.0, episode=0, step=0))
    assert len(store) == 0
    store.close()


def test_refuses_foreign_files_and_other_schema_versions(tmp_path):
    with pytest.raises(ServingError, match="does not exist"):
        CorrectionStore(tmp_path / "missing.sqlite", readonly=True)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(ServingError, match="not a correction store"):
        CorrectionStore(other)
    newer = tmp_path / "newer.sqlite"
    CorrectionStore(newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(ServingError, match=f"schema version {SCHEMA_VERSION + 1}"):
        CorrectionStore(newer)
    (tmp_path / "text.sqlite").write_text("not a database at all, just text" * 10)
    with pytest.raises(ServingError, match="not a correction store"):
        CorrectionStore(tmp_path / "text.sqlite")


def test_export_writes_a_readable_v30_dataset(tmp_path):
    from hilreward.data import LeRobotDataset

    store = CorrectionStore(tmp_path / "c.sqlite")
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
    assert cli_main(["corrections", "export", f"store={tmp_path / 'c.sqlite'}", f"out={out}"]) == 0
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
        export_corrections(tmp_path / "c.sqlite", out)
    assert export_corrections(tmp_path / "c.sqlite", out, overwrite=True)["corrections"] == 6


def test_export_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["corrections", "export", f"store={tmp_path / 'none.sqlite'}", f"out={tmp_path / 'o'}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["corrections", "frobnicate"]) == 1
    assert "known actions: export" in capsys.readouterr().err
    CorrectionStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(ServingError, match="no corrections"):
        export_corrections(tmp_path / "empty.sqlite", tmp_path / "o")
    assert not Path(tmp_path / "o").exists()
