"""The one driver: relay puts a nested job on the outer scale, passes partial results, and stops at a request."""

from __future__ import annotations

import pytest

from napari_patchdx.progress import SCALE, Job, Progress, Stopped, relay, run_job


def _counting(n: int, closed: list[str]) -> Job[str]:
    try:
        for i in range(n):
            yield Progress(i + 1, n, f"step {i + 1}", partial=i if i % 2 else None)
        return "done"
    finally:
        closed.append("closed")


def test_relay_scales_reports_wraps_partials_and_returns_the_result() -> None:
    closed: list[str] = []
    reports: list[Progress] = []
    result = run_job(
        relay(_counting(4, closed), 0.5, 1.0, prefix="inner: ", wrap=lambda p: ("wrapped", p)), reports.append
    )
    assert result == "done" and closed == ["closed"]
    assert [r.done for r in reports] == [round(SCALE * f) for f in (0.625, 0.75, 0.875, 1.0)]
    assert [r.message for r in reports] == [f"inner: step {i}" for i in (1, 2, 3, 4)]
    assert [r.partial for r in reports] == [None, ("wrapped", 1), None, ("wrapped", 3)]


def test_relay_stops_at_the_report_after_which_stop_says_so() -> None:
    closed: list[str] = []
    reports: list[Progress] = []
    with pytest.raises(Stopped, match="stopped at: step 2"):
        run_job(relay(_counting(10, closed), stop=lambda: len(reports) >= 2), reports.append)
    assert len(reports) == 2 and closed == ["closed"]  # the inner job was closed, nothing ran after step 2
