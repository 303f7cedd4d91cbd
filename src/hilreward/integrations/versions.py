"""Follow a reward server's published versions from a learner, to relabel its replay buffer with each.

    versions = ServedVersions("127.0.0.1:50051", versions_dir="outputs/serve/versions")
    update = versions.poll()          # None, or the newest version not yet taken
    if update is not None:
        out = relabel_rewards(update.reward_fn, frames, previous=rewards, version=update.pin)

A thread follows ``WatchModel``. Each update carries a :class:`RewardFunction` that judges with
the new version: loaded from ``<versions_dir>/<number>`` with the fastest backend (``auto``: ONNX
Runtime) when the learner can read the server's state folder (same machine or a shared folder), else
the server itself (``grpc``, with ``pin`` naming the version). Its threshold is the server's; the
reward options (``success_reward``, ``mode``, ``terminate_on_success``) are the actor's, given here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..deploy.reward_function import RewardFunction
from ..errors import ConfigError, HilrewardError, ServingError


@dataclass
class VersionUpdate:
    """A newly served version and a reward function that judges with it."""

    info: Any
    """The server's ModelInfo of the version."""
    reward_fn: RewardFunction
    pin: Optional[str]
    """The version to name when relabelling through the server (None when ``reward_fn`` runs it locally)."""

    @property
    def version(self) -> str:
        return self.info.version


class ServedVersions:
    """The versions a reward server publishes, one :class:`VersionUpdate` per :meth:`poll` that finds a new one.

    The version serving when it starts counts as taken (the buffer's rewards come from it); ``poll`` skips
    versions superseded before it was called.
    """

    def __init__(self, address: str, token: Optional[str] = None, versions_dir: str | Path | None = None,
                 success_reward: float = 1.0, mode: str = "sparse", terminate_on_success: bool = True,
                 timeout_s: float = 30.0) -> None:
        from ..serving.client import RewardClient

        self.address, self.token = address, token
        self.versions_dir = Path(versions_dir) if versions_dir is not None else None
        self.options = {"success_reward": success_reward, "mode": mode, "terminate_on_success": terminate_on_success}
        self.client = RewardClient(address, token=token, timeout_s=timeout_s)
        self._taken = self.client.get_model().version
        self._latest: Any = None
        self._error: Optional[str] = None
        self._lock = threading.Lock()
        self._current: Optional[RewardFunction] = None
        self._thread = threading.Thread(target=self._watch, name="hilreward-versions", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            for info in self.client.watch_model():
                with self._lock:
                    self._latest = info
        except HilrewardError as exc:
            self._error = str(exc)

    @property
    def latest(self) -> Any:
        """The ModelInfo of the newest version seen (None before the stream's first message)."""
        with self._lock:
            return self._latest

    def poll(self) -> Optional[VersionUpdate]:
        """The newest served version not taken yet, with its reward function; None when there is none.

        ServingError once the stream of versions broke (the server died).
        """
        with self._lock:
            info = self._latest
        if self._error is not None and (info is None or info.version == self._taken):
            raise ServingError(f"lost the reward server's versions: {self._error}")
        if info is None or info.version == self._taken:
            return None
        self._taken = info.version
        if self._current is not None:
            self._current.close()
        if self.versions_dir is not None:
            fn = RewardFunction.from_pretrained(self.versions_dir / str(info.number), success_threshold=info.threshold,
                                                **self.options)
            pin = None
            if fn.model_version != info.version:
                fn.close()
                raise ConfigError(f"{self.versions_dir / str(info.number)} holds version {fn.model_version}, the server "
                                  f"serves {info.version} as number {info.number}: versions_dir must be that server's "
                                  "<state_dir>/versions")
        else:
            fn = RewardFunction.from_pretrained(None, backend="grpc", address=self.address, token=self.token,
                                                success_threshold=info.threshold, **self.options)
            pin = info.version
        self._current = fn
        return VersionUpdate(info, fn, pin)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        self.client.close()
