"""Batch scoring of CT study folders into PostgreSQL, exactly once (issue 4).

`claim_ready` claims what is ready (the DAG maps `score_claimed_study` over the claims),
`find_ready_studies` + `score_study` do the same one folder at a time, `Scorer` is the
engine behind them and the CLI (`python -m lung_model score`, `lung_model.scoring.cli`).
"""

from lung_model.scoring.engine import FileOutcome, Scorer, StudySummary
from lung_model.scoring.inbox import claim, find_ready_studies, study_name
from lung_model.scoring.predictor import Predictor
from lung_model.scoring.tasks import claim_ready, score_claimed_study, score_study, summarise

__all__ = [
    "FileOutcome",
    "Predictor",
    "Scorer",
    "StudySummary",
    "claim",
    "claim_ready",
    "find_ready_studies",
    "score_claimed_study",
    "score_study",
    "study_name",
    "summarise",
]
