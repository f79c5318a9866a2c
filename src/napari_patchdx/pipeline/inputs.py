"""A run's inputs: finding the slides / X-rays of the input folder, listing missing files, assigning the splits,
each slide's microns per pixel.

:func:`resolve_inputs` checks everything a run needs from its input folder before any work starts: every
missing file is listed in one error, every slide whose microns per pixel neither its file nor the configuration's
``mpp`` gives is listed in one error, and the splits must leave training, validation and predicted data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, InputFileError
from ..io.cohort import LABELS_NAME, LESIONS_NAME, read_labels
from ..io.names import file_name
from ..sampling.sources import MPP_HINT, check_mpp_names, slide_mpp
from ..sampling.splits import SPLITS, assign_splits
from .config import RunConfig

DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


@dataclass
class _Item:
    """One slide or X-ray of the run."""

    name: str
    path: Path
    truth: Path | None
    positive: bool
    split: str = "train"


@dataclass
class RunInputs:
    """The resolved inputs of a run: items with their splits, the files whose checksums are recorded and, for
    slides, ``mpp``: slide name -> ``{"mpp": level-0 um/px, "source": "file" | "configuration"}`` (from the
    slide's file, or the configuration's ``mpp``), what the run manifest records."""

    root: Path
    items: list[_Item]
    files: list[Path]
    classes: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    mpp: dict[str, dict[str, Any]] = field(default_factory=dict)

    def split(self, *splits: str) -> list[_Item]:
        return [it for it in self.items if it.split in splits]


def _missing_error(missing: Sequence[Path]) -> ConfigError:
    listed = "\n".join(f"  {p}" for p in dict.fromkeys(missing))
    return ConfigError(f"missing inputs ({len(set(missing))}):\n{listed}")


def resolve_inputs(config: RunConfig) -> RunInputs:
    """Find every input file, list all missing ones in one error, assign the splits and check they are usable."""
    from ..io.detect import slides_in_folder

    root = Path(config.input)
    missing: list[Path] = []
    items: list[_Item] = []
    files: list[Path] = []
    classes: tuple[str, ...] = ()
    t = config.training
    extra = [Path(p) for p in (t.pretrained, t.init_checkpoint, t.stain_reference) if p is not None]
    if isinstance(config.splits, str):
        extra.append(Path(config.splits))
    missing.extend(p for p in extra if not p.is_file())
    if not root.is_dir():
        raise _missing_error([*missing, root])
    labels_split: dict[str, str] = {}
    if config.track == "slides":
        for path, truth in slides_in_folder(root):
            items.append(_Item(file_name(path), path, truth, truth is not None))
            files.append(path)
            if truth is not None:
                files.append(truth)
        if not items and not missing:
            raise InputFileError(root, "holds no slides (svs, ndpi, mrxs, scn, bif, vms, tiled TIFF or DICOM-WSI)")
        stems = [it.name for it in items]
        twins = sorted({s for s in stems if stems.count(s) > 1})
        if twins:
            raise InputFileError(root, f"two slides share the name {twins[0]!r} (outputs are named by slide)")
        check_mpp_names(config.mpp, stems)
    else:
        labels = root / LABELS_NAME
        if not labels.is_file():
            missing.append(labels)
        else:
            table, classes = read_labels(root)
            files.append(labels)
            for name in (LESIONS_NAME,):
                if (root / name).is_file():
                    files.append(root / name)
            for row in table.itertuples(index=False):
                image = str(row.image)
                png = root / str(row.png)
                if not png.is_file():
                    missing.append(png)
                positive = any(int(getattr(row, c)) for c in classes)
                items.append(_Item(image, png, None, positive))
                files.append(png)
                for sub in ("masks", "lungs"):
                    extra_file = root / sub / f"{image}.png"
                    if extra_file.is_file():
                        files.append(extra_file)
                if "split" in table.columns:
                    labels_split[image] = str(row.split)
    if missing:
        raise _missing_error(missing)
    files.extend(extra)
    inputs = RunInputs(root, items, files, classes)
    if config.track == "slides":
        _slide_mpp(config, inputs)
    _assign_splits(config, inputs, labels_split)
    _check_splits_usable(config, inputs)
    return inputs


def _slide_mpp(config: RunConfig, inputs: RunInputs) -> None:
    """Record each slide's microns per pixel (the configuration's ``mpp`` where it gives one, else the file's; a
    note where the two differ); refuse the run, listing every slide that has none, before any work starts."""
    from ..io.slides.open import open_slide

    unknown: list[_Item] = []
    for it in inputs.items:
        with open_slide(it.path) as slide:
            own = slide.mpp
        given = slide_mpp(config.mpp, it.path)
        if given is None and own is None:
            unknown.append(it)
            continue
        source = "file" if given is None else "configuration"
        inputs.mpp[it.name] = {"mpp": own if given is None else given, "source": source}
        if given is not None and own is not None and abs(given - own) > 0.01 * own:
            inputs.notes.append(f"{it.name}: the configuration's mpp {given:g} um/px overrides the file's {own:g}")
    if unknown:
        listed = "\n".join(f"  {it.name}: {it.path}" for it in unknown)
        raise ConfigError(
            f"microns per pixel unknown for {len(unknown)} slide(s): their files do not say, and tissue detection "
            f"needs them; {MPP_HINT}\n{listed}"
        )


def _read_split_csv(path: Path) -> dict[str, str]:
    try:
        table = pd.read_csv(path)
    except Exception as exc:
        raise InputFileError(path, f"not a readable CSV ({type(exc).__name__}: {exc})") from None
    name_col = next((c for c in ("name", "slide", "image") if c in table.columns), None)
    if name_col is None or "split" not in table.columns:
        raise InputFileError(path, "a split file needs columns 'name' (or 'slide' / 'image') and 'split'")
    out = {}
    for lineno, (name, split) in enumerate(zip(table[name_col], table["split"], strict=True), start=2):
        if split not in SPLITS:
            raise InputFileError(path, f"line {lineno}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        out[str(name)] = str(split)
    return out


def _assign_splits(config: RunConfig, inputs: RunInputs, labels_split: Mapping[str, str]) -> None:
    names = [it.name for it in inputs.items]
    splits = config.splits
    if isinstance(splits, str):
        mapping = _read_split_csv(Path(splits))
        where = splits
    elif isinstance(splits, Mapping):
        mapping, where = dict(splits), "splits"
    elif splits is None and labels_split:
        bad = sorted({s for s in labels_split.values() if s not in SPLITS})
        if bad:
            raise InputFileError(inputs.root / LABELS_NAME, f"split column holds {bad}; use {', '.join(SPLITS)}")
        mapping, where = dict(labels_split), LABELS_NAME
    else:
        fractions = tuple(splits) if splits is not None else DEFAULT_SPLIT_FRACTIONS
        strata = {it.name: int(it.positive) for it in inputs.items}
        mapping = assign_splits(names, fractions, seed=config.seed, strata=strata)  # type: ignore[arg-type]
        where = ""
    if where:
        unknown = sorted(set(mapping) - set(names))
        absent = [n for n in names if n not in mapping]
        if unknown:
            raise ConfigError(f"{where}: names not in {inputs.root}: {', '.join(unknown[:10])}")
        if absent:
            raise ConfigError(f"{where}: no split for {', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}")
    for it in inputs.items:
        it.split = mapping[it.name]


def _check_splits_usable(config: RunConfig, inputs: RunInputs) -> None:
    kind = "slide" if config.track == "slides" else "image"
    for split in ("train", "val"):
        if not inputs.split(split):
            raise ConfigError(
                f"no {kind} has split {split!r} ({len(inputs.items)} {kind}s); training needs training and "
                "validation data: adjust 'splits'"
            )
    if not inputs.split(*config.infer.splits):
        raise ConfigError(
            f"no {kind} has a split in infer.splits {config.infer.splits}; adjust 'splits' or 'infer.splits'"
        )
    if config.track == "slides":
        for split in ("train", "val"):
            if not any(it.positive for it in inputs.split(split)):
                raise ConfigError(
                    f"no tumour slide (one with ground truth beside it) has split {split!r}; the balanced sampler "
                    "needs tumour in the training and validation slides: adjust 'splits'"
                )
        evaluated = inputs.split(*config.infer.splits)
        if all(it.positive for it in evaluated) or not any(it.positive for it in evaluated):
            inputs.notes.append(
                "the evaluated slides are all of one class: the slide-level AUC is undefined (FROC still works)"
            )
