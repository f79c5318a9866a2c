"""Ground truth in the viewer: the Ground truth widget (new layer, class of new and of selected shapes, save with a
backup), class colours that follow the label, layers adopted when inserted, and which slide a layer belongs to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from napari_patchdx import ConfigError, read_annotations
from napari_patchdx.io.annotations.model import class_color

pytestmark = pytest.mark.gui

MPP = 0.5


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two unannotated synthetic slides (1024 px at 0.5 um/px)."""
    from napari_patchdx.synth.wsi.slide import make_slide

    root = tmp_path_factory.mktemp("truth")
    return [
        make_slide(root / f"{name}.tif", height=1024, width=1024, mpp=MPP, seed=seed, tumor=False).path
        for seed, name in enumerate(("left", "right"))
    ]


def _square(y: float, x: float, side: float = 100.0) -> np.ndarray:
    return np.array([[y, x], [y, x + side], [y + side, x + side], [y + side, x]], dtype=np.float64)


def _edge(layer, i: int) -> tuple[float, ...]:
    return tuple(np.round(np.asarray(layer.edge_color)[i], 3))


def _rgba(label: str) -> tuple[float, ...]:
    return tuple(np.round(to_rgba(class_color(label)), 3))


def test_ground_truth_widget_draws_classes_and_saves_with_a_backup(make_napari_viewer, slides, tmp_path) -> None:
    from napari_patchdx._napari.truth_widget import GroundTruthWidget

    viewer = make_napari_viewer()
    viewer.open(str(slides[0]), plugin="napari-patchdx")
    widget = GroundTruthWidget(viewer)
    assert widget.slide.value == "left" and widget.layer.value == "left ground truth"
    assert Path(widget.path.value) == slides[0].with_suffix(".xml")  # beside the slide
    layer = viewer.layers["left ground truth"]

    layer.add_polygons([_square(10, 10)])  # the class of new shapes is tumour
    widget.draw_class.value = "normal"
    layer.add_polygons([_square(300, 300)])
    widget.draw_class.value = "exclusion"
    layer.add_polygons([_square(30, 30, 20)])
    assert list(layer.features["label"]) == ["tumor", "normal", "exclusion"]
    assert [_edge(layer, i) for i in range(3)] == [_rgba("tumor"), _rgba("normal"), _rgba("exclusion")]

    layer.selected_data = {1}  # the normal square becomes tumour
    widget.draw_class.value = "tumor"
    widget.apply_button.clicked.emit()
    assert list(layer.features["label"]) == ["tumor", "tumor", "exclusion"] and _edge(layer, 1) == _rgba("tumor")
    assert "2 tumour, 1 exclusion" in widget.status.value

    target = tmp_path / "left.xml"
    widget.path.value = target
    assert widget.save() == target
    first = read_annotations(target)
    assert [r.label for r in first.regions] == ["tumor", "tumor", "exclusion"]
    np.testing.assert_allclose(first.regions[0].exterior, _square(10, 10))  # level-0 pixels
    # saving again keeps the previous file
    layer.selected_data = {0}
    widget.draw_class.value = "normal"
    widget.apply_button.clicked.emit()
    assert widget.save() == target and "kept as left.xml.bak" in widget.status.value
    assert [r.label for r in read_annotations(target).regions] == ["normal", "tumor", "exclusion"]
    assert [r.label for r in read_annotations(tmp_path / "left.xml.bak").regions] == ["tumor", "tumor", "exclusion"]

    # a second ground-truth layer for the slide, empty and framed like the slide
    widget.new_button.clicked.emit()
    assert widget.layer.value == "left ground truth 2" and viewer.layers["left ground truth 2"].mode == "add_polygon"
    fresh = viewer.layers["left ground truth 2"]
    np.testing.assert_allclose(fresh.scale, (MPP, MPP))
    widget.path.value = tmp_path / "empty.xml"
    assert widget.save() is None and "holds no region" in widget.status.value


def test_a_new_shape_takes_its_class_colour_and_features_edits_recolour(make_napari_viewer, slides) -> None:
    """A new polygon is drawn in the colour of its label (tumour, the class chosen for new shapes, also when the last
    shape or the selected one is an exclusion); a label changed through the layer's features (what napari's
    Features table widget edits) recolours."""
    import pandas as pd

    viewer = make_napari_viewer()
    viewer.open(str(slides[0]), plugin="napari-patchdx")
    layer = viewer.layers["left ground truth"]
    layer.add_polygons([_square(10, 10)])
    features = layer.features.copy()
    features["label"] = pd.Categorical(["exclusion"], categories=layer.features["label"].cat.categories)
    layer.features = features
    assert _edge(layer, 0) == _rgba("exclusion")
    layer.add_polygons([_square(200, 200)])
    assert list(layer.features["label"]) == ["exclusion", "tumor"] and _edge(layer, 1) == _rgba("tumor")
    layer.selected_data = {0}
    layer.add_polygons([_square(400, 400)])
    assert layer.features["label"].iloc[2] == "tumor" and _edge(layer, 2) == _rgba("tumor")
    assert _edge(layer, 0) == _rgba("exclusion")  # the selected shape keeps its class's colour
    assert list(layer.features["label"].cat.categories[:3]) == ["tumor", "exclusion", "normal"]  # the drop-down


def test_layers_added_over_a_slide_are_adopted_and_paired(make_napari_viewer, slides) -> None:
    from napari_patchdx._napari.slide_inputs import SlideInputs
    from napari_patchdx._napari.truth import slide_of, truth_for_slides

    viewer = make_napari_viewer()
    viewer.open(str(slides[0]), plugin="napari-patchdx")
    mine = viewer.add_shapes(ndim=2, name="my outline")  # as napari's button with no layer selected
    meta = mine.metadata["patchdx"]
    assert meta == {"mpp": MPP, "kind": "annotations", "slide": str(slides[0])}
    assert "label" in mine.features.columns  # classes can be picked from the start
    mine.add_rectangles([np.array([[0.0, 0.0], [50.0, 50.0]])])  # world micrometres: 100 x 100 level-0 px
    inputs = SlideInputs(viewer)
    assert set(inputs.truth.value) == {"left ground truth", "my outline"}  # both chosen as they came
    ((path, truth),) = inputs.pairs()  # the empty layer gives way to the one with shapes
    assert path == slides[0] and truth.bounds() == pytest.approx((0.5, 0.5, 100.5, 100.5))

    viewer.open(str(slides[1]), plugin="napari-patchdx")
    shown = [viewer.layers["left"], viewer.layers["right"]]
    assert slide_of(viewer.layers["right ground truth"], shown) is viewer.layers["right"]
    assert slide_of(mine, shown) is viewer.layers["left"]  # recorded when it was added
    inputs.slides.value = ["right"]
    ((path, truth),) = inputs.pairs()
    assert path == slides[1] and truth is None  # its layer is empty: a normal slide
    loose = viewer.add_shapes([_square(0, 0)], name="loose")  # two slides shown at the same place: no slide
    assert "slide" not in loose.metadata["patchdx"]
    with pytest.raises(ConfigError, match=r"'loose'.* belong to none of the chosen slides"):
        truth_for_slides(shown, [loose], shown=shown)
    second = viewer.add_shapes([_square(0, 0)], name="left extra")
    with pytest.raises(ConfigError, match=r"two ground-truth layers are chosen for slide 'left'"):
        truth_for_slides(shown, [mine, second], shown=shown)
