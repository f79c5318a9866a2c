"""Slide readers: both backends against real microscopy pixels written into tiled pyramids."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_patchdx import InputFileError, MissingMetadataError, open_slide
from napari_patchdx.io.slides.base import TileReadError
from napari_patchdx.io.slides.open import is_pyramidal_tiff

from ..conftest import write_pyramid


def test_levels_and_mpp(ihc_slide: Path) -> None:
    slide = open_slide(ihc_slide)
    assert slide.backend == "tifffile"
    assert slide.shape == (1500, 2100)
    assert slide.level_shapes == ((1500, 2100), (750, 1050), (375, 525), (188, 263), (94, 132))
    assert slide.level_downsamples[:3] == (1.0, 2.0, 4.0)
    assert slide.tile_shapes[0] == (256, 256)
    assert slide.mpp == pytest.approx(0.5)
    assert slide.level_for_mpp(1.0) == (1, pytest.approx(1.0))
    assert slide.level_for_mpp(3.0) == (2, pytest.approx(1.5))
    assert slide.best_level_for_downsample(100) == 4


@pytest.mark.parametrize("level", [0, 1, 2])
def test_tifffile_backend_matches_openslide_pixel_exact(ihc_slide: Path, level: int) -> None:
    ours = open_slide(ihc_slide)
    osr = open_slide(ihc_slide, backend="openslide")
    assert osr.mpp == pytest.approx(0.5)
    assert osr.level_shapes == ours.level_shapes
    ds = int(ours.level_downsamples[level])
    rng = np.random.default_rng(level)
    for _ in range(8):
        y = int(rng.integers(-100, 1500)) // ds * ds
        x = int(rng.integers(-100, 2100)) // ds * ds
        a = ours.read_region(y, x, 299, 299, level)
        b = osr.read_region(y, x, 299, 299, level)
        assert a.dtype == np.uint8 and a.shape == (299, 299, 3)
        np.testing.assert_array_equal(a, b)


def test_level0_equals_source_within_jpeg_error(ihc_slide: Path, ihc_image: np.ndarray) -> None:
    region = open_slide(ihc_slide).read_region(100, 200, 400, 500)
    err = np.abs(region.astype(int) - ihc_image[100:500, 200:700].astype(int))
    assert err.mean() < 3.0


def test_outside_is_white_and_partial_regions(ihc_slide: Path, ihc_image: np.ndarray) -> None:
    slide = open_slide(ihc_slide)
    outside = slide.read_region(5000, 5000, 64, 64)
    assert (outside == 255).all()
    edge = slide.read_region(1450, 2050, 100, 100)
    assert (edge[50:, :] == 255).all() and (edge[:, 50:] == 255).all()
    assert (edge[:50, :50] != 255).any()


def test_dask_pyramid_is_lazy_and_exact(ihc_slide: Path) -> None:
    slide = open_slide(ihc_slide)
    pyramid = slide.pyramid()
    assert [a.shape[:2] for a in pyramid] == list(slide.level_shapes)
    assert pyramid[0].chunksize == (256, 256, 3)
    assert slide.tiles_decoded == 0  # building the arrays reads nothing
    np.testing.assert_array_equal(pyramid[0][300:700, 500:900].compute(), slide.read_region(300, 500, 400, 400))
    np.testing.assert_array_equal(np.asarray(pyramid[1][10, 20:30]), slide.read_level_region(1, 10, 20, 1, 10)[0])


def test_each_tile_decoded_once(ihc_slide: Path) -> None:
    slide = open_slide(ihc_slide)
    for y in range(0, 1500, 128):
        for x in range(0, 2100, 128):
            slide.read_region(y, x, 299, 299)
    assert slide.tiles_decoded == 6 * 9  # the level-0 tile grid, each tile decoded exactly once


def test_thumbnail(ihc_slide: Path) -> None:
    thumb = open_slide(ihc_slide).thumbnail(300)
    assert thumb.shape == (214, 300, 3) and thumb.dtype == np.uint8
    assert 50 < thumb.mean() < 250


def test_pickle_reopens(ihc_slide: Path) -> None:
    slide = open_slide(ihc_slide, mpp=0.25)
    clone = pickle.loads(pickle.dumps(slide))
    assert clone.mpp == 0.25
    np.testing.assert_array_equal(clone.read_region(10, 10, 50, 50), slide.read_region(10, 10, 50, 50))


def test_ome_tiff_pyramid_with_physical_size_in_nm(tmp_path: Path, ihc_image: np.ndarray) -> None:
    path = tmp_path / "ihc.ome.tif"
    img = ihc_image[:1024, :1536]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            img,
            subifds=2,
            tile=(256, 256),
            compression="zlib",
            photometric="rgb",
            metadata={
                "axes": "YXS",
                "PhysicalSizeX": 250.0,
                "PhysicalSizeXUnit": "nm",
                "PhysicalSizeY": 250.0,
                "PhysicalSizeYUnit": "nm",
            },
        )
        for k in (2, 4):
            tw.write(img[::k, ::k], tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1)
    assert is_pyramidal_tiff(path)
    slide = open_slide(path)
    assert slide.properties["tiff.kind"] == "ome"
    assert slide.mpp == pytest.approx(0.25)
    assert slide.level_shapes == ((1024, 1536), (512, 768), (256, 384))
    np.testing.assert_array_equal(slide.read_region(0, 0, 1024, 1536), img)  # lossless
    np.testing.assert_array_equal(slide.read_region(0, 0, 512, 768, level=1), img[::2, ::2])


def test_transparent_pixels_are_white(tmp_path: Path) -> None:
    rgba = np.zeros((512, 512, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:256, :, 3] = 255  # top half opaque red, bottom half fully transparent
    path = write_pyramid(tmp_path / "alpha.tif", rgba, compression="zlib")
    region = open_slide(path).read_region(0, 0, 512, 512)
    assert (region[:256] == [200, 0, 0]).all()
    assert (region[256:] == 255).all()


@pytest.mark.parametrize(
    ("extrasample", "expected"), [("unassalpha", [227, 127, 127]), ("assocalpha", [227, 127, 127])]
)
def test_half_transparent_pixels_composited_on_white(tmp_path: Path, extrasample: str, expected: list[int]) -> None:
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., 0] = 200 if extrasample == "unassalpha" else 100  # premultiplied red of 200 at alpha 128 is ~100
    rgba[..., 3] = 128
    path = tmp_path / f"{extrasample}.tif"
    tifffile.imwrite(path, rgba, tile=(256, 256), photometric="rgb", extrasamples=(extrasample,), compression="zlib")
    region = open_slide(path, backend="tifffile").read_region(0, 0, 8, 8)
    np.testing.assert_allclose(region[0, 0], expected, atol=1)


def test_extra_sample_that_is_not_alpha_is_dropped(tmp_path: Path) -> None:
    data = np.zeros((256, 256, 4), np.uint8)
    data[..., 0] = 200  # 4th sample 0 is "unspecified data", not transparency
    path = tmp_path / "extra.tif"
    tifffile.imwrite(path, data, tile=(256, 256), photometric="rgb", extrasamples=("unspecified",))
    assert (open_slide(path, backend="tifffile").read_region(0, 0, 4, 4) == [200, 0, 0]).all()


def test_16bit_pyramid_is_not_a_slide(tmp_path: Path) -> None:
    path = tmp_path / "deep.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((1024, 1024), np.uint16), tile=(256, 256))
        tw.write(np.zeros((512, 512), np.uint16), tile=(256, 256), subfiletype=1)
    assert not is_pyramidal_tiff(path)  # routed to the X-ray reader
    with pytest.raises(InputFileError, match=r"deep\.tif.*16-bit"):
        open_slide(path)


def test_small_tiled_rgb_tiff_is_a_slide(tmp_path: Path, ihc_image: np.ndarray) -> None:
    path = tmp_path / "tile.tif"
    tifffile.imwrite(path, ihc_image[:512, :512], tile=(256, 256), photometric="rgb", compression="jpeg")
    assert is_pyramidal_tiff(path)
    assert open_slide(path).level_count == 1


def test_openslide_backend_reopens_after_close_and_pickle(ihc_slide: Path) -> None:
    slide = open_slide(ihc_slide, backend="openslide")
    before = slide.read_region(10, 10, 32, 32)
    slide.close()
    np.testing.assert_array_equal(slide.read_region(10, 10, 32, 32), before)
    clone = pickle.loads(pickle.dumps(slide))
    np.testing.assert_array_equal(clone.read_region(10, 10, 32, 32), before)


def test_mpp_unknown_and_override(tmp_path: Path, ihc_image: np.ndarray) -> None:
    path = write_pyramid(tmp_path / "nompp.tif", ihc_image[:512, :512], mpp=None)
    slide = open_slide(path)
    assert slide.mpp is None
    with pytest.raises(MissingMetadataError, match=r"nompp\.tif.*pass mpp="):
        slide.require_mpp("tissue detection")
    assert open_slide(path, mpp=0.243).require_mpp() == 0.243
    with pytest.raises(InputFileError, match="positive"):
        open_slide(path, mpp=-1)


def test_plain_tiff_is_not_a_slide(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16))
    assert not is_pyramidal_tiff(path)
    with pytest.raises(InputFileError, match=r"plain\.tif"):
        open_slide(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.svs", b"", "empty"),
        (
            "random.svs",
            bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
            "not a whole-slide",
        ),
        ("notes.ndpi", b"hello world, not a slide\n" * 20, "not a whole-slide"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as info:
        open_slide(path)
    assert name in str(info.value)
    assert path.read_bytes() == content  # nothing written
    assert not is_pyramidal_tiff(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.svs: no such file"):
        open_slide(tmp_path / "nope.svs")


def test_truncated_tiff(tmp_path: Path, ihc_slide: Path) -> None:
    data = ihc_slide.read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"truncated\.tif.*(truncated|cannot|not a)"):
        open_slide(path)


def test_corrupt_tile_names_level_and_region(tmp_path: Path, ihc_slide: Path) -> None:
    path = tmp_path / "corrupt.tif"
    path.write_bytes(ihc_slide.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        offset, count = page.dataoffsets[7], page.databytecounts[7]  # tile (row 0, col 7)
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = b"\x00" * count
    path.write_bytes(bytes(raw))
    slide = open_slide(path)
    slide.read_region(0, 0, 256, 256)  # other tiles still read
    with pytest.raises(TileReadError, match=r"corrupt\.tif: level 0 tile at \(y=0, x=1792") as info:
        slide.read_region(0, 1800, 10, 10)
    assert info.value.level == 0


def test_real_aperio_svs_matches_openslide(cmu_svs: Path) -> None:
    ours = open_slide(cmu_svs)
    assert ours.backend == "tifffile" and ours.properties["tiff.kind"] == "svs"
    reference = open_slide(cmu_svs, backend="openslide")
    assert reference.properties["openslide.vendor"] == "aperio"
    assert ours.shape == reference.shape == (2967, 2220)
    assert ours.mpp == pytest.approx(0.499) == reference.mpp
    np.testing.assert_array_equal(ours.read_region(0, 0, 2967, 2220), reference.read_region(0, 0, 2967, 2220))
