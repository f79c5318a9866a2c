"""A run directory's record files: their names, and ``manifest.json``'s parts that need no configuration.

Reading and writing the manifest (atomically, as strict JSON), the inputs' sizes, modification times and sha256
checksums (a checksum is reused while size and mtime are unchanged) and the device. The package versions are
:func:`napari_patchdx.versions.package_versions`; what the manifest means is described in
:mod:`napari_patchdx.pipeline`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._fsutil import sha256_file
from ..devices import resolve_device
from ..jsonvalues import write_json

MANIFEST_KIND = "napari-patchdx pipeline run"
MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.yaml"
REPORT_NAME = "report.html"
MANIFEST_VERSION = 1


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A run's ``manifest.json`` as a dict, or None when ``path`` is unreadable or not a manifest of ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == MANIFEST_KIND else None


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` to ``path`` atomically as strict JSON (paths as text, non-finite numbers as null)."""
    write_json(path, manifest)


def input_records(files: Sequence[Path], previous: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Size, modification time and sha256 of each input; a checksum is reused when size and mtime are unchanged."""
    known = {str(r.get("path")): r for r in previous if isinstance(r, Mapping)}
    out = []
    for path in dict.fromkeys(Path(p).resolve() for p in files):
        stat = path.stat()
        old = known.get(str(path))
        if old and old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns and old.get("sha256"):
            sha = str(old["sha256"])
        else:
            sha = sha256_file(path)
        out.append({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha})
    return out


def describe_device(device: str) -> dict[str, Any]:
    """The device record of a manifest: the requested and resolved device, its name, CPU count and torch threads."""
    import torch

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        name = torch.cuda.get_device_name(resolved)
    else:
        name = platform.processor() or platform.machine() or "cpu"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return {
        "requested": device,
        "resolved": str(resolved),
        "name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
