"""What the dock widgets of one viewer share: the last trained checkpoint and its run folder, and the slides'
microns per pixel typed by the user. Train (and a corrections round) sets the checkpoint; Run inference and the
retrain panels pick it up (:func:`offer_files`), so Sample -> Train -> Infer -> Evaluate needs no file chosen twice.
Values change through :meth:`Session.set`, which emits :attr:`Session.changed` ``(key, value)``."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import napari
from psygnal import Signal

#: the keys a session holds
KEYS = ("checkpoint", "run_dir", "slide_mpp")


class Session:
    """Values shared by the widgets of one viewer (see the module docstring)."""

    changed = Signal(str, object)

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (one of :data:`KEYS`), or ``default`` when none was set."""
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` and tell the widgets (only when it changes)."""
        if key not in KEYS:
            raise KeyError(f"unknown session key {key!r}; one of {KEYS}")
        if self.values.get(key) != value:
            self.values[key] = value
            self.changed.emit(key, value)


_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def session_of(viewer: napari.Viewer) -> Session:
    """The session of ``viewer`` (one per viewer, made on first use)."""
    layers = viewer.layers
    key = getattr(layers, "__wrapped__", layers)  # the layer list itself, not the proxy napari gives plugin widgets
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = Session()
    return session


def offer_files(session: Session, fields: Mapping[str, tuple[Any, Callable[[Path], Path]]]) -> None:
    """Fill file fields from ``session``: ``fields`` maps a key (``"checkpoint"``, ``"run_dir"``) to (a magicgui
    FileEdit, how its path follows from the key's value). A field is filled now and whenever the value changes, as
    long as it is empty or still holds what was offered before: a file the user chose is never replaced."""
    offered: dict[str, str] = {}

    def text(edit: Any) -> str:
        value = edit.value
        if isinstance(value, list | tuple):
            value = value[0] if len(value) == 1 else ("|".join(map(str, value)) if value else "")
        return "" if value is None or str(value) == "." else str(value)

    def take(key: str, value: Any) -> None:
        if key not in fields or value is None:
            return
        edit, derive = fields[key]
        if text(edit) not in ("", offered.get(key)):
            return
        path = derive(Path(value))
        edit.value = [path] if isinstance(edit.value, list | tuple) else path
        offered[key] = text(edit)

    session.changed.connect(take)
    for key in fields:
        take(key, session.get(key))
