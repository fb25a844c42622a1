"""DICOM CT slices from pydicom's bundled test files: HU, window, codecs, refusals, privacy."""

from __future__ import annotations

import io
import stat
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

from lung_model.imaging.dicom import FASTEST_DECODERS, decode_dicom, lung_window, patient_key
from lung_model.imaging.errors import UnreadableImage
from lung_model.imaging.images import decode_bytes, sniff_format

KEY = b"k" * 32


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path))


def ct_small() -> Dataset:
    return pydicom.dcmread(bundled("CT_small.dcm"))


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_ct_slice_goes_through_hounsfield_units_and_the_lung_window() -> None:
    ds = ct_small()
    expected_hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )

    decoded = decode_dicom(to_bytes(ds), id_key=KEY)

    assert (decoded.format, decoded.width, decoded.height) == ("dicom", 128, 128)
    assert np.allclose(decoded.gray, np.clip((expected_hu + 1350) / 1500, 0, 1), atol=1e-6)
    assert lung_window(np.array([-1350.0, -600.0, 150.0])).tolist() == [0.0, 0.5, 1.0]


def test_padding_outside_the_field_of_view_reads_as_air() -> None:
    """A scanner stores the corners outside its circular field of view as Pixel Padding
    Value (pydicom's GE slice names -2000, -3024 HU): black in the lung window, where the
    exports the model learned from show air. Values that low are padding even unmarked; a
    marked padding value is padding whatever its HU."""
    ds = ct_small()
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    stored = ds.pixel_array.copy()
    stored[:16, :16] = round((-3024 - intercept) / slope)  # unmarked, below any tissue
    stored[:16, 16:32] = round((-1500 - intercept) / slope)  # below the window, not padding
    marked = round((-1200 - intercept) / slope)  # a marked padding value
    stored[16:32, :16] = marked
    ds.PixelData = stored.tobytes()
    del ds.PixelPaddingValue
    unmarked = decode_dicom(to_bytes(ds)).gray
    ds.add_new("PixelPaddingValue", "SS", marked)  # signed, as the pixels
    with_tag = decode_dicom(to_bytes(ds)).gray
    air = lung_window(np.array([-1000.0]))[0]

    assert np.allclose(unmarked[:16, :16], air) and np.allclose(with_tag[:16, :16], air)
    assert np.all(unmarked[:16, 16:32] == 0.0) and np.all(with_tag[:16, 16:32] == 0.0)
    assert np.allclose(unmarked[16:32, :16], lung_window(np.array([-1200.0])))
    assert np.allclose(with_tag[16:32, :16], air)
    assert np.array_equal(with_tag[32:, 32:], unmarked[32:, 32:])
    ds.add_new("PixelPaddingRangeLimit", "SS", marked + 10)  # a range of padding values
    stored[16:32, 16:32] = marked + 10
    ds.PixelData = stored.tobytes()
    assert np.allclose(decode_dicom(to_bytes(ds)).gray[16:32, :32], air)


def test_rescale_intercept_and_slope_are_applied() -> None:
    base = decode_dicom(to_bytes(ct_small())).gray
    shifted = ct_small()
    shifted.RescaleIntercept = float(shifted.RescaleIntercept) - 300  # everything 300 HU lower
    steeper = ct_small()
    steeper.RescaleSlope = 2

    low = decode_dicom(to_bytes(shifted)).gray
    inside = (base > 0.25) & (base < 0.95)  # not clipped at either end
    assert np.allclose(low[inside], base[inside] - 300 / 1500, atol=1e-5)
    assert not np.allclose(decode_dicom(to_bytes(steeper)).gray, base)


def test_monochrome1_with_the_same_hounsfield_units_gives_the_same_picture() -> None:
    ds = ct_small()
    ds.PhotometricInterpretation = "MONOCHROME1"

    assert np.array_equal(decode_dicom(to_bytes(ds)).gray, decode_dicom(to_bytes(ct_small())).gray)


def test_compressed_transfer_syntaxes_decode_like_the_uncompressed_slice() -> None:
    reference = decode_dicom(to_bytes(ct_small())).gray
    for syntax in (RLELossless, JPEG2000Lossless, JPEGLSLossless):
        ds = ct_small()
        ds.compress(syntax)
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert np.array_equal(decode_dicom(to_bytes(ds)).gray, reference), syntax.name

    j2k = decode_dicom(bundled("693_J2KI.dcm").read_bytes())  # a real JPEG 2000 CT slice
    assert j2k.gray.shape == (512, 512) and 0.05 < float(j2k.gray.mean()) < 0.95


def test_the_fastest_decoder_of_a_syntax_is_installed_and_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pylibjpeg-rle and CharLS are in the lock for speed (bench/bench_decode.py): without
    them pydicom would silently fall back to a decoder four to ten times slower."""
    from pydicom.pixels.decoders.base import get_decoder

    for syntax, plugin in FASTEST_DECODERS.items():
        assert plugin in get_decoder(UID(syntax)).available_plugins, (syntax, plugin)
    chosen: list[str] = []
    original = Dataset.pixel_array_options
    monkeypatch.setattr(
        Dataset,
        "pixel_array_options",
        lambda self, **options: (
            chosen.append(options["decoding_plugin"]) or original(self, **options)
        ),
    )
    for syntax in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds = ct_small()
        ds.compress(syntax)
        decode_dicom(to_bytes(ds))
    assert chosen == ["pylibjpeg", "pyjpegls", ""]  # JPEG 2000: pydicom's own choice


def test_a_syntax_nobody_can_decode_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydicom.pixels.decoders.base import Decoder

    ds = ct_small()
    ds.compress(RLELossless)
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))  # plugin absent
    with pytest.raises(
        UnreadableImage,
        match=r"compressed DICOM \(RLE Lossless \(1.2.840.10008.1.2.5\)\) cannot be decoded here",
    ):
        decode_dicom(to_bytes(ds))

    monkeypatch.undo()
    unknown = to_bytes(ds).replace(b"1.2.840.10008.1.2.5\x00", b"1.2.840.10008.9.9.9\x00")
    with pytest.raises(UnreadableImage, match="unknown DICOM transfer syntax 1.2.840.10008.9.9.9"):
        decode_dicom(unknown)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_small.dcm", "DICOM modality MR is not CT"),
        ("JPEG2000.dcm", "DICOM modality NM is not CT"),
        ("JPEGLSNearLossless_08.dcm", "DICOM modality missing is not CT"),
        ("rtdose.dcm", "DICOM modality RTDOSE is not CT"),
        ("reportsi.dcm", "DICOM object has no pixel data"),
        ("examples_rgb_color.dcm", "DICOM modality US is not CT"),
    ],
)
def test_what_is_not_one_ct_slice_is_refused(name: str, reason: str) -> None:
    with pytest.raises(UnreadableImage, match=reason):
        decode_bytes(bundled(name).read_bytes())


def test_colour_multi_frame_huge_and_truncated_ct_are_refused() -> None:
    colour = ct_small()
    colour.PhotometricInterpretation = "RGB"
    frames = ct_small()
    frames.NumberOfFrames = 2
    huge = ct_small()
    huge.Rows = huge.Columns = 20_000  # the header lies: refused before any pixel is decoded

    with pytest.raises(UnreadableImage, match="photometric interpretation RGB"):
        decode_dicom(to_bytes(colour))
    with pytest.raises(UnreadableImage, match="multi-frame DICOM"):
        decode_dicom(to_bytes(frames))
    with pytest.raises(UnreadableImage, match="image too large: 20000x20000"):
        decode_dicom(to_bytes(huge))
    with pytest.raises(UnreadableImage):
        decode_bytes(to_bytes(ct_small())[:20_000])


def test_what_a_scanner_sends_beside_its_axial_slices_is_refused_with_what_it_is() -> None:
    """Scouts, dose-report captures and reformats come with modality CT in a real series;
    scored, each would count as one of the study's lung slices."""
    scout = ct_small()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    capture = ct_small()
    capture.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    coronal = ct_small()
    coronal.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    sagittal = ct_small()
    sagittal.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    tilted = ct_small()  # a gantry tilt of 20 degrees is still an axial slice
    tilted.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(0.35)), float(np.sin(0.35))]

    with pytest.raises(UnreadableImage, match=r"localizer \(scout\) image"):
        decode_dicom(to_bytes(scout))
    with pytest.raises(UnreadableImage, match="Secondary Capture Image Storage with modality CT"):
        decode_dicom(to_bytes(capture))
    with pytest.raises(UnreadableImage, match="CT coronal slice"):
        decode_dicom(to_bytes(coronal))
    with pytest.raises(UnreadableImage, match="CT sagittal slice"):
        decode_dicom(to_bytes(sagittal))
    assert np.array_equal(
        decode_dicom(to_bytes(tilted)).gray, decode_dicom(to_bytes(ct_small())).gray
    )


def test_a_data_set_without_preamble_is_recognised() -> None:
    from pydicom.filewriter import write_dataset

    ds = ct_small()
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    bare = buffer.getvalue()

    assert sniff_format(bare[:132]) == "dicom"
    assert decode_bytes(bare).gray.shape == (128, 128)


def test_patient_identifiers_are_only_kept_as_a_keyed_hash() -> None:
    ds = ct_small()
    ds.PatientID, ds.PatientName = "MRN-0042", "Doe^Jane"
    other = ct_small()
    other.PatientID = "MRN-0043"

    decoded = decode_dicom(to_bytes(ds), id_key=KEY)

    assert decoded.patient_hash and len(decoded.patient_hash) == 64
    assert "0042" not in repr(decoded) and "Doe" not in repr(decoded)
    assert decode_dicom(to_bytes(ds), id_key=KEY).patient_hash == decoded.patient_hash
    assert decode_dicom(to_bytes(other), id_key=KEY).patient_hash != decoded.patient_hash
    assert decode_dicom(to_bytes(ds), id_key=b"x" * 32).patient_hash != decoded.patient_hash
    assert decode_dicom(to_bytes(ds)).patient_hash is None  # no key: nothing kept
    assert decoded.instance_number == int(ds.InstanceNumber)


def test_the_patient_key_is_created_once_private_and_shared(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(patient_key(tmp_path / "secrets")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 1 and len(keys[0]) == 32
    key_file = next((tmp_path / "secrets").iterdir())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["patient-id.key"]


def test_pixel_spacing_is_read_when_the_file_gives_it() -> None:
    """Distances on a slice in mm (the explanation's mark distance, issue 22)."""
    ds = ct_small()
    ds.PixelSpacing = [0.7, 0.65]
    assert decode_dicom(to_bytes(ds)).pixel_spacing == (0.7, 0.65)
    del ds.PixelSpacing
    assert decode_dicom(to_bytes(ds)).pixel_spacing is None
    ds.PixelSpacing = [0, 0.7]
    assert decode_dicom(to_bytes(ds)).pixel_spacing is None
