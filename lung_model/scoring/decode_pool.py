"""Where the scorer decodes and prepares slices: threads, or worker processes for a model
whose preparation holds Python's GIL.

The CNN's preparation (read, hash, decode, crop, resize) is mostly C code that releases the
GIL, so threads scale. The feature model's (`lung_model.imaging.features`: many scipy.ndimage,
scikit-image and numpy calls on the lung-field crop, ~20 ms a slice) mostly does not: with
the 2 CPUs free, 2 threads decoded 63 to 66 slices/s, 2 processes 91 to 92 (end to end with
the database: 64.6 against 81.0, docs/PERFORMANCE.md). A model that offers `process_prepare` (a picklable gray -> input function) therefore
gets `workers` processes for a study of at least `LUNG_SCORE_PROCESSES_MIN_FILES` files,
each given the work function once, at start. They are forked: spawn and forkserver re-run
the parent's main script in every worker, and under Airflow that is the `airflow` command,
which fails there without the metadata database's settings. A forked worker only reads,
decodes and computes features (no database, no TensorFlow, no BLAS), which is what fork
after threads allows. Starting a pool costs about 0.1 s. Workers end with their scorer,
even a killed one. A scorer that is itself a daemonic process (a task in Celery's prefork
pool) may not start processes: it decodes in threads.
See https://docs.python.org/3/library/concurrent.futures.html#processpoolexecutor
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Protocol

import psutil

from lung_model.scoring.decode import Decoded
from lung_model.scoring.files import InputFile
from lung_model.scoring.guard import Measure


class Work(Protocol):
    """Decode and prepare one file (`decode.decode_file` with the model's part bound); per
    file: whether to `measure` its acquisition and under which perturbations to `perturb` it."""

    def __call__(
        self, file: InputFile, *, measure: Measure | None = None, perturb: tuple[str, ...] = ()
    ) -> Decoded: ...


WATCH_SECONDS = 1.0  # how often a worker checks that its scorer is still there
_WORK: Work | None = None  # a worker process's work function


def _start_worker(work: Work, scorer_pid: int) -> None:
    global _WORK
    _WORK = work
    threading.Thread(target=_exit_without, args=(scorer_pid,), daemon=True).start()


def _exit_without(scorer_pid: int) -> None:
    """End this worker once the scorer is gone (killed: nobody else would ever end it, its
    task queue's pipe stays open in the other workers)."""
    scorer = psutil.Process(scorer_pid)
    while True:
        time.sleep(WATCH_SECONDS)
        try:
            alive = scorer.is_running() and scorer.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            os._exit(1)


def _work_in_worker(file: InputFile, measure: Measure | None, perturb: tuple[str, ...]) -> Decoded:
    assert _WORK is not None, "worker started without its work function"
    return _WORK(file, measure=measure, perturb=perturb)


class DecodePool:
    """`submit(file, ...)` decodes and prepares one file in a thread or a worker process
    (what varies per file, as `Work` takes it; picklable)."""

    def __init__(self, work: Work, workers: int, process_work: Work | None = None) -> None:
        # a daemonic process (a Celery prefork worker running the task) may not have children
        daemonic = multiprocessing.current_process().daemon
        self.in_processes = process_work is not None and not daemonic
        self._work = work
        self._executor: Executor
        if process_work is None or daemonic:
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        else:
            context = multiprocessing.get_context("fork")
            self._executor = ProcessPoolExecutor(
                workers, context, initializer=_start_worker, initargs=(process_work, os.getpid())
            )

    def submit(
        self, file: InputFile, *, measure: Measure | None = None, perturb: tuple[str, ...] = ()
    ) -> Future[Decoded]:
        if self.in_processes:
            return self._executor.submit(_work_in_worker, file, measure, perturb)
        return self._executor.submit(self._work, file, measure=measure, perturb=perturb)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
