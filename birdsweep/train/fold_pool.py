"""Train several folds at once, each in its own process (``trainer.fold_workers``).

On a few CPU cores a small backbone does not keep two intra-op threads busy: two folds with one
thread each train ~1.3x as many steps per second as one fold with two threads
(``benchmarks/fold_workers.py``). Each worker calls the function that trains one fold and writes
its files (:func:`birdsweep.train.kfold.train_fold_files`, handed to
:func:`train_folds_in_workers`), as the sequential loop of :func:`birdsweep.train.kfold.run_kfold`
does; the parent then reads the finished folds back and logs them to MLflow. A worker exits when its parent dies, so a killed run leaves
no orphan training in the background, and the rerun resumes from the folds' ``last.pt``.
A worker's log records (epochs, losses, validation scores) travel to the parent through the
same queue as its progress events and are handled by the parent's loggers, so they land in the
job's log file (and its MLflow artifact) and print once, in the parent's format.
"""

from __future__ import annotations

import ctypes
import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

_progress: Any = None  # the parent's queue of (fold, epoch) events, set in each worker

# trains fold ``k`` of a config into a folder and writes its files: ``(cfg, k, fold_dir,
# on_epoch)``; a module-level function, so that it reaches the spawned workers by name
TrainFold = Callable[[DictConfig, int, Path, Callable[[int, dict[str, float]], None]], Any]


def worker_threads(fold_workers: int, threads: int | None) -> int:
    """Torch threads of one fold worker: ``trainer.threads`` when set, else this process's torch
    threads (its cores, or ``OMP_NUM_THREADS`` where that is set) shared out between the workers
    (at least one)."""
    if threads:
        return int(threads)
    return max(1, torch.get_num_threads() // max(1, fold_workers))


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:  # the parent died (elsewhere than Linux): stop the fold
            os._exit(1)
        time.sleep(1.0)


def _init_worker(events: Any, parent: int) -> None:
    global _progress
    _progress = events
    if sys.platform.startswith("linux"):  # killed with the parent at once (prctl PDEATHSIG)
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    root = logging.getLogger()  # every record goes to the parent (see _handle_in_parent)
    root.handlers[:] = [logging.handlers.QueueHandler(events)]
    root.setLevel(logging.INFO)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _handle_in_parent(event: Any, on_progress: Callable[[int, int], None]) -> None:
    """One item of the workers' queue: a log record (handled by the parent's logger of that
    name, at the parent's levels) or a ``(fold, epoch)`` progress event."""
    if isinstance(event, logging.LogRecord):
        logger = logging.getLogger(event.name)
        if logger.isEnabledFor(event.levelno):
            logger.handle(event)
    else:
        on_progress(*event)


def _train_one(train_fold: TrainFold, container: dict, k: int, fold_dir: str, threads: int) -> int:
    """Worker body: ``train_fold`` fold ``k`` of the resolved config ``container`` into
    ``fold_dir``; returns ``k``."""
    torch.set_num_threads(threads)
    cfg = OmegaConf.create(container)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if _progress is not None:
            _progress.put((k, epoch))

    train_fold(cfg, k, Path(fold_dir), on_epoch)
    return k


def train_folds_in_workers(
    cfg: DictConfig,
    fold_dirs: dict[int, Path],
    train_fold: TrainFold,
    threads: int,
    progress: bool = True,
) -> None:
    """Train the folds of ``cfg`` in ``fold_dirs`` side by side, one spawned process per fold,
    ``threads`` torch threads each, each by ``train_fold`` (which writes the fold's files).

    Args:
        cfg: the composed run config (resolved here, so Hydra's resolvers are not needed in
            the workers).
        fold_dirs: fold -> its checkpoint folder, for the folds to train now (one worker each).
        train_fold: trains one fold and writes its files (a module-level function).
        threads: torch intra-op threads per worker.
        progress: show one bar over the epochs of all these folds.

    Raises:
        The first exception a worker raised (the other folds are still waited for).
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    container["trainer"]["progress"] = False  # the parent draws the bar
    folds = list(fold_dirs)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    epochs = int(cfg.trainer.epochs)
    done = dict.fromkeys(folds, 0)
    bar = tqdm(
        total=epochs * len(folds),
        desc="folds " + ",".join(map(str, folds)),
        unit="epoch",
        disable=not progress,
    )
    stop = threading.Event()

    def progress_event(k: int, epoch: int) -> None:
        bar.update(max(0, epoch + 1 - done[k]))
        done[k] = max(done[k], epoch + 1)
        bar.set_postfix_str(" ".join(f"f{j}:{e}/{epochs}" for j, e in done.items()))

    def drain() -> None:
        while True:
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():  # the workers are gone and everything they sent is read
                    return
                continue
            _handle_in_parent(event, progress_event)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    log.info(
        "training folds %s in %d processes, %d thread(s) each", list(folds), len(folds), threads
    )
    error: BaseException | None = None
    try:
        with ProcessPoolExecutor(
            max_workers=len(folds),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(events, os.getpid()),
        ) as pool:
            futures = {
                pool.submit(_train_one, train_fold, container, k, str(fold_dirs[k]), threads): k
                for k in folds
            }
            for fut in as_completed(futures):
                try:
                    log.info("fold %d: trained in its worker", fut.result())
                except Exception as exc:  # keep waiting for the others, then raise the first
                    error = error or exc
    finally:
        stop.set()
        reader.join()
        bar.close()
    if error is not None:
        raise error
