"""Run one inbox scorer in its own process, as a test's worker (see test_reliability.py).

usage: scorer_process.py VERSION [--kill-on-call N] [--delay SECONDS] [--processes]
LUNG_HOME and DATABASE_URL come from the environment, like any scorer's. With --processes
the model prepares slices in worker processes, as the feature model does.
"""

from __future__ import annotations

import argparse
import json

from scoring_toys import ProcessToyPredictor, ToyPredictor

from lung_model.pipelines.batch_score import score_study
from lung_model.scoring.inbox import find_ready_studies
from lung_model.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("version")
    parser.add_argument("--kill-on-call", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--processes", action="store_true")
    args = parser.parse_args()
    settings = get_settings()
    toy = ProcessToyPredictor if args.processes else ToyPredictor
    model = toy(version=args.version, kill_on_call=args.kill_on_call, delay=args.delay)
    for folder in find_ready_studies(settings):
        print(json.dumps(score_study(folder, model, settings)), flush=True)


if __name__ == "__main__":
    main()
