"""Human override of the classifier: a person says "success" or "failure" and wins that step.

Sources of a label:
- programmatic: ``override.success()`` / ``override.failure()`` (from any thread, a GUI, a test);
- keyboard: :class:`KeyboardSource` (optional dependency ``pynput``; default keys s / f);
- gamepad: subclass :class:`OverrideSource` and implement ``poll()``, or use
  :class:`PygameJoystickSource` when ``pygame`` is installed.

A label is consumed by the next reward-function step (one step wins, then the classifier judges
again). A label given without ``env`` applies to every environment of that step.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Optional

from ..errors import ConfigError

SUCCESS = 1
FAILURE = 0


class OverrideSource(ABC):
    """A device that may hold a human label. Implement ``poll()`` for your own gamepad / pedal / GUI."""

    name: str = "custom"
    """Recorded with each correction as its ``source``."""
    env_index: Optional[int] = None
    """Environment the labels apply to; None: every environment of the step."""

    @abstractmethod
    def poll(self) -> Optional[int]:
        """Return 1 (success), 0 (failure) or None (no input) for this step; called once per step."""

    def close(self) -> None:
        """Release the device."""


class HumanOverride:
    """Collects human labels from sources and hands them to the reward function, one step at a time."""

    def __init__(self, sources: list[OverrideSource] | None = None) -> None:
        self.sources = list(sources or [])
        self._lock = threading.Lock()
        self._pending: dict[Optional[int], tuple[int, str]] = {}

    def success(self, env: Optional[int] = None, source: str = "programmatic") -> None:
        """The next step of ``env`` (every env when None) is a success, whatever the classifier says.

        ``source`` is recorded with the correction (e.g. ``lerobot_teleop``)."""
        self._set(SUCCESS, env, source)

    def failure(self, env: Optional[int] = None, source: str = "programmatic") -> None:
        """The next step of ``env`` (every env when None) is a failure, whatever the classifier says."""
        self._set(FAILURE, env, source)

    def _set(self, label: int, env: Optional[int], source: str) -> None:
        with self._lock:
            self._pending[env] = (label, source)

    def take(self, num_envs: int = 1) -> list[Optional[tuple[int, str]]]:
        """Per env, the (label, source) for this step or None; consumes what it returns."""
        for source in self.sources:
            label = source.poll()
            if label is not None:
                if label not in (SUCCESS, FAILURE):
                    raise ConfigError(f"override source {source.name!r} returned {label!r}; poll() must "
                                      "return 1 (success), 0 (failure) or None")
                self._set(int(label), source.env_index, source.name)
        with self._lock:
            everyone = self._pending.pop(None, None)
            out = [self._pending.pop(i, everyone) for i in range(num_envs)]
        return out

    def clear(self) -> None:
        """Drop labels not yet consumed (e.g. at episode start)."""
        with self._lock:
            self._pending.clear()

    def close(self) -> None:
        for source in self.sources:
            source.close()


class KeyboardSource(OverrideSource):
    """Keyboard keys through ``pynput`` (``pip install 'hilreward[keyboard]'``; needs a desktop session).

    ``success_key`` / ``failure_key``: a character (``"s"``) or a pynput ``Key`` name (``"space"``, ``"enter"``).
    """

    name = "keyboard"

    def __init__(self, success_key: str = "s", failure_key: str = "f", env_index: Optional[int] = None) -> None:
        try:
            from pynput import keyboard
        except Exception as exc:  # ImportError, or pynput's own error without a display
            raise ConfigError(
                "the keyboard override needs the optional dependency pynput and a desktop session "
                f"({type(exc).__name__}: {exc}); install it with `pip install 'hilreward[keyboard]'`, or use "
                "override.success()/failure() or a custom OverrideSource instead") from None
        if success_key == failure_key:
            raise ConfigError(f"success_key and failure_key are both {success_key!r}; choose two different keys")
        self.env_index = env_index
        self._keys = {self._resolve(keyboard, success_key): SUCCESS, self._resolve(keyboard, failure_key): FAILURE}
        self._lock = threading.Lock()
        self._label: Optional[int] = None
        self._listener = keyboard.Listener(on_press=self._on_press)
        self._listener.start()

    @staticmethod
    def _resolve(keyboard, key: str):
        if len(key) == 1:
            return keyboard.KeyCode.from_char(key.lower())
        try:
            return keyboard.Key[key]
        except KeyError:
            raise ConfigError(f"unknown key {key!r}: use one character or a pynput Key name "
                              f"such as {', '.join(k.name for k in list(keyboard.Key)[:6])}") from None

    def _on_press(self, key) -> None:
        char = getattr(key, "char", None)
        if char is not None:
            key = type(key).from_char(char.lower())
        label = self._keys.get(key)
        if label is not None:
            with self._lock:
                self._label = label

    def poll(self) -> Optional[int]:
        with self._lock:
            label, self._label = self._label, None
        return label

    def close(self) -> None:
        self._listener.stop()


class PygameJoystickSource(OverrideSource):
    """Gamepad buttons through ``pygame`` (optional dependency): a press (not a hold) gives one label."""

    name = "gamepad"

    def __init__(self, success_button: int = 0, failure_button: int = 1, joystick: int = 0,
                 env_index: Optional[int] = None) -> None:
        try:
            import pygame
        except ImportError:
            raise ConfigError("the gamepad override needs pygame (`pip install pygame`), or subclass "
                              "hilreward.deploy.OverrideSource and implement poll() for your device") from None
        pygame.init()
        pygame.joystick.init()
        if pygame.joystick.get_count() <= joystick:
            raise ConfigError(f"no gamepad number {joystick}: pygame sees {pygame.joystick.get_count()}")
        self._pygame = pygame
        self._stick = pygame.joystick.Joystick(joystick)
        self._buttons = {success_button: SUCCESS, failure_button: FAILURE}
        self._was_down = {b: False for b in self._buttons}
        self.env_index = env_index

    def poll(self) -> Optional[int]:
        self._pygame.event.pump()
        label = None
        for button, value in self._buttons.items():
            down = bool(self._stick.get_button(button))
            if down and not self._was_down[button]:
                label = value
            self._was_down[button] = down
        return label

    def close(self) -> None:
        self._stick.quit()
