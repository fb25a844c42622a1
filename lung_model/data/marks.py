"""Training labels from reviewers' lesion marks (ANNOTATIONS.csv, `lung_model.data.lesion_marks`).

Labels in the data are per patient: most slices of a benign or malignant patient show no
lesion. Where a reviewer marked a slice, training knows more. `apply_marks` turns the marks of
the split's training and validation slices into labels: a slice marked 'lesion' keeps its
study's class (as every slice of a study does without marks); a slice marked 'no_lesion' of a
benign or malignant study is left out of training (`NO_LESION = "exclude"`), so the model is no
longer taught that a lesion-free slice is the lesion's class. (The other treatment, labelling
it normal, is measured beside it in `bench/bench_marks.py`; docs/MODEL.md has the figures and
why it is not the default.) Test slices are never changed: every model is evaluated on the
same patient labels, so a model trained with marks is compared with one trained without on
equal terms. Slices without marks, and studies without any, keep their patient's label.
`points` carries the fit slices' lesion marks, for the feature family's candidate choice
(`FeatureModelConfig.mark_candidates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lung_model.data import lesion_marks
from lung_model.data.lesion_marks import Annotation
from lung_model.data.split import Split
from lung_model.imaging.features import LesionPoint

Treatment = Literal["exclude", "normal"]
NO_LESION: Treatment = "exclude"
FIT_PARTS = ("train", "val")


@dataclass(frozen=True)
class MarkedSplit:
    split: Split  # with the marks applied
    marked_slices: int  # slices of the fit parts with a counting mark
    marked_studies: int  # study folders those slices belong to
    lesion_slices: int
    no_lesion_slices: int  # of benign or malignant studies: left out or relabelled
    treatment: Treatment
    # the train and validation slices marked 'lesion', where (in the slice's own pixels)
    points: dict[str, LesionPoint] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """What the training run logs (MLflow metrics: counts)."""
        return {
            "marked_slices": self.marked_slices,
            "marked_studies": self.marked_studies,
            "marked_lesion_slices": self.lesion_slices,
            "marked_no_lesion_slices": self.no_lesion_slices,
        }


def apply_marks(
    split: Split, marks: list[Annotation], treatment: Treatment = NO_LESION
) -> MarkedSplit:
    """`split` with the marks of its train and validation slices applied (see the module)."""
    fit = {mark.path: mark for mark in marks if split.part.get(mark.path) in FIT_PARTS}
    lesion_free = [
        path
        for path, mark in fit.items()
        if mark.kind == "no_lesion" and split.label[path] != "normal"
    ]
    part, group, label, sha = (
        dict(d) for d in (split.part, split.group, split.label, split.sha256)
    )
    for path in lesion_free:
        if treatment == "exclude":
            for table in (part, group, label, sha):
                del table[path]
        else:
            label[path] = "normal"
    return MarkedSplit(
        split=replace(split, part=part, group=group, label=label, sha256=sha),
        marked_slices=len(fit),
        marked_studies=len({path.rsplit("/", 1)[0] for path in fit}),
        lesion_slices=sum(mark.kind == "lesion" for mark in fit.values()),
        no_lesion_slices=len(lesion_free),
        treatment=treatment,
        points={
            path: LesionPoint(mark.x, mark.y, mark.radius)
            for path, mark in fit.items()
            if mark.kind == "lesion" and mark.x is not None and mark.y is not None
        },
    )


def marked_split(split: Split, data_dir: Path, treatment: Treatment = NO_LESION) -> MarkedSplit:
    """`apply_marks` with the dataset's own ANNOTATIONS.csv (the audit has checked it)."""
    marks, _ = lesion_marks.read(data_dir)
    return apply_marks(split, marks, treatment)
