"""One reconstruction a study: a chest CT is often reconstructed twice from the same scan, a
soft-kernel series for the mediastinum and a sharp, thin one for the lungs, and a receiver
that keeps one folder per study gets both. The study rule reads every slice, and a
soft-kernel series is the smoother export this model tends to call malignant (issue 19;
version 1's test split, smoothed: 24.6% of normal slices called malignant against 18.8%).

So when a study's DICOM slices come in more than one axial series (one whose middle slice
decodes: the decoder refuses scouts, captures and reformats itself, with their own reasons),
only one is scored: among those holding at least `MIN_SHARE` of the largest one's slices,
the one whose middle slice is noisiest (`acquisition.noise_level`): the sharp lung kernel,
thinner slices. The other axial series' files are refused with which series was scored
instead, so they end quarantined with that reason; files without a series (JPEG, PNG) are
left alone. The choice depends only on the files, so a rerun or resumed claim makes it again.
Noise does not tell a lung kernel from a sharper bone kernel, which would be chosen: sites
route the lung series (README, hospital integration); the kernel names are vendors' own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lung_model.imaging.acquisition import noise_level
from lung_model.imaging.dicom import series_attributes
from lung_model.imaging.errors import UnreadableImage
from lung_model.imaging.images import decode_bytes, read_head, read_limited, sniff_format
from lung_model.scoring.files import InputFile

HEADER_BYTES = 64 * 1024  # a CT header ends well before this; its pixel data follow
MIN_SHARE = 0.25  # a series under a quarter of the largest one's slices is not chosen


@dataclass(frozen=True)
class Series:
    uid: str
    name: str  # "series 3 'Lung 1.0' (kernel B70f)", for the reasons
    files: tuple[InputFile, ...]


def dicom_header(file: InputFile) -> dict[str, str] | None:
    """The series attributes of a DICOM file; None for any other file or an unreadable one
    (the decoder gives its reason). Only a DICOM file is read past its first 132 bytes."""
    if file.refusal:
        return None
    try:
        if sniff_format(read_head(file.read_from, 132)) != "dicom":
            return None
        return series_attributes(read_head(file.read_from, HEADER_BYTES))
    except (UnreadableImage, OSError):  # a read that fails midway too
        return None


def _name(header: dict[str, str]) -> str:
    number = f"series {header['SeriesNumber'] or '?'}"
    described = f" '{header['SeriesDescription']}'" if header["SeriesDescription"] else ""
    kernel = f" (kernel {header['ConvolutionKernel']})" if header["ConvolutionKernel"] else ""
    return (number + described + kernel)[:100]


def study_series(files: Sequence[InputFile]) -> list[Series]:
    """The DICOM series among a study's files, in the order they first appear."""
    grouped: dict[str, list[InputFile]] = {}
    names: dict[str, str] = {}
    for file in files:
        header = dicom_header(file)
        if header is not None:
            grouped.setdefault(header["SeriesInstanceUID"], []).append(file)
            names.setdefault(header["SeriesInstanceUID"], _name(header))
    counts = Counter(names.values())
    return [
        Series(uid, _told_apart(names[uid], uid, counts[names[uid]]), tuple(found))
        for uid, found in grouped.items()
    ]


def _told_apart(name: str, uid: str, sharing: int) -> str:
    """`name`, with the end of the series UID when another series of the study has the same
    name (a sender that numbers every series 1): the reasons must say which is which."""
    return f"{name} (UID ...{uid[-8:]})" if sharing > 1 else name


def middle_noise(series: Series) -> float | None:
    """The pixel noise of the series' middle slice; None when it is no axial CT slice."""
    middle = series.files[len(series.files) // 2]
    try:
        return noise_level(decode_bytes(read_limited(middle.read_from)).gray)
    except Exception:  # unreadable, or a decoder bug: as in decode_file, never the study's end
        return None


def one_reconstruction(files: list[InputFile]) -> list[InputFile]:
    """`files` with those of every series but the scored one refused (see the module)."""
    found = study_series(files)
    if len(found) < 2:
        return files
    noise = {s.uid: middle_noise(s) for s in found}
    axial = [s for s in found if noise[s.uid] is not None]
    if len(axial) < 2:
        return files
    largest = max(len(s.files) for s in axial)
    chosen = min(
        (s for s in axial if len(s.files) >= MIN_SHARE * largest),
        key=lambda s: (-(noise[s.uid] or 0.0), -len(s.files), s.uid),
    )
    refused = {}
    for series in axial:
        if series is chosen:
            continue
        reason = (
            f"another reconstruction of this study ({series.name}): only {chosen.name} is "
            "scored, the sharpest, as one study's verdict must read one series"
        )
        refused.update({f.relpath: reason for f in series.files})
    return [replace(f, refusal=refused[f.relpath]) if f.relpath in refused else f for f in files]
