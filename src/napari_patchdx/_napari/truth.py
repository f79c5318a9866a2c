"""Ground truth in the viewer: which Shapes layers are ground truth, which slide each belongs to, their classes and
colours, and the layers a user creates over a slide.

* **Ground-truth layers** are the Shapes layers that are not patch or lesion boxes drawn by the widgets
  (:func:`truth_layers`): the layer opened with a slide (``"<slide> ground truth"``, empty when the slide has no
  annotation file), a layer the user adds with napari's own new-layer button, or one opened from a file.
* **Which slide** (:func:`truth_for_slides`, the one rule every widget uses): the layer's recorded slide
  (``metadata["patchdx"]["slide"]``), else a name that starts with the slide's file name, else the one chosen slide
  its shapes lie over, else, with one slide and one layer, that slide.
* **Classes**: every shape has a ``label`` feature, one of
  :data:`~napari_patchdx.layerdata.shapes.DRAW_CLASSES` (tumour, exclusion, normal) or any class read from a file;
  napari's Features table widget offers them as a drop-down, the Ground truth widget sets them. Edge colours
  follow the label (:func:`recolor`) whenever shapes are added or the features change, so a new polygon is drawn
  in its class's colour (an edit in the Features table shows at the next change of the layer).
* **Adoption** (:func:`watch_truth_layers`): a Shapes or Points layer inserted without plugin metadata over slide
  layers is tagged with the frame of the slides it lies over (every slide shown when it is empty; the writers'
  rule, :func:`~napari_patchdx._napari.writers.layer_frame`): their mpp, so it saves in level-0 pixels even after
  the slides are closed, and, when one slide is shown, that slide. A Shapes layer also gets the ``label`` feature
  (tumour by default). A layer over no slide, or over slides of different pixel sizes, is left untagged: the
  writers then refuse it with a message that says what to do.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import napari
import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io.annotations.model import AnnotationSet
from ..io.names import file_name
from ..layerdata import class_color, empty_annotation_layer
from ..layerdata.shapes import FEATURE_DEFAULTS, annotation_features
from .viewer import add_layers
from .writers import layer_frame, shapes_to_annotations

#: kinds of Shapes layers the widgets draw that are not ground truth
NOT_TRUTH = ("patches", "boxes")


def patchdx_meta(layer: Any) -> dict[str, Any]:
    """A layer's ``metadata["patchdx"]`` (empty when the plugin did not make or tag it)."""
    return dict(layer.metadata.get("patchdx") or {})


def slide_layers(viewer: napari.Viewer) -> list[Any]:
    """The viewer's slide layers (opened by this plugin), bottom to top."""
    return [layer for layer in viewer.layers if patchdx_meta(layer).get("kind") == "slide"]


def truth_layers(viewer: napari.Viewer) -> list[Any]:
    """The Shapes layers that can hold ground truth (not the patch or lesion boxes the widgets draw)."""
    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, napari.layers.Shapes) and patchdx_meta(layer).get("kind") not in NOT_TRUTH
    ]


def slide_path(layer: Any) -> Path:
    """The file of a slide layer."""
    return Path(patchdx_meta(layer)["path"])


# ------------------------------------------------------------------------------------------ classes and colours


def labels_of(layer: Any) -> list[str]:
    """Each shape's class (``label`` feature; tumour where there is none)."""
    features = layer.features
    if "label" not in features.columns:
        return ["tumor"] * len(layer.data)
    return [str(v) if isinstance(v, str) and v.strip() else "tumor" for v in features["label"].tolist()]


def recolor(layer: Any) -> None:
    """Colour every shape's edge by its class (and the colour of the next shape by the class it will get)."""
    labels = labels_of(layer)
    if labels:
        colors = [class_color(label) for label in labels]
        if not np.array_equal(np.asarray(layer.edge_color)[:, :3].round(3), _rgb(colors).round(3)):
            layer.edge_color = colors
    default = layer.feature_defaults
    if "label" in default.columns and len(default):
        _next_colour(layer, str(default["label"].iloc[0]))


def _next_colour(layer: Any, label: str) -> None:
    """The edge colour of the next shape drawn; napari also paints the selected shapes with it, so it is set only
    while none is selected (a shape drawn is recoloured by its class anyway)."""
    if not layer.selected_data:
        layer.current_edge_color = class_color(label)


def _rgb(colors: Sequence[str]) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.array([to_rgb(c) for c in colors], dtype=np.float64).reshape(-1, 3)


def ensure_label_feature(layer: Any) -> None:
    """Give a Shapes layer the ground-truth features of :func:`~napari_patchdx.layerdata.shapes.annotation_features`
    (a categorical ``label``: the drawing classes plus those present, tumour where a shape has none; other columns
    kept) and make a new shape a tumour region, unless its ``label`` is categorical already."""
    column = layer.features.get("label")
    if column is not None and isinstance(column.dtype, pd.CategoricalDtype):
        return
    columns = {str(k): list(v) for k, v in layer.features.to_dict(orient="list").items()}
    columns["label"] = labels_of(layer)
    layer.features = annotation_features(columns)
    layer.feature_defaults = dict(FEATURE_DEFAULTS)
    keep_draw_class(layer)


#: the class of the shapes drawn next, per layer (napari resets a layer's feature defaults whenever its features
#: are replaced; :func:`keep_draw_class` puts this back)
_DRAW_CLASS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def set_draw_class(layer: Any, label: str) -> None:
    """Make ``label`` the class (and colour) of the shapes drawn next in ``layer``."""
    _add_category(layer, label)
    _DRAW_CLASS[layer] = label
    keep_draw_class(layer)


def keep_draw_class(layer: Any) -> None:
    """Give the shapes drawn next the class last chosen with :func:`set_draw_class` (tumour by default), and its
    colour, as new regions (:data:`~napari_patchdx.layerdata.shapes.FEATURE_DEFAULTS` otherwise)."""
    label = _DRAW_CLASS.get(layer, str(FEATURE_DEFAULTS["label"]))
    defaults = {str(k): v.iloc[0] for k, v in layer.feature_defaults.items()} if len(layer.feature_defaults) else {}
    # napari copies the last shape's features into the defaults when the features are replaced: a new shape is a
    # new region of the chosen class, with no name or group of its own
    wanted = {**defaults, **{k: v for k, v in FEATURE_DEFAULTS.items() if k in defaults}, "label": label}
    if any(defaults.get(k) != v for k, v in wanted.items()):
        layer.feature_defaults = wanted
    _next_colour(layer, label)


def set_class(layer: Any, indices: Sequence[int], label: str) -> None:
    """Give the shapes ``indices`` of ``layer`` the class ``label`` and recolour them."""
    _add_category(layer, label)
    features = layer.features.copy()
    for i in indices:
        features.loc[features.index[int(i)], "label"] = label
    layer.features = features
    keep_draw_class(layer)
    recolor(layer)


def _add_category(layer: Any, label: str) -> None:
    if "label" not in layer.features.columns:
        ensure_label_feature(layer)
    column = layer.features["label"]
    if isinstance(column.dtype, pd.CategoricalDtype) and label not in column.cat.categories:
        features = layer.features.copy()
        features["label"] = column.cat.add_categories([label])
        layer.features = features
        keep_draw_class(layer)


# ------------------------------------------------------------------------------------------ which slide


def _world_box(layer: Any) -> np.ndarray | None:
    """(2, 2) world [[y0, x0], [y1, x1]] box of a vector layer's data, or None when it is empty."""
    if len(layer.data) == 0:
        return None
    extent = np.asarray(layer.extent.world, dtype=np.float64)[:, -2:]
    return extent if np.isfinite(extent).all() else None


def _over(box: np.ndarray, slide: Any) -> bool:
    extent = np.asarray(slide.extent.world, dtype=np.float64)[:, -2:]
    return bool(np.all(box[0] <= extent[1]) and np.all(extent[0] <= box[1]))


def slide_of(layer: Any, slides: Sequence[Any]) -> Any:
    """The slide layer (among ``slides``: every slide shown) a ground-truth layer belongs to, or None (see the
    module docstring). A recorded slide that is not among ``slides`` gives None."""
    recorded = patchdx_meta(layer).get("slide")
    if recorded:
        return next((s for s in slides if slide_path(s) == Path(recorded)), None)
    named = [s for s in slides if layer.name.startswith(file_name(slide_path(s)))]
    if named:
        return max(named, key=lambda s: len(file_name(slide_path(s))))
    box = _world_box(layer)
    if box is not None:
        under = [s for s in slides if _over(box, s)]
        if len(under) == 1:
            return under[0]
    return None


def truth_for_slides(
    slides: Sequence[Any], truths: Sequence[Any], *, shown: Sequence[Any] | None = None, strict: bool = True
) -> dict[str, Any]:
    """The chosen ground-truth layer of each chosen slide layer (by layer name; None: no layer chosen for it).

    ``shown`` are every slide layer of the viewer (default: ``slides``): a layer belongs to one of them
    (:func:`slide_of`), and counts only when that one is chosen. An empty layer gives way to a layer with shapes
    for the same slide (the empty layer opened with an unannotated slide beside a layer the user drew in).

    Raises:
        ConfigError: two chosen layers with shapes belong to one slide, or (``strict``) a chosen layer belongs to
            none of the chosen slides (the message names the layers and says what to do).
    """
    found: dict[str, Any] = {s.name: None for s in slides}
    stray = []
    for truth in truths:
        slide = slide_of(truth, shown if shown is not None else slides)
        if slide is None and len(slides) == 1 and len(truths) == 1:
            slide = slides[0]
        if slide is None:
            stray.append(truth.name)
            continue
        if slide.name not in found:  # another slide's ground truth (shown, not chosen)
            continue
        other = found[slide.name]
        if other is not None and len(other.data) and len(truth.data):
            raise ConfigError(
                f"two ground-truth layers are chosen for slide {slide.name!r}: {other.name!r} and "
                f"{truth.name!r}; choose one (or merge their shapes into one layer)"
            )
        if other is None or not len(other.data):
            found[slide.name] = truth
    if stray and strict:
        raise ConfigError(
            f"ground-truth layer(s) {', '.join(map(repr, stray))} belong to none of the chosen slides: draw them over "
            "a chosen slide, name them after it ('<slide> ground truth'), or leave them unchosen"
        )
    return found


def layer_annotations(layer: Any, viewer: napari.Viewer) -> AnnotationSet | None:
    """A ground-truth layer's regions in level-0 pixels (None when it holds no usable region: a normal slide)."""
    annotations = shapes_to_annotations(layer.data, layer.as_layer_data_tuple()[1], viewer)
    return annotations if len(annotations.regions) else None


# ------------------------------------------------------------------------------------------ new and adopted layers


def new_truth_layer(viewer: napari.Viewer, slide: Any) -> Any:
    """Add an empty ground-truth layer framed to ``slide`` (a slide layer), named ``"<slide> ground truth"`` (with
    a number when that name is taken); returns it."""
    from ..io.slides.open import open_slide

    meta = patchdx_meta(slide)
    base = f"{file_name(slide_path(slide))} ground truth"
    name, k = base, 2
    while name in viewer.layers:
        name, k = f"{base} {k}", k + 1
    with open_slide(slide_path(slide), mpp=meta.get("mpp")) as opened:
        data = empty_annotation_layer(opened, name=name)
    (layer,) = add_layers(viewer, [data])
    return layer


def adopt(viewer: napari.Viewer, layer: Any) -> None:
    """Tag a user's Shapes / Points layer with the frame (and slide) of the slides shown (see the module
    docstring); give ground-truth layers their class feature and colours. Layers already tagged keep their tags."""
    if not isinstance(layer, napari.layers.Shapes | napari.layers.Points):
        return
    meta = patchdx_meta(layer)
    if not meta:
        try:  # the writers' rule: the slides its data lie over (every slide when it is empty) share one mpp
            _, mpp = layer_frame(layer.data, layer.as_layer_data_tuple()[1], viewer)
        except ConfigError:
            return  # over no slide, or slides of different pixel sizes: the writers refuse it, saying why
        meta = {"frame": "world_px"} if mpp is None else {"mpp": float(mpp)}
        if isinstance(layer, napari.layers.Shapes):
            meta["kind"] = "annotations"
        slides = slide_layers(viewer)
        if len(slides) == 1:
            meta["slide"] = str(slide_path(slides[0]))
        layer.metadata = {**layer.metadata, "patchdx": meta}
    if isinstance(layer, napari.layers.Shapes) and meta.get("kind") not in NOT_TRUTH:
        ensure_label_feature(layer)
        recolor(layer)
        layer.events.data.connect(_recolor_after(layer, "data"))
        layer.events.features.connect(_recolor_after(layer, "features"))


def _recolor_after(layer: Any, what: str) -> Any:
    ref = weakref.ref(layer)

    def handler(event: Any = None) -> None:
        target = ref()
        if target is None:
            return
        action = getattr(event, "action", "added")
        if what == "data" and str(getattr(action, "value", action)) not in ("added", "changed"):
            return
        if what == "data" and "label" not in target.features.columns:
            ensure_label_feature(target)
        if what == "features":
            keep_draw_class(target)
        recolor(target)

    return handler


_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_truth_layers(viewer: napari.Viewer) -> None:
    """Adopt (:func:`adopt`) every Shapes / Points layer now in ``viewer`` and every one inserted later (once per
    viewer)."""
    layers = viewer.layers
    key = getattr(layers, "__wrapped__", layers)
    if key in _WATCHED:
        return
    _WATCHED.add(key)
    for layer in list(layers):
        adopt(viewer, layer)
    layers.events.inserted.connect(lambda event: adopt(viewer, event.value))


# ------------------------------------------------------------------------------------------ saving


def truth_file(layer: Any, slide: Any) -> Path:
    """Where a slide's ground-truth layer is saved: the annotation file it was read from (``.xml`` / ``.geojson``),
    else ``<slide name>.xml`` beside the slide."""
    source = patchdx_meta(layer).get("source")
    if source and Path(source).suffix.lower() in (".xml", ".geojson", ".json"):
        return Path(source)
    return truth_file_beside(slide)


def truth_file_beside(slide: Any) -> Path:
    """``<slide name>.xml`` beside a slide layer's file (where the reader finds it next time)."""
    path = slide_path(slide)
    return path.with_name(f"{file_name(path)}.xml")


def save_truth(layer: Any, viewer: napari.Viewer, path: str | Path) -> tuple[Path, Path | None]:
    """Write a ground-truth layer to ``path`` (ASAP XML, or QuPath GeoJSON for ``.geojson`` / ``.json``; level-0
    pixels, atomically), first copying an existing file to ``<path>.bak``; returns (the file, the backup or None).

    Raises:
        ConfigError: the layer holds no region, or its frame cannot be resolved (the message says what to do).
    """
    from .._fsutil import keep_backup
    from ..io.annotations.asap import write_asap_xml
    from ..io.annotations.geojson import write_geojson

    annotations = shapes_to_annotations(layer.data, layer.as_layer_data_tuple()[1], viewer)
    if not len(annotations.regions):
        raise ConfigError(f"layer {layer.name!r} holds no region to save (draw polygons or rectangles)")
    target = Path(path)
    backup = keep_backup(target)
    write = write_geojson if target.suffix.lower() in (".geojson", ".json") else write_asap_xml
    write(annotations, target)
    return target, backup


# ------------------------------------------------------------------------------------------ a typed pixel size


def place_slides(viewer: napari.Viewer, mpp: float | None) -> list[Any]:
    """Put the slides whose files do not give their microns per pixel in micrometres at ``mpp`` (typed by the user;
    None or 0: back in level-0 pixels), with the layers drawn over them, so that results computed at that pixel
    size line up. Slides whose files give it keep theirs; returns the slide layers moved.

    The ground-truth layers of such a slide (continuous level-0 data) get its new scale; a user's layer tagged with
    the slide's pixel frame (``frame = "world_px"``) is rescaled and tagged with the mpp instead.
    """
    from ..geometry import napari_transform, vector_transform

    value = float(mpp) if mpp else None
    shown = slide_layers(viewer)
    moved = []
    for slide in shown:
        meta = patchdx_meta(slide)
        if meta.get("mpp") is not None and not meta.get("mpp_typed"):
            continue  # the file says
        if meta.get("mpp") == value:
            continue
        old = meta.get("mpp") or 1.0
        factor = (value or 1.0) / old
        slide.metadata = {**slide.metadata, "patchdx": {**meta, "mpp": value, "mpp_typed": value is not None}}
        units = ("um", "um") if value else ("pixel", "pixel")
        transform = napari_transform((1.0, 1.0), (0.0, 0.0), value)
        slide.scale, slide.translate, slide.units = transform["scale"], transform["translate"], units
        for layer in viewer.layers:
            if layer is slide or slide_of(layer, shown) is not slide:
                continue
            lmeta = patchdx_meta(layer)
            if lmeta.get("frame") == "level0":
                vector = vector_transform(value)
                layer.scale, layer.translate = vector["scale"], vector["translate"]
                layer.metadata = {**layer.metadata, "patchdx": {**lmeta, "mpp": value}}
            elif lmeta.get("frame") == "world_px" or lmeta.get("mpp_typed"):
                layer.scale = tuple(float(s) * factor for s in layer.scale)
                layer.translate = tuple(float(t) * factor for t in layer.translate)
                tag = {"mpp": value, "mpp_typed": True} if value else {"frame": "world_px"}
                rest = {k: v for k, v in lmeta.items() if k not in ("frame", "mpp", "mpp_typed")}
                layer.metadata = {**layer.metadata, "patchdx": {**rest, **tag}}
            else:
                continue
            layer.units = units
        moved.append(slide)
    return moved
