"""The documentation site: builds with ``mkdocs build --strict`` and holds the generated references.

The build runs the MkDocs hook ``docs/hooks/reference.py``, which renders the command-line reference from
:func:`napari_patchdx.cli.build_parser`, the configuration reference from
:func:`napari_patchdx.pipeline.config_reference` and one API page per public module; strict mode turns any broken
link, missing image, missing anchor or failed generator into a failed build.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.slow

#: pages every build must produce (source page -> built page)
KEY_PAGES = (
    "index.html",
    "installation/index.html",
    "tutorials/slides/index.html",
    "tutorials/review/index.html",
    "tutorials/headless/index.html",
    "tutorials/cxr/index.html",
    "napari/index.html",
    "distributed/index.html",
    "formats/index.html",
    "reference/cli/index.html",
    "reference/config/index.html",
    "reference/api/index.html",
    "reference/api/napari_patchdx/index.html",
    "architecture/index.html",
    "benchmarks/index.html",
)


def _mkdocs_available() -> bool:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings_handlers.python  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once, strictly, into a temporary folder."""
    if not _mkdocs_available():
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _text(page: Path) -> str:
    """The visible text of a built page's article (tags removed, entities decoded)."""
    source = page.read_text(encoding="utf-8")
    article = source[source.find("<article") : source.find("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", "", article))


def test_key_pages_exist(site: Path) -> None:
    missing = [page for page in KEY_PAGES if not (site / page).is_file()]
    assert not missing, f"pages missing from the built site: {missing}"
    assert "napari-patchdx" in _text(site / "index.html")


def test_cli_reference_has_every_subcommand_and_option(site: Path) -> None:
    from napari_patchdx.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    text = _text(site / "reference/cli/index.html")
    assert len(sub.choices) >= 10
    for name, command in sub.choices.items():
        assert f"usage: napari-patchdx {name}" in text, f"subcommand {name!r} missing from the CLI reference"
        for action in command._actions:
            for option in action.option_strings:
                assert option in text, f"option {option} of {name!r} missing from the CLI reference"


def test_config_reference_has_every_key(site: Path) -> None:
    from napari_patchdx.pipeline.config import config_reference

    entries = config_reference()
    page = (site / "reference/config/index.html").read_text(encoding="utf-8")
    keys = [entry["key"] for entry in entries]
    assert {"track", "input", "train.epochs", "distributed.workers"} <= set(keys)
    for key in keys:
        assert f">{key}</code>" in page, f"configuration key {key!r} missing from the configuration reference"


def test_api_reference_documents_the_modules(site: Path) -> None:
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import reference
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    modules = reference.existing_api_modules()
    assert {"io.slides", "training", "inference", "evaluation", "pipeline"} <= {name for name, _ in modules}
    for name, _title in modules:
        qual = f"napari_patchdx.{name}" if name else "napari_patchdx"
        page = site / "reference" / "api" / (name or "napari_patchdx") / "index.html"
        assert page.is_file(), f"no API page for {qual}"
        assert f'id="{qual}"' in page.read_text(encoding="utf-8"), f"{qual} not rendered on its page"
    slides = (site / "reference/api/io.slides/index.html").read_text(encoding="utf-8")
    assert 'id="napari_patchdx.io.slides.open_slide"' in slides
    assert ":func:`" not in _text(site / "reference/api/inference/index.html"), "Sphinx roles left in the API pages"


def test_tutorial_images_are_built(site: Path) -> None:
    for page in (
        "tutorials/slides/index.html",
        "tutorials/review/index.html",
        "tutorials/cxr/index.html",
        "index.html",
    ):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', (site / page).read_text(encoding="utf-8")):
            assert (site / page).parent.joinpath(src).resolve().is_file(), f"{page}: image {src} not in the site"


def _yaml_blocks() -> list[tuple[str, str]]:
    """Every ```yaml block of the hand-written pages: (page, text)."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        for match in re.finditer(r"^```yaml[^\n]*\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S):
            blocks.append((str(page.relative_to(DOCS)), match.group(1)))
    return blocks


def test_example_configurations_are_valid() -> None:
    """The run configurations shown in the documentation are accepted by the pipeline (snippets of sections are
    checked inside a minimal configuration)."""
    from napari_patchdx.pipeline.config import RunConfig

    blocks = _yaml_blocks()
    assert len(blocks) >= 4
    for page, text in blocks:
        values = yaml.safe_load(text)
        assert isinstance(values, dict), f"{page}: a YAML example that is not a mapping"
        config = RunConfig.from_dict({"track": "slides", "input": "data", **values})
        assert config.track in ("slides", "cxr"), page
