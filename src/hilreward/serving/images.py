"""Camera frames <-> ``hilreward.v1.Image`` messages (raw RGB8, JPEG or PNG).

Decoding validates everything a client can get wrong (empty data, a byte count that does
not match height x width x 3, an undecodable JPEG/PNG, a decoded size that differs from the
one declared, a frame over the pixel limit, a camera the model does not use) and raises
:class:`InputError` with a message the server returns as INVALID_ARGUMENT.

The pixel limit (:data:`MAX_PIXELS`, the server's ``max_pixels``) is checked against the size a JPEG or PNG
header declares, before a pixel is decoded: a 50 KB PNG that would decode to 4096x4096 (a decompression
bomb) costs the server nothing.
"""

from __future__ import annotations

import io
from typing import Iterable, Mapping

import numpy as np

from ..errors import InputError
from .protos import hilreward_pb2 as pb
from ..utils import full_key

MAX_SIDE = 4096
"""Largest accepted frame side in pixels."""
MAX_PIXELS = 1920 * 1200
"""Largest accepted frame in pixels (height x width) unless the server says otherwise (``max_pixels``): a
1920x1200 camera's full frame. Checked against the header before decoding (decompression bombs)."""

ENCODINGS = {"raw": pb.Image.RAW_RGB8, "jpeg": pb.Image.JPEG, "png": pb.Image.PNG}


def encode_image(camera: str, frame: np.ndarray, encoding: str = "raw", jpeg_quality: int = 95) -> pb.Image:
    """One uint8 (H, W, 3) frame -> an Image message (``encoding``: raw, jpeg or png)."""
    if encoding not in ENCODINGS:
        raise InputError(f"unknown image encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise InputError(f"camera {camera!r}: expected a uint8 (H, W, 3) RGB frame, got {frame.dtype} {frame.shape}")
    height, width = frame.shape[:2]
    if encoding == "raw":
        data = np.ascontiguousarray(frame).tobytes()
    else:
        from PIL import Image as PILImage

        buf = io.BytesIO()
        if encoding == "jpeg":
            PILImage.fromarray(frame).save(buf, format="JPEG", quality=jpeg_quality)
        else:
            PILImage.fromarray(frame).save(buf, format="PNG", compress_level=1)
        data = buf.getvalue()
    return pb.Image(camera=camera, height=height, width=width, encoding=ENCODINGS[encoding], data=data)


def encode_thumbnail(camera: str, frame: np.ndarray, max_side: int = 0, jpeg_quality: int = 0) -> pb.Image:
    """A frame for a person to look at: shrunk to ``max_side`` pixels (0 = as is), JPEG at ``jpeg_quality``
    (0 = lossless PNG)."""
    frame = np.asarray(frame)
    if max_side and max(frame.shape[:2]) > max_side:
        from PIL import Image as PILImage

        img = PILImage.fromarray(np.ascontiguousarray(frame))
        img.thumbnail((max_side, max_side), PILImage.BILINEAR)
        frame = np.asarray(img)
    if jpeg_quality:
        return encode_image(camera, frame, "jpeg", jpeg_quality=jpeg_quality)
    return encode_image(camera, frame, "png")


def encode_images(images: Mapping[str, np.ndarray], encoding: str = "raw") -> list[pb.Image]:
    return [encode_image(camera, frame, encoding) for camera, frame in images.items()]


def decode_image(image: pb.Image, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An Image message -> uint8 (H, W, 3); InputError on anything malformed, and on a frame over ``max_pixels``
    (judged by the size declared in the message and in the JPEG/PNG header, before decoding)."""
    name = image.camera or "<unnamed>"
    if not image.data:
        raise InputError(f"camera {name!r}: image data is empty")
    _check_size(name, image.height, image.width, max_pixels)
    if image.encoding == pb.Image.RAW_RGB8:
        if image.height == 0 or image.width == 0:
            raise InputError(f"camera {name!r}: RAW_RGB8 images need height and width (got {image.height}x{image.width})")
        expected = image.height * image.width * 3
        if len(image.data) != expected:
            raise InputError(f"camera {name!r}: RAW_RGB8 {image.height}x{image.width} needs {expected} bytes "
                             f"(height*width*3), got {len(image.data)}")
        return np.frombuffer(image.data, dtype=np.uint8).reshape(image.height, image.width, 3)
    if image.encoding not in (pb.Image.JPEG, pb.Image.PNG):
        raise InputError(f"camera {name!r}: unknown encoding {image.encoding}; use RAW_RGB8, JPEG or PNG")
    from PIL import Image as PILImage

    kind = pb.Image.Encoding.Name(image.encoding)
    try:
        with PILImage.open(io.BytesIO(image.data)) as img:  # reads the header only
            width, height = img.size
            _check_size(name, height, width, max_pixels)
            if (image.height and height != image.height) or (image.width and width != image.width):
                raise InputError(f"camera {name!r}: declared {image.height}x{image.width} but the {kind} data is "
                                 f"{height}x{width}")
            frame = np.asarray(img.convert("RGB"))
    except InputError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data
        raise InputError(f"camera {name!r}: cannot decode the {kind} data ({type(exc).__name__}: {exc})") from None
    return frame


def _check_size(name: str, height: int, width: int, max_pixels: int) -> None:
    if height > MAX_SIDE or width > MAX_SIDE:
        raise InputError(f"camera {name!r}: {height}x{width} exceeds the {MAX_SIDE}-pixel limit per side")
    if height * width > max_pixels:
        raise InputError(f"camera {name!r}: {height}x{width} is {height * width:,} pixels, over this server's limit "
                         f"of {max_pixels:,} (max_pixels); send a smaller frame (the model resizes it to its input "
                         "size anyway)")


def decode_images(images: Iterable[pb.Image], camera_keys: list[str],
                  max_pixels: int = MAX_PIXELS) -> dict[str, np.ndarray]:
    """Messages -> {full camera key: uint8 (H, W, 3)}, exactly one per camera in ``camera_keys``, each at most
    ``max_pixels``."""
    known = set(camera_keys)
    frames: dict[str, np.ndarray] = {}
    for image in images:
        key = full_key(image.camera)
        if key not in known:
            raise InputError(f"unknown camera {image.camera!r}; the model uses {', '.join(camera_keys)}")
        if key in frames:
            raise InputError(f"camera {image.camera!r} given twice")
        frames[key] = decode_image(image, max_pixels)
    missing = [k for k in camera_keys if k not in frames]
    if missing:
        raise InputError(f"missing camera(s) {', '.join(missing)}; the model uses {', '.join(camera_keys)}")
    return frames
