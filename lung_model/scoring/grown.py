"""A study that grows after it was scored is scored again, whole.

A PACS sends a study's instances as they are made: a series reconstructed later, slices added,
a study routed again with more in it. The DICOM receiver keeps one folder a study until the
scorer claims it; an instance that arrives after that starts a new folder of the same name.
Scored alone, that folder's verdict read only the late instances, and its report collided
with the first one's (report identifiers are derived from the study): Orthanc kept the first
SR, the FHIR outbox the second, and the worklist showed two rows, two verdicts, for one study.

So before a claimed folder is scored, the DICOM files of the study's earlier scored batches
(same stored name, archived, superseded by none) that carry one of the folder's own Study
Instance UIDs are linked into it (hard links; copies across file systems), under their own
names unless the folder has a file by that name. The study is then scored whole, its series
chosen again (`series`), and slices scored before are not predicted again (predictions are
kept by content). Once it has a verdict, the engine marks those batches superseded by it
(`store.supersede`). A folder without DICOM files carries no study identity, so JPEG slices
dropped again under a used name are still their own batch, as before.
What joins is what the latest batch of the study kept in its archive: its scored slices.
Instances a batch quarantined (unreadable, or a reconstruction not chosen) keep that reason
there and are not brought in again, so a study that grows twice is not quarantined twice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from lung_model.scoring.files import InputFile, list_inputs
from lung_model.scoring.series import dicom_header


def study_uids(files: Iterable[InputFile]) -> set[str]:
    """The Study Instance UIDs the DICOM files among `files` name."""
    found = (dicom_header(file) for file in files)
    return {header["StudyInstanceUID"] for header in found if header and header["StudyInstanceUID"]}


def join_earlier(claimed: Path, earlier: Iterable[tuple[int, Path]], marker: str) -> list[int]:
    """Link into `claimed` the DICOM files of the same study from the `earlier` batches'
    archived folders ((batch id, folder)); the ids of the batches that had any."""
    wanted = study_uids(list_inputs(claimed, marker))
    if not wanted:
        return []
    joined = []
    for batch_id, folder in earlier:
        files = [f for f in list_inputs(folder, marker) if not f.refusal]
        ours = [f for f in files if (dicom_header(f) or {}).get("StudyInstanceUID") in wanted]
        for file in ours:
            _link(file.read_from, claimed / file.entry.relative_to(folder))
        if ours:
            joined.append(batch_id)
    return joined


def _link(source: Path, target: Path) -> None:
    """`source` at `target` (a hard link, else a copy), unless `target` exists: a resumed
    claim links what it had not yet, and a late file keeps its own name."""
    if os.path.lexists(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed there
        shutil.copy2(source, target)
