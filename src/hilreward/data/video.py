"""Video I/O with PyAV: sequential decoding matched to rows by timestamp (each frame resized once with
``hilreward.images.resize_uint8``, the resize deployment uses), and encoding.

Decoding never seeks per frame: each file is read front to back once, and each decoded frame is
handed to the rows whose timestamp it is nearest to (within half a frame period).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
import numpy as np

from ..errors import VideoError
from ..images import resize_uint8

DECODE_CALLS = 0
"""How many video files this process has opened for decoding (tests assert a warm cache opens none)."""


def decode_to_rows(path: Path, targets: np.ndarray, fps: float, size: tuple[int, int],
                   out: np.ndarray, rows: np.ndarray) -> None:
    """Decode ``path`` once and write the frame nearest to each target time into ``out[rows[i]]``.

    ``targets`` are seconds in the file's own timeline (episode from_timestamp + row timestamp).
    Raises VideoError when the file is missing, corrupt, or ends before a target is reached.
    """
    import av

    global DECODE_CALLS
    if not path.is_file():
        raise VideoError(f"video file {path} is missing; re-download the dataset "
                         f"(or restore the file) so every camera has its mp4")
    order = np.argsort(targets, kind="stable")
    tol = 0.5 / fps + 1e-4
    j, n = 0, len(order)
    decoded = 0
    DECODE_CALLS += 1
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path} has no video stream; the file is not a camera video (re-encode or re-download it)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts is None:
                    continue
                t = float(frame.pts * frame.time_base)
                if j < n and targets[order[j]] < t - tol:
                    _missing(path, targets[order[j]], t)
                if j < n and abs(targets[order[j]] - t) <= tol:
                    img = resize_uint8(frame.to_ndarray(format="rgb24"), size)
                    while j < n and abs(targets[order[j]] - t) <= tol:
                        out[rows[order[j]]] = img
                        j += 1
                if j == n:
                    break
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot decode {path}: {exc}; the file is corrupt or truncated — "
                         f"re-download or re-encode it") from None
    if j < n:
        raise VideoError(f"{path} has {decoded} decodable frames but the parquet rows need "
                         f"{n} frames up to t={targets[order[-1]]:.3f}s ({n - j} rows have no frame); "
                         f"the video is truncated or the dataset's timestamps are wrong — re-download or re-record it")


def _missing(path: Path, target: float, t: float) -> None:
    raise VideoError(f"{path}: no frame near t={target:.3f}s (next decoded frame is at {t:.3f}s); "
                     f"the video skips frames the parquet rows refer to — re-encode it at the dataset's fps")


def pick_codec(codec: str) -> str:
    """``auto`` -> libsvtav1 when this PyAV build has it, else libx264; other names must be available."""
    import av

    if codec == "auto":
        return "libsvtav1" if "libsvtav1" in av.codecs_available else "libx264"
    if codec not in av.codecs_available:
        raise VideoError(f"video codec {codec!r} is not in this PyAV build; use 'auto', 'libsvtav1' or 'libx264'")
    return codec


CODEC_NAMES = {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "libx265": "hevc"}


def encoder_options(codec: str, overrides: dict | None = None) -> dict:
    """LeRobot's encoder settings (g=2, crf=30, fast preset) updated with ``overrides``; numbers as int."""
    options = {"g": "2", "crf": "30", "preset": "12" if codec == "libsvtav1" else "veryfast"}
    options.update(overrides or {})
    return {k: int(v) if str(v).isdigit() else v for k, v in options.items()}


class VideoEncoder:
    """Append uint8 RGB frames to one mp4 at a constant frame rate (yuv420p, LeRobot's settings)."""

    def __init__(self, path: Path, fps: int, height: int, width: int, codec: str = "auto",
                 options: dict[str, str] | None = None):
        import av

        self.codec = pick_codec(codec)
        if self.codec in ("libx264", "libx265") and (height % 2 or width % 2):
            raise VideoError(f"{self.codec} with yuv420p needs an even height and width, got {height}x{width}; "
                             f"resize the frames or use codec=libsvtav1")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config at info level otherwise
        self.path = path
        self.fps = fps
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(path), mode="w")
        try:
            self._stream = self._container.add_stream(
                self.codec, rate=fps, options={k: str(v) for k, v in encoder_options(self.codec, options).items()})
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = Fraction(1, fps)
        except av.error.FFmpegError as exc:
            self._container.close()
            raise VideoError(f"cannot set up the {self.codec} encoder for {path} ({width}x{height}): {exc}") from None

    def write(self, frames: np.ndarray) -> None:
        import av

        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self.count
            frame.time_base = Fraction(1, self.fps)
            try:
                self._container.mux(self._stream.encode(frame))
            except av.error.FFmpegError as exc:
                raise VideoError(f"encoding {self.path} with {self.codec} failed: {exc}") from None
            self.count += 1

    def close(self) -> None:
        import av

        try:
            self._container.mux(self._stream.encode(None))
        except av.error.FFmpegError as exc:
            raise VideoError(f"finishing {self.path} with {self.codec} failed: {exc}") from None
        finally:
            self._container.close()

