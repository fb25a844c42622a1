"""CT series made from 2-D slices (the dataset's JPEG exports), for the demo's hospital loop,
the tests and the benchmark: each gray level is mapped back to Hounsfield units through the
lung window the decoder applies (`imaging.dicom.lung_window`), so the decoder gives the
slice back (to the nearest HU), and written as one DICOM CT instance per slice (Explicit VR
Little Endian). UIDs are derived from `seed`, so the same call writes the same series.

The stored values start at `HU_FLOOR`, below the window's lowest HU: starting at -1024 HU
clipped the darkest 55 gray levels, so the demo's PACS study lost its background noise and
the scoring guard called it unlike training (noise 0.0007 against the slices' 0.007)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lung_model.exchange.documents import derived_uid
from lung_model.imaging.dicom import LUNG_WINDOW_LEVEL, LUNG_WINDOW_WIDTH

HU_FLOOR = -2048  # the stored value 0 (RescaleIntercept); 12 bits reach +2047 HU


@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    files: list[Path]
    sop_uids: list[str]


def ct_instance(
    gray: np.ndarray,
    study_uid: str,
    series_uid: str,
    number: int,
    sop_uid: str,
    *,
    modality: str = "CT",
) -> object:
    """One slice (`gray`, 0..255) as a CT instance whose lung window gives it back."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

    window_low = LUNG_WINDOW_LEVEL - LUNG_WINDOW_WIDTH / 2
    hu = gray.astype(np.float32) / 255.0 * LUNG_WINDOW_WIDTH + window_low
    stored = np.clip(np.round(hu - HU_FLOOR), 0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.Modality = modality
    ds.PatientName, ds.PatientID = "Demo^Lung", "LUNG-DEMO-1"
    ds.PatientBirthDate, ds.PatientSex = "19600101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC1", ""
    ds.StudyDate, ds.StudyTime = "20261203", "101500"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.FrameOfReferenceUID = derived_uid(series_uid, "frame of reference")
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = HU_FLOOR, 1, "HU"
    ds.PixelData = stored.tobytes()
    return ds


def write_series(folder: Path, sources: list[Path], seed: str, size: int | None = None) -> Series:
    """The slices `sources` (any image PIL reads, as gray) as one CT series in `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = derived_uid(seed, "study"), derived_uid(seed, "series")
    files, uids = [], []
    for number, source in enumerate(sources, start=1):
        image = Image.open(source).convert("L")
        if size:
            image = image.resize((size, size))
        sop_uid = derived_uid(seed, "instance", str(number))
        ds = ct_instance(np.asarray(image), study_uid, series_uid, number, sop_uid)
        path = folder / f"{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]
        files.append(path)
        uids.append(sop_uid)
    return Series(study_uid, series_uid, files, uids)
