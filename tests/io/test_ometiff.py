"""Float maps as OME-TIFF: exact round trips, NaN-aware pyramids, channel names, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_patchdx.errors import InputFileError
from napari_patchdx.io.float_maps import nan_reduce, read_float_image, write_float_image


@pytest.mark.parametrize("shape", [(7, 5), (2, 4, 4), (3, 6, 3), (2, 300, 260)])
def test_round_trip_is_exact(tmp_path: Path, shape: tuple[int, ...]) -> None:
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    data[..., 0, 0] = np.nan
    names = [f"c{i}" for i in range(shape[0])] if len(shape) == 3 else None
    path = write_float_image(tmp_path / "m.ome.tif", data, pixel_size_um=(2.0, 3.0), channel_names=names)
    np.testing.assert_array_equal(read_float_image(path), data)  # small channel counts are not taken for RGB
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="3.0"' in ome and 'PhysicalSizeY="2.0"' in ome
    if names:
        assert all(f'Name="{n}"' in ome for n in names)


def test_large_maps_get_nan_aware_levels(tmp_path: Path) -> None:
    data = np.full((5, 9), np.nan, dtype=np.float32)
    data[0, 0], data[0, 1], data[1, 0] = 0.2, 0.4, np.nan
    data[4, 8] = 1.0
    reduced = nan_reduce(data)
    assert reduced.shape == (3, 5)
    assert reduced[0, 0] == pytest.approx(0.3) and reduced[2, 4] == 1.0 and np.isnan(reduced[1, 1])
    path = write_float_image(tmp_path / "big.ome.tif", np.zeros((40, 70), np.float32), pyramid_min=16)
    assert [read_float_image(path, level=k).shape for k in range(3)] == [(40, 70), (20, 35), (10, 18)]


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nothing\.ome\.tif: file not found"):
        read_float_image(tmp_path / "nothing.ome.tif")
    junk = tmp_path / "junk.ome.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(InputFileError, match=r"junk\.ome\.tif: not a readable float OME-TIFF"):
        read_float_image(junk)
    with pytest.raises(ValueError, match="channel names"):
        write_float_image(tmp_path / "x.ome.tif", np.zeros((2, 4, 4)), channel_names=["one"])
