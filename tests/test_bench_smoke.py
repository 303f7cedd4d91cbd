"""Smoke tests of the LeRobot comparison's hilreward side (bench/): not timed, tiny inputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hilreward.models import ClassifierConfig, RewardClassifier

BENCH = Path(__file__).resolve().parents[1] / "bench"
CAMERAS = ["observation.images.front", "observation.images.wrist"]


def load_run_all():
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_latency_driver_times_reward_function_calls(tmp_path):
    torch.manual_seed(0)
    cfg = ClassifierConfig(encoder="tiny", camera_keys=CAMERAS, image_size=[32, 32], latent_dim=8, hidden_dim=8,
                           spatial_features=2, threshold=0.5)
    ckpt = RewardClassifier(cfg).eval().save_pretrained(tmp_path / "ckpt")
    frames = {k: np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8) for k in ("front", "wrist")}
    np.savez(tmp_path / "frames.npz", **frames)
    proc = subprocess.run([sys.executable, str(BENCH / "hilreward_side.py"), "latency", str(ckpt),
                           str(tmp_path / "frames.npz"), "--calls", "6", "--warmup", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == 6 and result["backend"] == "torch"
    assert 0 < result["min_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert set(result["profile_ms"]) == {"preprocess", "encode", "head"}
    # the driver's per-call success count matches the model's own predictions on the same frames
    model = RewardClassifier.from_pretrained(ckpt)
    p = model.predict_proba(frames)
    expected = sum(int(p[i % 3] >= 0.5) for i in range(1, 7))
    assert result["positives"] == expected


def fake_result(speedup: float) -> dict:
    acc = {"step": 25, "elapsed_s": 40.0, "next.reward": 0.8, "observation.success": 0.79,
           "gross_false_terminations": 1}
    lat = {"median_ms": 10.0, "p90_ms": 12.0}
    deploy = {"calibration": {"method": "cv", "enough": True},
              "test": {"accuracy": 0.995, "gross_false_terminations": 0, "threshold": 0.83}}
    return {
        "time_to_95_speedup": speedup, "time_to_95_speedup_is_lower_bound": True,
        "time_to_deployable_speedup": 2 * speedup, "time_to_deployable_speedup_is_lower_bound": True,
        "inference_latency_ratio": 0.4, "inference_latency_ratio_torch": 1.1,
        "goals": {"time_to_95_speedup >= 10": speedup >= 10, "time_to_deployable_speedup >= 10": 2 * speedup >= 10,
                  "inference_latency_ratio <= 0.5": True},
        "time_to_deployable": {"hilreward_s": 45.0, "hilreward_runs": [deploy], "lerobot_s": 900.0,
                               "lerobot_reached": False, "lerobot_first": None, "lerobot_closest": acc},
        "time_to_95": {"lerobot_s": 900.0, "lerobot_reached": False, "hilreward_s": 60.0, "lerobot_best": acc},
        "same_wall_time_accuracy": {"at_hilreward_time_to_95": {"wall_s": 60.0, "hilreward_accuracy": 0.99,
                                                                "lerobot": acc},
                                    "at_hilreward_total_run": {"wall_s": 90.0, "hilreward_accuracy": 0.99,
                                                               "lerobot": acc},
                                    "at_lerobot_cap": {"wall_s": 900.0, "hilreward_accuracy": 0.99, "lerobot": acc}},
        "throughput_batch32": {"lerobot_samples_per_s": 50.0, "hilreward_feature_step_samples_per_s": 5000.0,
                               "hilreward_pixel_step_samples_per_s": 60.0},
        "inference_batch1": {"lerobot": lat, "hilreward_auto": lat, "hilreward_torch": lat},
        "machine": {"cpu": "cpu", "logical_cpus": 2, "memory_gb": 8, "uptime_at_start": "up", "uptime_at_end": "up"},
        "versions": {"hilreward": {"hilreward": "0.1.0"}, "lerobot": {"lerobot": "0.6.1"}},
        "settings": {"dataset": "/d/metaworld_drawer_open", "threads": 2, "lerobot_batch": 16,
                     "lerobot_save_freq": 25, "hilreward_deploy_overrides": ["training.steps=200"]},
        "started_utc": "2026-01-01T00:00:00+00:00", "finished_utc": "2026-01-01T01:00:00+00:00",
    }


def test_docs_section_is_replaced_and_other_sections_kept(tmp_path, monkeypatch):
    run_all = load_run_all()
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Serving\n\nkeep me\n")
    monkeypatch.setattr(run_all, "DOC", doc)
    run_all.write_doc(fake_result(12.0), Path("bench/results/2026-01-01.json"))
    run_all.write_doc(fake_result(3.0), Path("bench/results/2026-01-01.json"))
    text = doc.read_text()
    assert "keep me" in text and text.count(run_all.SECTION) == 1
    assert "**3.0x** (hilreward faster) (lower bound" in text and "**12.0x**" not in text
    assert "time_to_95_speedup >= 10: **missed**" in text
    assert "**6.0x** (hilreward faster) (lower bound: LeRobot never got there" in text
    assert "time_to_deployable_speedup >= 10: **missed**" in text
    assert "0.790, 1, 0.5 (step 25, its closest) | 0.995, 0, 0.83 (cv, enough evidence)" in text


@pytest.mark.slow
def test_deployable_driver_times_a_calibrated_run_and_scores_it(tmp_path):
    drawer4 = Path(__file__).parent / "fixtures" / "drawer4"
    proc = subprocess.run([sys.executable, str(BENCH / "hilreward_side.py"), "deployable", "--weights", "unused",
                           "--dataset", str(drawer4), "--out", str(tmp_path / "run"), "--train-episodes", "0", "1",
                           "2", "--eval-episodes", "3", "--threads", "1", "--override", "model.weights=null",
                           "model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]",
                           "training.steps=10"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["what"] == "time_to_deployable" and result["total_s"] > 0 and result["test_episodes"] == [3]
    # three training episodes are too few for folds and too little evidence: never deployable, and it says why
    assert result["calibration"]["method"] == "heldout" and result["calibration"]["enough"] is False
    assert result["deployable"] is False and result["time_to_deployable_s"] is None
    assert result["test"]["episodes"] == 1 and 0 <= result["test"]["accuracy"] <= 1
    assert any("too few for 4 folds" in line for line in result["log_summary"])


def test_scale_bench_repeats_episodes_with_their_own_video_files(tmp_path):
    """bench_scale's large sets: the source's episodes again, each repeat reading its own (hard-linked) files."""
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data, open_dataset
    from hilreward.data import video

    spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "bench_scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    source = Path(__file__).parent / "fixtures" / "drawer4"
    root = scale.repeated(source, 10, tmp_path)
    ds = open_dataset(DatasetConfig(root=str(root)))
    assert [e.index for e in ds.episodes] == list(range(10)) and ds.num_frames == 10 * 149
    before = video.DECODE_CALLS
    big = load_frame_data(DatasetConfig(root=str(root)), LabelConfig(), (32, 32), cache_dir=str(tmp_path / "c"))
    assert video.DECODE_CALLS - before == 2 * 3  # every repeat's own file, per camera: all decoded
    small = load_frame_data(DatasetConfig(root=str(source)), LabelConfig(), (32, 32), cache_dir=str(tmp_path / "c"))
    for cam in small.camera_keys:
        for e in range(10):
            got = np.asarray(big.images[cam])[big.episode_index == e]
            assert np.array_equal(got, np.asarray(small.images[cam])[small.episode_index == e % 4])
    assert np.array_equal(big.labels, np.tile(small.labels, 3)[:len(big)])
    stages = scale.Stages()
    stages.start("decode")
    x = np.ones(2**22)  # 32 MiB of this process's own memory
    stages.close()
    assert stages.results["decode"]["peak_rss_anon"] >= x.nbytes and stages.results["decode"]["seconds"] > 0
