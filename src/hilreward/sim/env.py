"""A Meta-World v3 task as a gymnasium env with pixel observations (gym-hil style).

Observations: ``{"pixels": {"front": uint8 (H,W,3), "wrist": uint8 (H,W,3)},
"agent_pos": float32 (4,)}`` (hand xyz and gripper opening). ``info["success"]`` is
Meta-World's own success check of the current state; the reward is 1.0 on success, else
0.0 (sparse, as HIL-SERL uses it). Goal markers (MuJoCo sites) are not drawn, so the
answer is never painted on the image.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .gl import ensure_gl, render_failed
from .tasks import SimTask, get_task

CAMERAS = ("front", "wrist")
# The fixed front camera looks over the table at the work area from the robot's right;
# defined here (not in the XML) so it is right-side up for every task.
_FRONT = {"lookat": (0.0, 0.7, 0.1), "azimuth": 140.0, "elevation": -35.0, "distance": 1.0}
_WRIST = "gripperPOV"  # Meta-World's camera on the gripper
_AGENT_POS_DIM = 4


@dataclass(frozen=True)
class SimShift:
    """A distribution shift to render: lighting of the whole scene and a per-episode jitter of the front camera.

    The defaults change nothing. Layouts shift with the env's ``seed``."""

    brightness: float = 1.0
    """Scale of every light's ambient, diffuse and specular colour (and the headlight's): 0.6 dims, 1.4 brightens."""
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Per-channel (R, G, B) scale of the lights' colours: (1.2, 1.0, 0.8) is a warm light."""
    light_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Metres added to every light's position; each light is re-aimed at the point it lit before (shadows and
    highlights move)."""
    camera_jitter: float = 0.0
    """Per episode, the front camera's azimuth and elevation move by up to this many degrees and the point it
    looks at by up to this many centimetres (uniform, seeded by the episode's reset seed)."""

    def __post_init__(self) -> None:
        if not self.brightness > 0:
            raise ConfigError(f"brightness must be > 0, got {self.brightness}")
        for name, size in (("tint", 3), ("light_shift", 3)):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != size:
                raise ConfigError(f"{name} must have {size} numbers, got {list(getattr(self, name))}")
            object.__setattr__(self, name, value)
        if min(self.tint) < 0:
            raise ConfigError(f"tint must be >= 0 per channel, got {list(self.tint)}")
        if self.camera_jitter < 0:
            raise ConfigError(f"camera_jitter must be >= 0 degrees, got {self.camera_jitter}")

    @property
    def is_identity(self) -> bool:
        return self == SimShift()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class MetaWorldPixelEnv(gym.Env):
    """Meta-World v3 task rendered offscreen by MuJoCo into a ``front`` and a ``wrist`` camera."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str = "drawer-open", image_size: tuple[int, int] = (128, 128), seed: int = 0,
                 max_steps: int = 150, show_markers: bool = False, shift: SimShift | None = None):
        height, width = (int(v) for v in image_size)
        if height < 8 or width < 8:
            raise ConfigError(f"image_size must be at least [8, 8], got {list(image_size)}")
        if max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        self.task: SimTask = get_task(task)
        ensure_gl()
        import metaworld
        import mujoco

        self._mujoco = mujoco
        self.metaworld = metaworld.ALL_V3_ENVIRONMENTS_GOAL_HIDDEN[f"{self.task.env_name}-goal-hidden"](seed=seed)
        """The wrapped Meta-World env (its ``model`` and ``data`` are MuJoCo's)."""
        self.metaworld.max_path_length = 1 << 30  # truncation is ours (max_steps); Meta-World would raise
        self.metaworld._freeze_rand_vec = False  # new object/goal positions at each reset,
        self.metaworld.seeded_rand_vec = True  # drawn from the env's seeded generator
        self.image_size = (height, width)
        self.max_steps = max_steps
        """Episodes are truncated after this many steps."""
        self.render_mode = "rgb_array"
        self.shift = shift or SimShift()
        """The rendered distribution shift (lighting, camera jitter)."""
        model = self.metaworld.model
        _light(model, self.shift)
        # Software GL (llvmpipe, OSMesa) spends most of a frame on the 4096^2 shadow map and 4x
        # MSAA; without shadows and with 2x MSAA a frame costs ~10x less and looks nearly the same.
        model.vis.global_.offheight, model.vis.global_.offwidth = height, width
        model.vis.quality.offsamples = 2
        try:
            self._renderer = mujoco.Renderer(model, height, width)
        except Exception as exc:  # noqa: BLE001 - any GL failure gets the same fix
            raise render_failed(exc) from exc
        # Free the GL context on close() or, at the latest, at exit while EGL is still loaded
        # (freeing it during interpreter teardown prints EGL errors).
        self._free_gl = weakref.finalize(self, self._renderer.close)
        self._scene_option = mujoco.MjvOption()
        self.set_markers_visible(show_markers)
        self._front = mujoco.MjvCamera()
        self._front.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._front.lookat[:] = _FRONT["lookat"]
        self._front.azimuth, self._front.elevation = _FRONT["azimuth"], _FRONT["elevation"]
        self._front.distance = _FRONT["distance"]
        self.camera_pose: dict[str, Any] = {}
        """The front camera's pose in the current episode (jittered per episode by ``shift.camera_jitter``)."""
        self._pose_front(None)

        image = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        state_space = self.metaworld.sawyer_observation_space  # Meta-World clips its state to this box
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Dict({name: image for name in CAMERAS}),
            "agent_pos": gym.spaces.Box(state_space.low[:_AGENT_POS_DIM].astype(np.float32),
                                        state_space.high[:_AGENT_POS_DIM].astype(np.float32), dtype=np.float32),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space.seed(seed)
        self.state: np.ndarray = np.zeros(39)
        """Meta-World's full state vector of the current step, goal included (what its scripted
        experts read; never part of the observation beyond ``agent_pos``)."""
        self._steps = 0

    def set_markers_visible(self, visible: bool) -> None:
        """Draw (True, for debugging) or hide (the default) the MuJoCo sites: goal and end-effector markers."""
        self._scene_option.sitegroup[:] = self._mujoco.MjvOption().sitegroup if visible else 0

    def _pose_front(self, seed: int | None) -> None:
        jitter = self.shift.camera_jitter
        rng = np.random.default_rng(seed)
        d_angle = rng.uniform(-jitter, jitter, 2) if jitter else np.zeros(2)
        d_look = rng.uniform(-jitter, jitter, 3) / 100.0 if jitter else np.zeros(3)
        self._front.lookat[:] = np.asarray(_FRONT["lookat"]) + d_look
        self._front.azimuth = _FRONT["azimuth"] + float(d_angle[0])
        self._front.elevation = _FRONT["elevation"] + float(d_angle[1])
        self.camera_pose = {"azimuth": round(float(self._front.azimuth), 4),
                            "elevation": round(float(self._front.elevation), 4),
                            "lookat": [round(float(v), 5) for v in self._front.lookat],
                            "distance": float(self._front.distance)}

    def _with_goal(self, raw: np.ndarray) -> np.ndarray:
        # The goal-hidden env zeroes the goal in its state; the scripted experts need it.
        state = np.array(raw, np.float64)
        state[-3:] = self.metaworld._get_pos_goal()
        return state

    def render_camera(self, camera: str) -> np.ndarray:
        """The current frame of ``camera`` (``front`` or ``wrist``), uint8 (H, W, 3)."""
        if camera not in CAMERAS:
            raise ConfigError(f"unknown camera {camera!r}; known: {', '.join(CAMERAS)}")
        cam = self._front if camera == "front" else _WRIST
        self._renderer.update_scene(self.metaworld.data, camera=cam, scene_option=self._scene_option)
        self._renderer.scene.flags[self._mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._renderer.scene.flags[self._mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return self._renderer.render().copy()

    def render(self) -> np.ndarray:
        return self.render_camera("front")

    def _observation(self) -> dict[str, Any]:
        return {
            "pixels": {name: self.render_camera(name) for name in CAMERAS},
            "agent_pos": self.state[:_AGENT_POS_DIM].astype(np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.metaworld.seed(seed)
            self.action_space.seed(seed)
        if self.shift.camera_jitter:
            self._pose_front(seed if seed is not None else int(self.np_random.integers(1 << 31)))
        raw, _ = self.metaworld.reset()
        self.state = self._with_goal(raw)
        self._steps = 0
        _, info = self.metaworld.evaluate_state(raw, np.zeros(4, np.float32))
        return self._observation(), {"success": bool(info["success"])}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, np.float32).reshape(4), -1.0, 1.0)
        raw, shaped, _, _, info = self.metaworld.step(action)
        self.state = self._with_goal(raw)
        self._steps += 1
        success = bool(info["success"])
        info = {"success": success, "shaped_reward": float(shaped)}
        return self._observation(), float(success), False, self._steps >= self.max_steps, info

    def close(self) -> None:
        if hasattr(self, "_free_gl"):
            self._free_gl()
        if hasattr(self, "metaworld"):
            self.metaworld.close()


def _light(model, shift: SimShift) -> None:
    """Apply ``shift``'s lighting to a MuJoCo model (in place)."""
    scale = shift.brightness * np.asarray(shift.tint)
    for name in ("light_ambient", "light_diffuse", "light_specular"):
        getattr(model, name)[:] = np.clip(getattr(model, name) * scale, 0.0, 1.0)
    head = model.vis.headlight
    for name in ("ambient", "diffuse", "specular"):
        setattr(head, name, np.clip(np.asarray(getattr(head, name)) * scale, 0.0, 1.0))
    offset = np.asarray(shift.light_shift)
    if offset.any():
        for i in range(model.nlight):
            pos, direction = model.light_pos[i].copy(), model.light_dir[i].copy()
            # the point the light lit on the table plane (z = 0), or one metre along its axis
            t = -pos[2] / direction[2] if direction[2] < -1e-6 else 1.0
            target = pos + t * direction
            model.light_pos[i] = pos + offset
            aim = target - model.light_pos[i]
            model.light_dir[i] = aim / np.linalg.norm(aim)


def make_env(task: str = "drawer-open", image_size: tuple[int, int] = (128, 128), seed: int = 0,
             max_steps: int = 150, show_markers: bool = False, shift: SimShift | None = None) -> MetaWorldPixelEnv:
    """A Meta-World v3 ``task`` with ``front`` and ``wrist`` pixel observations of ``image_size`` (H, W).

    Episodes end (truncated) after ``max_steps`` steps; success never terminates them.
    ``show_markers=True`` draws the goal markers (for debugging only); ``shift`` renders a lighting change and
    a per-episode camera jitter (:class:`SimShift`).
    """
    return MetaWorldPixelEnv(task, image_size, seed, max_steps, show_markers, shift)
