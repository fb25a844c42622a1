"""The scoring DAG against the CLI on the live stack (issue 20): does `lung_batch_score`
score at the engine's speed?

The stack runs in a LUNG_HOME of its own (a temporary folder, free ports; `bench_soak`'s
`isolate`), started as `make demo` starts it (`stack.up`: embedded PostgreSQL, Airflow with
the LocalExecutor, MLflow UI, DICOM receiver, dashboard), then again with the CeleryExecutor
and two `airflow celery worker`s (queues default and tensorflow, concurrency 2 each, as in
docker-compose.yaml) on the Redis at 127.0.0.1:6379 (its keys under a prefix of this run,
deleted at the end). The champion is trained with `--config` (default: the default feature
model) and promoted by operator override when the gate rejects it. Only `lung_batch_score`
is unpaused.

For each executor: (1) one study of `--alone-slices` slices dropped into an idle inbox (the
run's sensor waiting), until it is archived, `--alone` times; (2) for each case `NxS` (N
studies of S slices): N ready studies moved into the inbox at once (written beside it
first, each renamed in), timed until the last is archived (the DAG: sensor, claim, scoring
tasks, archive), then N other studies scored by one `python -m lung_model score FOLDER`
(the CLI: one process, in place; timed from its start to its exit: imports and model load
included). Every slice is a real one (data/raw) with a unique JPEG comment (`unique_copy`),
so nothing is skipped as already scored. The load average is read before and after each
measurement: the machine is shared.

usage: .venv/bin/python bench/bench_dag.py [--cases 20x40,4x200] [--executors local,celery]
            [--config default] [--alone 2] [--alone-slices 40] [--score-tasks N]
            [--json FILE] [--keep-home]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scoring import PROJECT, real_slices, unique_copy  # noqa: E402
from bench_soak import champion, interrupted, isolate, lung, say  # noqa: E402

from lung_model.settings import Settings  # noqa: E402

BROKER = "redis://127.0.0.1:6379/12"
WORKERS = ("bench-celery-worker-1", "bench-celery-worker-2")


@dataclass
class Measure:
    executor: str
    kind: str  # alone | DAG | CLI
    studies: int
    slices: int  # per study
    seconds: float
    load_before: float
    load_after: float
    tasks: str = ""  # the DAG's tasks after the drop: when each began and how long it took

    @property
    def rate(self) -> float:
        return self.studies * self.slices / self.seconds


class Slices:
    """Unique copies of the real slices: every slice written is new to the database."""

    def __init__(self) -> None:
        self.sources = [p.read_bytes() for p in real_slices()]
        self.written = 0

    def studies(self, parent: Path, prefix: str, count: int, size: int, marker: str) -> list[Path]:
        folders = []
        for _ in range(count):
            folder = parent / f"{prefix}-{uuid.uuid4().hex[:8]}"
            folder.mkdir(parents=True)
            for index in range(size):
                data = unique_copy(self.sources[self.written % len(self.sources)], self.written)
                (folder / f"slice_{index:04d}.jpg").write_bytes(data)
                self.written += 1
            (folder / marker).touch()
            folders.append(folder)
        return folders


def celery_up(settings: Settings, prefix: str) -> dict[str, str]:
    """`stack.up`'s services with the CeleryExecutor, and two Celery workers."""
    from lung_model.platform import airflow, services, stack

    env = airflow.environment(settings, executor="CeleryExecutor", broker_url=BROKER)
    env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] = prefix
    airflow_cli = str(stack.BIN / "airflow")
    workers = [
        services.Service(
            name,
            [airflow_cli, "celery", "worker", "--queues", "default,tensorflow"]
            + ["--concurrency", "2", "--celery-hostname", f"{name}-{prefix}"]
            + ["--without-mingle", "--without-gossip", "--skip-serve-logs"],
            env,
        )
        for name in WORKERS
    ]
    running = stack.local_services(settings, env) + workers
    for service in running:
        say(f"  {service.name}: pid {services.start(settings, service)}")
    for service in running:
        services.wait_until_up(settings, service, timeout=180)
    airflow.airflow("dags", "reserialize", env=env)
    return env


def stop_all(settings: Settings) -> None:
    from lung_model.platform import services, stack

    for name in WORKERS:
        services.stop(settings, name)
    for name in stack.down(settings):
        say(f"stopped {name}")


def task_timeline(settings: Settings, since: float) -> str:
    """`score_ready_studies[0] +2.1 s (6.2 s), summarise +8.9 s (0.9 s), ...`: the
    lung_batch_score tasks that started after `since` (epoch seconds), from the metadata
    database: when each started after the drop, and how long it ran."""
    from sqlalchemy import create_engine, text

    from lung_model.platform.airflow import metadata_url

    engine = create_engine(metadata_url(settings))
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT task_id, map_index, extract(epoch FROM start_date) - :t,"
                " extract(epoch FROM end_date - start_date) FROM task_instance"
                " WHERE dag_id = 'lung_batch_score' AND start_date > to_timestamp(:t)"
                " AND task_id <> 'wait_for_ready_study' ORDER BY start_date"
            ),
            {"t": since},
        ).all()
    engine.dispose()
    return ", ".join(
        f"{task}{'' if index < 0 else f'[{index}]'} +{start:.1f} s"
        + (" (still running)" if ran is None else f" ({ran:.1f} s)")
        for task, index, start, ran in rows
    )


def wait_archived(settings: Settings, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((settings.archive / name).exists() for name in names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"not archived in {timeout:.0f} s: {names}")


def drop_at_once(settings: Settings, folders: list[Path]) -> float:
    """Move the ready study folders into the inbox; the time of the first move."""
    began = time.perf_counter()
    for folder in folders:
        folder.rename(settings.inbox / folder.name)
    return began


def idle(settings: Settings, seconds: float) -> None:
    """Let the run that scored the last drop end and the next one's sensor wait."""
    time.sleep(seconds)
    assert not any(settings.inbox.iterdir()), "the inbox is not empty"


def run_executor(
    settings: Settings, executor: str, args: argparse.Namespace, slices: Slices
) -> list[Measure]:
    staging = settings.home / "staging"
    marker, found = settings.ready_marker, []
    warm = slices.studies(staging, f"warm-{executor}", 1, 4, marker)
    drop_at_once(settings, warm)  # the first run: DAG parsed, the model cached by MLflow
    wait_archived(settings, [warm[0].name], timeout=600)
    for _ in range(args.alone):
        idle(settings, args.idle)
        [study] = slices.studies(staging, f"alone-{executor}", 1, args.alone_slices, marker)
        load, wall = os.getloadavg()[0], time.time()
        began = drop_at_once(settings, [study])
        wait_archived(settings, [study.name], timeout=600)
        seconds = time.perf_counter() - began
        tasks = task_timeline(settings, wall)
        found.append(
            Measure(
                executor, "alone", 1, args.alone_slices, seconds, load, os.getloadavg()[0], tasks
            )
        )
        say(f"{executor}: one study of {args.alone_slices} slices archived in {seconds:.1f} s")
        say(f"  {tasks}")
    for count, size in args.cases:
        idle(settings, args.idle)
        folders = slices.studies(staging, f"dag-{executor}", count, size, marker)
        load, wall = os.getloadavg()[0], time.time()
        began = drop_at_once(settings, folders)
        wait_archived(settings, [f.name for f in folders], timeout=1800)
        seconds = time.perf_counter() - began
        time.sleep(3)  # the scoring tasks end just after their last archive
        tasks = task_timeline(settings, wall)
        found.append(
            Measure(executor, "DAG", count, size, seconds, load, os.getloadavg()[0], tasks)
        )
        say(f"{executor}: DAG {count} x {size} archived in {seconds:.1f} s")
        say(f"  {tasks}")

        idle(settings, args.idle)  # the CLI runs while the DAG's sensor waits, as the DAG did
        cli_dir = settings.home / f"cli-{executor}-{count}x{size}"
        slices.studies(cli_dir, "cli", count, size, marker)
        load = os.getloadavg()[0]
        began = time.perf_counter()
        lung("score", str(cli_dir))
        seconds = time.perf_counter() - began
        found.append(Measure(executor, "CLI", count, size, seconds, load, os.getloadavg()[0]))
        say(f"{executor}: CLI {count} x {size} scored in {seconds:.1f} s")
    return found


def table(measures: list[Measure]) -> str:
    lines = [
        "| executor | studies × slices | DAG: drop → all archived | CLI, one process | DAG / CLI"
        " | load (1 min) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for m in measures:
        if m.kind != "DAG":
            continue
        [cli] = [
            c
            for c in measures
            if (c.kind, c.executor, c.studies, c.slices) == ("CLI", m.executor, m.studies, m.slices)
        ]
        lines.append(
            f"| {m.executor} | {m.studies} × {m.slices} | {m.seconds:.1f} s = {m.rate:.1f}"
            f" slices/s | {cli.seconds:.1f} s = {cli.rate:.1f} slices/s |"
            f" **{cli.seconds / m.seconds:.2f}** | {m.load_before:.1f}–{cli.load_after:.1f} |"
        )
    lines += ["", "| executor | one study dropped alone into an idle inbox → archived | load |"]
    lines += ["| --- | --- | --- |"]
    for executor in dict.fromkeys(m.executor for m in measures):
        alone = [m for m in measures if m.kind == "alone" and m.executor == executor]
        if alone:
            times = ", ".join(f"{m.seconds:.1f} s" for m in alone)
            loads = ", ".join(f"{m.load_before:.1f}" for m in alone)
            lines.append(f"| {executor} | {times} ({alone[0].slices} slices) | {loads} |")
    lines += ["", "The DAG's tasks after each drop (start after the drop, and run time):", ""]
    lines += [
        f"- {m.executor}, {m.studies} × {m.slices} ({m.kind}): {m.tasks}"
        for m in measures
        if m.tasks
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="20x40,4x200", help="studies x slices, comma-separated")
    parser.add_argument("--executors", default="local,celery")
    parser.add_argument("--config", default="default", help="training preset of the champion")
    parser.add_argument("--alone", type=int, default=2, help="single-study drops per executor")
    parser.add_argument("--alone-slices", type=int, default=40)
    parser.add_argument("--idle", type=float, default=12.0, help="seconds idle before a drop")
    parser.add_argument(
        "--score-tasks", type=int, help="LUNG_SCORE_TASKS for the stack (default: the setting's)"
    )
    parser.add_argument("--json", type=Path, help="also write the measures here")
    parser.add_argument("--keep-home", action="store_true", help="keep the LUNG_HOME")
    args = parser.parse_args()
    args.cases = [tuple(int(n) for n in case.split("x")) for case in args.cases.split(",")]

    from lung_model.platform import airflow, db, stack

    signal.signal(signal.SIGTERM, interrupted)
    home = Path(tempfile.mkdtemp(prefix="lung-bench-dag-"))
    settings = isolate(home)
    if args.score_tasks:  # every service of the stack inherits it: the DAG reads it at parse
        os.environ["LUNG_SCORE_TASKS"] = str(args.score_tasks)
    prefix = f"lung-bench-dag-{uuid.uuid4().hex[:6]}:"
    measures: list[Measure] = []
    try:
        settings.ensure_dirs()
        lung("migrate")
        version = champion(settings, args.config, "DAG")
        slices = Slices()
        for executor in args.executors.split(","):
            say(f"champion version {version}; starting the stack ({executor} executor)")
            if executor == "local":
                env = stack.up(settings, report=lambda message: say(f"  {message}"))
            else:
                env = celery_up(settings, prefix)
            airflow.airflow("dags", "unpause", "lung_batch_score", env=env)
            measures += run_executor(settings, executor, args, slices)
            airflow.airflow("dags", "pause", "lung_batch_score", env=env)
            stop_all(settings)
    except KeyboardInterrupt:
        say("interrupted: stopping everything the benchmark started")
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        stop_all(settings)
        if db.stop_embedded(settings):
            say("stopped the embedded PostgreSQL")
        import redis

        broker = redis.Redis.from_url(BROKER)
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        if args.keep_home:
            say(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    tasks = os.environ.get("LUNG_SCORE_TASKS", "the default")
    print(
        f"\n{os.cpu_count()} CPUs; champion {args.config} (version {version});"
        f" LUNG_SCORE_TASKS {tasks}; {PROJECT}\n"
    )
    print(table(measures))
    if args.json:
        rows = [{**asdict(m), "slices_per_s": m.rate} for m in measures]
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
