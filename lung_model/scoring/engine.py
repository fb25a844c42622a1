"""Score one study folder: decode in parallel, predict in batches, one transaction per batch.

`Scorer` holds the services of a run (the model, loaded once; the database engine; the
settings; the key that hashes DICOM patient IDs; how names are stored, as dropped or as
pseudonyms, `lung_model.platform.names`) and scores folders with them. Per batch
of `LUNG_SCORE_BATCH_SIZE` files: decode (ahead, in threads or processes: `decode_pool`),
look up which images this model version already scored, predict only the others (each
distinct image once), then upsert images and predictions in one transaction, and only
after it commits move the batch's unreadable files to quarantine. A killed run therefore
leaves nothing half done: the rerun redoes at most one batch, and the upserts make that a
no-op in the database.
A model that ships the acquisition range it learned from is guarded (`guard`): a few slices
of each study are measured as they are decoded, and the study result says whether, and on
which measurement, the study is unlike the scans the model learned from; the same slices are
also scored under a few acquisition perturbations (`sensitivity`), and the study result says on
how many of them the call changes.
Each batch commits on the session holding the study's advisory lock (`inbox.ClaimLock`):
when a database restart ended that session, the lock is taken again before the next batch,
and if another scorer has taken the study up meanwhile this one stops ("busy") and leaves
the study to it.
A claimed DICOM study already scored in an earlier batch (instances that arrived after the
scorer claimed it) is scored again whole, the earlier instances linked in, and supersedes
the earlier batches once it has a verdict (`grown`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from lung_model.platform.names import stored_names
from lung_model.scoring import grown, guard, inbox, sensitivity, store
from lung_model.scoring.decode import Decoded, decode_file, decoded_batches, default_workers
from lung_model.scoring.decode_pool import DecodePool
from lung_model.scoring.files import InputFile, list_inputs
from lung_model.scoring.predictor import (
    Predictor,
    Prepare,
    input_shape_for,
    preparer_for,
    reduce_to_for,
    slice_class,
    study_threshold,
)
from lung_model.scoring.series import one_reconstruction
from lung_model.scoring.study import SliceStats, study_verdict
from lung_model.settings import Settings
from lung_model.training.study_rule import StudyRule

NO_FILES = "the study folder holds no image files"
NONE_SCORABLE = "no slice could be scored (see the quarantine reasons)"
# a verdict over two patients' slices is wrong for both (the slices stay scored, each row
# naming its patient's keyed hash; split the folder and drop each part again)
MIXED_PATIENTS = "the study's DICOM slices name {n} patients: no verdict across patients"


@dataclass(frozen=True)
class FileOutcome:
    study: str
    relpath: str
    location: Path  # where the file is now
    status: str  # scored | quarantined
    reason: str | None
    sha256: str | None
    probabilities: store.Probabilities | None


@dataclass
class StudySummary:
    study: str
    folder: str
    status: str  # done | failed (nothing scorable) | busy (another scorer has it) | gone
    batch_id: int | None = None
    n_files: int = 0
    n_scored: int = 0
    n_quarantined: int = 0
    n_predicted: int = 0  # predictions this run computed (0 on a rerun)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    supersedes: list[int] = field(default_factory=list)  # earlier batches it scored again

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Scorer:
    """Scores study folders with one model; `on_file` sees every file's outcome."""

    def __init__(
        self,
        model: Predictor,
        engine: Engine,
        settings: Settings,
        *,
        prepare: Prepare | None = None,
        id_key: bytes | None = None,
        workers: int | None = None,
        on_file: Callable[[FileOutcome], None] | None = None,
    ) -> None:
        self.model, self.engine, self.settings = model, engine, settings
        self.prepare = prepare or preparer_for(model)
        # the model's own preparation when it should run in worker processes (decode_pool)
        self.process_prepare = None if prepare else getattr(model, "process_prepare", None)
        self.reduce_to = reduce_to_for(model)
        self.input_shape = input_shape_for(model)
        self.id_key = id_key
        self.workers = workers or settings.score_workers or default_workers()
        self.on_file = on_file
        self.names = stored_names(settings)  # as dropped, or pseudonyms (see platform.names)
        # the acquisition range the model learned from; None: unguarded (nothing measured)
        self.acquisition_range = guard.model_range(model) if settings.guard_slices else None
        # the perturbations the guard's slices are also scored under (none when unguarded)
        self.perturbations = (
            sensitivity.chosen(settings.guard_perturbations) if self.acquisition_range else ()
        )

    def _summary(self, folder: Path, status: str, study: str | None = None) -> StudySummary:
        """A summary naming the study and its folder as the database stores them."""
        name = self.names.name(study or folder.name)
        return StudySummary(study=name, folder=self.names.folder(folder), status=status)

    def _decode(
        self, file: InputFile, measure: guard.Measure | None = None, perturb: tuple[str, ...] = ()
    ) -> Decoded:
        return decode_file(
            file, self.prepare, self.input_shape, self.id_key, self.reduce_to, measure, perturb
        )

    def _predict(self, inputs: dict[str, np.ndarray]) -> dict[str, store.Probabilities]:
        if not inputs:
            return {}
        probs = self._probabilities(list(inputs.values()))
        return {sha: (p[0], p[1], p[2]) for sha, p in zip(inputs, probs.tolist(), strict=True)}

    def _probabilities(self, inputs: list[np.ndarray]) -> np.ndarray:
        probs = np.asarray(self.model.predict(np.stack(inputs)), dtype=np.float64)
        if probs.shape != (len(inputs), 3) or not np.isfinite(probs).all():
            raise RuntimeError(f"model {self.model.name} returned unusable output {probs.shape}")
        return probs

    def _perturbed_calls(self, batch: list[Decoded]) -> dict[str, dict[str, str]]:
        """{sha256: {perturbation: the model's call}} of the batch's perturbed slices."""
        keys = [(d.row.sha256 or "", name) for d in batch if d.perturbed for name in d.perturbed]
        if not keys:
            return {}
        inputs = [x for d in batch if d.perturbed for x in d.perturbed.values()]
        calls: dict[str, dict[str, str]] = {}
        for (sha, name), p in zip(keys, self._probabilities(inputs), strict=True):
            calls.setdefault(sha, {})[name] = slice_class(self.model, p)
        return calls

    def score_folder(
        self,
        root: Path,
        study: str,
        source: Path,
        lock: inbox.ClaimLock,
        claimed: Path | None = None,
        destination: Path | None = None,
    ) -> StudySummary:
        """Score every file below `root` into the batch (study, source), each batch
        committed on the session holding `lock`. With `claimed` (inbox mode) unreadable files
        move to quarantine and the outcomes of scored ones name their place under
        `destination` (the archive); without, nothing moves. Raises `ClaimTaken` when another
        scorer took the claim over (after a database restart), `DecodeWorkerDied` when a
        decoding process died: either way the claim stays for the next run."""
        files = one_reconstruction(list_inputs(root, self.settings.ready_marker))
        summary = self._summary(root, "done", study)
        summary.batch_id = batch_id = store.open_batch(
            self.engine, summary.study, self.names.folder(source), self.model
        )
        measured = self._measured(files)
        with self._decode_pool(len(files)) as pool:

            def submit(file: InputFile) -> Future[Decoded]:
                if file.relpath not in measured:
                    return pool.submit(file, measure=None)
                return pool.submit(file, measure=guard.measure_slice, perturb=self.perturbations)

            for batch in decoded_batches(files, submit, self.settings.score_batch_size):
                summary.n_predicted += self._score_batch(
                    batch, batch_id, lock, study, claimed, destination
                )
        _fenced(lock, claimed)
        return self._finish(summary, nothing_to_score=not files)

    def _measured(self, files: list[InputFile]) -> set[str]:
        """The files whose acquisition the guard measures (none for an unguarded model)."""
        if self.acquisition_range is None:
            return set()
        readable = [f.relpath for f in files if not f.refusal]
        return guard.spread(readable, self.settings.guard_slices)

    def _decode_pool(self, n_files: int) -> DecodePool:
        """Threads, or worker processes for a model whose preparation holds the GIL when the
        study is big enough to repay starting them (`LUNG_SCORE_PROCESSES_MIN_FILES`)."""
        least = self.settings.score_processes_min_files
        if self.process_prepare is None or not least or n_files < least:
            return DecodePool(self._decode, self.workers)
        in_worker = partial(
            decode_file,
            prepare=self.process_prepare,
            input_shape=self.input_shape,
            id_key=self.id_key,
            reduce_to=self.reduce_to,
        )
        return DecodePool(self._decode, self.workers, in_worker)

    def _score_batch(
        self,
        batch: list[Decoded],
        batch_id: int,
        lock: inbox.ClaimLock,
        study: str,
        claimed: Path | None,
        destination: Path | None,
    ) -> int:
        """Predict what this model has not scored yet, commit the batch on the claim's
        session, then move and report each file; returns how many slices were predicted."""
        inputs = {d.row.sha256 or "": d.x for d in batch if d.x is not None}
        known = store.known_predictions(self.engine, self.model, inputs)
        fresh = self._predict({sha: x for sha, x in inputs.items() if sha not in known})
        session = _fenced(lock, claimed)
        rows = [replace(d.row, path=self.names.name(d.row.path)) for d in batch]
        perturbed = self._perturbed_calls(batch)
        store.write_batch(self.engine, batch_id, rows, fresh, self.model, session, perturbed)
        for d in batch:
            self._after_commit(d, study, claimed, destination, {**known, **fresh})
        return len(fresh)

    def _after_commit(
        self,
        d: Decoded,
        study: str,
        claimed: Path | None,
        destination: Path | None,
        probabilities: dict[str, store.Probabilities],
    ) -> None:
        """Move an unreadable file to quarantine (inbox mode), then report the outcome."""
        real = d.file.entry.relative_to(claimed) if claimed else Path(d.file.relpath)
        location = destination / real if destination else d.file.entry
        if d.x is None and claimed is not None:
            location = inbox.quarantine(d.file.entry, real.as_posix(), claimed, self.settings)
        if self.on_file:
            probs = probabilities.get(d.row.sha256 or "") if d.x is not None else None
            row = d.row
            self.on_file(
                FileOutcome(study, row.path, location, row.status, row.reason, row.sha256, probs)
            )

    def _finish(self, summary: StudySummary, nothing_to_score: bool = False) -> StudySummary:
        """Close the batch: the study's verdict, or why it has none (`nothing_to_score`: the
        folder held no file at all, so there are no quarantine reasons to point to)."""
        assert summary.batch_id is not None
        threshold = study_threshold(self.model, self.settings.malignant_threshold)
        stats = store.slice_stats(self.engine, summary.batch_id, self.model, threshold)
        patients = store.patients_in_batch(self.engine, summary.batch_id)
        verdict = None
        if stats.n_slices and patients <= 1:
            probabilities = store.slice_probabilities(self.engine, summary.batch_id, self.model)
            rule = getattr(self.model, "study_rule", None) or StudyRule()
            margin = self.settings.uncertain_margin
            verdict = study_verdict(probabilities, rule, threshold, margin).as_dict()
        error = _no_verdict_reason(nothing_to_score, patients) if not verdict else None
        check = self._check_acquisition(summary.batch_id) if verdict else None
        sensitive = self._check_sensitivity(summary.batch_id) if verdict else None
        summary.n_files, summary.n_scored, summary.n_quarantined = store.finish_batch(
            self.engine, summary.batch_id, self.model, stats, verdict, error, check, sensitive
        )
        summary.status, summary.error = ("done", None) if verdict else ("failed", error)
        if verdict:
            summary.result = {**verdict, **asdict(stats)}
            if check is not None:
                summary.result["unlike_training"] = [d.describe() for d in check.outside]
            if sensitive is not None:
                summary.result["acquisition_sensitivity"] = sensitive.describe()
        return summary

    def _check_acquisition(self, batch_id: int) -> store.AcquisitionCheck | None:
        """The study's measured slices against the model's range (None: unguarded)."""
        if self.acquisition_range is None:
            return None
        measured = store.slice_acquisitions(self.engine, batch_id)
        outside = guard.check_study(measured, self.acquisition_range, self.settings.guard_min_share)
        return store.AcquisitionCheck(self.acquisition_range, outside)

    def _check_sensitivity(self, batch_id: int) -> sensitivity.Sensitivity | None:
        """How many of the study's checked slices change their call under another export
        (None: not checked)."""
        if not self.perturbations:
            return None
        slices = store.slice_perturbed_calls(self.engine, batch_id, self.model)
        return sensitivity.check_study(slices, self.perturbations)

    def score_in_place(self, folder: Path) -> StudySummary:
        """Score a study folder where it is, moving nothing (`score PATH`)."""
        source = folder.resolve()
        with inbox.study_lock(self.engine, str(source)) as lock:
            busy = self._summary(folder, "busy")
            if not lock:
                return busy
            try:
                return self.score_folder(folder, folder.name, source, lock)
            except ClaimTaken:
                return busy

    def score_claimed(self, folder: Path) -> StudySummary:
        """Claim an inbox folder (or resume a stranded one), score it, archive it."""
        claimed = inbox.claim(folder, self.settings)
        if claimed is None:
            return self._summary(folder, "gone")
        study, claim_id = claimed.name, inbox.claim_id(claimed)
        with inbox.study_lock(self.engine, claim_id) as lock:
            busy = self._summary(claimed, "busy")
            if not lock or not os_lexists(claimed):
                return busy
            if claimed.is_symlink():
                return self._refuse_linked_study(claimed, study)
            planned = inbox.archive_destination(claimed, self.settings)
            joined = self._join_earlier(claimed, study)
            try:
                summary = self.score_folder(claimed, study, claimed, lock, claimed, planned)
            except ClaimTaken:
                return busy  # the scorer that holds the claim now finishes it
            archived = inbox.archive(claimed, self.settings, planned)
            summary.folder = self.names.folder(archived)
            if joined and summary.status == "done":  # before its reports can be planned
                store.supersede(self.engine, joined, summary.batch_id or 0)
                summary.supersedes = joined
            store.set_archive_path(self.engine, summary.batch_id or 0, summary.folder)
            return summary

    def _join_earlier(self, claimed: Path, study: str) -> list[int]:
        """The study's earlier batches whose DICOM files join this claim (`grown`)."""
        earlier = store.earlier_batches(self.engine, self.names.name(study))
        located = [(batch, self.names.locate(folder)) for batch, folder in earlier]
        found = [(batch, folder) for batch, folder in located if folder is not None]
        return grown.join_earlier(claimed, found, self.settings.ready_marker) if found else []

    def _refuse_linked_study(self, claimed: Path, study: str) -> StudySummary:
        """A study folder that is a symlink is never read: quarantined whole, with a reason."""
        reason = "study folder is a symbolic link: not followed"
        name = self.names.name(study)
        batch_id = store.open_batch(self.engine, name, self.names.folder(claimed), self.model)
        location = inbox.quarantine(claimed, "", claimed, self.settings)
        inbox.release(claimed)
        stats = SliceStats(0, 0.0, 0.0, 0.0, 0.0, 0)
        store.finish_batch(self.engine, batch_id, self.model, stats, None, reason)
        return StudySummary(name, self.names.folder(location), "failed", batch_id, error=reason)


def _no_verdict_reason(nothing_to_score: bool, patients: int) -> str:
    if patients > 1:
        return MIXED_PATIENTS.format(n=patients)
    return NO_FILES if nothing_to_score else NONE_SCORABLE


def os_lexists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


class ClaimTaken(Exception):
    """Another scorer holds the claim now (it took it up while a restart had ended ours)."""


def _fenced(lock: inbox.ClaimLock, claimed: Path | None) -> PoolProxiedConnection:
    """The session to commit the next batch on, as long as this scorer still holds the claim:
    its lock (taken again if a restart lost it) and, in inbox mode, its folder."""
    session = lock.session()
    if session is None or (claimed is not None and not os_lexists(claimed)):
        raise ClaimTaken(lock.name)
    return session
