"""Load benchmark (issue 7): 10,000 slices in 50 studies scored in one go, against one study.

Each scenario runs in its own process (so its peak memory, VmHWM, is its own) with the same
model, batch size and study size: (1) one study of 200 slices, three times, each in a fresh
inbox (the single-study figure is their median); (2) 50 studies of 200 slices (10,000) in
one inbox, claimed and scored in one run. Reported: wall-clock throughput, CPU time per slice
(steadier than wall time on a shared machine), peak RSS, and the ratio of (2) to (1).
Target: throughput of (2) within 10% of (1), and the same peak memory. Slices, the model and
the temporary results database come from `bench_scoring` (same machinery, same baseline).

usage: .venv/bin/python bench/bench_load.py [--studies 50] [--study-size 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scoring import (  # noqa: E402
    cpu_seconds,
    drop_database,
    load_bench_model,
    real_slices,
    temporary_database,
    unique_copy,
    vm_kib,
)

from lung_model.settings import Settings, get_settings  # noqa: E402


def fill(
    inbox: Path,
    studies: int,
    size: int,
    first: int,
    marker: str,
    prefix: str = "load",
    sources: list[bytes] | None = None,
) -> list[str]:
    """`studies` ready study folders of `size` distinct slices, numbered from `first` (the
    real slices, or `sources` read once by the caller); return their names."""
    sources = sources or [p.read_bytes() for p in real_slices()]
    names = []
    for study in range(studies):
        folder = inbox / f"{prefix}-{first + study:04d}"
        names.append(folder.name)
        folder.mkdir(parents=True)
        for index in range(size):
            n = (first + study) * size + index
            (folder / f"slice_{index:04d}.jpg").write_bytes(
                unique_copy(sources[n % len(sources)], n)
            )
        (folder / marker).touch()
    return names


def child(args: argparse.Namespace) -> None:
    """Score every ready study of each given LUNG_HOME in turn; one JSON report per home."""
    from lung_model.pipelines.batch_score import claim_ready
    from lung_model.platform.db import get_engine
    from lung_model.scoring.engine import Scorer

    for home in args.homes:
        settings = Settings(home=Path(home), database_url=args.db, score_batch_size=args.batch)
        if home == args.homes[0]:
            model, _ = load_bench_model(settings)
            engine = get_engine(settings)
            size = model.image_size
            model.predict(np.zeros((args.batch, size, size, 1), np.float32))  # warm-up
        scorer = Scorer(model, engine, settings)
        started, cpu = time.perf_counter(), cpu_seconds()
        summaries = [scorer.score_claimed(folder) for folder in claim_ready(settings, engine)]
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        scored = sum(s.n_scored for s in summaries)
        done = sum(s.status == "done" for s in summaries)
        report = {"studies": done, "scored": scored, "seconds": seconds, "cpu_s": cpu}
        print(json.dumps(report | {"hwm_kib": vm_kib("VmHWM"), "rss_kib": vm_kib("VmRSS")}))


def run(homes: list[Path], db_url: str, batch: int) -> list[dict[str, float]]:
    command = [sys.executable, __file__, "--child", "--db", db_url, "--batch", str(batch)]
    out = subprocess.run(
        [*command, "--homes", *map(str, homes)], check=True, capture_output=True, text=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--study-size", type=int, default=200)
    parser.add_argument("--batch", type=int, default=None, help="default: LUNG_SCORE_BATCH_SIZE")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--homes", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    settings = get_settings()
    batch = args.batch or settings.score_batch_size
    size, many = args.study_size, args.studies
    db_url, db_name = temporary_database(settings)
    work = Path(tempfile.mkdtemp(prefix="lung-load-"))
    try:
        _, described = load_bench_model(settings)
        singles = [work / f"single-{i}" for i in range(3)]
        for i, home in enumerate(singles):
            fill(home / "inbox", 1, size, 1000 + i, settings.ready_marker)
        single = run(singles, db_url, batch)
        fill(work / "many" / "inbox", many, size, 0, settings.ready_marker)
        [loaded] = run([work / "many"], db_url, batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        drop_database(settings, db_name)

    rates = [r["scored"] / r["seconds"] for r in single]
    cpus = [1000 * r["cpu_s"] / r["scored"] for r in single]
    base_rate, base_cpu = statistics.median(rates), statistics.median(cpus)
    rate, cpu = loaded["scored"] / loaded["seconds"], 1000 * loaded["cpu_s"] / loaded["scored"]
    peak_single = max(r["hwm_kib"] for r in single) / 1024
    print(f"\n{described}, batch {batch}, {os.cpu_count()} CPUs\n")
    print("| run | studies | slices | slices/s | CPU ms/slice | peak RSS | vs one study |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| one study (median of 3: {', '.join(f'{r:.0f}' for r in rates)} slices/s) | 1 |"
        f" {size} | {base_rate:.1f} | {base_cpu:.1f} | {peak_single:.0f} MiB | 100% |"
    )
    print(
        f"| {many} studies in one go | {loaded['studies']} | {loaded['scored']:,} | {rate:.1f} |"
        f" {cpu:.1f} | {loaded['hwm_kib'] / 1024:.0f} MiB |"
        f" {rate / base_rate:.0%} (CPU {base_cpu / cpu:.0%}) |"
    )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
