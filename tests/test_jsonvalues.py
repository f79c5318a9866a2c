"""The one JSON rule (jsonvalues): strict JSON out of numpy / torch / paths / enums / dataclasses, errors that name
the place of what JSON cannot hold, and atomic writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch

from napari_patchdx.errors import ConfigError
from napari_patchdx.jsonvalues import dumps, json_value, write_json


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    y: float
    x: np.float32
    where: Path


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


def test_non_finite_numbers_become_null() -> None:
    assert json_value([math.nan, math.inf, -math.inf, 1.5]) == [None, None, None, 1.5]
    assert json_value({"a": np.float32("nan"), "b": np.float64("-inf")}) == {"a": None, "b": None}
    assert json_value(torch.tensor(float("nan"))) is None
    assert dumps({"x": math.nan}, indent=None) == '{"x": null}'


def test_numpy_values() -> None:
    out = json_value({"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "u": np.uint8(255)})
    assert out == {"i": 3, "f": 0.5, "b": True, "u": 255}
    assert [type(v) for v in out.values()] == [int, float, bool, int]
    arr = json_value(np.array([[1, 2], [3, 4]], dtype=np.int16))
    assert arr == [[1, 2], [3, 4]] and type(arr[0][0]) is int
    assert json_value(np.array([1.0, np.nan])) == [1.0, None]
    zero_d = json_value(np.array(2.5))
    assert zero_d == 2.5 and type(zero_d) is float
    assert json_value(np.array(np.nan)) is None
    assert json_value(np.array([], dtype=np.float64)) == []


def test_torch_tensors() -> None:
    assert json_value(torch.tensor(3)) == 3 and type(json_value(torch.tensor(3))) is int
    assert json_value(torch.tensor([0.5, float("inf")])) == [0.5, None]
    assert json_value(torch.zeros(2, 1, dtype=torch.int32)) == [[0], [0]]
    assert json_value(torch.tensor(True)) is True


def test_paths_enums_dates_dataclasses_sets() -> None:
    assert json_value(Path("a") / "b.json") == str(Path("a") / "b.json")
    assert json_value(PurePosixPath("/x/y")) == "/x/y"
    assert json_value([Colour.RED, Colour.BLUE]) == ["red", 2]
    assert json_value(dt.date(2024, 2, 29)) == "2024-02-29"
    assert json_value(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert json_value(Point(1.0, np.float32(math.inf), Path("p"))) == {"y": 1.0, "x": None, "where": "p"}
    assert json_value({3, 1, 2}) == [1, 2, 3]
    assert json_value(frozenset({"b", "a"})) == ["a", "b"]
    assert json_value((1, (2, 3))) == [1, [2, 3]]


def test_nested_keys() -> None:
    value = {1: {"a": (np.int8(1),)}, Colour.RED: 1, Path("k"): [{2.5: "x"}], "s": {"t": None}}
    assert json_value(value) == {"1": {"a": [1]}, "red": 1, "k": [{"2.5": "x"}], "s": {"t": None}}
    text = dumps({"outer": {"inner": [np.float64(0.25)]}}, indent=None, sort_keys=True)
    assert json.loads(text) == {"outer": {"inner": [0.25]}}


def test_what_json_cannot_hold_is_named_by_its_place() -> None:
    with pytest.raises(ConfigError, match=r"^x\.a\[1\]: a Opaque cannot be stored as JSON$"):
        json_value({"a": [1, Opaque()]}, "x")
    with pytest.raises(ConfigError, match=r"^x\.a\[0\]\.b: a bytes cannot be stored as JSON$"):
        json_value({"a": [{"b": b"raw"}]}, "x")
    with pytest.raises(ConfigError, match=r"^meta\.config: key \(1, 2\) cannot be a JSON key$"):
        json_value({"config": {(1, 2): "tuple key"}}, "meta")
    with pytest.raises(ConfigError, match=r"^value: a function cannot be stored as JSON$"):
        json_value(lambda: None)
    with pytest.raises(ConfigError, match=r"out\.json\.fn: a builtin_function_or_method"):
        dumps({"fn": print}, where="out.json")


def test_fallback_is_for_display_only() -> None:
    assert json_value({"a": [1, Opaque()], (1, 2): b"x"}, fallback=str) == {"a": [1, "opaque!"], "(1, 2)": "b'x'"}
    assert json_value({"n": np.int64(4), "f": math.nan}, fallback=str) == {"n": 4, "f": None}


def test_write_json_is_strict_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    assert write_json(path, {"auc": np.float64(0.75), "lo": math.nan}) == path
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == {"auc": 0.75, "lo": None}
    assert text == '{\n  "auc": 0.75,\n  "lo": null\n}\n'  # indent=2 by default

    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"m\.json\.bad\[0\]: a Opaque cannot be stored as JSON"):
        write_json(path, {"good": 1, "bad": [Opaque()]})
    assert path.read_bytes() == before  # the existing file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # and no temporary file is left behind

    with pytest.raises(FileExistsError):
        write_json(path, {"x": 1}, overwrite=False)
    assert path.read_bytes() == before
    with pytest.raises(FileNotFoundError):
        write_json(tmp_path / "missing" / "n.json", {"x": 1})
    nested = write_json(tmp_path / "made" / "n.json", [1, 2], indent=None, mkdir=True)
    assert nested.read_text(encoding="utf-8") == "[1, 2]\n"
