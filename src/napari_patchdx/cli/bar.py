"""The command line's progress bar: any job driven by :func:`napari_patchdx.progress.run_job` under tqdm."""

from __future__ import annotations

from typing import Any

from ..progress import Job, Progress, run_job


def drive(job: Job[Any], desc: str = "", *, leave: bool = True) -> Any:
    """Run a job (a generator of :class:`~napari_patchdx.progress.Progress`) under a tqdm progress bar on stderr;
    returns its result. Ctrl-C closes the job (it releases its files and threads) and re-raises."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, leave=leave, dynamic_ncols=True, bar_format="{l_bar}{bar}| {elapsed} {postfix}")

    def show(report: Progress) -> None:
        if report.total and bar.total != report.total:
            bar.total = report.total
        bar.n = min(report.done, report.total) if report.total else report.done
        bar.set_postfix_str(report.message[:70], refresh=False)
        bar.refresh()

    try:
        return run_job(job, show)
    finally:
        bar.close()
