"""``--mpp`` on the commands that read slides (sample, infer, evaluate, info): slides whose files do not say their
microns per pixel are refused with a message naming the file and the fix, and with ``--mpp`` give exactly what the
same slides saying it in their files give; ``sample --patch-mpp`` is the patches' magnification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_patchdx import cli
from napari_patchdx.inference.heatmap_files import read_heatmap
from napari_patchdx.models.checkpoint import save_checkpoint
from napari_patchdx.models.factory import build_model

from ..no_mpp import copy_without_mpp

# tiny models: one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

MPP = 1.0
SAMPLE = ["--n", "12", "--patch-size", "32", "--center-size", "16", "--seed", "3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tumour and a normal slide (1024 x 1024 px at 1 um/px, ASAP XML beside the tumour) in ``with`` and, saying
    no microns per pixel, in ``without``; an untrained small-network checkpoint (32 px patches at level 0)."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("cli_mpp")
    make_wsi_cohort(root / "with", n_tumor=1, n_normal=1, seed=2, height=1024, width=1024, mpp=MPP)
    copy_without_mpp(root / "with", root / "without")
    torch.manual_seed(0)
    model = build_model("small", 1).eval()
    meta = {"classes": ["tumor"], "input_size": 32, "center_size": 32, "mpp": None}
    weights, _ = save_checkpoint(root / "ckpt", model, meta)
    return {"with": root / "with", "without": root / "without", "checkpoint": weights}


def _slides(folder: Path) -> list[str]:
    return [str(folder / "tumor_000.tif"), str(folder / "normal_000.tif")]


def test_sample_with_mpp(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = _slides(data["without"])
    out = tmp_path / "t.csv"
    assert cli.main(["sample", *bare, "--out", str(out), *SAMPLE]) == 1
    err = capsys.readouterr().err
    assert f"{bare[0]}: microns per pixel unknown" in err and "--mpp <um/px>" in err and "`mpp: <um/px>`" in err
    assert not out.exists()
    # one value for every slide, or NAME=UM per slide: the patches of the slides that say 1 um/px themselves
    assert cli.main(["sample", *bare, "--out", str(out), *SAMPLE, "--mpp", "1"]) == 0
    named = tmp_path / "named.csv"
    argv = ["sample", *bare, "--out", str(named), *SAMPLE, "--mpp", "tumor_000=1", "--mpp", "normal_000=1.0"]
    assert cli.main(argv) == 0
    reference = tmp_path / "reference.csv"
    assert cli.main(["sample", *_slides(data["with"]), "--out", str(reference), *SAMPLE]) == 0
    ours, theirs = pd.read_csv(out), pd.read_csv(reference)
    assert len(ours) == 12 and set(ours["label"]) == {0, 1}
    pd.testing.assert_frame_equal(ours, pd.read_csv(named))
    pd.testing.assert_frame_equal(ours.drop(columns="slide"), theirs.drop(columns="slide"))
    # --patch-mpp is the patches' magnification: 2 um per patch pixel reads level 1 of these 1 um/px slides
    coarse = tmp_path / "coarse.csv"
    assert cli.main(["sample", *bare, "--out", str(coarse), *SAMPLE, "--mpp", "1", "--patch-mpp", "2"]) == 0
    assert set(pd.read_csv(coarse)["level"]) == {1}


@pytest.mark.parametrize(
    ("mpp", "message"),
    [
        (["tumr_000=1"], "--mpp names slides that are not among the inputs: tumr_000 (did you mean 'tumor_000'?)"),
        (["1", "2"], "--mpp: give one value for every slide, or NAME=UM for each slide named"),
        (["1", "tumor_000=1"], "--mpp: give either one value for every slide or NAME=UM per slide, not both"),
        (["tumor_000=1", "tumor_000=2"], "--mpp: slide 'tumor_000' is given twice"),
        (["half"], "--mpp: 'half' is not a number of microns per pixel"),
        (["0"], "--mpp must be the slides' level-0 microns per pixel: a number > 0"),
    ],
)
def test_bad_mpp_options_exit_2(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], mpp: list[str], message: str
) -> None:
    options = [arg for value in mpp for arg in ("--mpp", value)]
    out = tmp_path / "t.csv"
    assert cli.main(["sample", *_slides(data["without"]), "--out", str(out), *SAMPLE, *options]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_infer_and_evaluate_with_mpp(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = _slides(data["without"])
    infer = ["infer", "--checkpoint", str(data["checkpoint"]), "--no-tta", "--batch-size", "64"]
    assert cli.main([*infer, "--out", str(tmp_path / "h"), *bare]) == 1
    err = capsys.readouterr().err
    assert "tumor_000.tif: microns per pixel unknown" in err and "tissue detection needs them" in err
    assert "--mpp" in err and not list((tmp_path / "h").glob("*.heatmap.ome.tif"))
    # with --mpp: the heatmaps of the same slides saying 1 um/px in their files, at that mpp
    assert cli.main([*infer, "--out", str(tmp_path / "h"), *bare, "--mpp", "1"]) == 0
    assert cli.main([*infer, "--out", str(tmp_path / "ref"), *_slides(data["with"])]) == 0
    for name in ("tumor_000", "normal_000"):
        ours, grid, _ = read_heatmap(tmp_path / "h" / f"{name}.heatmap.ome.tif")
        theirs, their_grid, _ = read_heatmap(tmp_path / "ref" / f"{name}.heatmap.ome.tif")
        assert grid == their_grid and grid.mpp == MPP
        np.testing.assert_array_equal(ours, theirs)
    # evaluate: refused without the slides' mpp (the FROC protocol's), then at that mpp
    evaluate = ["evaluate", "--heatmaps", str(tmp_path / "h"), "--n-boot", "10", *bare]
    capsys.readouterr()
    assert cli.main([*evaluate, "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"microns per pixel unknown for slides tumor_000 ({bare[0]}), normal_000 ({bare[1]})" in err
    assert "--mpp" in err and not (tmp_path / "e" / "metrics.json").exists()
    assert cli.main([*evaluate, "--out", str(tmp_path / "e"), "--mpp", "tumor_000=1", "--mpp", "normal_000=1"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["froc"]["mpp"] == MPP and metrics["settings"]["mpp_source"] == "argument"
    assert metrics["inputs"]["mpp"] == {n: {"mpp": MPP, "source": "argument"} for n in ("tumor_000", "normal_000")}
    # the same numbers as the slides that say it themselves
    reference = ["evaluate", "--heatmaps", str(tmp_path / "ref"), "--n-boot", "10", *_slides(data["with"])]
    assert cli.main([*reference, "--out", str(tmp_path / "e_ref")]) == 0
    expected = json.loads((tmp_path / "e_ref" / "metrics.json").read_text())
    assert metrics["froc"] == expected["froc"] and metrics["slide_auc"] == expected["slide_auc"]
    assert expected["inputs"]["mpp"]["tumor_000"] == {"mpp": MPP, "source": "file"}


def test_info_mpp_and_mpp_with_a_configuration(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = _slides(data["without"])
    assert cli.main(["info", bare[0], "--mpp", "tumor_000=0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mpp"] == 0.5 and summary["mpp_source"] == "argument"
    assert cli.main(["info", bare[0]]) == 0
    assert json.loads(capsys.readouterr().out)["mpp"] is None
    config = tmp_path / "exp.yaml"
    config.write_text(f"track: slides\ninput: {data['without']}\nrun_dir: {tmp_path / 'run'}\n")
    for command in ("sample", "infer", "evaluate"):
        assert cli.main([command, str(config), "--mpp", "1"]) == 2
        assert "--mpp is for slides named on the command line; with a configuration" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
