"""hilreward.sim: the rendered Meta-World env, the scripted episodes and the dataset generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hilreward.errors import ConfigError


@pytest.fixture(scope="module")
def gl():
    from hilreward.sim import RenderError, ensure_gl

    try:
        return ensure_gl()
    except RenderError as exc:
        pytest.skip(f"no GL backend can render here: {exc}")


SIZE = (32, 48)  # (H, W): small, and not square so a swapped axis shows


@pytest.fixture(scope="module")
def env(gl):
    from hilreward.sim import make_env

    env = make_env("drawer-open", image_size=SIZE, seed=0, max_steps=100)
    yield env
    env.close()


def _wood(rows: np.ndarray) -> float:
    """Median red-minus-blue of some image rows: ~30 on the wooden table, ~0 on the grey floor."""
    return float(np.median(rows[..., 0].astype(int) - rows[..., 2]))


def test_make_env_observations(env):
    obs, info = env.reset(seed=1)
    assert set(obs["pixels"]) == {"front", "wrist"}
    for img in obs["pixels"].values():
        assert img.dtype == np.uint8 and img.shape == (*SIZE, 3)
        assert img.std() > 5  # a scene, not a blank buffer
    assert obs["agent_pos"].dtype == np.float32 and obs["agent_pos"].shape == (4,)
    assert env.observation_space.contains(obs)
    assert info["success"] is False
    # Right-side up: the wooden table fills the bottom of the front view, the grey floor its top.
    front = obs["pixels"]["front"]
    assert _wood(front[-8:]) > _wood(front[:8]) + 15
    # A new reset seed moves the drawer; the same seed gives the same scene.
    other, _ = env.reset(seed=2)
    again, _ = env.reset(seed=1)
    np.testing.assert_array_equal(again["pixels"]["front"], front)
    assert np.abs(other["pixels"]["front"].astype(int) - front).mean() > 1
    env.max_steps = 3
    try:
        steps = [env.step(env.action_space.sample()) for _ in range(3)]
    finally:
        env.max_steps = 100
    assert [s[3] for s in steps] == [False, False, True] and not any(s[2] for s in steps)
    assert all(s[1] == float(s[4]["success"]) for s in steps)


def test_goal_markers_are_not_drawn(env):
    import mujoco

    def move_goal() -> tuple[np.ndarray, np.ndarray]:
        env.reset(seed=3)
        before = env.render()
        goal = mujoco.mj_name2id(env.metaworld.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
        env.metaworld.data.site_xpos[goal] = (0.0, 0.65, 0.05)  # onto the table, in view
        return before, env.render()

    env.set_markers_visible(True)
    try:
        shown_before, shown_after = move_goal()
    finally:
        env.set_markers_visible(False)
    assert np.abs(shown_after.astype(int) - shown_before).sum() > 0  # the marker is in view when drawn
    hidden_before, hidden_after = move_goal()
    np.testing.assert_array_equal(hidden_before, hidden_after)


@pytest.mark.slow
def test_sim_cli_writes_a_dataset_that_reads_back(env, tmp_path, capsys):
    from hilreward.data import LeRobotDataset
    from hilreward.sim.cli import main
    from hilreward.sim.generate import _episode_seed

    out = tmp_path / "drawer"
    args = ["task=drawer-open", f"out={out}", "episodes=2", "steps=100", f"image_size=[{SIZE[0]},{SIZE[1]}]", "seed=0"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ds = LeRobotDataset.open(root=out)
    assert ds.version == "v3.0" and ds.fps == 10 and ds.num_frames == 200 == summary["frames"]
    assert ds.camera_keys == ["observation.images.front", "observation.images.wrist"]
    assert [(e.length, e.tasks) for e in ds.episodes] == [(100, ["open the drawer"])] * 2
    rows = ds.read_rows(["episode_index", "next.reward", "next.done", "observation.success", "observation.state",
                         "action"])
    assert rows["observation.state"].shape == rows["action"].shape == (200, 4)
    reward, shown, ep = rows["next.reward"], rows["observation.success"], rows["episode_index"]
    assert reward.dtype == np.float32 and set(np.unique(reward)) <= {0.0, 1.0}
    assert int(reward.sum()) == summary["positives"] > 0
    for e in (0, 1):  # both experts: success arrives late and holds; reward is the next frame's success
        r, s, done = reward[ep == e], shown[ep == e], rows["next.done"][ep == e]
        first = int(np.argmax(r))
        assert 50 < first < 99 and r[first:].all() and not r[:first].any()
        np.testing.assert_array_equal(r[:-1], s[1:])
        assert not s[0] and done[-1] and not done[:-1].any()
    # Row 0 shows the frame before the first step: the env's reset frame.
    frames = ds.frames(ds.camera_keys, SIZE)
    obs, _ = env.reset(seed=_episode_seed(0, 0))
    for cam in ("front", "wrist"):
        diff = np.abs(frames[f"observation.images.{cam}"][0].astype(int) - obs["pixels"][cam]).mean()
        assert diff < 6, (cam, diff)


@pytest.mark.slow
def test_shift_options_change_light_and_camera_and_are_recorded(gl, tmp_path, capsys):
    from hilreward.sim import SimShift, make_env
    from hilreward.sim.cli import main

    def front(shift: SimShift, seed: int = 1) -> np.ndarray:
        env = make_env("drawer-open", image_size=SIZE, seed=0, shift=shift)
        try:
            return env.reset(seed=seed)[0]["pixels"]["front"].astype(int)
        finally:
            env.close()

    plain = front(SimShift())
    assert front(SimShift(brightness=0.6)).mean() < plain.mean() - 10  # dimmer
    warm = front(SimShift(tint=(1.3, 1.0, 0.7)))
    assert (warm[..., 0] - warm[..., 2]).mean() > (plain[..., 0] - plain[..., 2]).mean() + 5  # redder
    assert np.abs(front(SimShift(light_shift=(0.8, 0.5, 0.3))) - plain).mean() > 0.5  # shading moved
    jittered = SimShift(camera_jitter=4.0)
    assert np.abs(front(jittered) - plain).mean() > 2  # the camera moved
    np.testing.assert_array_equal(front(jittered), front(jittered))  # the same seed, the same pose
    assert np.abs(front(jittered, seed=2) - front(SimShift(), seed=2)).mean() > 2
    for bad, match in ((["brightness=0"], "brightness must be > 0"), (["tint=[1,1]"], "tint must have 3"),
                       (["camera_jitter=-1"], "camera_jitter must be >= 0")):
        with pytest.raises(ConfigError, match=match):
            main(["task=drawer-open", f"out={tmp_path / 'bad'}", *bad])
    out = tmp_path / "shifted"
    assert main(["task=drawer-open", f"out={out}", "episodes=2", "steps=3", f"image_size=[{SIZE[0]},{SIZE[1]}]",
                 "seed=5", "brightness=0.7", "tint=[1.2,1.0,0.8]", "camera_jitter=3"]) == 0
    record = json.loads((out / "meta" / "sim.json").read_text())
    assert record["seed"] == 5 and record["task"] == "drawer-open"
    assert record["shift"] == {"brightness": 0.7, "tint": [1.2, 1.0, 0.8], "light_shift": [0.0, 0.0, 0.0],
                               "camera_jitter": 3.0}
    poses = [e["front_camera"] for e in record["episodes"]]
    assert len(poses) == 2 and poses[0] != poses[1] and all(abs(p["azimuth"] - 140) <= 3 for p in poses)


def test_unknown_task_lists_the_known_ones(env, tmp_path):
    from hilreward.sim import make_env, scripted_policy
    from hilreward.sim.cli import main

    with pytest.raises(ConfigError, match="drawer-open.*pick-place"):
        make_env("drawer-opn")
    with pytest.raises(ConfigError, match="unknown sim task 'nope'"):
        main(["task=nope", f"out={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="missing out="):
        main(["task=drawer-open"])
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="expert, noisy, random"):
        scripted_policy(env, "teleop")


def test_gl_falls_back_to_osmesa_then_names_the_fix(gl):
    # EGL broken on purpose (a device that does not exist): the first call falls back to OSMesa;
    # with OSMesa out of the list too, the error names the fix.
    code = (
        "import os\n"
        "import hilreward.sim.gl as g\n"
        "print(g.ensure_gl())\n"
        "g._chosen, g._BACKENDS = None, ('egl',)\n"
        "os.environ['MUJOCO_GL'] = 'egl'\n"
        "try:\n"
        "    g.ensure_gl()\n"
        "except g.RenderError as exc:\n"
        "    print(exc)\n"
    )
    env = dict(os.environ, MUJOCO_GL="egl", MUJOCO_EGL_DEVICE_ID="99")
    env.pop("PYOPENGL_PLATFORM", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    chosen, message = proc.stdout.strip().splitlines()[:2]
    if chosen != "osmesa":
        pytest.skip("OSMesa is not installed here")
    assert "scripts/sysdeps.sh" in message and "MUJOCO_GL=osmesa" in message and "egl:" in message


def test_embedded_demo_dataset_is_what_its_readme_says():
    from pathlib import Path

    from hilreward.data import LeRobotDataset

    root = Path(__file__).resolve().parents[1] / "data" / "demo"
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 15 << 20
    ds = LeRobotDataset.open(root=root)
    assert (len(ds.episodes), ds.num_frames, ds.fps) == (24, 3600, 10)
    assert ds.camera_keys == ["observation.images.front", "observation.images.wrist"]
    assert all(ds.features[k]["shape"] == [96, 96, 3] for k in ds.camera_keys)
    rows = ds.read_rows(["episode_index", "next.reward"])
    per_episode = np.bincount(rows["episode_index"], weights=rows["next.reward"]).astype(int)
    assert per_episode.sum() == 787
    assert (per_episode[0::4] > 50).all() and (per_episode[1::4] > 50).all()  # experts succeed and hold
    assert (per_episode[3::4] == 0).all()  # random never succeeds
