"""What every decoder returns, what it raises, and the sizes it refuses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PIXELS = 4096 * 4096  # CT slices are 512x512; anything this big is refused
MIN_SIDE = 16
MAX_FILE_BYTES = 64 * 1024 * 1024  # a CT slice is well under 1 MiB, even uncompressed DICOM


class UnreadableImage(ValueError):
    """The file cannot be scored; the message is the reason stored with the quarantine."""


@dataclass(frozen=True)
class DecodedImage:
    gray: np.ndarray  # (height, width) float32 in [0, 1]
    format: str  # jpeg, png, dicom, ...
    width: int
    height: int
    patient_hash: str | None = None  # keyed hash of the DICOM PatientID, never the ID itself
    instance_number: int | None = None  # DICOM InstanceNumber: the slice's place in its series
    # DICOM PixelSpacing (mm between rows, mm between columns); None when the file does not say
    pixel_spacing: tuple[float, float] | None = None
