"""Small synthetic CT series for the exchange tests: the fixture's JPEG slices turned back into
Hounsfield units through the lung window and written as DICOM CT instances with pydicom."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lung_model.imaging.dicom import LUNG_WINDOW_LEVEL, LUNG_WINDOW_WIDTH
from lung_model.settings import PROJECT_ROOT

FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"


def fixture_slices(count: int) -> list[Path]:
    """`count` fixture JPEGs, the malignant ones first (the tiny model calls them so)."""
    found = sorted((FIXTURE / "Malignant cases").glob("*.jpg"))
    found += sorted((FIXTURE / "Normal cases").glob("*.jpg"))
    found += sorted((FIXTURE / "Bengin cases").glob("*.jpg"))
    return [found[i % len(found)] for i in range(count)]


@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    files: list[Path]
    sop_uids: list[str]


def ct_instance(
    gray: np.ndarray, study_uid: str, series_uid: str, number: int, *, modality: str = "CT"
) -> Dataset:
    """One CT slice whose HU through the lung window give `gray` (0..255) back."""
    hu = (
        gray.astype(np.float32) / 255.0 * LUNG_WINDOW_WIDTH
        + LUNG_WINDOW_LEVEL
        - LUNG_WINDOW_WIDTH / 2
    )
    stored = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.Modality = modality
    ds.PatientName, ds.PatientID = "Test^Lung", "LUNG-TEST-1"
    ds.PatientBirthDate, ds.PatientSex = "19600101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC1", ""
    ds.StudyDate, ds.StudyTime = "20261203", "101500"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid])
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = stored.tobytes()
    return ds


def write_series(
    folder: Path, count: int, *, size: int = 128, study_uid: str | None = None
) -> Series:
    """A CT series of `count` slices (downsized to `size` px) as files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = study_uid or generate_uid(), generate_uid()
    files, uids = [], []
    for number, source in enumerate(fixture_slices(count), start=1):
        gray = np.asarray(Image.open(source).convert("L").resize((size, size)))
        ds = ct_instance(gray, study_uid, series_uid, number)
        path = folder / f"{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        uids.append(str(ds.SOPInstanceUID))
    return Series(study_uid, series_uid, files, uids)
