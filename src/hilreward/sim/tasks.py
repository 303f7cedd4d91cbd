"""Meta-World v3 tasks the generator knows: short name -> environment, expert, task text."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .gl import ensure_gl

# Task text written into the dataset; tasks not listed get their name with spaces.
_TEXT = {
    "drawer-open": "open the drawer",
    "drawer-close": "close the drawer",
    "pick-place": "pick up the puck and place it at the goal",
    "button-press-topdown": "press the button from the top",
    "button-press": "press the button",
    "door-open": "open the door",
    "reach": "reach the goal position",
    "push": "push the puck to the goal",
    "window-open": "open the window",
    "window-close": "close the window",
}


@dataclass(frozen=True)
class SimTask:
    name: str
    """Short name, e.g. ``drawer-open``."""
    env_name: str
    """Meta-World environment name, e.g. ``drawer-open-v3``."""
    text: str
    """Natural-language task written into the dataset's ``meta/tasks.parquet``."""


def list_tasks() -> list[str]:
    """Short names of every Meta-World v3 task that has a scripted expert."""
    ensure_gl()  # importing metaworld imports mujoco, which fixes the GL backend
    from metaworld import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    return sorted(n.removesuffix("-v3") for n in ALL_V3_ENVIRONMENTS if n in ENV_POLICY_MAP)


def get_task(name: str) -> SimTask:
    """The task called ``name`` (``drawer-open`` or ``drawer-open-v3``); ConfigError lists the known ones."""
    short = name.strip().removesuffix("-v3")
    known = list_tasks()
    if short not in known:
        raise ConfigError(f"unknown sim task {name!r}; known: {', '.join(known)}")
    return SimTask(short, f"{short}-v3", _TEXT.get(short, short.replace("-", " ")))
