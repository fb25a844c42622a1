"""`make demo` / `make stop`: the whole system on this machine, with embedded defaults.

Starts Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor; metadata in
PostgreSQL), the MLflow UI and the review dashboard on 127.0.0.1 and prints the URLs and
logins as soon as they answer; runs `lung_retrain` once unless a champion exists (as the
schedule's latest tick, so unpausing it starts no second run); copies the few real study
folders out of `data/raw` (as DVC restored it) that are not scored yet into the inbox and
waits while `lung_batch_score` scores them; when Orthanc is installed, sends one of them
through it as DICOM to the receiver and its SR back (`cli.hospital_demo`), and leaves
`lung_results_out` unpaused to send the final SR after a review; prints the time of each
phase. Progress is
printed as it goes (task states from Airflow's metadata database, the running task's newest
log line), with a heartbeat line at least once a minute.
See https://airflow.apache.org/docs/apache-airflow/stable/howto/usage-cli.html
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from lung_model.cli.exit_codes import ExitCode
from lung_model.cli.system import print_access
from lung_model.platform import airflow, db, services, stack
from lung_model.platform.airflow_runs import due_tick, last_output, run_states, trigger
from lung_model.platform.registry import current_champion
from lung_model.settings import Settings, get_settings

HEARTBEAT_SECONDS = 50.0  # never silent for a minute while waiting


class Narrator:
    """Timestamped lines for people; `heartbeat` speaks when nothing was said for a while."""

    def __init__(
        self,
        every: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        out: Callable[[str], None] = print,
    ) -> None:
        self.every, self.clock, self.out = every, clock, out
        self.last = clock()

    def say(self, message: str) -> None:
        self.out(f"[{time.strftime('%H:%M:%S')}] {message}")
        self.last = self.clock()

    def heartbeat(self, line: str) -> None:
        """Say `line` when nothing was said for `every` seconds."""
        if self.clock() - self.last >= self.every:
            self.say(line)


narrator = Narrator(out=lambda line: print(line, flush=True))
say = narrator.say


class PhaseTimer:
    """Wall-clock time of each phase of the demo, measured as it runs, for the closing table.
    `started_at` (epoch seconds) is when `make demo` began: the time before this process
    started is the set-up phase (venv, database, data)."""

    def __init__(self, started_at: float | None = None, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.begun = clock()
        self.started_at = started_at if started_at is not None else self.begun
        self.phases: list[tuple[str, float]] = []
        if started_at is not None:
            self.phases.append(("setup, db, data", max(self.begun - started_at, 0.0)))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = self.clock()
        try:
            yield
        finally:
            self.phases.append((name, self.clock() - began))

    def table(self) -> list[str]:
        rows = [*self.phases, ("total", self.clock() - self.started_at)]
        return [f"  {name:<16} {minutes(seconds):>8}" for name, seconds in rows]


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def watch(
    settings: Settings,
    env: dict[str, str],
    dag_id: str,
    run_id: str | None,
    timeout: float,
    done: Callable[[], bool] | None = None,
) -> str:
    """Print task state changes of the run (or the latest run) and the running tasks' newest
    output line (Keras' epoch lines) until it finishes, or until `done()` holds, with a
    heartbeat line at least every minute; return the last run state seen."""
    seen: dict[str, str] = {}
    printed: dict[str, str] = {}
    began = time.monotonic()
    deadline = began + timeout
    while time.monotonic() < deadline:
        current, state, tasks = run_states(env, dag_id, run_id)
        for task, task_state in tasks.items():
            if seen.get(task) != task_state:
                say(f"  {dag_id} {current} {task}: {task_state}")
            if task_state == "running" and "[" not in task:
                line = last_output(settings, dag_id, current, task)
                if line and line != printed.get(task):
                    say(f"    {task} | {line}")
                    printed[task] = line
        seen = tasks
        if done is not None and done():
            return state
        if done is None and state in ("success", "failed"):
            return state
        narrator.heartbeat(waiting_line(dag_id, current, state, tasks, printed, began))
        time.sleep(5)
    raise TimeoutError(f"{dag_id} did not finish in {timeout:.0f}s")


def waiting_line(
    dag_id: str,
    run_id: str,
    state: str,
    tasks: dict[str, str],
    printed: dict[str, str],
    began: float,
) -> str:
    """The heartbeat: which run, which tasks, the newest output line, for how long."""
    active = [t for t, s in tasks.items() if s in ("running", "deferred", "queued", "scheduled")]
    doing = ", ".join(f"{t} {tasks[t]}" for t in active) or "no task active"
    latest = next((printed[t] for t in reversed(active) if t in printed), "")
    waited = minutes(time.monotonic() - began)
    run = f"run {run_id} ({state})" if run_id else "no run yet"
    return f"  still waiting ({waited}): {dag_id} {run}: {doing}" + (
        f"; last line: {latest}" if latest else ""
    )


def override_gate(settings: Settings) -> None:
    """No champion after the retrain (the gate rejected the model): for the demo only, promote
    the newest version by operator override, recorded with its reason, and say so loudly."""
    from lung_model.lifecycle.promotion import promote

    reason = "make demo: no champion yet and the gate rejected the newest model"
    decision = promote("latest", reason, settings, actor="make-demo")
    say(
        f"WARNING: the gate rejected the model, so there was no champion. For the demo only, "
        f"version {decision.candidate_version} was promoted by operator override (recorded in "
        f"promotion_events). It did not pass the safety floors: not for clinical use."
    )


def demo_studies(data_dir: Path, per_class: int = 1, slices: int = 8) -> dict[str, list[Path]]:
    """A few study folders of consecutive slices per class, from the labelled data, named
    `demo-study-N` in an order that does not follow the class (the name tells no answer)."""
    from lung_model.data.dataset import scan

    labelled, _ = scan(data_dir)
    chunks: dict[str, list[Path]] = {}
    for label in ("normal", "benign", "malignant"):
        numbered = [s for s in labelled if s.label == label and s.number is not None]
        for index in range(per_class):
            chunk = numbered[index * slices * 3 : index * slices * 3 + slices]
            if chunk:
                chunks[chunk[0].path] = [data_dir / s.path for s in chunk]
    shuffled = sorted(chunks, key=lambda first: hashlib.sha256(first.encode()).hexdigest())
    return {f"demo-study-{n}": chunks[first] for n, first in enumerate(shuffled, start=1)}


def neutral_name(position: int, file: Path) -> str:
    """'slice-001.jpg': the dataset's names ('Malignant case (8).jpg') tell the answer."""
    return f"slice-{position:03d}{file.suffix.lower()}"


def drop_into_inbox(settings: Settings, studies: dict[str, list[Path]]) -> list[str]:
    """Copy the files under neutral names, then write the ready marker last (the inbox
    protocol)."""
    settings.ensure_dirs()
    for name, files in studies.items():
        folder = settings.inbox / name
        folder.mkdir(parents=True, exist_ok=True)
        for position, file in enumerate(files, start=1):
            shutil.copyfile(file, folder / neutral_name(position, file))
        (folder / settings.ready_marker).touch()
    return list(studies)


def already_there(settings: Settings, studies: dict[str, list[Path]]) -> dict[str, str]:
    """The demo studies not to drop again, with why: scored before (a finished batch of that
    study scored every one of its files, by content sha256), or still on their way (in the
    inbox, or claimed in `processing/`). Running the demo twice then adds nothing twice."""
    from lung_model.data.dvc import sha256_of

    with db.get_engine(settings).connect() as connection:
        rows = connection.execute(
            text("""SELECT b.study, i.sha256 FROM scan_batches b JOIN images i ON i.batch_id = b.id
                    WHERE b.study = ANY(:names) AND b.status = 'done' AND i.status = 'scored'"""),
            {"names": list(studies)},
        ).all()
    scored: dict[str, set[str]] = defaultdict(set)
    for study, sha in rows:
        scored[study].add(str(sha).strip())
    claimed = {p.name for claim in settings.processing.glob("*") for p in claim.glob("*")}
    found = {}
    for name, files in studies.items():
        if {sha256_of(file) for file in files} <= scored[name]:
            found[name] = "scored before"
        elif (settings.inbox / name).exists() or name in claimed:
            found[name] = "waiting in the inbox"
    return found


def last_batch_id(settings: Settings) -> int:
    with db.get_engine(settings).connect() as connection:
        return int(
            connection.execute(text("SELECT coalesce(max(id), 0) FROM scan_batches")).scalar_one()
        )


def study_results(
    settings: Settings, names: Iterable[str], after: int = 0
) -> list[tuple[object, ...]]:
    """The batches (newer than `after`) of these studies with their verdicts."""
    with db.get_engine(settings).connect() as connection:
        return list(
            connection.execute(
                text("""SELECT b.study, b.status, b.n_scored, b.n_quarantined,
                               s.predicted_class, round(s.max_p_malignant::numeric, 3),
                               s.needs_review, b.model_version
                        FROM scan_batches b LEFT JOIN study_results s ON s.batch_id = b.id
                        WHERE b.study = ANY(:names) AND b.id > :after ORDER BY b.id"""),
                {"names": list(names), "after": after},
            )
        )


def cli_demo(args: argparse.Namespace) -> ExitCode:
    from lung_model.cli.hospital_demo import local_pacs_destination

    timer = PhaseTimer(getattr(args, "started_at", None))
    settings = get_settings()
    if pacs := local_pacs_destination(settings):  # Airflow's lung_results_out sends there
        settings = settings.model_copy(update={"results_dicom_destination": pacs})
        if services.running(settings, "airflow-scheduler"):
            say("Airflow already runs: lung_results_out sends where it was started to send")
    with timer.phase("services up"):
        env = stack.up(settings, report=say)
    say("the services answer; log in while the demo goes on:")
    print_access(settings)
    with timer.phase("retrain"):
        retrain(settings, env, args)
    with timer.phase("scoring"):
        ok = score_demo_studies(settings, env, args)
    with timer.phase("hospital loop"):
        ok = hospital_phase(settings, env, args, results_out=pacs is not None) and ok
    print_access(settings)
    say("time per phase (minutes:seconds, measured in this run):")
    print("\n".join(timer.table()), flush=True)
    return ExitCode.OK if ok else ExitCode.ERROR


def hospital_phase(
    settings: Settings, env: dict[str, str], args: argparse.Namespace, results_out: bool
) -> bool:
    """A demo study through a local Orthanc, the receiver and back as an SR (when Orthanc is
    installed; `lung_model.cli.hospital_demo`); a failure is told, not raised. `results_out`
    (Airflow was started with that Orthanc as the SR destination): once the loop worked,
    lung_results_out is unpaused, so a reviewed study's final SR goes there too."""
    from lung_model.cli.hospital_demo import hospital_loop

    try:
        slices = next(iter(demo_studies(settings.raw_data, per_class=args.studies).values()))
        ok = hospital_loop(settings, slices, say, timeout=min(args.timeout, 600))
    except Exception as error:  # an extra: the rest of the demo stands
        say(f"hospital loop failed: {type(error).__name__}: {error}")
        return False
    if ok and results_out:
        airflow.airflow("dags", "unpause", "lung_results_out", env=env)
        say("lung_results_out is unpaused: a study's final SR follows its review within 5 min")
    return ok


def retrain(settings: Settings, env: dict[str, str], args: argparse.Namespace) -> None:
    """Train once (unless a champion exists): the triggered run stands for the schedule's
    latest tick, so unpausing lung_retrain starts no second, scheduled run."""
    current = current_champion(settings)
    if current and not args.retrain:
        say(f"champion version {current} exists: not retraining (--retrain to force)")
    else:
        tick = due_tick(env, "lung_retrain")
        say(f"triggering lung_retrain (config {args.config}); training takes a while")
        run_id = trigger(env, "lung_retrain", {"config": args.config}, logical_date=tick)
        if tick:
            say(f"  run {run_id} is the scheduled run of {tick}: unpausing adds no other")
        state = watch(settings, env, "lung_retrain", run_id, timeout=args.timeout)
        say(f"lung_retrain finished: {state}; champion now {current_champion(settings)}")
    if current_champion(settings) is None:
        override_gate(settings)


def score_demo_studies(settings: Settings, env: dict[str, str], args: argparse.Namespace) -> bool:
    """Drop the demo studies not dropped before, let lung_batch_score score them, print the
    verdicts; True when every demo study ended `done`."""
    studies = demo_studies(settings.raw_data, per_class=args.studies)
    skipped = already_there(settings, studies)
    for name, why in skipped.items():
        say(f"{name}: {why}, not dropped again")
    before = last_batch_id(settings)
    dropped = drop_into_inbox(settings, {n: f for n, f in studies.items() if n not in skipped})
    if dropped:
        say(f"dropped {len(dropped)} study folders into {settings.inbox}: {', '.join(dropped)}")
    for dag_id in ("lung_feedback", "lung_monitoring", "lung_batch_score"):
        airflow.airflow("dags", "unpause", dag_id, env=env)
    waiting = [name for name in studies if skipped.get(name) != "scored before"]
    if waiting:
        say("lung_batch_score is unpaused: its sensor notices the ready folders")

        def scored() -> bool:
            rows = study_results(settings, waiting, before)
            return len({r[0] for r in rows if r[1] in ("done", "failed")}) == len(waiting)

        watch(settings, env, "lung_batch_score", None, timeout=args.timeout, done=scored)
    rows = latest_results(settings, list(studies))
    ok = len(rows) == len(studies) and all(r[1] == "done" for r in rows)
    say(f"scored: {'success' if ok else 'failed'}")
    print("  study  status  scored  quarantined  class  max_p_malignant  needs_review  model")
    for row in rows:
        print("  " + "  ".join(str(value) for value in row))
    return ok


def latest_results(settings: Settings, names: list[str]) -> list[tuple[object, ...]]:
    """The newest batch of each of these studies with its verdict."""
    newest: dict[object, tuple[object, ...]] = {}
    for row in study_results(settings, names):
        newest[row[0]] = row  # ordered by batch id: the last one wins
    return [newest[name] for name in names if name in newest]
