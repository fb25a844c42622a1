"""The plain functions the `lung_batch_score` DAG (and anything else) calls, one per task.

`claim_ready` claims every ready inbox study plus the claims stranded by a killed scorer
and returns their `processing/` paths (`claim_ready_for_tasks`: as strings for XCom);
`score_claimed_study` loads the champion and scores, archives and summarises one of them;
`summarise` totals the summaries. `score_study` does claim-and-score for one folder.
See https://airflow.apache.org/docs/apache-airflow/stable/best-practices.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lung_model.scoring import inbox
from lung_model.scoring.decode import limit_model_threads, split_cpus
from lung_model.scoring.engine import Scorer
from lung_model.scoring.predictor import Predictor
from lung_model.settings import Settings


def _engine(settings: Settings, engine: Engine | None) -> Engine:
    from lung_model.platform.db import get_engine

    return engine or get_engine(settings)


def _scorer(model: Predictor, settings: Settings, engine: Engine | None) -> Scorer:
    from lung_model.imaging.dicom import patient_key

    key = patient_key(settings.secrets_dir)
    return Scorer(model, _engine(settings, engine), settings, id_key=key)


def claim_ready(settings: Settings, engine: Engine | None = None) -> list[Path]:
    """Claim every ready inbox study; include stranded claims nobody holds a lock on."""
    engine = _engine(settings, engine)
    claimed: list[Path] = []
    for folder in inbox.find_ready_studies(settings):
        if folder.parent.parent == settings.processing:
            with inbox.study_lock(engine, inbox.claim_id(folder)) as free:
                if free:
                    claimed.append(folder)
        elif (target := inbox.claim(folder, settings)) is not None:
            claimed.append(target)
    return claimed


def claim_ready_for_tasks(settings: Settings) -> list[str]:
    """`claim_ready`, each claim's path as the database would store it: what the DAG passes
    between its tasks, so that with `LUNG_PSEUDONYMISE_NAMES` no study name reaches Airflow's
    database (XComs, mapped task labels)."""
    from lung_model.platform.names import stored_names

    names = stored_names(settings)
    return [names.folder(path) for path in claim_ready(settings)]


def prepare_scoring_process(settings: Settings) -> None:
    """Share the CPUs between decoding and the model; call before the model is loaded."""
    limit_model_threads(split_cpus(settings.score_workers, settings.score_model_threads)[1])


def score_study(
    study_dir: Path, model: Predictor, settings: Settings, engine: Engine | None = None
) -> dict[str, Any]:
    """Claim (or resume) one folder from `find_ready_studies`, score it, archive it."""
    return _scorer(model, settings, engine).score_claimed(Path(study_dir)).as_dict()


def score_claimed_study(
    study_dir: Path, settings: Settings, model_uri: str | None = None
) -> dict[str, Any]:
    """One mapped DAG task: load the champion (or `model_uri`) and score one claim (named
    as `claim_ready_for_tasks` names it)."""
    from lung_model.platform.names import stored_names
    from lung_model.scoring.inference import load_model

    claimed = stored_names(settings).locate(str(study_dir)) or Path(study_dir)
    prepare_scoring_process(settings)
    return score_study(claimed, load_model(settings, model_uri), settings)


def summarise(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the studies of one run (what the DAG publishes)."""
    done = [s for s in summaries if s.get("status") in ("done", "failed")]
    return {
        "studies": len(done),
        "failed": sum(s["status"] == "failed" for s in done),
        "skipped": len(summaries) - len(done),
        "files": sum(int(s["n_files"]) for s in done),
        "scored": sum(int(s["n_scored"]) for s in done),
        "quarantined": sum(int(s["n_quarantined"]) for s in done),
        "needs_review": sum(bool(s.get("result", {}).get("needs_review")) for s in done),
        "malignant": sum(s.get("result", {}).get("predicted_class") == "malignant" for s in done),
    }
