"""Patch datasets: lazy reads, per-process handles, DataLoader workers, determinism, export."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from napari_patchdx import open_slide
from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.datasets import BalancedPatchStream, PatchTableDataset, export_patch_images, to_float
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.transforms.compose import slide_train_transforms


@pytest.fixture(scope="module")
def sampler(wsi_cohort) -> BalancedSampler:
    sources = [SlideSource.prepare(s.path, s.annotation_path) for s in wsi_cohort.slides]
    return BalancedSampler(sources, PatchGeometry(96, 48), seed=1)


def test_items_are_the_table_patches(sampler: BalancedSampler) -> None:
    table = sampler.table(8)
    ds = PatchTableDataset(table, patch_size=96)
    for i in (0, 5):
        image, target = ds[i]
        assert image.shape == (3, 96, 96) and image.dtype == torch.uint8
        row = table.iloc[i]
        expected = open_slide(row.slide).read_region(row.y, row.x, 96, 96, row.level)
        np.testing.assert_array_equal(image.numpy().transpose(1, 2, 0), expected)
        np.testing.assert_allclose(to_float(image[None])[0].numpy().transpose(1, 2, 0), expected / 255.0, atol=1e-6)
        assert target.tolist() == [float(row.label)]


def test_dataloader_workers_match_single_process(sampler: BalancedSampler) -> None:
    table = sampler.table(16)
    ds = PatchTableDataset(table, patch_size=96, transforms=slide_train_transforms(), seed=3)
    single = torch.cat([x for x, _ in DataLoader(ds, batch_size=4, num_workers=0)])
    multi = torch.cat([x for x, _ in DataLoader(ds, batch_size=4, num_workers=2)])
    torch.testing.assert_close(single, multi)
    ds.set_epoch(1)
    other = torch.cat([x for x, _ in DataLoader(ds, batch_size=4, num_workers=0)])
    assert not torch.equal(single, other)  # new augmentation each epoch
    spawn = DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    ds.set_epoch(0)
    torch.testing.assert_close(torch.cat([x for x, _ in spawn]), single)


def test_stream_is_the_sampler_in_order_and_resumes(sampler: BalancedSampler) -> None:
    table = sampler.table(12)
    stream = BalancedPatchStream(sampler, batch_size=3)
    loader = DataLoader(stream, batch_size=3, num_workers=2)
    labels = []
    for k, (_, y) in enumerate(loader):
        labels.extend(y[:, 0].int().tolist())
        if k == 3:
            break
    assert labels == table.label.tolist()
    resumed = BalancedPatchStream(sampler, start=6)
    x6, y6 = next(iter(resumed))
    first = next(iter(DataLoader(PatchTableDataset(table.iloc[6:7], patch_size=96), batch_size=1)))
    torch.testing.assert_close(x6, first[0][0])
    assert y6.item() == table.label.iloc[6]
    pickle.loads(pickle.dumps(stream))  # travels to spawned workers


def test_export_patch_images(tmp_path: Path, sampler: BalancedSampler) -> None:
    table = sampler.table(5)
    paths = export_patch_images(table, tmp_path / "png", patch_size=96)
    assert len(paths) == 5 and all(p.is_file() for p in paths)
    first = np.asarray(Image.open(paths[0]))
    row = table.iloc[0]
    np.testing.assert_array_equal(first, open_slide(row.slide).read_region(row.y, row.x, 96, 96, row.level))
    assert paths[0].name.endswith(f"_l{row.label}.png")


def test_cxr_patches_are_float_gray(tmp_path: Path) -> None:
    from napari_patchdx.io.cxr.read import read_cxr
    from napari_patchdx.sampling.cxr_lesions import CxrLesionSampler, load_cxr_cohort
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort
    from napari_patchdx.transforms.compose import cxr_train_transforms

    cohort = make_cxr_cohort(tmp_path / "cxr", n=4, seed=2, size=256, dicom=False)
    table = CxrLesionSampler(load_cxr_cohort(cohort.root), patch_size=64, working_size=256).table(6)
    ds = PatchTableDataset(table, patch_size=64)
    image, target = ds[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and target.shape == (5,)
    row = table.iloc[0]
    native = read_cxr(row.slide).image[row.y : row.y + row["size"], row.x : row.x + row["size"]]
    np.testing.assert_allclose(image[0].numpy(), native, atol=1e-6)  # 256 px image: native = working resolution
    augmented = PatchTableDataset(table, patch_size=64, transforms=cxr_train_transforms())[0][0]
    assert abs(float(augmented.mean())) < 1e-4  # standardised per image
