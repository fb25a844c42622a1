"""Results out (the `lung_results_out` DAG and `python -m lung_model send-results`): every
new report version of a study that came in as DICOM goes to the configured places once,
failed deliveries are retried when due. The work is `lung_model.exchange.deliveries`; this
adds the study rule in words from the model's registered metadata and returns what the task
logs."""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from lung_model.exchange.deliveries import RuleOf, send_results
from lung_model.platform.db import get_engine
from lung_model.settings import Settings, get_settings

log = logging.getLogger(__name__)


def rule_in_words(settings: Settings) -> RuleOf:
    """The study rule a registered model version decides with, in one line (None when the
    registry cannot tell)."""
    from lung_model.review.rules import logged_rules, rule_for

    @lru_cache(maxsize=32)
    def rule_of(model_name: str, version: str) -> str | None:
        try:
            logged = logged_rules(settings, model_name, version)
        except Exception as error:  # registry down or version gone: the SR goes without it
            log.warning("the study rule of %s v%s is unknown: %s", model_name, version, error)
            return None
        rule = rule_for(settings, logged.malignant_threshold, logged.study_rule)
        return rule.study_line()

    return rule_of


def run_results_out(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    outcome = send_results(settings, get_engine(settings), rule_in_words(settings))
    log.info(
        "results out: %d deliveries planned, %d sent, %d failed (retried later), %d skipped",
        outcome.planned,
        outcome.sent,
        outcome.failed,
        len(outcome.skipped),
    )
    return asdict(outcome)
