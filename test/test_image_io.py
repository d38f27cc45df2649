# SPDX-License-Identifier: Apache-2.0
"""dynvit_ros.ros.image_io without ROS: messages are plain objects with the message fields."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from dynvit_ros.ros import image_io
from dynvit_ros.ros.image_io import ImageFormatError, compressed_to_rgb, image_to_rgb, to_rgb


def frame(h=6, w=5, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def raw(pixels: np.ndarray, encoding: str, step: int | None = None, bigendian=0, data=None):
    h, w = pixels.shape[:2]
    row = (
        pixels.reshape(h, -1).view(np.uint8) if pixels.dtype != np.uint8 else pixels.reshape(h, -1)
    )
    step = row.shape[1] if step is None else step
    padded = np.zeros((h, step), np.uint8)
    padded[:, : row.shape[1]] = row
    return SimpleNamespace(
        height=h,
        width=w,
        encoding=encoding,
        step=step,
        is_bigendian=bigendian,
        data=padded.tobytes() if data is None else data,
    )


def compressed(data: bytes, fmt="jpeg"):
    return SimpleNamespace(format=fmt, data=data)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_become_rgb(encoding):
    rgb = frame()
    channels = {"rgb8": rgb, "bgr8": rgb[..., ::-1]}.get(encoding)
    if channels is None:
        alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
        channels = np.concatenate([rgb if encoding == "rgba8" else rgb[..., ::-1], alpha], axis=-1)
    out = image_to_rgb(raw(np.ascontiguousarray(channels), encoding))
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_mono_and_16_bit():
    grey = frame()[..., 0].copy()
    out = image_to_rgb(raw(grey, "mono8"))
    assert out.shape == grey.shape + (3,)
    np.testing.assert_array_equal(out[..., 1], grey)
    big = (grey.astype(np.uint16) * 257).astype(">u2")
    out16 = image_to_rgb(raw(big, "mono16", bigendian=1))
    np.testing.assert_array_equal(out16[..., 0], grey)


def test_row_padding_is_ignored():
    rgb = frame(4, 3)
    np.testing.assert_array_equal(image_to_rgb(raw(rgb, "rgb8", step=3 * 3 + 7)), rgb)


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(step=14), "step 14 is less than"),
        (dict(data=b"\0" * 50), "truncated data"),
        (dict(data=b"\0" * 91), "too much data"),
        (dict(encoding="32FC1"), "unsupported encoding"),
        (dict(encoding="nv12"), "unsupported encoding"),
        (dict(height=0, width=0, step=0, data=b""), "zero-size"),
    ],
)
def test_bad_raw_images_raise_with_the_reason(change, reason):
    msg = raw(frame(6, 5), "rgb8")  # step 15, 90 bytes
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageFormatError, match=reason):
        image_to_rgb(msg)


@pytest.mark.parametrize(
    "ext, fmt", [(".png", "png"), (".png", "rgb8; png compressed bgr8"), (".jpg", "jpeg")]
)
def test_compressed(ext, fmt):
    rgb = frame(16, 24)
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = to_rgb(compressed(data.tobytes(), fmt))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)


def test_compressed_grey_png_becomes_three_channels():
    ok, data = cv2.imencode(".png", frame()[..., 0])
    assert compressed_to_rgb(compressed(data.tobytes(), "png")).shape == (6, 5, 3)


@pytest.mark.parametrize(
    "msg, reason",
    [
        (compressed(b""), "empty"),
        (compressed(b"not an image at all"), "not a PNG or JPEG"),
        (compressed(b"\x89PNG", "16UC1; compressedDepth png"), "unsupported compressed format"),
        (compressed(b"xx", "theora"), "unsupported compressed format"),
    ],
)
def test_bad_compressed_images(msg, reason):
    with pytest.raises(ImageFormatError, match=reason):
        compressed_to_rgb(msg)


def test_broken_cv_bridge_falls_back_to_rosbags_image(monkeypatch):
    """The PyPI cv-bridge imports but fails on numpy 2 (ndarray.tostring is gone)."""

    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            return np.zeros(1).tostring()

    fake = types.ModuleType("cv_bridge")
    fake.CvBridge, fake.CvBridgeError = CvBridge, type("CvBridgeError", (Exception,), {})
    monkeypatch.setitem(sys.modules, "cv_bridge", fake)
    monkeypatch.setattr(image_io, "_backend", None)
    assert image_io.backend().name == "rosbags-image"
    np.testing.assert_array_equal(image_to_rgb(raw(frame(), "rgb8")), frame())


def test_working_cv_bridge_is_preferred(monkeypatch):
    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            assert desired_encoding == "rgb8"
            img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
            return img[..., ::-1].copy() if msg.encoding == "bgr8" else img.copy()

    fake = types.ModuleType("cv_bridge")
    fake.CvBridge, fake.CvBridgeError = CvBridge, type("CvBridgeError", (Exception,), {})
    monkeypatch.setitem(sys.modules, "cv_bridge", fake)
    monkeypatch.setattr(image_io, "_backend", None)
    assert image_io.backend().name == "cv_bridge"
    with pytest.raises(ImageFormatError, match="truncated"):  # checked before any backend
        image_to_rgb(raw(frame(), "rgb8", data=b"\0"))


def test_encoders_round_trip():
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS) not importable")
    from std_msgs.msg import Header

    mask = np.arange(30, dtype=np.uint8).reshape(5, 6)
    header = Header(frame_id="cam")
    msg = image_io.to_image_msg(mask, "mono8", header)
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.header.frame_id) == (
        5,
        6,
        6,
        "mono8",
        "cam",
    )
    assert bytes(msg.data) == mask.tobytes()
    rgb = frame()
    np.testing.assert_array_equal(image_to_rgb(image_io.to_image_msg(rgb, "rgb8")), rgb)
    png = image_io.rgb_to_compressed_msg(rgb, fmt="png")
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    with pytest.raises(ValueError):
        image_io.to_image_msg(mask, "rgb8")
