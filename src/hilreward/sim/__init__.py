"""hilreward.sim: Meta-World tasks rendered offscreen into pixel envs and LeRobot v3.0 datasets."""

from __future__ import annotations

from .env import CAMERAS, MetaWorldPixelEnv, SimShift, make_env
from .generate import GenerateSummary, generate
from .gl import RenderError, ensure_gl
from .policies import list_policies, policy_for_episode, register_policy, scripted_policy
from .tasks import SimTask, get_task, list_tasks

__all__ = [
    "CAMERAS", "GenerateSummary", "MetaWorldPixelEnv", "RenderError", "SimShift", "SimTask", "ensure_gl", "generate",
    "get_task", "list_policies", "list_tasks", "make_env", "policy_for_episode", "register_policy",
    "scripted_policy",
]
