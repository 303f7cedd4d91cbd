"""Shared test fixtures: paths, the shared-data marker, an isolated cache and offline Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{SHARED_DATA} is absent (only CI and developer machines have it)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets the same session-wide cache dir, never the user's ~/.cache."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HILREWARD_CACHE", str(base / "hilreward-cache"))
    # W&B keeps artifacts, caches and settings outside the run dir: keep them out of ~ too.
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(base / name.lower()))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA
