"""The report stage's settings (:class:`ReportSettings`): the ``report`` section of a run configuration and the
``report`` command's options are this object's fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._config import about, boolean, text

DEFAULT_TITLE = "napari-patchdx report"
"""The report's title unless one is given."""


@dataclass
class ReportSettings:
    """Whether and how the HTML report is written."""

    enabled: bool = field(default=True, metadata=about("write report.html at the end of the run"))
    title: str = field(default=DEFAULT_TITLE, metadata=about("the report's title"))

    def __post_init__(self) -> None:
        self.enabled = boolean("report.enabled", self.enabled)
        self.title = text("report.title", self.title)  # type: ignore[assignment]
