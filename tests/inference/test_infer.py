"""Inference: band reading (pixel-exact, each tile decoded once), TTA, heatmap geometry, resume, corrupt tiles, CAMs."""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_patchdx.errors import ConfigError
from napari_patchdx.geometry import Grid, level0_to_world
from napari_patchdx.inference.ensemble import predict_patches
from napari_patchdx.inference.heatmap_files import read_heatmap
from napari_patchdx.inference.heatmaps import slide_heatmap_job
from napari_patchdx.inference.patch_stream import iter_slide_patches
from napari_patchdx.inference.xray import cxr_predict
from napari_patchdx.io.names import heatmap_paths
from napari_patchdx.io.slides.open import open_slide
from napari_patchdx.io.slides.tiff import TiffSlide
from napari_patchdx.models.factory import build_model
from napari_patchdx.models.nets import PatchdxNet
from napari_patchdx.progress import run_job
from napari_patchdx.sampling.datasets import resize_patch
from napari_patchdx.sampling.grid import grid_table
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.sampling.tissue import detect_tissue
from napari_patchdx.sampling.tissue_mask import TissueMask
from napari_patchdx.synth.wsi.slide import make_slide
from napari_patchdx.transforms.orientation import ORIENTATIONS, orient_torch

from ..conftest import write_pyramid

PATCH, CENTER = 48, 32
META = {
    "input_size": PATCH,
    "center_size": CENTER,
    "mpp": None,
    "classes": ["tumor"],
    "normalization": {"mode": "unit"},
}


class Projection(nn.Module):
    """A cheap model that is not rotation-invariant: logit = <patch, fixed random field>; counts its calls."""

    def __init__(self, size: int = PATCH, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("field", torch.randn(3, size, size, generator=g) / size)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (x * self.field).sum(dim=(1, 2, 3))[:, None]


class Recorder(nn.Module):
    """Keeps every patch it sees (as uint8 NHWC) and returns 0 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return torch.zeros(x.shape[0], 1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("infer")
    slide = make_slide(root / "synth.tif", height=2048, width=2048, mpp=1.0, seed=3, tile=256)
    with open_slide(slide.path) as s:
        tissue = detect_tissue(s)
    return slide.path, tissue


def _cells(path: Path, tissue: TissueMask, geometry: PatchGeometry):
    with open_slide(path) as s:
        table = grid_table(SlideSource(path, s, tissue), geometry, min_tissue=1e-9, labels=False)
    return table.sort_values(["row", "col"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("patch_mpp", [None, 1.5])
def test_band_patches_equal_read_region_and_tiles_decode_once(synth, tmp_path, patch_mpp):
    path, tissue = synth
    geometry = PatchGeometry(PATCH, CENTER, patch_mpp)
    table = _cells(path, tissue, geometry)
    slide = TiffSlide(path, cache_bytes=1)  # no tile cache: a second read would decode again
    decoded: dict[tuple[int, int, int], int] = {}
    original = slide._decode_tile

    def counting(level: int, ty: int, tx: int) -> np.ndarray:
        decoded[(level, ty, tx)] = decoded.get((level, ty, tx), 0) + 1
        return original(level, ty, tx)

    slide._decode_tile = counting  # type: ignore[method-assign]
    rec = Recorder()
    meta = dict(META, mpp=patch_mpp)
    run_job(slide_heatmap_job(slide, (rec, meta), tmp_path, tta=False, tissue=tissue, band_rows=5, batch_size=50))
    seen = np.concatenate(rec.seen)
    assert len(seen) == len(table) > 100
    level, read_size, _ = geometry.plan(slide)
    reference = open_slide(path)
    for i in range(0, len(table), 7):
        row = table.iloc[i]
        patch = reference.read_region(int(row.y), int(row.x), read_size, read_size, level)
        if read_size != PATCH:
            patch = resize_patch(patch, PATCH)
        np.testing.assert_array_equal(seen[i], patch)
    # every tile is decoded at most once, and every tile a patch touches was decoded
    assert max(decoded.values()) == 1
    ds = slide.level_downsamples[level]
    th, tw = slide.tile_shapes[level]
    h, w = slide.level_shapes[level]
    touched = set()
    for y, x in zip(np.floor(table.y / ds).astype(int), np.floor(table.x / ds).astype(int), strict=True):
        for ty in range(max(y, 0) // th, (min(y + read_size, h) - 1) // th + 1):
            for tx in range(max(x, 0) // tw, (min(x + read_size, w) - 1) // tw + 1):
                touched.add((level, ty, tx))
    assert touched <= set(decoded)
    assert slide.tiles_decoded_per_level[level] == len([k for k in decoded if k[0] == level])
    reference.close()


def test_tta_is_mean_of_eight_orientations(synth, tmp_path):
    torch.manual_seed(0)
    model = build_model("small", 1).eval()
    x = torch.randint(0, 256, (3, 3, PATCH, PATCH), dtype=torch.uint8)
    with torch.no_grad():
        each = [torch.sigmoid(model(orient_torch(x.float() / 255, k)))[:, 0] for k in range(ORIENTATIONS)]
    each = torch.stack(each).numpy()
    assert each.std(axis=0).max() > 1e-4  # the model is not rotation-invariant
    got = predict_patches([(model, META)], x, tta=True)
    np.testing.assert_allclose(got, each.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_patches([(model, META)], x, tta=False), each[0], rtol=1e-5, atol=1e-6)

    # the same through the job, cell by cell, with a cheap model and an ensemble of two
    path, tissue = synth
    models = [(Projection(seed=1), META), (Projection(seed=2), META)]
    result = run_job(slide_heatmap_job(path, models, tmp_path, tissue=tissue))
    table = _cells(path, tissue, PatchGeometry(PATCH, CENTER))
    with open_slide(path) as s:
        for i in range(0, len(table), 97):
            row = table.iloc[i]
            patch = torch.from_numpy(s.read_region(int(row.y), int(row.x), PATCH, PATCH).transpose(2, 0, 1).copy())
            x = patch[None].float() / 255
            want = np.mean(
                [torch.sigmoid(m(orient_torch(x, k)))[0, 0].item() for m, _ in models for k in range(ORIENTATIONS)]
            )
            assert result.heatmap[int(row.row), int(row.col)] == pytest.approx(want, abs=1e-5)


class CentreDarkness(nn.Module):
    """A "tumour detector": high logit where the patch's central region is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0 = (PATCH - CENTER) // 2
        centre = x[:, :, c0 : c0 + CENTER, c0 : c0 + CENTER].mean(dim=(1, 2, 3))
        return ((0.5 - centre) * 40)[:, None]


def test_heatmap_geometry_hot_cells_on_tumour(tmp_path):
    size, mpp = 1024, 0.5
    image = np.full((size, size, 3), (235, 170, 215), np.uint8)  # pink tissue everywhere
    ty0, ty1, tx0, tx1 = 300, 520, 610, 900  # a dark "tumour" rectangle, level-0 px
    image[ty0:ty1, tx0:tx1] = (40, 20, 60)
    path = write_pyramid(tmp_path / "rect.tif", image, mpp=mpp, compression="zlib")
    tissue = TissueMask(np.ones((32, 32), bool), Grid((32, 32), (32.0, 32.0), (0.0, 0.0), mpp), 0.1)
    result = run_job(slide_heatmap_job(path, (CentreDarkness(), META), tmp_path / "out", tta=False, tissue=tissue))
    grid = result.grid
    assert grid == Grid((32, 32), (32.0, 32.0), (0.0, 0.0), mpp)
    assert np.isfinite(result.heatmap).all()
    hot_r, hot_c = np.nonzero(result.heatmap > 0.5)
    ys, xs = grid.centres(hot_r, hot_c)
    stride = grid.spacing[0]
    assert ((ys > ty0 - stride) & (ys < ty1 + stride) & (xs > tx0 - stride) & (xs < tx1 + stride)).all()
    # every cell whose block lies inside the tumour is hot; every cell away from it is cold
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    inside = (r * stride >= ty0) & ((r + 1) * stride <= ty1) & (c * stride >= tx0) & ((c + 1) * stride <= tx1)
    assert inside.sum() > 10 and (result.heatmap[inside] > 0.99).all()
    cy, cx = grid.centres(r, c)
    far = (cy < ty0 - stride) | (cy > ty1 + stride) | (cx < tx0 - stride) | (cx > tx1 + stride)
    assert (result.heatmap[far] < 0.01).all()
    # napari: a cell's centre lands on the centre of its level-0 block, in world (micrometre) units
    t = grid.napari()
    for rr, cc in [(0, 0), (5, 17), (31, 31)]:
        world = np.array([rr * t["scale"][0] + t["translate"][0], cc * t["scale"][1] + t["translate"][1]])
        block_centre = np.array([(rr + 0.5) * stride, (cc + 0.5) * stride])
        np.testing.assert_allclose(world, level0_to_world(block_centre, mpp))
    # the written file holds the same heatmap and geometry
    heatmap, saved, sidecar = read_heatmap(result.path)
    np.testing.assert_array_equal(heatmap, result.heatmap)
    assert saved == grid and sidecar["slide"] == str(path)


def test_resume_after_interruption(synth, tmp_path):
    path, tissue = synth
    full_model = Projection()
    full = run_job(slide_heatmap_job(path, (full_model, META), tmp_path / "a", tissue=tissue, band_rows=8))
    assert np.isnan(full.heatmap).any() and np.isfinite(full.heatmap).any()

    model = Projection()
    job = slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8)
    for report in job:
        if report.partial is not None and np.isfinite(report.partial.block).any():
            break
    job.close()  # interrupted after the first band with tissue
    assert not [t for t in threading.enumerate() if t.name.startswith("patchdx-")]  # reader and writer stopped
    first = model.calls
    assert 0 < first < full_model.calls
    paths = heatmap_paths(tmp_path / "b", path.stem)
    assert paths["partial"].is_file() and paths["record"].is_file() and not paths["final"].exists()

    resumed = run_job(slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8))
    np.testing.assert_array_equal(resumed.heatmap, full.heatmap)
    assert model.calls == full_model.calls  # the finished band was not computed again
    assert not paths["partial"].exists() and not paths["record"].exists()

    again = run_job(slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8))
    assert model.calls == full_model.calls  # finished: loaded, not recomputed
    np.testing.assert_array_equal(again.heatmap, full.heatmap)
    run_job(slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8, resume=False))
    assert model.calls == 2 * full_model.calls
    # closed as soon as reading has started: nothing computed, no thread left behind
    job = slide_heatmap_job(path, (model, META), tmp_path / "c", tissue=tissue, band_rows=8)
    assert "bands to go" in [next(job) for _ in range(2)][-1].message
    job.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("patchdx-")]
    assert model.calls == 2 * full_model.calls


@pytest.mark.parametrize("block_width", [None, 256])
def test_corrupt_tile_leaves_its_cells_nan(synth, tmp_path, block_width):
    path, tissue = synth
    clean = run_job(slide_heatmap_job(path, (Projection(), META), tmp_path / "clean", tta=False, tissue=tissue))
    table = _cells(path, tissue, PatchGeometry(PATCH, CENTER))
    # break a level-0 tile under the tissue
    row = table.iloc[len(table) // 2]
    ty, tx = (int(row.y) + PATCH // 2) // 256, (int(row.x) + PATCH // 2) // 256
    broken = tmp_path / "broken.tif"
    shutil.copy(path, broken)
    with tifffile.TiffFile(broken) as tif:
        page = tif.pages[0]
        index = ty * (-(-page.imagewidth // 256)) + tx
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(broken, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)
    with pytest.warns(UserWarning, match=rf"level 0 tile at \(y={ty * 256}, x={tx * 256}, h=256, w=256\)"):
        job = slide_heatmap_job(
            broken, (Projection(), META), tmp_path / "bad", tta=False, tissue=tissue, block_width=block_width
        )
        result = run_job(job)
    assert result.unreadable == ((0, ty * 256, tx * 256, 256, 256),)
    y, x = table.y.to_numpy(), table.x.to_numpy()
    touches = (y < (ty + 1) * 256) & (y + PATCH > ty * 256) & (x < (tx + 1) * 256) & (x + PATCH > tx * 256)
    rr, cc = table.row.to_numpy(), table.col.to_numpy()
    assert touches.sum() > 10
    assert np.isnan(result.heatmap[rr[touches], cc[touches]]).all()
    assert np.isfinite(clean.heatmap[rr[touches], cc[touches]]).all()
    mask = np.ones(clean.heatmap.shape, bool)
    mask[rr[touches], cc[touches]] = False
    # the same cells (batches differ, hence float rounding) and the same NaNs
    np.testing.assert_allclose(result.heatmap[mask], clean.heatmap[mask], rtol=0, atol=1e-6)


def _blob_net() -> PatchdxNet:
    """features = 8 x 8 average pooling of the (standardised) image; class 0 = brightness, class 1 = darkness."""
    features = nn.AvgPool2d(8)
    classifier = nn.Linear(1, 2)
    with torch.no_grad():
        classifier.weight[:] = torch.tensor([[1.0], [-1.0]])
        classifier.bias[:] = 0.0
    return PatchdxNet(features, classifier, "small", in_channels=1).eval()


def test_cxr_cam_peak_on_blob_and_aligned(tmp_path):
    model = _blob_net()
    meta = {"input_size": 64, "classes": ["bright", "dark"], "normalization": {"mode": "standardize"}}
    image = np.full((240, 200), 0.3, np.float32)
    yy, xx = np.mgrid[:240, :200]
    by, bx = 170.0, 50.0
    image += 0.6 * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * 12.0**2)).astype(np.float32)
    (pred,) = cxr_predict([image], model, meta)
    assert pred.cams.shape == (2, 240, 200) and pred.shape == (240, 200) and pred.classes == ("bright", "dark")
    py, px = np.unravel_index(np.argmax(pred.cams[0]), pred.cams[0].shape)
    assert abs(py - by) <= 240 / 8 and abs(px - bx) <= 200 / 8  # within one CAM cell of the blob
    py, px = np.unravel_index(np.argmin(pred.cams[1]), pred.cams[1].shape)
    assert abs(py - by) <= 240 / 8 and abs(px - bx) <= 200 / 8
    # probabilities are the sigmoid of the model's logits on the standardised working-size image
    from PIL import Image

    work = np.asarray(Image.fromarray(image, mode="F").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    x = torch.from_numpy(work - work.mean(dtype=np.float64).astype(np.float32))[None, None]
    with torch.no_grad():
        logits = model(x)[0]
        small = model.cam(x)[0].numpy()
    np.testing.assert_allclose(pred.probabilities, torch.sigmoid(logits).numpy(), rtol=1e-5)
    # alignment: CAM cell (r, c) covers native [r, r + 1) * H / h; with H = 3 h its centre is native pixel 3 r + 1
    native = np.kron(np.random.default_rng(0).random((8, 8)), np.ones((3, 3))).astype(np.float32)
    (pred,) = cxr_predict([native], model, meta)
    work = np.asarray(Image.fromarray(native, mode="F").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    x = torch.from_numpy(work - work.mean(dtype=np.float64).astype(np.float32))[None, None]
    with torch.no_grad():
        small = model.cam(x)[0].numpy()
    np.testing.assert_allclose(pred.cams[:, 1::3, 1::3], small, rtol=1e-5, atol=1e-6)


def test_cxr_predict_reads_files(tmp_path):
    from PIL import Image

    image = (np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    model = build_model("small", 2, in_channels=1).eval()
    meta = {"input_size": 64, "classes": ["a", "b"], "normalization": {"mode": "standardize"}}
    (pred,) = cxr_predict([tmp_path / "x.png"], model, meta)
    assert pred.source == tmp_path / "x.png" and pred.cams.shape == (2, 50, 70)
    assert ((pred.probabilities > 0) & (pred.probabilities < 1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cxr_predict([image.astype(np.float32) / 255], model, meta)


def test_large_heatmap_is_written_pyramidal(tmp_path):
    from napari_patchdx.inference.heatmap_files import write_heatmap

    heatmap = np.random.default_rng(0).random((2500, 300)).astype(np.float32)
    heatmap[:100] = np.nan
    grid = Grid(heatmap.shape, (128.0, 128.0), (0.0, 0.0), 0.25)
    path = tmp_path / "big.heatmap.ome.tif"
    write_heatmap(path, heatmap, grid)
    (tmp_path / "big.heatmap.json").write_text(json.dumps({"grid": grid.to_dict()}))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and len(tif.series[0].levels) == 2
        assert tif.series[0].levels[1].shape == (1250, 150)
        assert 'PhysicalSizeX="32.0"' in tif.ome_metadata
    back, saved, _ = read_heatmap(path)
    np.testing.assert_array_equal(back, heatmap)
    assert saved == grid


def test_cxr_prediction_round_trips_through_ome_tiff(tmp_path):
    from napari_patchdx.errors import InputFileError
    from napari_patchdx.inference.xray import CxrPrediction, read_cxr_prediction, save_cxr_prediction

    rng = np.random.default_rng(3)
    cams = rng.normal(size=(2, 40, 30)).astype(np.float32)
    probs = np.array([0.25, 0.75], np.float32)
    pred = CxrPrediction(("nodule", "mass"), probs, cams, (40, 30), tmp_path / "x.dcm", (0.2, 0.15))
    path = save_cxr_prediction(pred, tmp_path / "out")
    assert path.name == "x.cam.ome.tif"
    back = read_cxr_prediction(path)
    assert back.classes == pred.classes and back.shape == (40, 30) and back.source == pred.source
    assert back.spacing == (0.2, 0.15)
    np.testing.assert_array_equal(back.probabilities, pred.probabilities)
    np.testing.assert_array_equal(back.cams, cams)
    (tmp_path / "out" / "x.cam.json").write_text("{}")
    with pytest.raises(InputFileError, match=r"x\.cam\.json"):
        read_cxr_prediction(path)


def _full_tissue(shape: tuple[int, int], mpp: float | None = 1.0) -> TissueMask:
    """Tissue everywhere on a ``shape`` (level-0 px) slide."""
    cell = 16
    rows, cols = -(-shape[0] // cell), -(-shape[1] // cell)
    return TissueMask(np.ones((rows, cols), bool), Grid((rows, cols), (cell, cell), (0.0, 0.0), mpp), 0.1)


def _wide_slide(root: Path, width: int) -> Path:
    """A 160 px high strip of noise, ``width`` px wide, in 64 px zlib tiles (1 um/px)."""
    image = np.random.default_rng(width).integers(60, 230, size=(160, width, 3), dtype=np.uint8)
    return write_pyramid(root / f"wide{width}.tif", image, tile=64, mpp=1.0, compression="zlib", min_size=64)


def test_wide_slides_read_in_bounded_blocks_each_tile_once(tmp_path):
    """The read buffer does not grow with the slide's width, patches are cut one batch at a time, and every tile
    is decoded once; column blocks give each cell the probability of its own window."""
    block_width, batch, tile = 256, 24, 64
    largest = {}
    for width in (1024, 4096):
        path = _wide_slide(tmp_path, width)
        tissue = _full_tissue((160, width))
        slide = TiffSlide(path, cache_bytes=1)  # no tile cache: a second read of a tile would decode it again
        rec = Recorder()
        job = slide_heatmap_job(
            slide, (rec, META), tmp_path / f"rec{width}", tta=False, tissue=tissue, batch_size=batch,
            block_width=block_width, band_rows=2,
        )  # fmt: skip
        stats = run_job(job).stats
        assert stats["patches"] == sum(len(b) for b in rec.seen) == 5 * width // CENTER
        assert max(len(b) for b in rec.seen) <= batch  # never a whole band's patches at once
        # one block: (2 cell rows + window) x (block width + window), each rounded out to whole tiles
        bound = (2 * CENTER + PATCH + 2 * tile) * (block_width + PATCH + 2 * tile) * 3
        assert 0 < stats["max_block_bytes"] <= bound
        largest[width] = stats["max_block_bytes"]
        assert stats["blocks"] >= 3 * width // block_width  # 3 bands, each split in blocks
        # decoded tiles kept for later blocks: at most the two tile rows a band boundary crosses, across the width
        assert stats["max_frontier_bytes"] <= 2 * (width // tile + 1) * tile * tile * 3
        all_tiles = -(-160 // tile) * (width // tile)
        assert slide.tiles_decoded_per_level[0] == stats["tiles_read"] == all_tiles
        assert stats["tiles_reused"] > 0
    assert largest[1024] == largest[4096]  # flat in the width

    # every cell gets the prediction of its own window, with column blocks and parallel cutting
    model = Projection()
    blocks = run_job(
        slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, block_width=256, read_threads=2)
    )
    table = _cells(path, tissue, PatchGeometry(PATCH, CENTER))
    with open_slide(path) as s, torch.no_grad():
        for i in range(0, len(table), 23):
            row = table.iloc[i]
            x = torch.from_numpy(s.read_region(int(row.y), int(row.x), PATCH, PATCH).transpose(2, 0, 1).copy())
            want = np.mean([torch.sigmoid(model(orient_torch(x[None].float() / 255, k)))[0, 0] for k in range(8)])
            assert blocks.heatmap[int(row.row), int(row.col)] == pytest.approx(want, abs=1e-6)
    whole = run_job(slide_heatmap_job(path, (model, META), tmp_path / "w", tissue=tissue, block_width=10**6))
    assert whole.stats["blocks"] == 2 < blocks.stats["blocks"]  # 5 cell rows: bands of 4 and 1, one block each
    assert np.isfinite(whole.heatmap).all()
    np.testing.assert_allclose(blocks.heatmap, whole.heatmap, rtol=0, atol=1e-6)  # batches differ: rounding only


@pytest.mark.parametrize("read_threads", [1, 3])
def test_iter_slide_patches_are_the_read_region_windows(tmp_path, read_threads):
    path = _wide_slide(tmp_path, 1024)
    tissue = _full_tissue((160, 1024))
    geometry = PatchGeometry(PATCH, CENTER, 2.0)  # level 1 (2 um/px): 48 px windows of level 1
    with open_slide(path) as s:
        table = grid_table(SlideSource(path, s, tissue), geometry, min_tissue=1e-9, labels=False)
        assert (table.level == 1).all() and (table["size"] == PATCH).all()
        positions = []
        for pos, batch in iter_slide_patches(
            s, table, batch_size=10, block_width=64, band_rows=1, read_threads=read_threads
        ):
            assert batch.dtype == torch.uint8 and batch.shape[1:] == (3, PATCH, PATCH)
            assert 0 < len(pos) == len(batch) <= 10
            for i, patch in zip(pos, batch.numpy(), strict=True):
                row = table.iloc[int(i)]
                want = s.read_region(int(row.y), int(row.x), int(row["size"]), int(row["size"]), int(row.level))
                np.testing.assert_array_equal(patch.transpose(1, 2, 0), want)
            positions += list(pos)
    assert sorted(positions) == list(range(len(table)))


@pytest.mark.parametrize("patch_mpp", [None, 2.0])
def test_openslide_backend_gives_the_same_heatmap(synth, tmp_path, patch_mpp):
    path, tissue = synth
    meta = dict(META, mpp=patch_mpp)
    ours = run_job(slide_heatmap_job(path, (Projection(), meta), tmp_path / "t", tta=False, tissue=tissue))
    with open_slide(path, backend="openslide") as osr:
        assert osr.backend == "openslide"
        other = run_job(slide_heatmap_job(osr, (Projection(), meta), tmp_path / "o", tta=False, tissue=tissue))
    assert np.isfinite(ours.heatmap).sum() > 100
    np.testing.assert_array_equal(other.heatmap, ours.heatmap)
    assert other.grid == ours.grid


def test_precision_bf16_autocast_and_its_checks(synth, tmp_path):
    torch.manual_seed(0)
    model = build_model("small", 1).eval()
    x = torch.randint(0, 256, (4, 3, PATCH, PATCH), dtype=torch.uint8)
    fp32 = predict_patches([(model, META)], x, tta=False)
    np.testing.assert_array_equal(predict_patches([(model, META)], x, tta=False, precision="fp32"), fp32)
    bf16 = predict_patches([(model, META)], x, tta=False, precision="bf16")  # CPU autocast: the CUDA code path
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.02)
    with pytest.raises(ConfigError, match="precision"):
        predict_patches([(model, META)], x, precision="fp16")
    path, tissue = synth
    a = run_job(slide_heatmap_job(path, (Projection(), META), tmp_path, tta=False, tissue=tissue))
    b = run_job(slide_heatmap_job(path, (Projection(), META), tmp_path, tta=False, tissue=tissue, precision="bf16"))
    assert a.stats["precision"] == "fp32" and b.stats["precision"] == "bf16"  # recomputed, not loaded
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=0.02)
    for bad in ({"batch_size": 0}, {"prefetch": 0}, {"read_threads": 0}, {"block_width": 0}):
        with pytest.raises(ConfigError):
            next(slide_heatmap_job(path, (Projection(), META), tmp_path, tissue=tissue, **bad))
    blob = _blob_net()
    meta = {"input_size": 64, "classes": ["bright", "dark"], "normalization": {"mode": "standardize"}}
    image = np.random.default_rng(0).random((80, 90)).astype(np.float32)
    (p32,) = cxr_predict([image], blob, meta)
    (p16,) = cxr_predict([image], blob, meta, precision="bf16")
    np.testing.assert_allclose(p16.probabilities, p32.probabilities, atol=0.02)
    assert p16.cams.dtype == np.float32 and p16.cams.shape == p32.cams.shape


def test_channels_last_and_gpu_feeding_path_on_cpu(synth, tmp_path, monkeypatch):
    """Channels-last input (patches cut as NHWC, the default), plain NCHW input, and the CUDA way of feeding the
    model — two batches in flight before a result is collected, parallel cutting — give the same heatmap; checked
    on CPU, where CI runs."""
    import napari_patchdx.inference.heatmaps as infer

    path, tissue = synth
    plain = run_job(
        slide_heatmap_job(path, (Projection(), META), tmp_path / "a", tissue=tissue, batch_size=16, channels_last=False)
    )
    assert plain.stats["channels_last"] is False
    nhwc = run_job(slide_heatmap_job(path, (Projection(), META), tmp_path / "c", tissue=tissue, batch_size=16))
    assert nhwc.stats["channels_last"] is True
    np.testing.assert_allclose(nhwc.heatmap, plain.heatmap, rtol=0, atol=1e-6)
    monkeypatch.setattr(infer, "_feeding", lambda device, channels_last: (True, False, 2))
    gpu_way = run_job(
        slide_heatmap_job(
            path, (Projection(), META), tmp_path / "b", tissue=tissue, batch_size=16, read_threads=2, block_width=512
        )
    )
    assert gpu_way.stats["patches"] == plain.stats["patches"] > 100
    np.testing.assert_allclose(gpu_way.heatmap, plain.heatmap, rtol=0, atol=1e-6)
    assert np.array_equal(np.isnan(gpu_way.heatmap), np.isnan(plain.heatmap))
    x = torch.randint(0, 256, (3, 3, PATCH, PATCH), dtype=torch.uint8)
    model = build_model("small", 1).eval()
    np.testing.assert_allclose(
        predict_patches([(model, META)], x), predict_patches([(model, META)], x, channels_last=False), atol=1e-6
    )


def test_read_heatmap_finds_its_sidecar_for_both_suffixes(tmp_path):
    from napari_patchdx.errors import InputFileError
    from napari_patchdx.geometry import Grid
    from napari_patchdx.inference.heatmap_files import read_heatmap
    from napari_patchdx.io.float_maps import write_float_image

    heat = np.array([[0.1, np.nan], [0.9, 0.5]], np.float32)
    grid = Grid((2, 2), (128.0, 128.0), (0.0, 0.0), 0.5)
    for name in ("a.heatmap.ome.tif", "b.heatmap.ome.tiff"):
        write_float_image(tmp_path / name, heat)
        with pytest.raises(InputFileError, match=name.replace(".", r"\.")):
            read_heatmap(tmp_path / name)
        stem = name.split(".ome.")[0]
        (tmp_path / f"{stem}.json").write_text(json.dumps({"grid": grid.to_dict()}))
        back, back_grid, _ = read_heatmap(tmp_path / name)
        np.testing.assert_array_equal(back, heat)
        assert back_grid == grid
