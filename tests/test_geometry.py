"""The coordinate convention: level-0 continuous (y, x), rasters as Grids, napari world = (level0 - 0.5) * mpp."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchdx.geometry import Grid, level0_to_world, napari_transform, vector_transform, world_to_level0


def test_heatmap_cell_centre_is_block_centre_in_world() -> None:
    # a heatmap with one value per 128 x 128 level-0 block, starting at level-0 (256, 512)
    grid = Grid((10, 20), (128.0, 128.0), (256.0, 512.0), mpp=0.25)
    t = grid.napari()
    r, c = 3, 7
    world = np.array([r, c]) * t["scale"] + t["translate"]
    # the block covers level-0 pixels 256 + 3*128 ... +127 (rows); its centre pixel index is the mean of those
    block_rows = 256 + r * 128 + np.arange(128)
    block_cols = 512 + c * 128 + np.arange(128)
    np.testing.assert_allclose(world, [block_rows.mean() * 0.25, block_cols.mean() * 0.25])


def test_slide_pixel_centred_on_integer_world() -> None:
    t = napari_transform((1.0, 1.0), (0.0, 0.0), None)
    assert t == {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}
    # level k of a pyramid: pixel r covers [r*ds, (r+1)*ds) -> centre at world r*ds + (ds-1)/2
    t4 = napari_transform((4.0, 4.0))
    assert t4["translate"] == (1.5, 1.5)


def test_vector_points_and_round_trip() -> None:
    t = vector_transform(0.5)
    pts = np.array([[10.5, 20.5], [0.0, 0.0]])  # the centre of pixel (10, 20), and the slide's corner
    world = pts * t["scale"] + t["translate"]
    np.testing.assert_allclose(world, [[5.0, 10.0], [-0.25, -0.25]])
    np.testing.assert_allclose(world, level0_to_world(pts, 0.5))
    np.testing.assert_allclose(world_to_level0(world, 0.5), pts)


def test_grid_centres_index_and_dict() -> None:
    grid = Grid((4, 5), (32.0, 16.0), (8.0, 4.0), None)
    y, x = grid.centres(np.array([0, 3]), np.array([0, 4]))
    np.testing.assert_allclose(y, [24.0, 120.0])
    np.testing.assert_allclose(x, [12.0, 76.0])
    r, c = grid.index_of(y, x)
    assert r.tolist() == [0, 3] and c.tolist() == [0, 4]
    r, c = grid.index_of(np.array([7.9]), np.array([3.9]))
    assert (r[0], c[0]) == (-1, -1)
    assert grid.extent == (8.0, 4.0, 136.0, 84.0)
    assert Grid.from_dict(grid.to_dict()) == grid


@pytest.mark.parametrize("mpp", [None, 0.243])
def test_units(mpp: float | None) -> None:
    unit = 1.0 if mpp is None else mpp
    t = napari_transform((2.0, 2.0), (0.0, 0.0), mpp)
    assert t["scale"] == (2 * unit, 2 * unit)
    assert t["translate"] == pytest.approx((0.5 * unit, 0.5 * unit))
