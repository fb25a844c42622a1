"""Decode one DICOM CT slice into the lung-window gray image the model reads, or say why not.

Stored values go through the modality LUT (Rescale Slope / Intercept) to Hounsfield units,
then a lung window (level -600 HU, width 1500 HU) maps them to [0, 1], air dark and bone
bright like the JPEG exports the model is trained on. Hounsfield units are physical, so a
MONOCHROME1 slice gives the same picture as a MONOCHROME2 one with the same HU (the
photometric interpretation only tells a viewer how to paint them). Compressed transfer
syntaxes decode through the installed plugins (pylibjpeg's for JPEG, JPEG 2000, HTJ2K and
RLE, CharLS for JPEG-LS; the fastest where several could, `FASTEST_DECODERS`) or pydicom
itself (deflate); others are refused with the syntax named. Non-CT
modalities, colour, multi-frame and absurd sizes are refused, and so is what a scanner sends
with modality CT beside its axial slices: secondary captures, localizers (scouts), coronal
and sagittal reformats. Pixels a file marks as padding (outside the scanner's field of view),
and any at or below `PADDING_HU`, are read as air, `AIR_HU`. The patient's identifiers
never leave this module in clear: only a keyed hash (HMAC-SHA256) of the PatientID.
See https://pydicom.github.io/pydicom/stable/reference/pixels.html
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.imaging.errors import MAX_PIXELS, MIN_SIDE, DecodedImage, UnreadableImage
from lung_model.platform.keys import PATIENT_KEY_FILE, keyed_hash, site_key

LUNG_WINDOW_LEVEL = -600.0  # HU
LUNG_WINDOW_WIDTH = 1500.0  # HU
# the storage classes of reconstructed CT images (Enhanced and Legacy Converted are
# multi-frame, refused for that); a scanner also sends Modality CT as Secondary Capture (dose
# report screenshots, captured reformats), which are not slices in HU
CT_IMAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
)
# what the pixels outside the field of view (Pixel Padding Value, often -2000 or -3024 HU) are
# shown as: air, as the exports the model learned from show them. Left as stored they are
# black in the lung window, and on version 1's test split that changed 6.5% of slice calls
# and raised those of malignant (normal slices 18.8% -> 20.3%, malignant 0.969 -> 0.990)
AIR_HU = -1000.0
# at or below this, a pixel is padding whatever the file says: nothing in a body or around it
# is that low (air is -1000 HU), and scanners that leave their padding unmarked write -2000,
# -2048 or -3024 HU there (this project's synthetic series go no lower than -1350)
PADDING_HU = -2000.0
# where several installed plugins decode a syntax, the fastest on 512-px 12-bit CT slices
# (bench/bench_decode.py): CharLS (pyjpegls) decodes JPEG-LS in a quarter of libjpeg's time,
# and pylibjpeg-rle RLE in a tenth of pydicom's numpy decoder's
FASTEST_DECODERS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "pylibjpeg",  # RLE lossless
}
# |cosine| of the slice normal to the patient's head-to-feet axis below which a slice is not
# axial (45 degrees): gantry tilts stay well above it, coronal and sagittal reformats at 0
AXIAL_MIN_COSINE = 0.7


def patient_key(secrets_dir: Path) -> bytes:
    """The site's key for hashing patient identifiers (see `lung_model.platform.keys`)."""
    return site_key(secrets_dir / PATIENT_KEY_FILE)


def pseudonym(value: str, key: bytes) -> str:
    """A stable keyed hash of an identifier: equal IDs match, the ID cannot be read back."""
    return keyed_hash(value.strip(), key)


def lung_window(hu: np.ndarray) -> np.ndarray:
    """Hounsfield units to [0, 1] through the lung window."""
    low = LUNG_WINDOW_LEVEL - LUNG_WINDOW_WIDTH / 2
    return np.clip((hu - low) / LUNG_WINDOW_WIDTH, 0.0, 1.0).astype(np.float32)


SERIES_TAGS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ConvolutionKernel",
)


def series_attributes(head: bytes) -> dict[str, str] | None:
    """`SERIES_TAGS` of a DICOM file from its first bytes (its pixel data need not be among
    them), whitespace collapsed; None when it names no series or cannot be read."""
    try:
        ds = _read(head, stop_before_pixels=True, specific_tags=list(SERIES_TAGS))
    except UnreadableImage:
        return None
    found = {tag: " ".join(str(ds.get(tag, "") or "").split()) for tag in SERIES_TAGS}
    return found if found["SeriesInstanceUID"] else None


def _read(data: bytes, **options: Any) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    # Value validation would warn with the offending value, which may be a patient's name.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True, **options)
    except InvalidDicomError as error:
        raise UnreadableImage(f"not a readable DICOM file: {error}") from error
    except Exception as error:  # truncated or malformed element structure
        raise UnreadableImage(f"corrupt DICOM file: {type(error).__name__}") from error


def decodable_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes whose pixel data `decode_dicom` decodes here, uncompressed first:
    what the DICOM receiver accepts, so a sender need not transcode what is read anyway."""
    from pydicom.uid import AllTransferSyntaxes

    found = [s for s in AllTransferSyntaxes if not s.is_compressed or _decoder_available(s)]
    return [str(s) for s in sorted(found, key=lambda s: s.is_compressed)]


def _decoder_available(transfer_syntax: Any) -> bool:
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:  # video, audio and referenced pixel data
        return False


def _decoder_plugin(transfer_syntax: Any) -> str:
    """The plugin to decode compressed pixel data with ('' for pydicom's choice); refuses,
    with the syntax named, pixel data no installed plugin can decode."""
    from pydicom.pixels.decoders.base import get_decoder

    name = f"{transfer_syntax.name} ({transfer_syntax})"
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as error:
        raise UnreadableImage(f"no DICOM decoder exists for transfer syntax {name}") from error
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise UnreadableImage(f"compressed DICOM ({name}) cannot be decoded here: needs {missing}")
    faster = FASTEST_DECODERS.get(str(transfer_syntax), "")
    return faster if faster in decoder.available_plugins else ""


def _check_slice(ds: Any) -> tuple[int, int]:
    """Refuse what is not one monochrome CT slice of a sane size; return (width, height)."""
    if "PixelData" not in ds:
        kind = (
            "float or double" if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else "no"
        )
        raise UnreadableImage(f"DICOM object has {kind} pixel data: not an image slice")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality != "CT":
        raise UnreadableImage(f"DICOM modality {modality or 'missing'} is not CT: CT slices only")
    _check_axial_image(ds)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImage(
            f"DICOM photometric interpretation {photometric or 'missing'}: CT slices are monochrome"
        )
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        height, width = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as error:
        raise UnreadableImage("DICOM image size or frame count missing or invalid") from error
    if frames != 1:
        raise UnreadableImage(f"multi-frame DICOM ({frames} frames): one slice per file expected")
    if width * height > MAX_PIXELS:
        raise UnreadableImage(f"image too large: {width}x{height} pixels")
    if min(width, height) < MIN_SIDE:
        raise UnreadableImage(f"image too small: {width}x{height} pixels")
    return width, height


def _check_axial_image(ds: Any) -> None:
    """Refuse what a CT scanner sends beside its axial slices: secondary captures (dose
    reports), localizers (scouts) and coronal or sagittal reformats. The model learned from
    axial slices; scored, any of these would count as one of the study's slices."""
    from pydicom.uid import UID

    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    if sop_class and sop_class not in CT_IMAGE_CLASSES:
        raise UnreadableImage(
            f"DICOM {UID(sop_class).name or sop_class} with modality CT is not a CT image "
            "(a dose report or captured screen): axial CT slices only"
        )
    image_type = ds.get("ImageType") or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    if "LOCALIZER" in (str(v).strip().upper() for v in values):
        raise UnreadableImage("DICOM CT localizer (scout) image: axial CT slices only")
    plane = _plane(ds.get("ImageOrientationPatient"))
    if plane != "axial":
        raise UnreadableImage(f"DICOM CT {plane} slice (ImageOrientationPatient): axial only")


def _plane(orientation: Any) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' from the row and column direction cosines;
    'axial' when the file does not give them (nothing says otherwise)."""
    try:
        cosines = np.asarray([float(v) for v in orientation], dtype=np.float64)
    except (TypeError, ValueError):
        return "axial"
    if cosines.shape != (6,) or not np.isfinite(cosines).all():
        return "axial"
    normal = np.cross(cosines[:3], cosines[3:])
    length = float(np.linalg.norm(normal))
    if not length:
        return "axial"
    normal = np.abs(normal / length)
    if normal[2] >= AXIAL_MIN_COSINE:
        return "axial"
    if normal.max() >= AXIAL_MIN_COSINE:
        return "sagittal" if normal[0] >= AXIAL_MIN_COSINE else "coronal"
    return "oblique"


def decode_dicom(data: bytes, *, id_key: bytes | None = None) -> DecodedImage:
    """One CT slice from a DICOM file's bytes; `id_key` (see `patient_key`) keys the
    patient hash, which is left out without it."""
    from pydicom.pixels import apply_modality_lut
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = _read(data)
    width, height = _check_slice(ds)
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
    if transfer_syntax is None:  # a bare data set: say what pydicom found it to be
        implicit, little = ds.original_encoding
        transfer_syntax = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    if not transfer_syntax.is_transfer_syntax:
        raise UnreadableImage(f"unknown DICOM transfer syntax {transfer_syntax}")
    if transfer_syntax.is_compressed:
        ds.pixel_array_options(decoding_plugin=_decoder_plugin(transfer_syntax))
    try:
        stored = ds.pixel_array
    except Exception as error:  # corrupt or truncated pixel data, codec errors
        raise UnreadableImage(f"DICOM pixel data cannot be decoded: {error}") from error
    if stored.shape != (height, width):
        raise UnreadableImage(f"DICOM pixel data has shape {stored.shape}, expected one slice")
    try:
        hu = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    except Exception as error:
        raise UnreadableImage(f"DICOM rescale to Hounsfield units failed: {error}") from error
    if not np.isfinite(hu).all():
        raise UnreadableImage("DICOM rescale gives non-finite Hounsfield units")
    padded = hu <= PADDING_HU
    if (marked := _padding(stored, ds)) is not None:
        padded |= marked
    hu[padded] = AIR_HU
    patient = str(ds.get("PatientID", "") or "").strip()
    try:
        instance = int(ds.get("InstanceNumber")) if ds.get("InstanceNumber") is not None else None
    except (TypeError, ValueError):
        instance = None
    return DecodedImage(
        gray=lung_window(hu),
        format="dicom",
        width=width,
        height=height,
        patient_hash=pseudonym(patient, id_key) if (patient and id_key) else None,
        instance_number=instance,
        pixel_spacing=_pixel_spacing(ds),
    )


def _padding(stored: np.ndarray, ds: Any) -> np.ndarray | None:
    """The pixels outside the scanner's field of view: stored values equal to Pixel Padding
    Value, or between it and Pixel Padding Range Limit (DICOM PS3.3 C.7.5.1.1.2); None when
    the file names no padding."""
    value, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")
    try:
        low, high = sorted((int(value), int(limit if limit is not None else value)))
    except (TypeError, ValueError):
        return None
    return (stored >= low) & (stored <= high)


def _pixel_spacing(ds: Any) -> tuple[float, float] | None:
    """(row, column) spacing in mm, when the file gives two positive numbers."""
    try:
        row, column = (float(v) for v in ds.get("PixelSpacing") or ())
    except (TypeError, ValueError):
        return None
    return (row, column) if row > 0 and column > 0 else None
