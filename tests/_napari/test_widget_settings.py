"""The widgets' controls of stage settings are built from the settings objects: the same default and help text as
the configuration section and the command's options."""

from __future__ import annotations

import dataclasses

import pytest

from napari_patchdx.evaluation.settings import EvaluateSettings
from napari_patchdx.inference.settings import InferSettings
from napari_patchdx.sampling.settings import SampleSettings

CONTROLS = {
    "SamplePatchesWidget": (SampleSettings, {"method": "method", "n": "n", "min_tissue": "min_tissue"}),
    "InferenceWidget": (InferSettings, {"tta": "tta", "stride": "stride", "batch_size": "batch_size"}),
    "EvaluateWidget": (
        EvaluateSettings,
        {"threshold": "nms_threshold", "radius": "nms_radius_um", "level": "level", "n_boot": "n_boot"},
    ),
}


@pytest.mark.parametrize("widget_name", list(CONTROLS))
def test_controls_hold_the_settings_defaults_and_help(make_napari_viewer, widget_name: str) -> None:
    from napari_patchdx._napari import evaluate_widget, infer_widget, widgets
    from napari_patchdx._napari.controls import control_value

    module = {"SamplePatchesWidget": widgets, "InferenceWidget": infer_widget, "EvaluateWidget": evaluate_widget}
    viewer = make_napari_viewer()
    widget = getattr(module[widget_name], widget_name)(viewer)
    cls, controls = CONTROLS[widget_name]
    defaults = cls()
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}
    for attribute, setting in controls.items():
        control = getattr(widget, attribute)
        assert control_value(control, cls, setting) == getattr(defaults, setting), (widget_name, setting)
        assert control.tooltip == helps[setting]
