"""Soak benchmark (issue 14): studies keep arriving for `--minutes` while the real Airflow
`lung_batch_score` DAG scores them; is everything flat over time?

The whole stack runs in a LUNG_HOME of its own (a temporary folder, free ports), started as
`make demo` starts it: embedded PostgreSQL (results and Airflow's metadata), `stack.up`
(Airflow api-server, scheduler with the LocalExecutor, dag-processor, triggerer; MLflow UI;
dashboard). The champion is the `tiny` feature preset trained on the test fixtures and
promoted by operator override: the soak measures the system, not the model. Only
`lung_batch_score` is unpaused (continuous: one run at a time waits for a ready study).

Load: new study folders of `--study-size` distinct real slices (data/raw, each copy with a
unique JPEG comment so nothing is deduplicated, as in bench_load) are dropped whenever fewer
than `--backlog` wait in the inbox, so the scorer is never idle and the inbox never floods.
Warm-up: until the first study is scored. Then every `--interval` seconds a row: studies
and slices scored so far (PostgreSQL), slices/s in the interval, RSS (at the sample and the
interval's peak, sampled every 2 s) and open file descriptors summed over the Airflow
services and all their children (task processes included; RSS counts pages shared after a
fork once per process), client connections to the server (pg_stat_activity, this
benchmark's own excluded), the inbox backlog (waiting + claimed) and the load average.
The first interval is the baseline: the verdict compares it with the last one and fits a
least-squares slope over the soak; a resource is flat when its fitted growth over the soak
stays within 10% of the baseline (fds and connections: or 5), throughput when its fitted
decline does. Then no more studies are dropped, the backlog drains, and every study dropped
must be scored exactly once: one batch, done, every slice one image row with a prediction,
nothing left in the inbox or processing/. Whatever it started is stopped at the end, also
on Ctrl-C or SIGTERM.

usage: .venv/bin/python bench/bench_soak.py [--minutes 30] [--interval 30] [--study-size 50]
                                [--backlog 4] [--json FILE] [--keep-home]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import fill  # noqa: E402
from bench_scoring import PROJECT, real_slices  # noqa: E402

from lung_model.platform.services import free_port  # noqa: E402
from lung_model.settings import Settings, get_settings  # noqa: E402

FIXTURES = PROJECT / "tests" / "fixtures" / "iq-othnccd"
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor")
AIRFLOW_SERVICES += ("airflow-triggerer",)
PREFIX = "soak"
FAST_SAMPLE_SECONDS = 2.0
TOLERANCE = 0.10
THROUGHPUT_TOLERANCE = 0.20  # a shared machine's other jobs move throughput more than memory


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def isolate(home: Path) -> Settings:
    """This process's environment names only the soak's LUNG_HOME (embedded PostgreSQL,
    MLflow under it) and free ports, so nothing of another deployment is touched."""
    for key in list(os.environ):
        if key.startswith(("LUNG_", "AIRFLOW", "MLFLOW_")) or key == "DATABASE_URL":
            del os.environ[key]
    os.environ.update(
        {
            "LUNG_HOME": str(home),
            "LUNG_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}",
            "LUNG_MLFLOW_UI_URL": f"http://127.0.0.1:{free_port()}",
            "LUNG_DASHBOARD_URL": f"http://127.0.0.1:{free_port()}",
            # the scheduler's health server would take the default 8974 (services inherit it)
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        }
    )
    get_settings.cache_clear()
    return get_settings()


def lung(*args: str) -> str:
    """One `python -m lung_model` command in the soak's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "lung_model", *args], capture_output=True, text=True, cwd=PROJECT
    )
    if done.returncode != 0:
        raise RuntimeError(f"lung_model {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def champion(settings: Settings, config: str = "tiny", bench: str = "soak") -> str:
    """Train the `config` preset (tiny: on tests/fixtures); promote it by override when the
    gate rejects it (a `bench` benchmark measures the system, not the model)."""
    from lung_model.platform.registry import current_champion

    say(f"training the {config} configuration (the {bench} benchmark's champion)")
    data = ["--data", str(FIXTURES)] if config == "tiny" else []
    say("  " + lung("train", "--config", config, *data).strip().splitlines()[-1])
    if current_champion(settings) is None:
        lung("promote", "latest", "--reason", f"{bench} benchmark: the system, not the model")
    return str(current_champion(settings))


class Probe:
    """What one sample reads: the Airflow process trees, the database, the inbox."""

    def __init__(self, settings: Settings) -> None:
        import psycopg2

        from lung_model.platform import db

        self.settings = settings
        self.connection = psycopg2.connect(db.database_url(settings))
        self.connection.autocommit = True

    def tree(self, name: str) -> list[psutil.Process]:
        """The service's process and all its descendants."""
        from lung_model.platform import services

        pid = services.running(self.settings, name)
        if pid is None:
            raise RuntimeError(f"{name} is not running any more")
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    def memory_and_fds(self) -> tuple[float, int, dict[str, float]]:
        """RSS (MiB) and open file descriptors summed over the Airflow process trees, and
        each tree's RSS."""
        rss, fds, by_service = 0, 0, {}
        for name in AIRFLOW_SERVICES:
            mine = 0
            for process in self.tree(name):
                try:
                    mine += process.memory_info().rss
                    fds += process.num_fds()
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue  # a task process that ended meanwhile
            rss += mine
            by_service[name] = round(mine / 2**20, 1)
        return rss / 2**20, fds, by_service

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def scored(self) -> tuple[int, int]:
        """(studies done, slices scored) of the soak's studies."""
        [(studies, slices)] = self.query(
            "SELECT count(*) FILTER (WHERE status = 'done'), coalesce(sum(n_scored), 0)"
            " FROM scan_batches WHERE study LIKE %s",
            f"{PREFIX}-%",
        )
        return int(studies), int(slices)

    def connections(self) -> int:
        [(count,)] = self.query(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
        return int(count)

    def waiting(self) -> int:
        marker = self.settings.ready_marker
        return sum((p / marker).exists() for p in self.settings.inbox.iterdir())

    def backlog(self) -> int:
        claimed = sum(1 for token in self.settings.processing.iterdir() for _ in token.iterdir())
        return self.waiting() + claimed


@dataclass
class Row:
    minute: float
    phase: str  # soak, drain
    studies: int
    slices: int
    slices_per_s: float
    interval_s: float
    rss_mib: float
    rss_peak_mib: float
    fds: int
    connections: int
    backlog: int
    load: float
    rss_by_service: dict[str, float] = field(default_factory=dict)


HEADER = (
    "| min | phase | studies | slices | slices/s | RSS MiB | RSS peak MiB | fds"
    " | DB conns | backlog | load |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---:"
    " | ---: | ---: |"
)


def line(r: Row) -> str:
    return (
        f"| {r.minute:.1f} | {r.phase} | {r.studies} | {r.slices} | {r.slices_per_s:.1f}"
        f" | {r.rss_mib:.0f} | {r.rss_peak_mib:.0f} | {r.fds} | {r.connections} | {r.backlog}"
        f" | {r.load:.1f} |"
    )


def _slope(rows: list[Row], values: list[float]) -> float:
    """Least-squares slope per minute."""
    if len(rows) < 2:
        return 0.0
    return float(statistics.linear_regression([r.minute for r in rows], values).slope)


def trend(rows: list[Row], field: str, floor: float = 0.0) -> dict[str, Any]:
    """A level (RSS, fds, connections): the first interval (the baseline) and the last, the
    least-squares slope, and whether the fitted growth over the soak stays within TOLERANCE
    of the baseline (or `floor`, in absolute terms)."""
    values = [float(getattr(r, field)) for r in rows]
    slope = _slope(rows, values)
    growth = slope * (rows[-1].minute - rows[0].minute)
    return {
        "baseline": values[0],
        "end": values[-1],
        "slope_per_hour": slope * 60,
        "fitted_change": growth,
        "flat": growth <= max(TOLERANCE * abs(values[0]), floor),
    }


def throughput_trend(rows: list[Row], window: float) -> dict[str, Any]:
    """Slices per second over the first and the last `window` minutes (a DAG run scores its
    studies in one burst, so one 30 s interval is too short a baseline); flat when the last
    window keeps 1 - THROUGHPUT_TOLERANCE of the first's rate. Also the per-interval slope."""

    def rate(window_rows: list[Row]) -> float:
        scored = sum(r.slices_per_s * r.interval_s for r in window_rows)
        return scored / sum(r.interval_s for r in window_rows)

    count = max(1, round(window * 60 / rows[0].interval_s))
    baseline, end = rate(rows[:count]), rate(rows[-count:])
    slope = _slope(rows, [r.slices_per_s for r in rows])
    return {
        "baseline": baseline,
        "end": end,
        "window_minutes": window,
        "slope_per_hour": slope * 60,
        "flat": end >= (1 - THROUGHPUT_TOLERANCE) * baseline,
    }


def exactly_once(probe: Probe, dropped: dict[str, int]) -> list[str]:
    """Every dropped study scored exactly once; the problems found (none: an empty list)."""
    problems = []
    batches = probe.query(
        "SELECT b.study, count(DISTINCT b.id), min(b.status), max(b.status),"
        " count(i.id), count(DISTINCT i.path), count(i.id) FILTER (WHERE i.status = 'scored'),"
        " count(p.id) FROM scan_batches b LEFT JOIN images i ON i.batch_id = b.id"
        " LEFT JOIN predictions p ON p.image_sha256 = i.sha256 AND p.model_name = b.model_name"
        " AND p.model_version = b.model_version WHERE b.study LIKE %s GROUP BY b.study",
        f"{PREFIX}-%",
    )
    found = {row[0]: row[1:] for row in batches}
    for name, size in sorted(dropped.items()):
        if name not in found:
            problems.append(f"{name}: never scored")
            continue
        n_batches, low, high, images, paths, scored, predicted = found[name]
        expected = (1, "done", "done", size, size, size, size)
        if (n_batches, low, high, images, paths, scored, predicted) != expected:
            problems.append(
                f"{name}: {n_batches} batches ({low}..{high}), {images} image rows for"
                f" {paths} files, {scored} scored, {predicted} predictions; expected {size}"
            )
    problems += [f"{name}: scored but never dropped" for name in set(found) - set(dropped)]
    left = [p.name for p in probe.settings.inbox.iterdir()]
    left += [str(p) for p in probe.settings.processing.iterdir()]
    return problems + [f"left over: {name}" for name in left]


def soak(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from lung_model.platform import airflow, stack

    say(f"LUNG_HOME {settings.home}; database: embedded PostgreSQL under it")
    settings.ensure_dirs()
    lung("migrate")
    version = champion(settings)
    say(f"champion: version {version}; starting the stack as `make demo` does")
    env = stack.up(settings, report=lambda message: say(f"  {message}"))
    airflow.airflow("dags", "unpause", "lung_batch_score", env=env)
    probe = Probe(settings)
    sources = [p.read_bytes() for p in real_slices()]
    dropped: dict[str, int] = {}

    def top_up() -> None:
        while probe.waiting() < args.backlog:
            [name] = fill(
                settings.inbox, 1, args.study_size, len(dropped), settings.ready_marker,
                prefix=PREFIX, sources=sources,
            )  # fmt: skip
            dropped[name] = args.study_size

    began = time.monotonic()
    top_up()
    while probe.scored()[0] == 0:
        if time.monotonic() - began > args.warmup_timeout:
            raise TimeoutError(f"no study scored in {args.warmup_timeout:.0f} s")
        time.sleep(1)
    warmup = time.monotonic() - began
    say(f"warm-up: the first study was scored {warmup:.0f} s after the first drop")

    rows: list[Row] = []
    start = time.monotonic()
    last_sample, last_slices = start, probe.scored()[1]
    peak = 0.0
    print(HEADER, flush=True)
    phase, drain_deadline = "soak", None
    while True:
        now = time.monotonic()
        if phase == "soak" and now - start >= args.minutes * 60:
            phase, drain_deadline = "drain", now + args.drain_timeout
            say(f"{len(dropped)} studies dropped; no more: draining the backlog")
        if phase == "soak":
            top_up()
        rss, _, _ = probe.memory_and_fds()
        peak = max(peak, rss)
        if now - last_sample >= args.interval:
            studies, slices = probe.scored()
            rss, fds, by_service = probe.memory_and_fds()
            row = Row(
                minute=(now - start) / 60,
                phase=phase,
                studies=studies,
                slices=slices,
                slices_per_s=(slices - last_slices) / (now - last_sample),
                interval_s=now - last_sample,
                rss_mib=rss,
                rss_peak_mib=max(peak, rss),
                fds=fds,
                connections=probe.connections(),
                backlog=probe.backlog(),
                load=os.getloadavg()[0],
                rss_by_service=by_service,
            )
            rows.append(row)
            print(line(row), flush=True)
            last_sample, last_slices, peak = now, slices, 0.0
        if phase == "drain":
            if probe.backlog() == 0 and probe.scored()[0] >= len(dropped):
                break
            if drain_deadline is not None and now > drain_deadline:
                say(f"the backlog did not drain in {args.drain_timeout:.0f} s")
                break
        time.sleep(FAST_SAMPLE_SECONDS)

    measured = [r for r in rows if r.phase == "soak"]
    if not measured:
        raise RuntimeError("no interval measured: --minutes shorter than --interval")
    window = max(args.interval / 60, min(5.0, args.minutes / 4))
    verdict = {
        "RSS peak MiB": trend(measured, "rss_peak_mib"),
        "open fds": trend(measured, "fds", floor=5),
        "DB connections": trend(measured, "connections", floor=5),
        "slices/s": throughput_trend(measured, window),
    }
    problems = exactly_once(probe, dropped)
    probe.connection.close()
    return {
        "command": " ".join(sys.argv),
        "cpus": os.cpu_count(),
        "champion": version,
        "study_size": args.study_size,
        "backlog_target": args.backlog,
        "interval_s": args.interval,
        "minutes": args.minutes,
        "warmup_s": round(warmup, 1),
        "studies_dropped": len(dropped),
        "rows": [asdict(r) for r in rows],
        "peak_rss_mib": max(r.rss_peak_mib for r in rows),
        "verdict": verdict,
        "flat": all(v["flat"] for v in verdict.values()),
        "exactly_once_problems": problems,
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\n{result['studies_dropped']} studies of {result['study_size']} slices dropped over"
        f" {result['minutes']} min (backlog kept at {result['backlog_target']}), warm-up"
        f" {result['warmup_s']:.0f} s, {result['cpus']} CPUs; peak RSS of the Airflow"
        f" processes {result['peak_rss_mib']:.0f} MiB"
    )
    window = result["verdict"]["slices/s"]["window_minutes"]
    print(
        f"\nstart: the first {result['interval_s']:.0f} s interval (slices/s: the first"
        f" {window:.1f} min); end: the last (slices/s: the last {window:.1f} min)\n"
    )
    print("| measure | start | end | least-squares slope per hour | flat |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, v in result["verdict"].items():
        print(
            f"| {name} | {v['baseline']:.1f} | {v['end']:.1f} | {v['slope_per_hour']:+.1f} |"
            f" {'yes' if v['flat'] else 'NO'} |"
        )
    problems = result["exactly_once_problems"]
    print(f"\nverdict: {'flat' if result['flat'] else 'NOT flat'}; ", end="")
    if problems:
        print(f"{len(problems)} studies NOT scored exactly once:\n  " + "\n  ".join(problems))
    else:
        print(f"every one of the {result['studies_dropped']} studies scored exactly once")


def stop(settings: Settings) -> None:
    from lung_model.platform import db, stack

    for name in stack.down(settings):
        say(f"stopped {name}")
    if db.stop_embedded(settings):
        say("stopped the embedded PostgreSQL")


def interrupted(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the benchmark stops what it started on its way out."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per table row")
    parser.add_argument("--study-size", type=int, default=50, help="slices per study")
    parser.add_argument("--backlog", type=int, default=4, help="ready studies kept waiting")
    parser.add_argument("--warmup-timeout", type=float, default=900.0)
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, help="also write the rows and verdict here")
    parser.add_argument("--keep-home", action="store_true", help="keep the LUNG_HOME")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, interrupted)
    home = Path(tempfile.mkdtemp(prefix="lung-soak-"))
    settings = isolate(home)
    try:
        result = soak(settings, args)
    except KeyboardInterrupt:
        say("interrupted: stopping everything the soak started")
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C cannot cut this short
            signal.signal(signum, signal.SIG_IGN)
        stop(settings)
        if args.keep_home:
            say(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["flat"] and not result["exactly_once_problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
