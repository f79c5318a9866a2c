"""Griffe extension for the API reference: reStructuredText habits in docstrings made Markdown-friendly.

napari-patchdx's docstrings name other objects the Sphinx way (``:func:`lesion_points```,
``:class:`~napari_patchdx.geometry.Grid```). Markdown has no such roles, so without this they would show as
``:func:`` followed by code. The role is dropped and the target kept as code: ``~a.b.c`` shows ``c`` (Sphinx's
short form), ``title <a.b.c>`` shows ``title``, anything else shows the target as written. A paragraph ending
in reStructuredText's literal-block marker ``::`` ends in ``:`` (the indented block after it is already a code
block in Markdown), and a line holding only ``::`` is dropped.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|obj|exc|const):`([^`]+)`")
LITERAL_MARKER = re.compile(r"(?<=\S)::[ \t]*$", re.M)
LONE_MARKER = re.compile(r"^[ \t]*::[ \t]*\n", re.M)


def _replace(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    titled = re.fullmatch(r"(.+?)\s*<([^>]+)>", target)
    if titled:
        return f"`{titled.group(1)}`"
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def strip_roles(text: str) -> str:
    """``text`` with every Sphinx object role replaced by inline code of its target and ``::`` markers removed."""
    text = ROLE.sub(_replace, text)
    text = LITERAL_MARKER.sub(":", text)
    return LONE_MARKER.sub("", text)


class SphinxRoles(griffe.Extension):
    """Rewrite each object's docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = strip_roles(obj.docstring.value)
