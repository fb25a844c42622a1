"""Hospital loop benchmark: a CT series pushed by a real PACS (Orthanc) -> our DICOM receiver
-> scored -> the TID 1500 SR stored back in the study on Orthanc.

Targets (issue 21): a 100-slice series pushed by Orthanc -> SR stored back in Orthanc in at
most 60 s on this machine; receiving at least 50 instances/s into the inbox.

Everything runs on loopback in a temporary folder: Orthanc from Debian's package with its own
configuration (`tests/exchange/orthanc_pacs.py`), the receiver in this process
(`lung_model.exchange.receiver.Service`), results in a temporary database on the configured
PostgreSQL server (dropped afterwards). The series: `--slices` synthetic CT instances of
`--size` px made from the test fixture's JPEG slices through the lung window
(`tests/exchange/dicom_series.py`), uploaded to Orthanc before the clock starts. The model is
`--model URI` from `--tracking` (an MLflow store), else a tiny lung-field feature model
trained on the fixture slices first (same feature computation as the production feature
model, fewer trees); it is loaded before the clock starts, as a running scorer has it.

Timed, from Orthanc's C-STORE request to the SR found in Orthanc:
  receive   Orthanc pushes the study; every instance written into the inbox (the rate);
  quiet     the receiver's quiet period (`--quiet`, LUNG_DICOM_QUIET_SECONDS) until _READY;
  score     claim, decode, predict, store, archive (`Scorer.score_claimed`, as the DAG task);
  results   plan, build the SR, C-STORE it to Orthanc, write the FHIR report;
  found     Orthanc's REST API lists the SR in the study.
Not timed: the batch-score DAG's sensor (it looks every 5 s) and the results DAG's schedule
(on new predictions); in a deployment those add their polling delay.
The receiving rate is also measured with dcmtk's storescu sending the same files (its
time includes storescu reading every file first to propose its presentation contexts).

usage: .venv/bin/python bench/bench_dicom.py [--slices 100] [--size 512] [--quiet 2]
                                            [--model URI --tracking URI] [--db SERVER_URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "tests" / "exchange"))
sys.path.insert(0, str(PROJECT / "tests"))

import psycopg2  # noqa: E402

from lung_model.settings import Settings  # noqa: E402


def admin(server: str, sql: str) -> None:
    connection = psycopg2.connect(server)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close()


def wait(condition: object, timeout: float, what: str) -> float:
    started = time.perf_counter()
    while not condition():  # type: ignore[operator]
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)
    return time.perf_counter()


def model_for(args: argparse.Namespace, work: Path, db_url: str) -> tuple[object, str]:
    from lung_model.scoring.inference import LoadedModel

    if args.model:
        settings = Settings(home=work / "model-home", database_url=db_url)
        settings.mlflow_tracking_uri = args.tracking
        model = LoadedModel.load(settings, args.model)
        return model, f"{args.model} ({model.family})"
    from tiny_models import FEATURE_RUN, store_settings, train_feature_model

    settings = store_settings(work / "model-home", db_url).model_copy(
        update={"model_name": FEATURE_RUN}
    )
    began = time.perf_counter()
    train_feature_model(settings)
    trained = time.perf_counter() - began
    model = LoadedModel.load(settings, f"models:/{FEATURE_RUN}/1")
    return model, f"tiny feature model trained on the fixture slices ({trained:.0f} s, untimed)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--size", type=int, default=512, help="slice side in pixels")
    parser.add_argument("--quiet", type=float, default=2.0, help="receiver quiet period, s")
    parser.add_argument("--model", help="model URI (default: a tiny feature model)")
    parser.add_argument("--tracking", help="MLflow tracking URI of --model")
    parser.add_argument(
        "--db",
        default=os.environ.get(
            "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server (a database is created on it and dropped)",
    )
    args = parser.parse_args()

    from dicom_series import write_series
    from orthanc_pacs import Orthanc

    from lung_model.exchange.deliveries import send_results
    from lung_model.exchange.receiver import Service
    from lung_model.platform.db import get_engine
    from lung_model.platform.services import free_port
    from lung_model.scoring.engine import Scorer
    from lung_model.scoring.inbox import find_ready_studies

    name = f"lung_bench_dicom_{uuid.uuid4().hex[:8]}"
    admin(args.db, f"CREATE DATABASE {name}")
    db_url = args.db.rsplit("/", 1)[0] + f"/{name}"
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as folder:
        work = Path(folder)
        pacs = None
        try:
            settings = Settings(home=work / "home", database_url=db_url)
            settings.dicom_port, settings.dicom_quiet_seconds = free_port(), args.quiet
            settings.dicom_allowed_aets = "ORTHANC,STORESCU"
            settings.ensure_dirs()
            engine = get_engine(settings)
            model, described = model_for(args, work, db_url)
            series = write_series(work / "series", args.slices, size=args.size)
            megabytes = sum(p.stat().st_size for p in series.files) / 1e6
            pacs = Orthanc(settings, work / "orthanc").start()
            pacs.upload(series.files)
            settings.results_dicom_destination = pacs.destination
            service = Service(settings)
            scorer = Scorer(model, engine, settings)  # type: ignore[arg-type]
            study = settings.inbox / series.study_uid

            def received() -> bool:
                return study.is_dir() and len(list(study.glob("*.dcm"))) == args.slices

            t0 = time.perf_counter()
            pacs.push_study(series.study_uid)
            t_received = wait(received, 120, "receive")
            t_ready = wait(lambda: (study / "_READY").exists(), 120, "ready marker")
            summaries = [scorer.score_claimed(f) for f in find_ready_studies(settings)]
            t_scored = time.perf_counter()
            outcome = send_results(settings, engine)
            t_sent = time.perf_counter()

            def sr_found() -> bool:
                found = pacs.instances_of(series.study_uid)  # type: ignore[union-attr]
                return len(found) == args.slices + 1

            t_found = wait(sr_found, 60, "SR in Orthanc")
            service.close()

            # The receiving rate once more, with dcmtk's storescu as the sender (new study UIDs
            # would need new files: the same files go to a fresh inbox instead).
            settings2 = settings.model_copy(update={"home": work / "home2"})
            settings2.ensure_dirs()
            service2 = Service(settings2)
            argv = ["storescu", "-aet", "STORESCU", "-aec", settings.dicom_ae_title]
            argv += ["127.0.0.1", str(settings.dicom_port), *map(str, series.files)]
            s0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            storescu_seconds = time.perf_counter() - s0
            service2.close()
        finally:
            if pacs is not None:
                pacs.stop()
            admin(args.db, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    receive = t_received - t0
    report = {
        "slices": args.slices,
        "size_px": args.size,
        "series_mb": round(megabytes, 1),
        "model": described,
        "quiet_s": args.quiet,
        "receive_s": round(receive, 2),
        "receive_instances_per_s": round(args.slices / receive, 1),
        "storescu_instances_per_s": round(args.slices / storescu_seconds, 1),
        "quiet_wait_s": round(t_ready - t_received, 2),
        "score_s": round(t_scored - t_ready, 2),
        "scored": sum(s.n_scored for s in summaries),
        "results_s": round(t_sent - t_scored, 2),
        "sent": outcome.sent,
        "found_s": round(t_found - t_sent, 2),
        "total_s": round(t_found - t0, 2),
        "load": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=1))
    ok = report["total_s"] <= 60 and report["receive_instances_per_s"] >= 50
    print("targets met" if ok else "a target missed: total <= 60 s, receiving >= 50/s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
