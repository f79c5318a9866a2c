"""The shape rules of docs/architecture.md, measured by scripts/architecture.py on the source tree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "architecture.py"


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("patchdx_architecture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_no_module_over_600_lines(arch) -> None:
    assert arch.measure()["over_limit"] == []


def test_no_import_cycle_even_through_lazy_imports(arch) -> None:
    assert arch.measure()["cycles"] == []


def test_core_never_imports_napari_or_qt(arch) -> None:
    assert arch.measure()["core_gui_imports"] == []


def test_no_private_name_crosses_modules(arch) -> None:
    assert arch.measure()["private_imports"] == []


def test_the_rules_catch_what_they_claim(arch, tmp_path, monkeypatch) -> None:
    """A tiny fake package with a lazy cycle, a lazy napari import and a private import is reported as broken."""
    pkg = tmp_path / "src" / "napari_patchdx"
    (pkg / "_napari").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_napari" / "__init__.py").write_text("import napari\n")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from .a import f\n_hidden = 1\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import napari\n"
        "def h():\n    from qtpy import QtCore\n    from .b import _hidden\n"
    )
    monkeypatch.setattr(arch, "SRC", pkg)
    report = arch.measure(max_lines=3)
    assert report["cycles"] == [["napari_patchdx.a", "napari_patchdx.b"]]
    assert report["core_gui_imports"] == ["napari_patchdx.c:5 imports qtpy"]
    assert report["private_imports"] == ["napari_patchdx.c:6 imports _hidden from napari_patchdx.b"]
    assert [row["module"] for row in report["over_limit"]] == ["napari_patchdx.c"]


def test_command_prints_a_table_and_one_json_line() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    lines = out.stdout.strip().splitlines()
    assert lines[0].endswith("lines") and lines[-1].startswith("{")
    assert ("verdict: ok" in out.stdout) == (out.returncode == 0)
