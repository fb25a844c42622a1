"""Batch scoring benchmark: bare model vs end-to-end files -> PostgreSQL vs a seed-style loop.

In one run on this machine, with the same model and batch size:
  (a) the bare model's forward pass on in-memory prepared slices (the practical ceiling),
      with TensorFlow's default threads (in this process) and with the scorer's split of
      the CPUs (in each end-to-end process, before and after it); the faster is the 100%,
  (b) end-to-end: inbox study folders -> claim, decode, predict, bulk upsert, archive
      (`lung_model.scoring`), once with 1,000 and once with 10,000 slices, each in its own
      process so its peak memory (VmHWM) can be compared; a model that decodes in worker
      processes (the feature model, `lung_model.scoring.decode_pool`) is also run with the
      first size decoding in threads, the way it did before; CPU time counts the workers,
  (c) the seed project's loop: open one image, predict one, INSERT and commit one row.
With --guard, the first size also runs with the acquisition guard off, measuring only
(LUNG_GUARD_PERTURBATIONS=''), and on (measuring and scoring the measured slices again under
LUNG_GUARD_PERTURBATIONS, `lung_model.scoring.sensitivity`), twice in turn
(`lung_model.scoring.guard`; a model without an acquisition range is given one measured on
200 real slices), so its cost is measured in the same run, alternated against load changes.
Slices are the real ones of data/raw; to have 10,000 distinct files, each copy gets a
unique JPEG comment segment (same pixels, distinct sha256, so nothing is deduplicated).
The model is `--model URI` (any family, from the configured MLflow store), else the
registered champion when there is one, else the untrained production CNN
(`lung_model.training.network`: the same compute as a trained one). Results go to a temporary database
on the configured server, dropped afterwards.

usage: .venv/bin/python bench/bench_scoring.py [--sizes 1000 10000] [--seed-slices 200]
                                 [--batch N] [--crop lungs|body|none] [--model URI] [--guard]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from lung_model.settings import Settings  # noqa: E402

STUDY_SIZE = 500  # slices per study folder (a CT series is a few hundred)


def load_bench_model(
    settings: Settings, crop: str | None = None, uri: str | None = None
) -> tuple[Any, str]:
    """`uri`, else the champion if one is registered, else the untrained production network;
    `crop` overrides a CNN's lung crop (to measure what the crop costs)."""
    if uri:
        from lung_model.scoring.inference import LoadedModel

        model = LoadedModel.load(settings, uri)
        return model, f"{uri} ({model.family}, {model.name} v{model.version})"
    model, described = _bench_model(settings)
    if crop is not None and crop != model.preprocess.crop:
        model.preprocess = replace(model.preprocess, crop=crop)
        described += f", crop {crop} instead of the model's"
    return model, described


def _bench_model(settings: Settings) -> tuple[Any, str]:
    try:
        from lung_model.scoring.inference import load_model

        model = load_model(settings)
        return model, f"champion {model.name} v{model.version}"
    except Exception as error:  # no inference module yet, no champion, no registry
        import keras

        from lung_model.scoring.inference import LoadedModel
        from lung_model.training.fit import TrainConfig
        from lung_model.training.network import build_network, calibrated

        config = TrainConfig().preprocess()  # the production steps, lung crop included
        size = config.image_size
        keras.utils.set_random_seed(0)
        network = calibrated(build_network(size), 1.0)
        version = f"bench-{uuid.uuid4().hex[:8]}"
        model = LoadedModel(
            network, "bench-network", version, data_version="bench", preprocess=config
        )
        why = type(error).__name__
        return model, f"untrained production network {size}px ({why})"


def real_slices() -> list[Path]:
    with (PROJECT / "data" / "raw" / "MANIFEST.csv").open() as handle:
        return [PROJECT / "data" / "raw" / row["path"] for row in csv.DictReader(handle)]


def unique_copy(source: bytes, index: int) -> bytes:
    """The same JPEG with a comment segment naming `index`: same pixels, new sha256."""
    comment = f"bench slice {index}".encode()
    return source[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + source[2:]


def fill_inbox(inbox: Path, count: int, marker: str) -> None:
    sources = [p.read_bytes() for p in real_slices()]
    for index in range(count):
        study = inbox / f"bench-study-{index // STUDY_SIZE:03d}"
        study.mkdir(parents=True, exist_ok=True)
        (study / f"slice_{index:05d}.jpg").write_bytes(
            unique_copy(sources[index % len(sources)], index)
        )
    for study in inbox.iterdir():
        (study / marker).touch()


def vm_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    """(b) in this process: score every ready study of LUNG_HOME's inbox, report JSON."""
    from lung_model.pipelines.batch_score import prepare_scoring_process
    from lung_model.platform.db import get_engine
    from lung_model.scoring.engine import Scorer
    from lung_model.scoring.inbox import find_ready_studies

    settings = Settings(
        home=Path(args.home),
        database_url=args.db,
        score_batch_size=args.batch,
        mlflow_tracking_uri=args.tracking,
        score_processes_min_files=0 if args.threads else Settings().score_processes_min_files,
    )
    if args.guarded == "measure":  # the guard without the acquisition sensitivity
        settings.guard_perturbations = ""
    prepare_scoring_process(settings)  # as the CLI and the DAG do: decoding and TF share CPUs
    model, described = load_bench_model(settings, args.crop, args.model)
    if args.guarded:
        set_guard(model, args.guarded != "off")
    engine = get_engine(settings)
    before = bare(model, args.batch, 8 * args.batch)  # also the warm-up
    baseline = vm_kib("VmRSS")
    scorer = Scorer(model, engine, settings)
    started, cpu = time.perf_counter(), cpu_seconds()
    summaries = [scorer.score_claimed(folder) for folder in find_ready_studies(settings)]
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    scored = sum(s.n_scored for s in summaries)
    peak, end = vm_kib("VmHWM"), vm_kib("VmRSS")
    after = bare(model, args.batch, 8 * args.batch)
    report = {"scored": scored, "seconds": seconds, "cpu_ms": 1000 * cpu / max(scored, 1)}
    report |= {"model": described}
    report |= {"rss_kib": baseline, "hwm_kib": peak, "end_kib": end}
    report |= {"bare": (before[0] + after[0]) / 2, "bare_cpu_ms": (before[1] + after[1]) / 2}
    print(json.dumps(report))


def set_guard(model: Any, on: bool) -> None:
    """Guard the model (with its own acquisition range, else one measured on 200 real
    slices) or take its range away (unguarded, as models logged before issue 19)."""
    if not on:
        model.acquisition_range = None
    elif not getattr(model, "acquisition_range", None):
        from lung_model.imaging.acquisition import acquisition_range, measure
        from lung_model.imaging.images import read_gray

        measured = [measure(read_gray(p).gray) for p in real_slices()[:200]]
        model.acquisition_range = acquisition_range(measured)


def times(numerator: float, denominator: float) -> str:
    """'12.3x'; a dash when the denominator is nil (a tiny model's forward pass rounds to 0)."""
    return f"{numerator / denominator:.1f}x" if denominator else "–"


def cpu_seconds() -> float:
    """CPU time of this process, all threads, and of its reaped children: the decoding
    worker processes, joined at the end of each study (user + system)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def bare(model: Any, batch: int, slices: int) -> tuple[float, float]:
    """(a) the model alone on prepared in-memory batches: (slices/s, CPU ms per slice)."""
    files = real_slices()[:batch]
    x = model.prepare_files(files)
    model.predict(x)  # warm-up
    started, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(slices // batch):
        model.predict(x)
    done = (slices // batch) * batch
    return done / (time.perf_counter() - started), 1000 * (cpu_seconds() - cpu) / done


def seed_loop(model: Any, db_url: str, count: int) -> tuple[float, float]:
    """(c) open one, predict one, INSERT and commit one: (slices/s, CPU ms per slice)."""
    import psycopg2

    files = real_slices()[:count]
    connection = psycopg2.connect(db_url)
    started, cpu = time.perf_counter(), cpu_seconds()
    for index, path in enumerate(files):
        x = model.prepare_file(path)[None]
        p = model.predict(x)[0]
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO predictions (image_sha256, model_name, model_version, data_version,"
                " p_normal, p_benign, p_malignant, predicted_class) VALUES (%s, %s, %s, %s,"
                " %s, %s, %s, 'normal') ON CONFLICT DO NOTHING",
                (f"{index:064d}", model.name, "seed-loop", model.data_version, *map(float, p)),
            )
        connection.commit()
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    connection.close()
    return count / seconds, 1000 * cpu / count


def temporary_database(settings: Settings) -> tuple[str, str]:
    """A fresh database on the configured (or embedded) server: (its URL, its name)."""
    import psycopg2

    from lung_model.platform.db import database_url, migrate

    server = database_url(settings)
    name = f"lung_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    admin.close()
    base, _, rest = server.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{rest}" if rest else "")
    migrate(url)
    return url, name


def drop_database(settings: Settings, name: str) -> None:
    import psycopg2

    from lung_model.platform.db import database_url

    admin = psycopg2.connect(database_url(settings))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seed-slices", type=int, default=200)
    parser.add_argument("--batch", type=int, default=None, help="default: LUNG_SCORE_BATCH_SIZE")
    parser.add_argument("--crop", choices=["lungs", "body", "none"], help="default: the model's")
    parser.add_argument("--model", help="model URI (default: the champion, else untrained CNN)")
    parser.add_argument(
        "--guard",
        action="store_true",
        help="also the first size with the guard off, measuring only, and on, twice",
    )
    parser.add_argument("--guarded", choices=["on", "measure", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracking", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from lung_model.settings import get_settings

    settings = get_settings()
    batch = args.batch or settings.score_batch_size
    db_url, db_name = temporary_database(settings)
    work = Path(tempfile.mkdtemp(prefix="lung-bench-"))
    runs = []
    try:
        model, described = load_bench_model(settings, args.crop, args.model)
        print(f"model: {described}; batch size {batch}; {os.cpu_count()} CPUs", flush=True)
        seed_rate, seed_cpu = seed_loop(model, db_url, args.seed_slices)
        print(f"(c) seed-style loop: {seed_rate:.1f} slices/s", flush=True)
        default_rate, default_cpu = bare(model, batch, 16 * batch)
        print(f"(a) bare model, TensorFlow's default threads: {default_rate:.1f} slices/s")
        # a model that decodes in worker processes is also run the old way, in threads
        jobs = [(size, False, "") for size in args.sizes]
        if getattr(model, "process_prepare", None) is not None:
            jobs.insert(0, (args.sizes[0], True, ""))
        if args.guard:  # off and on alternated, so that a change of the machine's load shows
            twice = ("off", "measure", "on") * 2
            jobs[1:1] = [(args.sizes[0], False, g) for g in twice]
        del model
        for size, threads, guarded in jobs:
            home = work / f"home-{size}"
            fill_inbox(home / "inbox", size, settings.ready_marker)
            command = [sys.executable, __file__, "--child", "--home", str(home), "--db", db_url]
            command += ["--crop", args.crop] if args.crop else []
            command += ["--threads"] if threads else []
            command += ["--guarded", guarded] if guarded else []
            # the parent's model store: without it the child's fresh LUNG_HOME has no champion
            # and it measured the untrained CNN instead (PERFORMANCE.md, issue 19)
            command += ["--tracking", settings.tracking_uri()]
            command += ["--model", args.model] if args.model else []
            out = subprocess.run(
                [*command, "--batch", str(batch)], check=True, capture_output=True, text=True
            ).stdout
            run = json.loads(out.strip().splitlines()[-1]) | {"threads": threads, "guard": guarded}
            if run["model"] != described:
                raise SystemExit(f"the child scored {run['model']}, not {described}")
            runs.append(run)
            print(
                f"(b) end-to-end {size}{' (threads)' if threads else ''}"
                f"{f' (guard {guarded})' if guarded else ''}:"
                f" {run['scored'] / run['seconds']:.1f} slices/s;"
                f" (a) bare model before and after, same process: {run['bare']:.1f} slices/s",
                flush=True,
            )
            shutil.rmtree(home)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        drop_database(settings, db_name)

    print(f"\n{described}, batch {batch}, {os.cpu_count()} CPUs\n")
    print(
        "| measurement | slices | slices/s | vs bare | vs seed loop | CPU ms/slice |"
        " vs bare (CPU) | vs seed loop (CPU) | RSS before / after scoring | peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| (a) bare model forward pass, TensorFlow defaults | {16 * batch} | {default_rate:.1f} |"
        f" | {default_rate / seed_rate:.1f}x | {default_cpu:.1f} | |"
        f" {times(seed_cpu, default_cpu)} | | |"
    )
    for run in runs:
        # the reference is the faster of the two bare-model figures: the practical limit
        rate = run["scored"] / run["seconds"]
        bare_rate, bare_cpu = max((run["bare"], run["bare_cpu_ms"]), (default_rate, default_cpu))
        how = ", decoding in threads" if run["threads"] else ""
        how += f", acquisition guard {run['guard']}" if run["guard"] else ""
        print(
            f"| (a) bare model, the scorer's thread split | {8 * batch} | {run['bare']:.1f} |"
            f" {run['bare'] / bare_rate:.0%} | {run['bare'] / seed_rate:.1f}x |"
            f" {run['bare_cpu_ms']:.1f} | | {times(seed_cpu, run['bare_cpu_ms'])} | | |"
        )
        print(
            f"| (b) end-to-end files -> PostgreSQL{how} | {run['scored']:,} | {rate:.1f} |"
            f" {rate / bare_rate:.0%} | {rate / seed_rate:.1f}x | {run['cpu_ms']:.1f} |"
            f" {bare_cpu / run['cpu_ms']:.0%} | {seed_cpu / run['cpu_ms']:.1f}x |"
            f" {run['rss_kib'] / 1024:.0f} / {run['end_kib'] / 1024:.0f} MiB |"
            f" {run['hwm_kib'] / 1024:.0f} MiB |"
        )
    print(
        f"| (c) seed-style loop: one image, one predict, one commit | {args.seed_slices} |"
        f" {seed_rate:.1f} | | 1.0x | {seed_cpu:.1f} | | 1.0x | | |"
    )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
