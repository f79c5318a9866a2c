"""MkDocs hook: the generated reference pages of the napari-patchdx documentation.

* **Command line** — the page holding ``<!-- patchdx:cli-reference -->`` gets every subcommand's ``--help``,
  rendered at build time from :func:`napari_patchdx.cli.build_parser`, so the reference cannot drift from the
  command.
* **Configuration** — the page holding ``<!-- patchdx:config-reference -->`` gets a table of every key of a run
  configuration from :func:`napari_patchdx.pipeline.config_reference` (a list of ``{key, type, default, help}``).
* **API** — one page per public module (``reference/api/<module>.md`` with a mkdocstrings ``:::`` block), added to
  the "API reference" section of the navigation for every module that exists in the source tree.

A generator that cannot run (a module missing, a function missing, a malformed entry) is logged as an error
naming what is missing: ``mkdocs build --strict`` then fails with that message, a plain build goes on and shows
the message in the page.
"""

from __future__ import annotations

import argparse
import functools
import html
import importlib
import logging
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.patchdx_reference")

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = "napari_patchdx"

CLI_MARKER = "<!-- patchdx:cli-reference -->"
CONFIG_MARKER = "<!-- patchdx:config-reference -->"
API_SECTION = "API reference"
API_DIR = "reference/api"
HELP_WIDTH = 100

#: Public modules documented in the API reference, in navigation order: (dotted name under the package, title).
API_MODULES: tuple[tuple[str, str], ...] = (
    ("", "napari_patchdx"),
    ("pipeline", "pipeline: run()"),
    ("io.slides", "io.slides"),
    ("io.cxr", "io.cxr"),
    ("io.annotations", "io.annotations"),
    ("io.names", "io.names"),
    ("io.cohort", "io.cohort"),
    ("sampling", "sampling"),
    ("sampling.tissue", "sampling.tissue"),
    ("sampling.balanced", "sampling.balanced"),
    ("sampling.datasets", "sampling.datasets"),
    ("transforms", "transforms"),
    ("models", "models"),
    ("training", "training"),
    ("inference", "inference"),
    ("evaluation", "evaluation"),
    ("reporting", "reporting"),
    ("geometry", "geometry"),
    ("distributed", "distributed"),
    ("progress", "progress"),
    ("errors", "errors"),
)


def _module_file(name: str) -> Path | None:
    """The source file of ``napari_patchdx.<name>`` (a module or a package), or None when it does not exist."""
    base = SRC.joinpath(PACKAGE, *name.split(".")) if name else SRC / PACKAGE
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _qualname(name: str) -> str:
    return f"{PACKAGE}.{name}" if name else PACKAGE


def _api_uri(name: str) -> str:
    return f"{API_DIR}/{name or PACKAGE}.md"


def existing_api_modules() -> list[tuple[str, str]]:
    """The entries of :data:`API_MODULES` whose source file exists (the others are not written yet)."""
    return [(name, title) for name, title in API_MODULES if _module_file(name) is not None]


# ---------------------------------------------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------------------------------------------


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Make the package importable from the source tree and list the API pages in the navigation."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    modules = existing_api_modules()
    missing = [_qualname(name) for name, _ in API_MODULES if (name, _) not in modules]
    if missing:
        log.info("API reference: not (yet) in the source tree, skipped: %s", ", ".join(missing))
    entries = [{title: _api_uri(name)} for name, title in modules]
    nav = config.nav or []
    for item in nav:
        if isinstance(item, dict) and API_SECTION in item:
            section = item[API_SECTION]
            if not isinstance(section, list):
                section = [section]
            item[API_SECTION] = [*section, *entries]
            break
    else:
        log.error("mkdocs.yml: the nav has no %r section to put the API pages in", API_SECTION)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add one generated page per existing public module."""
    for name, _title in existing_api_modules():
        files.append(File.generated(config, _api_uri(name), content=_api_page(name)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the reference markers with the generated Markdown."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, _guarded(cli_reference_markdown, page))
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, _guarded(config_reference_markdown, page))
    return markdown


def _guarded(render: Any, page: Page) -> str:
    try:
        return render()
    except ReferenceGenerationError as exc:
        log.error("%s: %s", page.file.src_uri, exc)
        return f'!!! failure "Reference not generated"\n\n    {html.escape(str(exc))}\n'


class ReferenceGenerationError(RuntimeError):
    """A generated reference cannot be built (what is missing is in the message)."""


# ---------------------------------------------------------------------------------------------------------------
# API pages
# ---------------------------------------------------------------------------------------------------------------


def _api_page(name: str) -> str:
    qual = _qualname(name)
    if not name:
        return (
            f"# `{qual}`\n\n"
            "The top-level package holds the names most scripts need; they are imported lazily on first use, so "
            "`import napari_patchdx` stays cheap. Each is documented on its module's page.\n\n"
            f"{_package_names_table()}\n"
            f"::: {qual}\n"
            "    options:\n"
            "      members: false\n"
            "      show_root_heading: false\n"
        )
    intro = f"Source: `src/{PACKAGE}/{name.replace('.', '/')}.py`."
    return f"# `{qual}`\n\n{intro}\n\n::: {qual}\n    options:\n      show_root_heading: false\n"


def _package_names_table() -> str:
    """A table of the package's public names (``__all__``), each linked to its documentation."""
    try:
        package = importlib.import_module(PACKAGE)
    except Exception as exc:
        raise ReferenceGenerationError(f"cannot import {PACKAGE}: {exc!r}") from exc
    documented = {_qualname(n) for n, _ in existing_api_modules()}
    rows = ["| name | defined in | what it is |", "|---|---|---|"]
    for attr in getattr(package, "__all__", []):
        if attr.startswith("__"):
            continue
        try:
            obj = getattr(package, attr)
        except Exception as exc:
            raise ReferenceGenerationError(f"{PACKAGE}.{attr} (listed in __all__) cannot be imported: {exc!r}") from exc
        module = getattr(obj, "__module__", "") or ""
        doc = (getattr(obj, "__doc__", "") or "").strip().splitlines()
        summary = _cell(doc[0]) if doc else ""
        if module in documented:
            link = f"[`{attr}`][{module}.{attr}]"
            where = f"[`{module}`][{module}]"
        else:
            link, where = f"`{attr}`", f"`{module}`"
        rows.append(f"| {link} | {where} | {summary} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    try:
        cli = importlib.import_module(f"{PACKAGE}.cli")
    except Exception as exc:
        raise ReferenceGenerationError(f"cannot import {PACKAGE}.cli: {exc!r}") from exc
    builder = getattr(cli, "build_parser", None)
    if not callable(builder):
        raise ReferenceGenerationError(
            f"{PACKAGE}.cli has no build_parser() function returning the argparse parser of the command"
        )
    parser = builder()
    if not isinstance(parser, argparse.ArgumentParser):
        raise ReferenceGenerationError(f"{PACKAGE}.cli.build_parser() returned {type(parser).__name__}")
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """``(name, parser, one-line help)`` of every subcommand, in the order they were added (aliases once)."""
    out: list[tuple[str, argparse.ArgumentParser, str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                out.append((name, sub, helps.get(name, "")))
    return out


def _help_text(parser: argparse.ArgumentParser) -> str:
    """``parser.format_help()`` at a fixed width (independent of the terminal running the build)."""
    original = parser.formatter_class
    parser.formatter_class = functools.partial(original, width=HELP_WIDTH)  # type: ignore[assignment]
    try:
        return parser.format_help().rstrip()
    finally:
        parser.formatter_class = original


def _code(text: str) -> str:
    return f"```text\n{text}\n```\n"


def cli_reference_markdown() -> str:
    """The Markdown of the command-line reference: the top-level help, a table, then one section per subcommand
    (nested subcommands get their own sections under their parent)."""
    parser = _build_parser()
    commands = _subcommands(parser)
    if not commands:
        raise ReferenceGenerationError(f"{PACKAGE}.cli.build_parser() defines no subcommands")
    prog = parser.prog
    lines = [_code(_help_text(parser)), "| command | what it does |", "|---|---|"]
    for name, _sub, help_ in commands:
        lines.append(f"| [`{prog} {name}`](#{_anchor(prog, name)}) | {_cell(help_)} |")
    lines.append("")

    def section(path: list[str], sub: argparse.ArgumentParser, help_: str, depth: int) -> None:
        full = " ".join([prog, *path])
        lines.append(f"{'#' * depth} `{full}` {{#{_anchor(prog, *path)}}}\n")
        if help_:
            sentence = help_[0].upper() + help_[1:]
            lines.append(sentence if sentence.endswith(".") else f"{sentence}.")
            lines.append("")
        lines.append(_code(_help_text(sub)))
        for child, child_parser, child_help in _subcommands(sub):
            section([*path, child], child_parser, child_help, min(depth + 1, 6))

    for name, sub, help_ in commands:
        section([name], sub, help_, 2)
    return "\n".join(lines)


def _anchor(*parts: str) -> str:
    return "-".join(parts).replace("_", "-").lower()


def _cell(text: str) -> str:
    """``text`` for a Markdown table cell: HTML-escaped and ``|`` made literal outside `code spans` (kept as is)."""
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    return "".join(
        part if part.startswith("`") and part.endswith("`") and len(part) > 1 else _plain(part) for part in parts
    )


def _plain(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "&#124;")


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------

CONFIG_FIELDS = ("key", "type", "default", "help")


def _config_entries() -> list[dict[str, str]]:
    if _module_file("pipeline") is None:
        raise ReferenceGenerationError(
            f"src/{PACKAGE}/pipeline.py does not exist: the configuration reference is generated from "
            f"{PACKAGE}.pipeline.config_reference()"
        )
    try:
        pipeline = importlib.import_module(f"{PACKAGE}.pipeline")
    except Exception as exc:
        raise ReferenceGenerationError(f"cannot import {PACKAGE}.pipeline: {exc!r}") from exc
    func = getattr(pipeline, "config_reference", None)
    if not callable(func):
        raise ReferenceGenerationError(
            f"{PACKAGE}.pipeline has no config_reference() function: it must return a list of dicts with the "
            f"keys {', '.join(CONFIG_FIELDS)} (one per configuration key)"
        )
    entries = func()
    if not isinstance(entries, list) or not entries:
        raise ReferenceGenerationError(f"{PACKAGE}.pipeline.config_reference() returned no entries: {entries!r}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(field not in entry for field in CONFIG_FIELDS):
            raise ReferenceGenerationError(
                f"{PACKAGE}.pipeline.config_reference()[{i}] must be a dict with the keys "
                f"{', '.join(CONFIG_FIELDS)}, got {entry!r}"
            )
    return entries


def config_reference_markdown() -> str:
    """The Markdown of the configuration reference: one table row per key, grouped by the key's first part
    (``sample.n`` is under ``sample``)."""
    entries = _config_entries()
    groups: dict[str, list[dict[str, str]]] = {}
    for entry in entries:
        key = str(entry["key"])
        group = key.split(".", 1)[0] if "." in key else ""
        groups.setdefault(group, []).append(entry)
    lines: list[str] = []
    for group, rows in groups.items():
        lines.append(f"## `{group}` {{#{group}}}\n" if group else "## Top level {#top-level}\n")
        lines.append("| key | type | default | meaning |")
        lines.append("|---|---|---|---|")
        for row in rows:
            key = str(row["key"])
            default = str(row["default"])
            default_cell = f"`{default}`" if default not in ("", "required") else _plain(default or "—")
            lines.append(
                f'| <code id="{_anchor("key", key.replace(".", "-"))}">{_plain(key)}</code> '
                f"| {_cell(row['type'])} | {default_cell} | {_cell(row['help'])} |"
            )
        lines.append("")
    return "\n".join(lines)
