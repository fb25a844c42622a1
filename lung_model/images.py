"""Decode one slice file into a grayscale array, whatever its format, or say why not.

Formats are recognised by content, not by extension. Every decoder returns a 2-D float32
array in [0, 1]; `lung_model.preprocess` turns it into model input. Training and serving
both read files through `read_gray`, so they see the same pixels.
See https://pillow.readthedocs.io/en/stable/reference/Image.html
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 4096 * 4096  # CT slices are 512x512; anything this big is refused
MIN_SIDE = 16


class UnreadableImage(ValueError):
    """The file cannot be scored; the message is the reason stored with the quarantine."""


@dataclass(frozen=True)
class DecodedImage:
    gray: np.ndarray  # (height, width) float32 in [0, 1]
    format: str  # jpeg, png, dicom, ...
    width: int
    height: int


def sniff_format(head: bytes) -> str:
    """The file's format from its first bytes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return "unknown"


def _to_unit_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to float32 gray in [0, 1]; 16-bit keeps its full range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float32)
        return np.clip(pixels / 65535.0, 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    gray = image.convert("L")  # CMYK, RGB, P, 1: ITU-R 601 luma
    return np.asarray(gray, dtype=np.float32) / 255.0


def decode_raster(data: bytes, kind: str) -> DecodedImage:
    """JPEG or PNG bytes to gray; refuses bombs, animations and truncated files."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise UnreadableImage(f"image too large: {width}x{height} pixels")
                if min(width, height) < MIN_SIDE:
                    raise UnreadableImage(f"image too small: {width}x{height} pixels")
                if getattr(image, "n_frames", 1) > 1:
                    raise UnreadableImage("animated image: one slice per file expected")
                image.load()
                gray = _to_unit_gray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(f"decompression bomb refused: {error}") from error
    except UnidentifiedImageError as error:
        raise UnreadableImage(f"not a decodable {kind} image") from error
    except OSError as error:  # truncated or corrupt data
        raise UnreadableImage(f"corrupt {kind} image: {error}") from error
    return DecodedImage(gray=gray, format=kind, width=width, height=height)


def decode_bytes(data: bytes) -> DecodedImage:
    if not data:
        raise UnreadableImage("empty file")
    kind = sniff_format(data[:132])
    if kind in ("jpeg", "png"):
        return decode_raster(data, kind)
    if kind == "dicom":
        from lung_model.dicom import decode_dicom

        return decode_dicom(data)
    if kind == "gif":
        raise UnreadableImage("GIF is not a supported slice format (JPEG, PNG or DICOM)")
    raise UnreadableImage("not a JPEG, PNG or DICOM file")


def read_gray(path: Path) -> DecodedImage:
    """Decode the file at `path` (the one function training and serving both call)."""
    return decode_bytes(Path(path).read_bytes())
