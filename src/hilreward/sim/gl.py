"""Choose MuJoCo's offscreen GL backend before ``mujoco`` is first imported.

MuJoCo reads ``MUJOCO_GL`` once, at import time, and importing it with a backend whose
libraries are missing fails outright. So the first call of :func:`ensure_gl` tries the
requested backend (``MUJOCO_GL``, default ``egl``) and then ``osmesa`` in a short
subprocess, and exports the first one that renders. Every renderer in this package
goes through it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ..errors import RenderError

_BACKENDS = ("egl", "osmesa")
_PROBE = (
    "import mujoco; r = mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>'), 8, 8); "
    "r.render(); r.close()"
)
_chosen: str | None = None


def _fix_hint() -> str:
    return (
        "install the GL libraries with `bash scripts/sysdeps.sh` (Debian/Ubuntu: libegl1 libgl1 "
        "libosmesa6), or pick a backend by hand with MUJOCO_GL=osmesa (software) or MUJOCO_GL=egl"
    )


def _probe(backend: str) -> str | None:
    """Render one tiny frame with ``backend`` in a subprocess; None if it works, else the error."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "timed out"
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def ensure_gl() -> str:
    """Make sure ``mujoco`` renders offscreen here; return the backend (``egl`` or ``osmesa``).

    Raises :class:`RenderError` naming the fix when no backend works.
    """
    global _chosen
    if _chosen is not None:
        return _chosen
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if "mujoco" in sys.modules:  # too late to choose: use what was imported
        _chosen = requested or "glfw"
        return _chosen
    order = [requested] if requested in _BACKENDS else []
    order += [b for b in _BACKENDS if b not in order]
    failures = []
    for backend in order:
        error = _probe(backend)
        if error is None:
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            _chosen = backend
            return backend
        failures.append(f"{backend}: {error}")
    raise RenderError(f"MuJoCo cannot render offscreen ({'; '.join(failures)}); {_fix_hint()}")


def render_failed(exc: Exception) -> RenderError:
    """Wrap an error raised while creating a renderer in a :class:`RenderError` with the fix."""
    backend = os.environ.get("MUJOCO_GL", "?")
    return RenderError(f"MuJoCo could not render with MUJOCO_GL={backend} ({exc}); {_fix_hint()}")
