# SPDX-License-Identifier: Apache-2.0
"""Conversion between ROS image messages and numpy arrays.

Decoding uses ``cv_bridge`` where a ROS install provides a working one, and
``rosbags-image`` otherwise (the PyPI ``cv-bridge`` is the ROS 1 port and
breaks on numpy 2). Either way a message is checked first, so a bad frame
(zero size, wrong step, truncated data, unknown encoding, undecodable bytes)
raises :class:`ImageFormatError` with the reason instead of producing a wrong
image or an obscure numpy error.

Decoding takes any object with the fields of ``sensor_msgs/Image`` or
``sensor_msgs/CompressedImage``; only the encoders import ``sensor_msgs``.
"""

from __future__ import annotations

import array
import sys
from types import SimpleNamespace

import cv2
import numpy as np

from dynvit_ros.ros.diagnostics import quote


class ImageFormatError(ValueError):
    """An image message that cannot be turned into an RGB frame."""


# encoding -> (bytes per pixel). Only encodings that make sense as camera input
# for segmentation; float / depth images are refused.
ENCODINGS: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "rgb16": 6,
    "bgr16": 6,
    "rgba16": 8,
    "bgra16": 8,
    "mono16": 2,
    "bayer_rggb8": 1,
    "bayer_bggr8": 1,
    "bayer_gbrg8": 1,
    "bayer_grbg8": 1,
    "uyvy": 2,
    "yuv422": 2,
    "yuyv": 2,
    "yuv422_yuy2": 2,
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
MAX_SIDE = 16384
MAX_PIXELS = 4096 * 4096


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"zero-size image ({width}x{height})")
    if height > MAX_SIDE or width > MAX_SIDE or width * height > max_pixels:
        raise ImageFormatError(
            f"image too large ({width}x{height} = {width * height} pixels; at most "
            f"{max_pixels} pixels and {MAX_SIDE} per side)"
        )


def check_image(msg, max_pixels: int = MAX_PIXELS) -> int:
    """Validate an Image message's geometry; return the bytes per row it holds."""
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageFormatError(
            f"unsupported encoding {quote(encoding, 64)}; supported: {', '.join(ENCODINGS)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(width, height, max_pixels)
    row = width * ENCODINGS[encoding]
    if step < row:
        raise ImageFormatError(
            f"step {step} is less than width*bytes_per_pixel = {width}*"
            f"{ENCODINGS[encoding]} = {row} for {encoding}"
        )
    size = len(msg.data)
    if size != step * height:
        what = "truncated data" if size < step * height else "too much data"
        raise ImageFormatError(
            f"{what}: {size} bytes, expected step*height = {step}*{height} = {step * height}"
        )
    return row


def _packed(msg, row: int) -> object:
    """A message whose rows carry no padding (rosbags-image ignores ``step``)."""
    if int(msg.step) == row:
        return msg
    rows = np.frombuffer(msg.data, np.uint8).reshape(int(msg.height), int(msg.step))[:, :row]

    return SimpleNamespace(
        encoding=msg.encoding,
        height=msg.height,
        width=msg.width,
        is_bigendian=msg.is_bigendian,
        step=row,
        data=np.ascontiguousarray(rows).tobytes(),
    )


class _RosbagsBackend:
    name = "rosbags-image"

    def __init__(self):
        from rosbags.image import image_to_cvimage
        from rosbags.image.image import ImageError

        self._convert, self._errors = image_to_cvimage, ImageError

    def to_rgb(self, msg, row: int) -> np.ndarray:
        try:
            return self._convert(_packed(msg, row), "rgb8")
        except (self._errors, cv2.error, ValueError, TypeError) as exc:
            raise ImageFormatError(f"cannot convert {msg.encoding} to rgb8: {exc}") from exc


class _CvBridgeBackend:
    name = "cv_bridge"

    def __init__(self):
        from cv_bridge import CvBridge, CvBridgeError

        self._bridge, self._errors = CvBridge(), CvBridgeError
        probe = SimpleNamespace(
            height=2,
            width=2,
            encoding="bgr8",
            is_bigendian=0,
            step=6,
            data=array.array("B", [1, 2, 3] * 4),
        )
        out = self._bridge.imgmsg_to_cv2(probe, desired_encoding="rgb8")
        if out.shape != (2, 2, 3) or out[0, 0].tolist() != [3, 2, 1]:
            raise RuntimeError("cv_bridge returned a wrong image")

    def to_rgb(self, msg, row: int) -> np.ndarray:
        try:
            return self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except (self._errors, cv2.error, ValueError, TypeError) as exc:
            raise ImageFormatError(f"cannot convert {msg.encoding} to rgb8: {exc}") from exc


_backend = None


def backend():
    """The decoder in use: cv_bridge if importable and working, else rosbags-image."""
    global _backend
    if _backend is None:
        try:
            _backend = _CvBridgeBackend()
        except Exception:  # missing, or the PyPI ROS 1 port failing on numpy 2
            _backend = _RosbagsBackend()
    return _backend


def image_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB."""
    row = check_image(msg, max_pixels)
    rgb = backend().to_rgb(msg, row)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageFormatError(
            f"conversion of {msg.encoding} gave {rgb.dtype} {rgb.shape}, not rgb8"
        )
    return rgb


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None if not recognised."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(
                data[i + 5 : i + 7], "big"
            )
        i += 2 + length
    return None


def compressed_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB.

    The size is read from the header and checked before anything is decoded
    (a small file can declare a huge image). Decoded with OpenCV directly:
    rosbags-image asserts on undecodable bytes and keeps grey images single-channel.
    """
    fmt = (msg.format or "").lower()
    if (fmt and not any(name in fmt for name in COMPRESSED_FORMATS)) or "compresseddepth" in fmt:
        raise ImageFormatError(
            f"unsupported compressed format {quote(msg.format, 64)}; expected jpeg or png"
        )
    if len(msg.data) == 0:
        raise ImageFormatError("empty compressed image")
    data = bytes(msg.data)
    size = encoded_size(data)
    if size is None:
        raise ImageFormatError(
            f"not a PNG or JPEG image ({len(data)} bytes, format {quote(msg.format, 64)})"
        )
    check_size(*size, max_pixels)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageFormatError(
            f"cannot decode compressed image ({len(msg.data)} bytes, "
            f"format {quote(msg.format, 64)})"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Either message type -> (H, W, 3) uint8 RGB, refusing frames above ``max_pixels``."""
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, max_pixels)
    return image_to_rgb(msg, max_pixels)


def to_image_msg(pixels: np.ndarray, encoding: str, header=None):
    """(H, W) mono8 or (H, W, 3) rgb8/bgr8 uint8 array -> sensor_msgs/Image with ``header``."""
    from sensor_msgs.msg import Image

    pixels = np.ascontiguousarray(pixels)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.dtype != np.uint8 or ENCODINGS.get(encoding) != channels:
        raise ValueError(f"cannot publish {pixels.dtype} {pixels.shape} as {encoding}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = msg.width * channels
    msg.data = array.array("B", pixels.tobytes())
    return msg


def rgb_to_compressed_msg(rgb: np.ndarray, header=None, fmt: str = "jpeg", quality: int = 90):
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (used by tests and benchmarks)."""
    from sensor_msgs.msg import CompressedImage

    ext = ".png" if fmt == "png" else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError("cv2.imencode failed")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = array.array("B", data.tobytes())
    return msg
