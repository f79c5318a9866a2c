"""Long work as generators, and the one driver that runs, nests and maps them.

A job is a generator: it yields :class:`Progress` often (cancellation happens at the next ``yield``: a napari
worker's ``quit()`` or closing the generator stops it cleanly) and returns its result, which callers get from
:func:`run_job` or from the ``StopIteration`` value (napari workers emit it as ``returned``).

Every caller drives jobs through this module, so progress, partial results, cancellation and per-item failures
behave the same in the command line, ``run()``, the widgets and the dask runner:

* :func:`run_job` runs a job to its end (the command line passes a progress-bar callback);
* :func:`relay` runs a job inside another, mapping its progress onto a part of the outer job's range and passing
  its partial results on (optionally wrapped); closing the outer job closes the inner one;
* :func:`map_items` runs one job (or plain call) per item: every item runs even when others fail, each item's
  partial results and its outcome are passed on as :class:`ItemReport` partials, and the failures are raised
  together at the end by :func:`raise_failures` (the first one, the others in its notes).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .errors import PatchdxError

T = TypeVar("T")

Job = Generator["Progress", None, T]

#: the ``total`` of a relayed job's reports: progress is reported in thousandths of the outer job's range
SCALE = 1000


@dataclass(frozen=True)
class Progress:
    """One step of a job.

    Attributes:
        done: units finished so far.
        total: units in all (0 when unknown).
        message: what is happening, for a status line.
        partial: an optional partial result a viewer may show at once (e.g. the patches drawn so far).
    """

    done: int
    total: int
    message: str = ""
    partial: Any = None

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1] (0 when the total is unknown)."""
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass(frozen=True)
class ItemReport:
    """The partial result :func:`map_items` yields for item ``index`` of a multi-item job.

    Attributes:
        index: the item's position in the input sequence.
        kind: ``"partial"`` (``value`` is the item job's own partial result), ``"done"`` (``value`` is the item's
            result) or ``"failed"`` (``value`` is the :class:`~napari_patchdx.errors.PatchdxError` it raised).
        value: see ``kind``.
    """

    index: int
    kind: Literal["partial", "done", "failed"]
    value: Any = None


def run_job(job: Job[T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Run a job to the end, passing each progress report to ``on_progress``; returns its result.

    Closing happens in all cases: an exception in ``on_progress`` (or a KeyboardInterrupt) closes the job, so it
    releases its files and threads.
    """
    try:
        while True:
            try:
                report = next(job)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None:
                on_progress(report)
    finally:
        job.close()


def relay(
    job: Job[T],
    lo: float = 0.0,
    hi: float = 1.0,
    *,
    prefix: str = "",
    wrap: Callable[[Any], Any] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Job[T]:
    """Run ``job`` inside another job; returns its result.

    Each report becomes ``Progress(round(f * SCALE), SCALE, prefix + message, partial)`` with
    ``f = lo + (hi - lo) * report.fraction``: the inner job fills the part ``[lo, hi]`` of the outer job's range.
    ``wrap`` turns a non-None partial result into what the outer job passes on (None drops nothing: partials are
    passed on unchanged). After each report, ``stop()`` is asked whether to stop: if so ``job`` is closed and
    :class:`Stopped` raised. Closing the outer generator closes ``job``.
    """
    try:
        while True:
            try:
                report = next(job)
            except StopIteration as done:
                return done.value
            partial = report.partial
            if partial is not None and wrap is not None:
                partial = wrap(partial)
            frac = lo + (hi - lo) * report.fraction
            yield Progress(round(frac * SCALE), SCALE, f"{prefix}{report.message}", partial)
            if stop is not None and stop():
                raise Stopped(f"{prefix}stopped at: {report.message}")
    finally:
        job.close()


class Stopped(Exception):
    """A relayed job was stopped at one of its reports because the caller's ``stop()`` said so (:func:`relay`)."""


def raise_failures(
    failures: Sequence[tuple[int, PatchdxError]], items: Sequence[Any], describe: Callable[[Any], str]
) -> None:
    """Raise the first failure (in item order) with the others listed in its notes; nothing when there is none."""
    if not failures:
        return
    ordered = sorted(failures, key=lambda f: f[0])
    first = ordered[0][1]
    for index, exc in ordered[1:]:
        first.add_note(f"also failed: {describe(items[index])}: {exc}")
    if len(ordered) < len(items):
        first.add_note(f"the other {len(items) - len(ordered)} of {len(items)} items finished")
    raise first


def map_items(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    describe: Callable[[Any], str] = str,
) -> Job[list[Any]]:
    """Run ``fn(item)`` for every item, one after another; returns the results in item order.

    ``fn`` may return a job (it is relayed: item ``i`` fills ``[i/n, (i+1)/n]`` of the range, its messages prefixed
    ``[i+1/n]``, its partial results passed on as ``ItemReport(i, "partial", value)``) or a plain value. An item
    that raises a :class:`~napari_patchdx.errors.PatchdxError` fails alone: ``ItemReport(i, "failed", exc)`` is
    yielded and the next item runs; ``ItemReport(i, "done", result)`` follows each item that finished. After the last
    item, the failures are raised by :func:`raise_failures` (the results of the others have been yielded already).
    Any other exception ends the run at once.
    """
    items = list(items)
    n = len(items)
    results: list[Any] = [None] * n
    failures: list[tuple[int, PatchdxError]] = []
    for i, item in enumerate(items):
        name = describe(item)
        try:
            out = fn(item)
            if isinstance(out, Generator):
                out = yield from relay(
                    out, i / n, (i + 1) / n, prefix=f"[{i + 1}/{n}] ", wrap=lambda p, i=i: ItemReport(i, "partial", p)
                )
        except PatchdxError as exc:
            failures.append((i, exc))
            yield Progress(round((i + 1) / n * SCALE), SCALE, f"{name} failed: {exc}", ItemReport(i, "failed", exc))
            continue
        results[i] = out
        yield Progress(round((i + 1) / n * SCALE), SCALE, f"{name} done ({i + 1}/{n})", ItemReport(i, "done", out))
    raise_failures(failures, items, describe)
    return results
