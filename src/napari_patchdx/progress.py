"""Progress reports yielded by long-running jobs (sampling, training, inference).

A job is a generator: it yields :class:`Progress` often (cancellation happens at the next ``yield``: a napari
worker's ``quit()`` or closing the generator stops it cleanly) and returns its result, which callers get from
:func:`run_job` or from the ``StopIteration`` value (napari workers emit it as ``returned``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

Job = Generator["Progress", None, T]


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


def run_job(job: Job[T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Run a job to the end, passing each progress report to ``on_progress``; returns its result."""
    while True:
        try:
            report = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(report)
