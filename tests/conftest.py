"""Shared test fixtures: paths, the markers, an isolated cache and offline Hub, one torch thread, the tiny drawer4
checkpoint and its frames, a headless browser, and a PostgreSQL database. Helpers are in support.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from postgres_cluster import pg_url  # noqa: E402,F401  (the fixture, for every module)


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
    monkeypatch.setenv("SB3_LOGDIR", str(base / "sb3"))  # SB3's default: a new /tmp/SB3-<time> folder per learn()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests (a server's model thread beside the suite's other work)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """The session's frame and feature cache (what HILREWARD_CACHE names)."""
    return str(tmp_path_factory.getbasetemp() / "hilreward-cache")


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, cache_dir):
    """The tiny-encoder drawer4 checkpoint (support.make_checkpoint), read-only: tests copy it to change it."""
    from support import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", cache_dir)


@pytest.fixture(scope="session")
def frames(cache_dir):
    """drawer4's frames at their recorded 128x128, as a robot sends them (support.load_frames)."""
    from support import load_frames

    return load_frames(cache_dir)


@pytest.fixture
def browser(tmp_path):
    """Debian's headless Chromium through its chromedriver (Selenium); skips where they are missing."""
    if CHROMIUM is None or not CHROMEDRIVER.is_file():
        pytest.skip("chromium or chromedriver is missing: run `make sysdeps` (bash scripts/sysdeps.sh --with-browser "
                    "installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        opts.add_argument(flag)
    # An explicit driver path: Selenium Manager never runs (it would try to download a driver).
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
