"""Decoding slices by content: every mode we accept, and every file we must refuse."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lung_model.imaging.errors import MAX_FILE_BYTES, UnreadableImage
from lung_model.imaging.images import decode_bytes, read_gray, read_limited, sniff_format
from lung_model.settings import PROJECT_ROOT

REAL_SLICE = PROJECT_ROOT / "data" / "raw" / "Normal cases" / "Normal case (1).jpg"
WIDE_SLICE = (
    Path(__file__).parents[1]
    / "fixtures"
    / "iq-othnccd"
    / "Malignant cases"
    / "Malignant case (200).jpg"
)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


GRADIENT = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.fromarray(GRADIENT), "PNG"),
        (Image.fromarray(GRADIENT), "JPEG"),
        (Image.fromarray(GRADIENT).convert("RGB"), "JPEG"),
        (Image.fromarray(GRADIENT).convert("RGB"), "PNG"),
        (Image.fromarray(GRADIENT).convert("CMYK"), "JPEG"),
        (Image.fromarray(GRADIENT).convert("P"), "PNG"),
        (Image.fromarray(GRADIENT).convert("RGBA"), "PNG"),
        (Image.fromarray(GRADIENT).convert("LA"), "PNG"),
    ],
    ids=["L.png", "L.jpg", "RGB.jpg", "RGB.png", "CMYK.jpg", "P.png", "RGBA.png", "LA.png"],
)
def test_every_mode_decodes_to_the_same_gray(image: Image.Image, fmt: str) -> None:
    decoded = decode_bytes(encode(image, fmt, **({"quality": 98} if fmt == "JPEG" else {})))

    assert decoded.gray.dtype == np.float32 and decoded.gray.shape == (48, 64)
    assert (decoded.width, decoded.height, decoded.format) == (64, 48, fmt.lower())
    assert np.abs(decoded.gray - GRADIENT / 255.0).max() < 0.05


def test_sixteen_bit_png_keeps_its_full_range() -> None:
    deep = (np.arange(64 * 32).reshape(32, 64) * 32).astype(np.uint16)  # up to 65504

    decoded = decode_bytes(encode(Image.fromarray(deep), "PNG"))

    assert decoded.gray.max() == pytest.approx(65504 / 65535) and decoded.gray[0, 1] > 0
    assert np.allclose(decoded.gray, deep / 65535.0, atol=1e-6)


def test_transparent_pixels_are_air() -> None:
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:, 16:, 3] = 255  # left half fully transparent white

    gray = decode_bytes(encode(Image.fromarray(rgba), "PNG")).gray

    assert gray[:, :16].max() == 0.0 and gray[:, 16:].min() == 1.0


def test_a_real_slice_decodes() -> None:
    decoded = read_gray(REAL_SLICE)

    assert decoded.gray.shape == (512, 512) and 0.05 < float(decoded.gray.mean()) < 0.9


def test_jpeg_is_decoded_at_reduced_scale_when_asked() -> None:
    full = read_gray(REAL_SLICE)
    reduced = read_gray(REAL_SLICE, reduce_to=128)  # 512 -> 1/4 DCT scale

    assert reduced.gray.shape == (128, 128) and (reduced.width, reduced.height) == (512, 512)
    box_mean = full.gray.reshape(128, 4, 128, 4).mean(axis=(1, 3))  # the same picture
    assert np.abs(reduced.gray - box_mean).mean() < 0.02
    assert read_gray(REAL_SLICE, reduce_to=100).gray.shape == (128, 128)  # never below
    assert read_gray(REAL_SLICE, reduce_to=300).gray.shape == (512, 512)  # no 1/1.7 scale


def test_reduced_scale_keeps_the_aspect_and_leaves_png_alone() -> None:
    wide = read_gray(WIDE_SLICE, reduce_to=128)
    png = decode_bytes(encode(Image.fromarray(GRADIENT), "PNG"), reduce_to=16)

    assert wide.gray.shape == (128, 201) and (wide.width, wide.height) == (801, 512)
    assert png.gray.shape == GRADIENT.shape


def test_format_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "slice.dcm"
    misnamed.write_bytes(encode(Image.fromarray(GRADIENT), "PNG"))

    assert read_gray(misnamed).format == "png"
    assert sniff_format(b"GIF89a" + bytes(200)) == "gif"
    assert sniff_format(bytes(128) + b"DICM" + bytes(10)) == "dicom"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions (a classic decompression bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file", "not a JPEG, PNG or DICOM file"),
        (os.urandom(4096), "not a JPEG, PNG or DICOM file"),
        (b"\xff\xd8\xff" + bytes(100), "not a decodable jpeg image"),
        (REAL_SLICE.read_bytes()[:5000], "corrupt jpeg image"),
        (encode(Image.fromarray(GRADIENT), "PNG")[:-30], "corrupt png image"),
        (_png_header_only(100_000, 100_000), "decompression bomb refused"),
        (_png_header_only(5000, 5000), "image too large: 5000x5000 pixels"),
        (encode(Image.new("L", (8, 600)), "PNG"), "image too small: 8x600 pixels"),
        (encode(Image.new("L", (64, 64)), "GIF"), "GIF is not a supported slice format"),
    ],
    ids=[
        "empty",
        "text",
        "noise",
        "jpeg-garbage",
        "truncated-jpeg",
        "truncated-png",
        "bomb",
        "huge",
        "sliver",
        "gif",
    ],
)
def test_unscorable_files_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableImage, match="^" + reason.replace("(", r"\(")):
        decode_bytes(data)


def test_animated_png_is_refused() -> None:
    frames = [Image.new("L", (32, 32), value) for value in (0, 128)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])

    with pytest.raises(UnreadableImage, match="animated"):
        decode_bytes(buffer.getvalue())


def test_reading_refuses_links_special_files_and_oversized_files(tmp_path: Path) -> None:
    real = tmp_path / "real.jpg"
    real.write_bytes(REAL_SLICE.read_bytes())
    (tmp_path / "link.jpg").symlink_to(real)
    os.mkfifo(tmp_path / "fifo.jpg")
    big = tmp_path / "big.jpg"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk

    assert read_limited(real) == REAL_SLICE.read_bytes()
    with pytest.raises(UnreadableImage, match="symbolic link"):
        read_limited(tmp_path / "link.jpg")
    with pytest.raises(UnreadableImage, match="not a regular file"):
        read_limited(tmp_path / "fifo.jpg")  # returns at once: opened non-blocking
    with pytest.raises(UnreadableImage, match="file too large"):
        read_gray(big)
