"""Widget controls built from a stage's settings object: the control's value is the setting's default and its
tooltip the setting's help, so a widget, the command line and the configuration share one default and one text
(:mod:`napari_patchdx.cli.options` builds the command's options from the same fields)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox, Widget


def setting_field(cls: type, name: str) -> dataclasses.Field[Any]:
    """The field ``name`` of the settings dataclass ``cls`` (a KeyError names it when there is none)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise KeyError(f"{cls.__name__} has no setting {name!r}")
    return fields[name]


def setting_control(
    cls: type, name: str, label: str, *, choices: typing.Sequence[str] | None = None, **limits: Any
) -> Widget:
    """A magicgui control for setting ``name`` of ``cls``, valued at its default, with its help as tooltip.

    A bool becomes a CheckBox, a choice (``choices`` given) a ComboBox, an int a SpinBox and a float a FloatSpinBox;
    ``limits`` (min, max, step) go to the control. An optional number (default None) shows 0 for None: read it
    back with :func:`control_value`.
    """
    f = setting_field(cls, name)
    default = getattr(cls(), name)
    tooltip = str(f.metadata.get("help", ""))
    hint = typing.get_type_hints(cls)[name]
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if choices is not None:
        control: Widget = ComboBox(label=label, choices=list(choices), value=default)
    elif kinds[0] is bool:
        control = CheckBox(label=label, value=bool(default))
    elif kinds[0] is int:
        control = SpinBox(label=label, value=0 if default is None else int(default), **limits)
    else:
        control = FloatSpinBox(label=label, value=0.0 if default is None else float(default), **limits)
    control.tooltip = tooltip
    return control


def control_value(control: Widget, cls: type, name: str) -> Any:
    """The setting's value from its control: 0 in an optional number's control means None (the default)."""
    value = control.value
    hint = typing.get_type_hints(cls)[name]
    if type(None) in typing.get_args(hint) and value == 0:
        return None
    return value
