"""Decode one slice file into a grayscale array, whatever its format, or say why not.

Formats are recognised by content, not by extension: JPEG and PNG (8- or 16-bit; gray,
palette, RGB, RGBA, CMYK) through Pillow, DICOM through `lung_model.imaging.dicom`. Every decoder
returns a 2-D float32 array in [0, 1]; `lung_model.imaging.preprocess` turns it into model input.
Given `reduce_to` (the model's input size), a JPEG is decoded at the strongest DCT reduction
(1/2, 1/4 or 1/8, libjpeg's scaled IDCT) that keeps its longer side at least that large:
several times cheaper than decoding 512x512 and resizing. Training and serving both read
files this way (`lung_model.imaging.preprocess.load_file`), so they see the same pixels.
Anything that cannot be scored raises `UnreadableImage` (`lung_model.imaging.errors`) whose message is the reason stored
with the quarantined file: empty, truncated, not an image, animated, decompression bombs
and absurd sizes are refused before their pixels are decoded.
See https://pillow.readthedocs.io/en/stable/reference/Image.html
"""

from __future__ import annotations

import io
import math
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from lung_model.imaging.dicom import decode_dicom
from lung_model.imaging.errors import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    DecodedImage,
    UnreadableImage,
)


def _looks_like_bare_dicom(head: bytes) -> bool:
    """A DICOM data set written without the 128-byte preamble and `DICM` prefix: it starts
    with a (0002,xxxx) or (0008,xxxx) tag, little endian (explicit or implicit VR) or big."""
    if len(head) < 8:
        return False
    vr = head[4:6]
    if head[:2] in (b"\x00\x02", b"\x00\x08"):  # big endian: explicit VR only
        return vr.isalpha() and vr.isupper()
    if head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    if vr.isalpha() and vr.isupper():
        return True  # explicit VR
    length = int.from_bytes(head[4:8], "little")
    return head[2:4] in (b"\x00\x00", b"\x05\x00", b"\x08\x00", b"\x16\x00") and length < 1024


def sniff_format(head: bytes) -> str:
    """The file's format from its first bytes (at least 132 of them when the file has)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if _looks_like_bare_dicom(head):
        return "dicom"
    return "unknown"


def _to_unit_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to float32 gray in [0, 1]; 16-bit keeps its full range."""
    # np.asarray(image) then astype: asking asarray for float32 directly takes a slow
    # element-by-element path (about 20 times slower for a 512x512 slice).
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image).astype(np.float32)
        return np.clip(pixels / np.float32(65535.0), 0.0, 1.0)
    if image.mode == "F":
        return np.clip(np.asarray(image).astype(np.float32), 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)  # transparent means air: black
    gray = image if image.mode == "L" else image.convert("L")  # CMYK, RGB, P, 1: 601 luma
    pixels = np.asarray(gray).astype(np.float32)
    pixels /= np.float32(255.0)
    return pixels


def _draft_size(width: int, height: int, reduce_to: int) -> tuple[int, int]:
    """The size to ask `Image.draft` for: the longer side scaled to `reduce_to` (Pillow then
    picks the largest DCT scale whose output is at least this big on both sides)."""
    scale = min(1.0, reduce_to / max(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def decode_raster(data: bytes, kind: str, reduce_to: int | None = None) -> DecodedImage:
    """JPEG or PNG bytes to gray; refuses bombs, animations and truncated files."""
    try:
        with Image.open(io.BytesIO(data), formats=[kind.upper()]) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UnreadableImage(f"image too large: {width}x{height} pixels")
            if min(width, height) < MIN_SIDE:
                raise UnreadableImage(f"image too small: {width}x{height} pixels")
            if getattr(image, "n_frames", 1) > 1:
                raise UnreadableImage("animated or multi-image file: one slice per file expected")
            if kind == "jpeg":  # libjpeg emits luma itself, at a reduced scale if asked
                image.draft("L", _draft_size(width, height, reduce_to or max(width, height)))
            image.load()
            gray = _to_unit_gray(image)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as error:
        raise UnreadableImage(f"decompression bomb refused: {error}") from error
    except UnidentifiedImageError as error:
        raise UnreadableImage(f"not a decodable {kind} image") from error
    except Exception as error:  # truncated or corrupt data: Pillow raises many kinds
        raise UnreadableImage(f"corrupt {kind} image: {error}") from error
    return DecodedImage(gray=gray, format=kind, width=width, height=height)


def decode_bytes(
    data: bytes, *, id_key: bytes | None = None, reduce_to: int | None = None
) -> DecodedImage:
    """Decode a whole file's bytes; `id_key` keys the hash of DICOM patient identifiers;
    `reduce_to` allows a JPEG's longer side to be decoded down to that many pixels."""
    if not data:
        raise UnreadableImage("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise UnreadableImage(f"file too large: {len(data)} bytes (limit {MAX_FILE_BYTES})")
    kind = sniff_format(data[:132])
    if kind in ("jpeg", "png"):
        return decode_raster(data, kind, reduce_to)
    if kind == "dicom":
        return decode_dicom(data, id_key=id_key)
    if kind == "gif":
        raise UnreadableImage("GIF is not a supported slice format (JPEG, PNG or DICOM)")
    raise UnreadableImage("not a JPEG, PNG or DICOM file")


def _open_regular(path: Path) -> BinaryIO:
    """A regular file opened for reading, refusing symlinks, devices and FIFOs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if Path(path).is_symlink():
            raise UnreadableImage("symbolic link: not followed") from error
        raise UnreadableImage(f"cannot open: {error.strerror}") from error
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise UnreadableImage("not a regular file")
    return handle


def read_limited(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, refusing symlinks, devices, FIFOs and files over `limit`."""
    with _open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise UnreadableImage(f"file too large: {size} bytes (limit {limit})")
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise UnreadableImage(f"file too large: over {limit} bytes")
    return data


def read_head(path: Path, size: int) -> bytes:
    """A regular file's first `size` bytes, opened as `read_limited` opens it."""
    with _open_regular(path) as handle:
        return handle.read(size)


def read_gray(path: Path, reduce_to: int | None = None) -> DecodedImage:
    """Decode the file at `path` (full size unless `reduce_to`, see `decode_bytes`)."""
    return decode_bytes(read_limited(Path(path)), reduce_to=reduce_to)
