"""A small functional version of the load benchmark (`bench/bench_load.py` measures 10,000
slices in 50 studies): several studies claimed and scored in one go by one scorer, with a
batch size that splits studies across batches; every slice is scored exactly once."""

from __future__ import annotations

from reliability_helpers import scored_once
from scoring_helpers import make_study, real_slices
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.pipelines.batch_score import claim_ready
from lung_model.scoring.engine import Scorer
from lung_model.settings import Settings


def test_five_studies_in_one_go_are_scored_exactly_once(settings: Settings, engine: Engine) -> None:
    settings.score_batch_size = 16
    slices = real_slices(5 * 40, start=100)
    studies = {f"S-load-{i}": 40 for i in range(5)}
    for index, name in enumerate(studies):
        make_study(settings.inbox, name, slices[index * 40 : index * 40 + 40])
    model = ToyPredictor(version="load-5x40")
    scorer = Scorer(model, engine, settings, workers=2)

    summaries = [scorer.score_claimed(folder) for folder in claim_ready(settings, engine)]

    assert [(s.study, s.status, s.n_scored, s.n_predicted) for s in summaries] == [
        (name, "done", 40, 40) for name in studies
    ]
    assert model.calls == 5 * 3  # 40 slices in batches of 16: three predict calls per study
    scored_once(engine, settings.home, model.version, studies)
