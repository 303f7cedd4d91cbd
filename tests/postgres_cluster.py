"""A throwaway PostgreSQL cluster for the tests: ``scripts/postgres.sh`` in a temp dir, unix socket only.

One cluster per test session, started on first use (by any module that imports the fixtures)
and stopped at exit; each test gets a database of its own (``pg_url``). Where the cluster
cannot start (no server binaries, no psycopg, no user to run it as), the tests skip and say why.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"
_cluster: dict = {}


def cluster_url() -> str:
    """URL of the session's cluster (database ``hilreward``); pytest.skip with the reason when it cannot start."""
    if "url" in _cluster:
        return _cluster["url"]
    if "skip" in _cluster:
        pytest.skip(_cluster["skip"])
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _cluster["skip"] = "psycopg is not installed (pip install -e '.[dev]')"
        pytest.skip(_cluster["skip"])
    folder = tempfile.mkdtemp(prefix="hr-pg-")  # in /tmp: the server user can reach it (pytest's tmp is 0700 root)
    Path(folder).chmod(0o755)
    proc = subprocess.run(["bash", str(SCRIPT), "start", folder], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        _cluster["skip"] = f"cannot start a PostgreSQL cluster: {proc.stderr.strip()[-400:] or proc.returncode}"
        pytest.skip(_cluster["skip"])
    _cluster["url"] = proc.stdout.strip().splitlines()[-1]
    atexit.register(_stop, folder)
    return _cluster["url"]


def _stop(folder: str) -> None:
    subprocess.run(["bash", str(SCRIPT), "stop", folder], capture_output=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    base, query = url.split("?", 1)
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


@pytest.fixture
def pg_url():
    """A fresh, empty database on the session's cluster, dropped after the test."""
    import psycopg

    url = cluster_url()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield with_database(url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
