"""`python -m lung_model score [PATH] [--model URI] [--csv FILE]`: the batch scorer's CLI.

Without PATH it scores every ready study of the inbox by the inbox protocol (claim,
score, archive; stranded claims first). With PATH (one study folder, or a folder of study
folders) it scores every image below it in place, moving nothing. The model is loaded
once, only when there is something to score. Exit codes (`ExitCode`): OK when the run
completed (quarantined files included), NO_MODEL, DATABASE_UNAVAILABLE (also when it goes
away mid-run: the claim is resumed by the next run), NOT_A_FOLDER, REGISTRY_UNAVAILABLE; each
failure prints one line. Nothing is claimed before the model has loaded.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lung_model.cli.exit_codes import ExitCode
from lung_model.platform.names import printable
from lung_model.scoring.decode import DecodeWorkerDied
from lung_model.scoring.engine import FileOutcome, Scorer, StudySummary
from lung_model.scoring.guard import UNLIKE_TRAINING
from lung_model.scoring.inbox import find_ready_studies
from lung_model.scoring.predictor import slice_class
from lung_model.settings import get_settings

CSV_FIELDS = [
    "path",
    "study",
    "status",
    "reason",
    "predicted_class",
    "p_normal",
    "p_benign",
    "p_malignant",
    "model_name",
    "model_version",
    "data_version",
    "sha256",
]
log = logging.getLogger(__name__)


def studies_below(path: Path, marker: str) -> list[Path]:
    """PATH itself when it holds files (or the marker), else each of its sub-folders."""
    entries = sorted(path.iterdir())
    if (path / marker).exists() or any(not e.is_dir() or e.is_symlink() for e in entries):
        return [path]
    return entries


def _count_files(folders: list[Path]) -> int:
    return sum(len(files) for folder in folders for _, _, files in os.walk(folder))


def _fail(message: str, code: ExitCode) -> ExitCode:
    print(f"error: {message}", file=sys.stderr)
    return code


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


@contextmanager
def _csv_rows(target: Path | None) -> Iterator[csv.DictWriter[str] | None]:
    handle: IO[str] | None = target.open("w", newline="") if target else None
    try:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS) if handle else None
        if writer:
            writer.writeheader()
        yield writer
    finally:
        if handle:
            handle.close()


def _describe(summary: StudySummary) -> str:
    head = f"{summary.study}: {summary.status}"
    if summary.status not in ("done", "failed"):
        return head
    head += (
        f", {summary.n_files} files, {summary.n_scored} scored, {summary.n_quarantined} quarantined"
    )
    if summary.result:
        review = ", needs review" if summary.result["needs_review"] else ""
        head += (
            f" -> {summary.result['predicted_class']}"
            f" (max p_malignant {float(summary.result['max_p_malignant']):.3f}{review})"
        )
        if unlike := summary.result.get("unlike_training"):
            head += f"; {UNLIKE_TRAINING}: {'; '.join(unlike)}"
        if sensitive := summary.result.get("acquisition_sensitivity"):
            head += f"; {sensitive}"
    return head + (f" [{summary.error}]" if summary.error else "")


def cli_score(args: argparse.Namespace) -> ExitCode:
    import psycopg2
    from sqlalchemy import text
    from sqlalchemy.exc import InterfaceError, OperationalError
    from tqdm import tqdm

    from lung_model.imaging.dicom import patient_key
    from lung_model.platform.db import get_engine

    settings = get_settings()
    try:
        engine = get_engine(settings)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as error:
        return _fail(f"database unavailable: {_one_line(error)}", ExitCode.DATABASE_UNAVAILABLE)

    in_place = args.path is not None
    if in_place and not args.path.is_dir():
        return _fail(f"{args.path} is not a folder", ExitCode.NOT_A_FOLDER)
    targets = (
        studies_below(args.path, settings.ready_marker)
        if in_place
        else find_ready_studies(settings)
    )
    if not targets:
        with _csv_rows(args.csv):
            print(
                "nothing to score" + ("" if in_place else f": no ready study in {settings.inbox}")
            )
        return ExitCode.OK

    if not getattr(args, "verbose", False):  # MLflow's store set-up chatter is not news here
        import mlflow  # noqa: F401  (configures its loggers on import; quiet them after)

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # A server that went away mid-run makes the pool log a traceback per dead connection;
        # the one-line error below says it (and --verbose shows everything).
        logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from lung_model.pipelines.batch_score import prepare_scoring_process
    from lung_model.scoring.inference import NoChampion, load_model

    prepare_scoring_process(settings)
    try:
        model = load_model(settings, args.model)
    except NoChampion as error:
        return _fail(f"no model to score with: {error}", ExitCode.NO_MODEL)
    except (MlflowException, SQLAlchemyError, OSError) as error:  # server down, store unreadable
        return _fail(
            f"model registry unavailable: {_one_line(error)}", ExitCode.REGISTRY_UNAVAILABLE
        )

    bar = tqdm(
        total=_count_files(targets), unit="file", disable=not sys.stderr.isatty(), file=sys.stderr
    )
    with _csv_rows(args.csv) as writer:

        def on_file(outcome: FileOutcome) -> None:
            bar.update(1)
            if writer is None:
                return
            probs = outcome.probabilities
            writer.writerow(
                {
                    "path": printable(str(outcome.location)),
                    "study": outcome.study,
                    "status": outcome.status,
                    "reason": outcome.reason or "",
                    "predicted_class": slice_class(model, probs) if probs else "",
                    "p_normal": f"{probs[0]:.6f}" if probs else "",
                    "p_benign": f"{probs[1]:.6f}" if probs else "",
                    "p_malignant": f"{probs[2]:.6f}" if probs else "",
                    "model_name": model.name,
                    "model_version": model.version,
                    "data_version": model.data_version,
                    "sha256": outcome.sha256 or "",
                }
            )

        scorer = Scorer(
            model, engine, settings, id_key=patient_key(settings.secrets_dir), on_file=on_file
        )
        summaries = []
        gone = (
            OperationalError,
            InterfaceError,
            psycopg2.OperationalError,
            psycopg2.InterfaceError,
        )
        try:
            for target in targets:
                score = scorer.score_in_place if in_place else scorer.score_claimed
                summaries.append(summary := score(target))
                bar.write(_describe(summary), file=sys.stdout)
        except gone as error:  # the server went away ("closed the connection", "already closed")
            bar.close()  # the claim stays in processing/ and the next run resumes it
            return _fail(
                f"database unavailable: {_one_line(getattr(error, 'orig', error))}",
                ExitCode.DATABASE_UNAVAILABLE,
            )
        except DecodeWorkerDied as error:
            bar.close()
            return _fail(str(error), ExitCode.ERROR)
    bar.close()
    done = [s for s in summaries if s.status in ("done", "failed")]
    print(
        f"scored {sum(s.n_scored for s in done)} files, quarantined"
        f" {sum(s.n_quarantined for s in done)}, in {len(done)} studies"
        f" with {model.name} v{model.version}"
    )
    return ExitCode.OK


def cli_pseudonym(args: argparse.Namespace) -> ExitCode:
    """Print the pseudonym the database stores for each name, one per line, to find a study
    whose real name is known (the worklist's search box does the same)."""
    from lung_model.platform.keys import PATIENT_KEY_FILE, site_key
    from lung_model.platform.names import StoredNames

    settings = get_settings()
    names = StoredNames(site_key(settings.secrets_dir / PATIENT_KEY_FILE))
    for name in args.names:
        print(names.name(name))
    if not settings.pseudonymise_names:
        print("note: LUNG_PSEUDONYMISE_NAMES is off: names are stored as dropped", file=sys.stderr)
    return ExitCode.OK
