"""Run the per-file conversion in worker processes, so that a file which kills its worker cannot stop a run.

A decoder may die on a malformed file in ways Python cannot catch: a segfault, the kernel's out-of-memory
killer, a SIGKILL. A process pool then breaks and every task in flight fails with `BrokenProcessPool`,
without saying which file did it. So the tasks that were in flight are retried one at a time, each in a
fresh process of its own: a file that kills that process too is rejected with the reason ("conversion
worker died (signal 9)") and recorded like any other rejection, so a re-run skips it; the others convert
normally; and a new pool takes the rest of the queue.
"""
from __future__ import annotations

import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable

# Tasks in flight per worker: results are recorded as they finish, and a broken pool leaves at most this
# many suspects per worker to retry alone.
IN_FLIGHT_PER_WORKER = 4


def convert_in_pool(pending: list, convert: Callable, settings, images_dir: str, workers: int,
                    keep: Callable[[dict], None]) -> None:
    """convert(task, settings, images_dir) for every task in worker processes; keep(record) for each."""
    queue = list(pending)
    while queue:
        suspects, queue = _run_until_broken(queue, convert, settings, images_dir, workers, keep)
        for task in suspects:
            keep(convert_isolated(task, convert, settings, images_dir))


def _run_until_broken(queue: list, convert, settings, images_dir: str, workers: int, keep):
    """Convert tasks until done or the pool breaks; returns (tasks in flight when it broke, tasks not started)."""
    remaining = iter(queue)
    started = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as pool:
        in_flight: dict = {}
        try:
            while True:
                for task in remaining:
                    in_flight[pool.submit(convert, task, settings, images_dir)] = task
                    started += 1
                    if len(in_flight) >= IN_FLIGHT_PER_WORKER * workers:
                        break
                if not in_flight:
                    return [], []
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in [future for future in in_flight if future in done]:  # in submission order
                    record = future.result()  # BrokenProcessPool when a worker died
                    del in_flight[future]
                    keep(record)
        except BrokenProcessPool:
            suspects = []
            for future, task in in_flight.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    keep(future.result())  # finished before the pool broke
                else:
                    suspects.append(task)
            return suspects, queue[started:]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def convert_isolated(task, convert, settings, images_dir: str) -> dict[str, Any]:
    """Convert one task in a process of its own; a record rejecting the file if that process dies."""
    context = pool_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_convert_and_send, args=(convert, task, settings, images_dir, sender),
                              daemon=True)
    process.start()
    sender.close()
    try:
        outcome, value = receiver.recv()
    except EOFError:  # the process died before it could answer
        outcome, value = "died", None
    finally:
        receiver.close()
        process.join()
    if outcome == "record":
        return value
    if outcome == "error":
        raise value  # a bug in the conversion code, not a property of the file: as in the pool
    code = process.exitcode
    if code is not None and code < 0:
        try:
            how = f"signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
    else:
        how = f"exit status {code}"
    return {"source_path": task.source_path, "fingerprint": task.fingerprint, "status": "rejected",
            "reason": f"conversion worker died ({how}); the decoder crashed or ran out of memory on this file"}


def _convert_and_send(convert, task, settings, images_dir: str, sender) -> None:
    try:
        result = ("record", convert(task, settings, images_dir))
    except Exception as error:  # sent back to be raised in the parent
        result = ("error", error)
    sender.send(result)
    sender.close()


def pool_context():
    """'fork' starts workers in milliseconds and, unlike 'spawn'/'forkserver', does not re-run the caller's
    __main__ (a user script without a main guard, or `python -`). Forking a process whose libraries run
    native threads can deadlock the child, so after TensorFlow, Ray or torch are imported: 'forkserver'."""
    threaded = any(name in sys.modules for name in ("tensorflow", "ray", "torch"))
    if not threaded:
        return get_context("fork")
    context = get_context("forkserver")
    # The server imports the conversion code once; each worker forked from it then starts in milliseconds
    # instead of importing pydicom, numpy and Pillow again (takes effect when the server starts).
    context.set_forkserver_preload(["data.batch_conversion", "pydicom", "pydicom.pixels", "PIL.Image"])
    return context
