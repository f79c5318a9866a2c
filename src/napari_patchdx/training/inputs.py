"""What a run trains on: :class:`TrainData` (the description a user gives) and :class:`TrainInputs` (what each
stage reads, resolved from a config and a description: patch tables, samplers, the chest X-ray image table).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._config import closest
from ..errors import ConfigError
from ..io.annotations.asap import write_asap_xml
from ..io.annotations.model import AnnotationSet
from ..io.cohort import LABELS_NAME, read_labels
from ..io.names import annotation_candidates
from ..models.nets import MIN_INPUT_SIZE
from ..progress import Job, Progress
from ..sampling.balanced import BalancedSampler
from ..sampling.cxr_lesions import CxrLesionSampler, load_cxr_cohort
from ..sampling.patches import PatchGeometry
from ..sampling.sources import SlideMpp, SlideSource, check_slide_mpp, slide_mpp
from ..sampling.splits import SPLITS, assign_splits
from ..sampling.tables import read_patch_table
from .config import DEFAULT_PATCH_SIZE, TrainConfig

SlideSpec = tuple[str | os.PathLike[str], str | os.PathLike[str] | AnnotationSet | None, str]
"""``(slide, annotations, split)``: the annotations a file, an :class:`AnnotationSet` (e.g. drawn in a viewer), or
None (a normal slide)."""


@dataclass
class TrainData:
    """Where the training data come from.

    Attributes:
        patch_table: a patch table (DataFrame, or a ``.csv`` / ``.parquet`` path): its ``train`` rows train the
            patch stage unless a sampler is given; its ``val`` rows validate it.
        sampler: Liu et al.'s balanced sampler (slides): an endless training stream from its ``train`` slides;
            its ``val`` slides give ``val_patches`` fixed validation patches (unless the table has ``val`` rows).
        slides: ``(slide, annotations or None, split)`` triples (:data:`SlideSpec`; the annotations a file or an
            :class:`~napari_patchdx.io.annotations.AnnotationSet`, e.g. a layer drawn in a viewer, in level-0
            pixels): the trainer prepares the slides and builds the sampler itself from the config's patch_size,
            center_size, mpp, jitter and seed (what the command line uses).
        cxr_root: a chest X-ray cohort folder (``labels.csv``, ``images/``, ``masks/``, ``lungs/`` as
            :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes it).
        splits: X-ray image id -> ``train`` / ``val`` / ``test``; else ``labels.csv``'s ``split`` column; else
            a reproducible split holding out ``val_fraction`` (stratified by any lesion).
        mpp: the slides' level-0 microns per pixel where their files do not say (or say wrongly): one value for
            every slide, or a mapping slide name -> um/px
            (:data:`~napari_patchdx.sampling.sources.SlideMpp`); overrides the files'.
    """

    patch_table: pd.DataFrame | str | os.PathLike[str] | None = None
    sampler: BalancedSampler | None = None
    slides: Sequence[SlideSpec] | None = None
    cxr_root: str | os.PathLike[str] | None = None
    splits: Mapping[str, str] | None = None
    mpp: SlideMpp = None

    def to_dict(self) -> dict[str, Any]:
        """The description as JSON data (a DataFrame, a sampler or annotation objects cannot be written:
        ConfigError; :meth:`with_annotation_files` saves annotation objects first)."""
        if isinstance(self.patch_table, pd.DataFrame):
            raise ConfigError("a patch table given as a DataFrame cannot be written to JSON; save it and give its path")
        if self.sampler is not None:
            raise ConfigError("a sampler object cannot be written to JSON; describe the slides with TrainData.slides")
        drawn = [Path(s).name for s, a, _ in self.slides or () if isinstance(a, AnnotationSet)]
        if drawn:
            raise ConfigError(
                f"the annotations of slides {', '.join(drawn[:10])} are objects (e.g. drawn in a viewer), which cannot "
                "be written to JSON; save the annotations to a file first (write_asap_xml, or napari's File > Save "
                "Selected Layers) and give its path, or use TrainData.with_annotation_files(folder)"
            )
        out: dict[str, Any] = {}
        if self.patch_table is not None:
            out["patch_table"] = os.fspath(self.patch_table)
        if self.slides is not None:
            out["slides"] = [
                {"slide": os.fspath(s), "annotations": None if a is None else os.fspath(a), "split": sp}
                for s, a, sp in self.slides
            ]
        if self.cxr_root is not None:
            out["cxr_root"] = os.fspath(self.cxr_root)
        if self.splits is not None:
            out["splits"] = dict(self.splits)
        if self.mpp is not None:
            out["mpp"] = check_slide_mpp(self.mpp, "data.mpp")
        return out

    def with_annotation_files(self, folder: str | os.PathLike[str], *, write: bool = True) -> TrainData:
        """A copy whose annotation objects are replaced by ASAP XML files ``<folder>/<slide name>.xml`` (level-0
        pixels; :func:`~napari_patchdx.io.annotations.write_asap_xml`, atomically; ``folder`` is created).

        ``write=False`` only names the files (e.g. on every rank but the one that writes). The copy is ``self``
        when no annotations are objects; a file already there is replaced.
        """
        if not any(isinstance(a, AnnotationSet) for _, a, _ in self.slides or ()):
            return self
        target = Path(folder)
        slides: list[SlideSpec] = []
        for slide, truth, split in self.slides or ():
            if isinstance(truth, AnnotationSet):
                path = annotation_candidates(target / Path(slide).name)[0]
                if write:
                    target.mkdir(parents=True, exist_ok=True)
                    write_asap_xml(truth, path)
                truth = path
            slides.append((slide, truth, split))
        return dataclasses.replace(self, slides=slides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainData:
        """A description from JSON data (keys as :meth:`to_dict` writes them)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"the data description must be a mapping, got {type(values).__name__}")
        names = ["patch_table", "slides", "cxr_root", "splits", "mpp"]
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown data key {key!r}; did you mean {closest(str(key), names)!r}?")
        slides = None
        if values.get("slides") is not None:
            slides = []
            for i, item in enumerate(values["slides"]):
                if isinstance(item, Mapping):
                    slides.append((item["slide"], item.get("annotations"), item.get("split", "train")))
                elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
                    slides.append((item[0], item[1], item[2]))
                else:
                    raise ConfigError(f"slides[{i}] must be {{slide, annotations, split}} or a triple, got {item!r}")
        return cls(
            patch_table=values.get("patch_table"),
            slides=slides,
            cxr_root=values.get("cxr_root"),
            splits=values.get("splits"),
            mpp=check_slide_mpp(values.get("mpp"), "data.mpp"),
        )


@dataclass
class TrainInputs:
    """Training inputs resolved from a config and a :class:`TrainData` (tables, samplers, image lists)."""

    classes: tuple[str, ...]
    in_channels: int
    patch_size: int
    center_size: int | None = None
    mpp: float | None = None
    train_stream: BalancedSampler | CxrLesionSampler | None = None
    train_table: pd.DataFrame | None = None
    val_table: pd.DataFrame | None = None
    images: pd.DataFrame | None = None
    splits_auto: bool = False
    slide_mpp: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _table_classes(table: pd.DataFrame) -> tuple[str, ...]:
    multi = [c[len("label_") :] for c in table.columns if str(c).startswith("label_")]
    return tuple(multi) if multi else ("tumor",)


def _load_table(table: pd.DataFrame | str | os.PathLike[str] | None) -> tuple[pd.DataFrame | None, Path | None]:
    if table is None:
        return None, None
    if isinstance(table, pd.DataFrame):
        missing = [c for c in ("slide", "x", "y", "level", "size", "label", "split") if c not in table.columns]
        if missing:
            raise ConfigError(f"the patch table lacks columns {missing}")
        return table.reset_index(drop=True), None
    return read_patch_table(table), Path(table)


def _cxr_images(config: TrainConfig, data: TrainData) -> tuple[pd.DataFrame, tuple[str, ...], bool, list[Path]]:
    """The cohort's images: columns image, path, split and one 0/1 column per class; classes; auto split; files."""
    root = Path(data.cxr_root)  # type: ignore[arg-type]
    labels_csv = root / LABELS_NAME
    table, classes = read_labels(root)
    values = table[list(classes)]
    ids = table["image"].astype(str).tolist()
    auto = False
    if data.splits is not None:
        fallback = table["split"].astype(str).tolist() if "split" in table.columns else ["train"] * len(ids)
        split = [str(data.splits.get(i, f)) for i, f in zip(ids, fallback, strict=True)]
    elif "split" in table.columns:
        split = table["split"].astype(str).tolist()
    else:
        strata = {i: int(v) for i, v in zip(ids, values.to_numpy().any(axis=1), strict=True)}
        fr = config.val_fraction
        mapping = assign_splits(ids, (1.0 - fr, fr, 0.0), seed=config.seed, strata=strata)
        split = [mapping[i] for i in ids]
        auto = True
    bad = sorted({s for s in split if s not in SPLITS})
    if bad:
        raise ConfigError(f"X-ray splits must be one of {SPLITS}, got {bad}")
    out = pd.DataFrame({"image": ids, "path": [str(root / str(p)) for p in table["png"]], "split": split})
    for c in classes:
        out[c] = values[c].to_numpy(np.float32)
    files = [labels_csv, *[Path(p) for p in out["path"]]]
    return out, classes, auto, files


def _split_sampler(sampler: BalancedSampler, split: str) -> BalancedSampler | None:
    """The sampler over the slides of one split (the sampler itself when all its slides are of that split)."""
    sources = [s for s in sampler.sources if s.split == split]
    if not sources:
        return None
    if len(sources) == len(sampler.sources):
        return sampler
    return BalancedSampler(
        sources,
        sampler.geometry,
        seed=sampler.seed,
        jitter=sampler.jitter,
        p_tumor=sampler.p_tumor,
        max_tries=sampler.max_tries,
    )


def _paths_mpp(mpp: SlideMpp, data: TrainData, table: pd.DataFrame | None) -> dict[str, float]:
    """Slide path (as the patch readers are given it) -> the microns per pixel ``mpp`` gives that slide."""
    paths = [str(Path(s)) for s, _, _ in data.slides or ()]
    if table is not None:
        paths.extend(str(p) for p in table["slide"].unique())
    return {p: v for p in dict.fromkeys(paths) if (v := slide_mpp(mpp, p)) is not None}


def resolve_inputs(config: TrainConfig, data: TrainData, *, samplers: bool = True) -> Job[TrainInputs]:
    """Resolve what each stage reads (yields progress while preparing slides).

    ``samplers=False`` skips what only training needs (X-ray lesion masks, drawing validation patches): enough
    for planning.
    """
    if not isinstance(data, TrainData):
        raise ConfigError(f"data must be a TrainData, got {type(data).__name__}")
    table, table_path = _load_table(data.patch_table)
    files: list[Path] = [table_path] if table_path is not None else []
    given_mpp = check_slide_mpp(data.mpp, "data.mpp")
    if config.track == "slide":
        if data.cxr_root is not None:
            raise ConfigError("cxr_root is for the chest X-ray track (track='cxr'); slides need a sampler or table")
        sampler = data.sampler
        if data.slides is not None:
            if sampler is not None:
                raise ConfigError("give either a sampler or slides, not both")
            if not data.slides:
                raise ConfigError("no training data: the slide list is empty")
            patch = config.patch_size or DEFAULT_PATCH_SIZE["slide"]
            geometry = PatchGeometry(patch, config.center_size or min(128, patch), config.mpp)
            sources = []
            for k, (path, annotations, split) in enumerate(data.slides):
                yield Progress(k, len(data.slides), f"preparing slide {Path(path).name}")
                sources.append(SlideSource.prepare(path, annotations, split=split, mpp=given_mpp))
                files.append(Path(path))
                if isinstance(annotations, str | os.PathLike):  # an annotation object is no input file
                    files.append(Path(annotations))
            sampler = BalancedSampler(sources, geometry, seed=config.seed, jitter=config.jitter)
        geometry = sampler.geometry if sampler is not None else None
        patch_size = config.patch_size or (geometry.patch_size if geometry else DEFAULT_PATCH_SIZE["slide"])
        if geometry is not None and patch_size != geometry.patch_size:
            raise ConfigError(f"patch_size {patch_size} differs from the sampler's {geometry.patch_size}")
        center = geometry.center_size if geometry else (config.center_size or min(128, patch_size))
        mpp = geometry.mpp if geometry else config.mpp
        if patch_size < MIN_INPUT_SIZE[config.arch]:
            raise ConfigError(f"{config.arch} needs inputs of at least {MIN_INPUT_SIZE[config.arch]} px")
        inputs = TrainInputs(
            ("tumor",), 3, patch_size, center, mpp, slide_mpp=_paths_mpp(given_mpp, data, table), files=files
        )
        if table is not None:
            inputs.classes = _table_classes(table)
        train_sampler = _split_sampler(sampler, "train") if sampler is not None else None
        if train_sampler is not None:
            inputs.train_stream = train_sampler
            if table is not None and (table["split"] == "train").any():
                warnings.warn(
                    "the patch table's training rows are not used: training draws from the sampler",
                    UserWarning,
                    stacklevel=3,
                )
        elif table is not None:
            inputs.train_table = table[table["split"] == "train"].reset_index(drop=True)
        if inputs.train_stream is None and (inputs.train_table is None or inputs.train_table.empty):
            if table is not None or sampler is not None:
                raise ConfigError("empty training set: no patch-table rows and no sampler slides have split 'train'")
            raise ConfigError("no training data: give TrainData(patch_table=..., sampler=... or slides=...)")
        if table is not None and (table["split"] == "val").any():
            inputs.val_table = table[table["split"] == "val"].reset_index(drop=True)
        elif sampler is not None and (val_sampler := _split_sampler(sampler, "val")) is not None:
            if samplers:
                yield Progress(0, 0, f"drawing {config.val_patches} validation patches")
                inputs.val_table = val_sampler.table(config.val_patches)
        else:
            raise ConfigError("no validation data: give patch-table rows or sampler slides with split 'val'")
        return inputs

    # chest X-rays
    if data.sampler is not None or data.slides is not None:
        raise ConfigError("a slide sampler or slide list is for the slide track (track='slide')")
    patch_size = config.patch_size or min(DEFAULT_PATCH_SIZE["cxr"], config.working_size)
    images: pd.DataFrame | None = None
    classes: tuple[str, ...] | None = None
    auto = False
    if data.cxr_root is not None:
        images, classes, auto, image_files = _cxr_images(config, data)
        files.extend(image_files)
    elif config.stage != "patches" or table is None:
        raise ConfigError("no training data: chest X-ray training needs TrainData(cxr_root=...) (or a patch table)")
    if table is not None:
        table_classes = _table_classes(table)
        if table_classes == ("tumor",):
            raise ConfigError("an X-ray patch table needs one label_<class> column per lesion class")
        if classes is not None and table_classes != classes:
            raise ConfigError(f"the patch table's classes {list(table_classes)} differ from the cohort's {classes}")
        classes = table_classes
    inputs = TrainInputs(classes, 1, patch_size, images=images, splits_auto=auto, files=files)  # type: ignore[arg-type]
    if auto:
        inputs.notes.append(f"no split given: {config.val_fraction:.0%} of the images held out for validation")
    if table is not None:
        inputs.train_table = table[table["split"] == "train"].reset_index(drop=True)
        if inputs.train_table.empty:
            raise ConfigError("empty training set: the X-ray patch table has no rows with split 'train'")
        if (table["split"] == "val").any():
            inputs.val_table = table[table["split"] == "val"].reset_index(drop=True)
    if config.stage in ("patches", "curriculum") and (inputs.train_table is None or inputs.val_table is None):
        assert images is not None
        if inputs.train_table is None and not (images["split"] == "train").any():
            raise ConfigError("empty training set: no X-ray image has split 'train'")
        if inputs.val_table is None and not (images["split"] == "val").any():
            raise ConfigError("no validation data: no X-ray image has split 'val'")
        if samplers:
            yield Progress(0, 0, "reading lesion masks")
            sources = load_cxr_cohort(data.cxr_root, dict(zip(images["image"], images["split"], strict=True)))  # type: ignore[arg-type]
            kwargs = {"patch_size": patch_size, "working_size": config.working_size, "seed": config.seed}
            if inputs.train_table is None:
                inputs.train_stream = CxrLesionSampler([s for s in sources if s.split == "train"], **kwargs)
            if inputs.val_table is None:
                try:
                    val = CxrLesionSampler([s for s in sources if s.split == "val"], **kwargs)
                    inputs.val_table = val.table(config.val_patches)
                except ConfigError as exc:
                    raise ConfigError(f"validation patches: {exc}") from exc
    if config.stage != "patches":
        if images is None:
            raise ConfigError("whole-image training needs TrainData(cxr_root=...)")
        if not (images["split"] == "train").any():
            raise ConfigError("empty training set: no X-ray image has split 'train'")
        if not (images["split"] == "val").any():
            raise ConfigError("no validation data: no X-ray image has split 'val'")
    return inputs
