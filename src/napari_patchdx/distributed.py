"""Batch runs over many slides (or any items) in this process or on a dask.distributed cluster.

:func:`map_job` applies a function to each item: serially here (``workers=0``, no ``scheduler``), on a
:class:`distributed.LocalCluster` of ``workers`` worker processes that the job starts and closes, or on an existing
cluster given by its scheduler address (left running). :func:`worker_device` picks a worker's own GPU. The per-slide
heatmap inference on top of it (one task per slide, the checkpoints loaded once per worker process) is
:func:`napari_patchdx.inference.heatmaps_job`.

Its runs are jobs (generators yielding :class:`~napari_patchdx.progress.Progress`, see :mod:`napari_patchdx.progress`):

* Each finished item yields one report whose message names it and whose ``partial`` is an
  :class:`~napari_patchdx.progress.ItemReport` (``"done"`` with the item's result, or ``"failed"`` with its error):
  the same reports as :func:`~napari_patchdx.progress.map_items`, which runs the items serially. On a cluster
  ``Progress.done`` / ``total`` count finished items, and other reports leave ``done`` unchanged: starting the
  cluster, a retry, a heartbeat every ``heartbeat`` seconds while the cluster works (so a cancel is seen promptly).
  Serially, the reports of an item that is itself a job (e.g. a slide's cell rows) are relayed, with its partial
  results as ``ItemReport(index, "partial", value)``.
* Closing the generator (a napari worker's ``quit()``, ``job.close()``) cancels the outstanding tasks and shuts a
  cluster the job started down (its worker processes end). On an existing cluster, which is only disconnected
  from, dask cannot interrupt a running task: a task that is a job (a heatmap) is closed at its next report, when
  it sees the run's stop :class:`distributed.Event` (which stays set on the scheduler, a few bytes per cancelled
  run); a plain function runs to its end and its result is dropped.
* The result is the list of results in the order of the items.

Scheduling: the job keeps at most one task per worker thread on the cluster, submitting the next item (in item
order) as one finishes, so no task waits behind a busy worker while another is idle, and a dying worker takes
down only the task it was running. On a LocalCluster the job starts, each worker process runs torch on
``cpu_count // (workers * threads_per_worker)`` threads (dask starts workers with ``OMP_NUM_THREADS=1``);
workers of an existing cluster keep their environment's setting. Float sums depend on the thread count, so
heatmaps equal the serial run's bit for bit when both use as many torch threads, and to ~1e-7 otherwise.

Failures:

* A task whose worker process dies (killed, out of memory, segfault: dask's ``KilledWorker``) is submitted again,
  up to ``retries`` times; then the ``KilledWorker`` is raised. (A LocalCluster the job starts reports every death
  at once; an existing cluster first retries by itself as its ``distributed.scheduler.allowed-failures`` says.)
  A heatmap task that is resubmitted resumes from the slide's partial store (``<stem>.heatmap.partial.npy`` /
  ``.partial.json``), and the final ``<stem>.heatmap.ome.tif`` + ``.heatmap.json`` are only ever renamed into
  place complete, so a dead worker never leaves a heatmap that looks finished.
* An item failing with a :class:`~napari_patchdx.errors.PatchdxError` (a bad slide file, a bad setting) does not
  stop the others: once every item is done the first such error (in item order) is raised, naming its file, with
  the others listed in its notes; the other items' outputs are kept.
* Any other exception is a bug or an environment failure: it is raised at once (the outstanding tasks are
  cancelled).

Devices: with ``device="cuda"`` (or ``"auto"`` where CUDA is available) and several GPUs visible to a worker,
the worker whose name ends in the integer ``i`` (LocalCluster workers are named 0, 1, ...) uses ``cuda:(i mod n)``,
so each worker of a LocalCluster has its own GPU. On an existing cluster start one worker per GPU, each seeing only
its own (``CUDA_VISIBLE_DEVICES``, as ``dask-cuda-worker`` does), or name the workers ``...-0``, ``...-1``. An
explicit ``"cuda:<index>"`` is used as given. Multi-GPU *training* is torchrun's job (``torchrun --nproc_per_node
N -m napari_patchdx.training CONFIG.json OUT_DIR``), not dask's.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import time
import traceback
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ConfigError, InputFileError, PatchdxError
from .progress import ItemReport, Job, Progress, map_items, raise_failures

__all__ = ["check_device", "check_where", "map_job", "worker_device"]

T = TypeVar("T")

_DEVICE_FORM = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")


# ---------------------------------------------------------------------------------------------------------------
# errors that travel back from a worker
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """A :class:`PatchdxError` raised in a worker, in a form that always unpickles.

    Exceptions whose ``__init__`` takes other arguments than their message (e.g. ``InputFileError(path,
    problem)``) do not survive pickle's default ``(cls, args)`` round trip; this keeps what rebuilds them.
    """

    cls: type[PatchdxError]
    init_args: tuple[Any, ...]
    message: str
    where: str
    trace: str

    @classmethod
    def of(cls, exc: PatchdxError, where: str) -> _Failure:
        init_args = (exc.path, exc.problem) if isinstance(exc, InputFileError) else tuple(exc.args)
        trace = "".join(traceback.format_exception(exc))
        try:
            pickle.dumps((type(exc), init_args))
        except Exception:  # an unpicklable argument: keep only the message
            return cls(PatchdxError, (str(exc),), str(exc), where, trace)
        return cls(type(exc), init_args, str(exc), where, trace)

    def exception(self) -> PatchdxError:
        """The error rebuilt here (its message as raised), with the worker's traceback as a note."""
        try:
            exc = self.cls(*self.init_args)
        except Exception:
            exc = PatchdxError(self.message)
        exc.add_note(f"raised {self.where}:\n{self.trace.rstrip()}")
        return exc


def _call(fn: Callable[[Any], Any], item: Any, stop: str | None = None) -> Any:
    """What runs in the worker: ``fn(item)``, run to its end when it is a job; PatchdxError -> :class:`_Failure`.

    ``stop`` names a dask :class:`distributed.Event` the client sets when the run is cancelled: a job checks it
    between its reports (at most every ``_STOP_POLL`` seconds) and is closed when it is set, since dask cannot
    interrupt a task that is already running.
    """
    try:
        out = fn(item)
        if isinstance(out, Generator):
            out = _run_in_worker(out, stop)
        return out
    except PatchdxError as exc:
        return _Failure.of(exc, f"on dask worker {_worker_name()!r}")


_STOP_POLL = 0.5


def _run_in_worker(job: Job[T], stop: str | None) -> T | None:
    """Run a job to its end, or until the run's stop event is set (then it is closed and None returned)."""
    flag = None
    if stop is not None and _worker_name() is not None:
        from distributed import Event

        flag = Event(stop)
    checked = time.monotonic()
    try:
        while True:
            try:
                next(job)
            except StopIteration as done:
                return done.value
            if flag is not None and time.monotonic() - checked >= _STOP_POLL:
                checked = time.monotonic()
                if flag.is_set():
                    return None  # the client cancelled this task; nobody reads the value
    finally:
        job.close()


def _worker_name() -> Any:
    """This process's dask worker name, or None outside a worker."""
    try:
        from distributed import get_worker

        return get_worker().name
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# map_job
# ---------------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_where(workers: int, scheduler: str | None, retries: int, threads_per_worker: int) -> None:
    """Check where and how a run goes (the :func:`map_job` arguments of the same names): :class:`ConfigError` for a
    count that is not an integer in range, a malformed scheduler address, or both ``workers`` and ``scheduler``."""
    _check_int("workers", workers, 0)
    _check_int("retries", retries, 0)
    _check_int("threads_per_worker", threads_per_worker, 1)
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ConfigError(
                f"scheduler must be a dask scheduler address such as 'tcp://host:8786', got {scheduler!r}"
            )
        if workers:
            raise ConfigError(
                f"give either workers={workers} (a local cluster started for this run) or scheduler={scheduler!r} "
                "(an existing cluster), not both"
            )


def map_job(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int = 0,
    scheduler: str | None = None,
    retries: int = 2,
    describe: Callable[[Any], str] = str,
    threads_per_worker: int = 1,
    heartbeat: float = 1.0,
) -> Job[list[Any]]:
    """Apply ``fn`` to each item, here or on a dask cluster; a job returning the results in item order.

    Args:
        fn: called once per item. On a cluster it must pickle (a module-level function, or a
            :func:`functools.partial` of one) and its module must be importable in the workers. It may return a
            job (generator): on a cluster it is run to its end in the worker; serially its reports are relayed.
        items: the inputs (each must pickle for a cluster).
        workers: 0 = serially in this process (unless ``scheduler`` is given); N > 0 = a LocalCluster of N worker
            processes started for this job and closed at its end (dashboard off, logs at ERROR).
        scheduler: address of an existing cluster's scheduler (``"tcp://host:8786"``); the job connects to it and
            leaves it running.
        retries: how many times a task whose worker died is submitted again.
        describe: an item's name in progress messages and errors (default ``str``).
        threads_per_worker: tasks one LocalCluster worker runs at once (ignored for an existing cluster).
        heartbeat: seconds between the reports yielded while a cluster works and no item finishes.

    Yields :class:`Progress` as the module docstring says; returns ``[result of item 0, result of item 1, ...]``.

    Raises:
        ConfigError: invalid ``workers`` / ``retries`` / ``threads_per_worker`` / ``heartbeat``, both ``workers``
            and ``scheduler``, or a scheduler that cannot be reached (when iterated).
        PatchdxError: the first item that failed with one (after all the others finished).
        distributed.KilledWorker: an item whose worker died more than ``retries`` times.
    """
    check_where(workers, scheduler, retries, threads_per_worker)
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or not heartbeat > 0:
        raise ConfigError(f"heartbeat must be a positive number of seconds, got {heartbeat!r}")
    items = list(items)
    if workers == 0 and scheduler is None:
        return map_items(fn, items, describe)
    return _on_cluster(fn, items, workers, scheduler, retries, describe, threads_per_worker, float(heartbeat))


def _restore_environ(saved: dict[str, str]) -> None:
    """Make ``os.environ`` equal to ``saved`` again (keys added since removed, changed ones put back)."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _start(workers: int, scheduler: str | None, threads_per_worker: int) -> tuple[Any, Any]:
    """``(client, cluster)``: a new LocalCluster (``cluster`` to close) or a connection to ``scheduler``."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, set_as_default=False), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the dask scheduler at {scheduler!r}: {exc}") from exc
    # A LocalCluster's nannies live in this process and set OMP/MKL/OPENBLAS_NUM_THREADS=1, PYTHONHASHSEED, ... in
    # *our* os.environ before each worker spawn, never undoing it: every later subprocess of this process (a
    # training run, a DataLoader worker) would inherit them. Our environment is put back once the cluster is up.
    environ = dict(os.environ)
    # worker deaths are retried by the job, not by the scheduler, so that ``retries`` counts them
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        # no dashboard; the scheduler's small HTTP server (health, metrics) on a free port, not 8787
        scheduler_kwargs={"allowed_failures": 0, "dashboard_address": ":0"},
    )
    _restore_environ(environ)
    try:
        return Client(cluster, set_as_default=False), cluster
    except BaseException:
        cluster.close()
        raise


def _on_cluster(
    fn: Callable[[Any], Any],
    items: list[Any],
    workers: int,
    scheduler: str | None,
    retries: int,
    describe: Callable[[Any], str],
    threads_per_worker: int,
    heartbeat: float,
) -> Job[list[Any]]:
    from distributed import Event, KilledWorker, wait

    n = len(items)
    where = f"the dask cluster at {scheduler}" if scheduler else f"a local dask cluster of {workers} workers"
    yield Progress(0, n, f"starting {where}" if not scheduler else f"connecting to {where}")
    if not n:
        return []
    client = cluster = None
    pending: dict[Any, int] = {}
    environ = dict(os.environ)  # put back when the cluster is closed: a restarted worker changes it (see _start)
    try:
        client, cluster = _start(workers, scheduler, threads_per_worker)
        run = uuid.uuid4().hex[:8]
        stop = f"patchdx-stop-{run}"

        attempts = [0] * n
        results: list[Any] = [None] * n
        failures: list[tuple[int, PatchdxError]] = []
        finished = 0
        queue = deque(range(n))

        def top_up() -> int:
            """Submit queued items while fewer tasks are out than the cluster has threads; returns the threads.

            One task per worker thread at a time: no task waits behind a busy worker while another is idle, and
            a dying worker takes down only the task it was running (the only one charged a retry).
            """
            threads = sum(client.nthreads().values())
            while queue and len(pending) < max(threads, 1):
                i = queue.popleft()
                key = f"patchdx-{run}-{i}-{attempts[i]}"
                pending[client.submit(_call, fn, items[i], stop, key=key)] = i
            return threads

        threads = top_up()
        yield Progress(0, n, f"{len(pending)} of {n} tasks submitted to {where} ({threads} worker threads)")
        while pending:
            try:
                with client.as_current():  # wait() uses the current client; ours is not made the default
                    done, _ = wait(list(pending), timeout=heartbeat, return_when="FIRST_COMPLETED")
            except TimeoutError:
                top_up()  # workers may have joined
                yield Progress(finished, n, f"{finished} of {n} done, {len(pending)} running on {where}")
                continue
            for future in sorted(done, key=pending.__getitem__):
                i = pending.pop(future)
                name = describe(items[i])
                if future.status == "finished":
                    value = future.result()
                    finished += 1
                    if isinstance(value, _Failure):
                        exc = value.exception()
                        failures.append((i, exc))
                        yield Progress(finished, n, f"{name} failed: {exc}", partial=ItemReport(i, "failed", exc))
                    else:
                        results[i] = value
                        yield Progress(
                            finished, n, f"{name} done ({finished}/{n})", partial=ItemReport(i, "done", value)
                        )
                    continue
                if future.status == "error":
                    error = future.exception()
                    if isinstance(error, KilledWorker):
                        if attempts[i] < retries:
                            attempts[i] += 1
                            queue.appendleft(i)
                            yield Progress(
                                finished,
                                n,
                                f"{name}: its worker died; trying again (retry {attempts[i]} of {retries})",
                            )
                            continue
                        error.add_note(
                            f"{name}: its worker died on each of {attempts[i] + 1} tries (retries={retries})"
                        )
                        raise error
                    future.result()  # raises the task's exception with its remote traceback
                raise RuntimeError(f"{name}: its task was {future.status} on {where} (cancelled from elsewhere?)")
            top_up()
        raise_failures(failures, items, describe)
        return results
    finally:
        if client is not None:
            if pending:
                try:
                    if cluster is None:  # running tasks on a cluster we leave up: ask their jobs to stop
                        Event(stop, client=client).set()
                    client.cancel(list(pending), force=True)
                except Exception:  # the connection may be gone already; closing below still cleans up
                    logging.getLogger(__name__).debug("cancelling the outstanding tasks failed", exc_info=True)
            client.close()
        if cluster is not None:
            cluster.close()
        _restore_environ(environ)


# ---------------------------------------------------------------------------------------------------------------
# devices in workers
# ---------------------------------------------------------------------------------------------------------------


def check_device(device: Any) -> str:
    """``device`` lower-cased when it is of a known form (``auto``, ``cpu``, ``cuda``, ``cuda:<index>``, ``mps``;
    not whether this process has it: see :func:`worker_device`), else :class:`ConfigError`."""
    if not isinstance(device, str) or not _DEVICE_FORM.fullmatch(device.strip().lower()):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got {device!r}")
    return device.strip().lower()


def _worker_index(name: Any) -> int:
    """A worker's number from its name: an int, a name ending in digits, else a stable hash of the name."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    match = re.search(r"(\d+)$", str(name))
    return int(match.group(1)) if match else zlib.crc32(str(name).encode())


def worker_device(device: str = "auto") -> str:
    """The torch device string this process should use for ``device``.

    ``"auto"`` becomes ``"cuda"`` when CUDA works here, else ``"mps"`` or ``"cpu"`` (see
    :func:`napari_patchdx.devices.resolve_device`). Inside a dask worker that sees several GPUs, ``"cuda"`` becomes
    ``"cuda:<i mod n>"`` for the worker numbered ``i`` (see the module docstring), so the workers of one machine
    spread over its GPUs; elsewhere ``"cuda"`` stays ``"cuda"``. ``"cuda:<index>"`` is returned as given.

    Raises:
        ConfigError: a malformed device string, or one not available in this process.
    """
    from .devices import resolve_device

    text = str(resolve_device(check_device(device)))
    if text == "cuda":
        import torch

        count = torch.cuda.device_count()
        name = _worker_name()
        if name is not None and count > 1:
            text = f"cuda:{_worker_index(name) % count}"
    return text
