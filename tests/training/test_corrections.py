"""Retraining with corrections: what was corrected (known answers), the focus regions it makes, and one real round on
tiny synthetic slides: two rejected false positives lose probability while the hits stay, a stopped round resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx.errors import ConfigError
from napari_patchdx.evaluation.slides import SlideInput, evaluate_slide_inputs
from napari_patchdx.geometry import Grid
from napari_patchdx.inference.heatmap_files import read_heatmap
from napari_patchdx.inference.heatmaps import slide_heatmap_job
from napari_patchdx.io.annotations import AnnotationSet, Region, read_annotations
from napari_patchdx.io.detect import detect_kind
from napari_patchdx.io.names import difference_paths, round_numbers, round_paths
from napari_patchdx.pipeline.runner import run
from napari_patchdx.progress import run_job
from napari_patchdx.sampling.focus import correction_focus_regions, region_cells
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.training.config import TrainConfig
from napari_patchdx.training.corrections import (
    CorrectionRound,
    RetrainSettings,
    SlideCorrection,
    correction_regions,
    corrections_round_job,
    latest_round,
    round_checkpoint,
)

from ..pipeline.test_pipeline import slide_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIRST_MODEL = {"sample": {"n": 512}, "epochs": 3}
"""The first model: 512 balanced patches, 3 epochs of the tiny pipeline settings (a weak detector with hits and
false positives at NMS threshold 0.5, in about 7 s)."""


def square(y: float, x: float, side: float, label: str = "tumor") -> Region:
    return Region(np.array([[y, x], [y, x + side], [y + side, x + side], [y + side, x]]), label=label)


def disc(y: float, x: float, radius: float, label: str = "normal") -> Region:
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    return Region(np.c_[y + radius * np.sin(t), x + radius * np.cos(t)], label=label)


# ---------------------------------------------------------------------------------------------------------------
# what was corrected
# ---------------------------------------------------------------------------------------------------------------


def test_correction_regions_known_answers() -> None:
    a, b = square(0, 0, 10), square(100, 100, 20)
    before = AnnotationSet([a, b, square(50, 50, 5, "exclusion")])
    same_a = Region(np.roll(a.exterior[::-1], 2, axis=0) + 4e-7)  # another start, other direction, within 1e-6
    moved_b = Region(b.exterior + np.array([1e-3, 0.0]))  # moved by a thousandth of a pixel: a new region
    new_c, normal = square(200, 0, 8), disc(300, 300, 16)
    after = AnnotationSet([same_a, normal, moved_b, square(50, 50, 5, "exclusion"), new_c], source=Path("x.xml"))
    found = correction_regions(before, after)
    assert found.regions == [normal, moved_b, new_c] and found.source == Path("x.xml")  # after's order
    # no ground truth before: every tumour region and every normal one is a correction
    assert correction_regions(None, after).regions == [same_a, normal, moved_b, new_c]
    # a normal region stays a correction in later rounds; an unchanged truth without one has none
    assert correction_regions(after, after).regions == [normal]
    assert correction_regions(before, before).regions == []
    # a region relabelled from normal to tumour is new tumour
    relabelled = Region(normal.exterior, label="tumor")
    assert correction_regions(AnnotationSet([normal]), AnnotationSet([relabelled])).regions == [relabelled]

    change = SlideCorrection(Path("/s/case.tif"), AnnotationSet([same_a]), before)
    assert change.name == "case" and change.removed == [b] and change.changed and not len(change.regions)
    assert not SlideCorrection(Path("case.tif"), before, before).changed
    with pytest.raises(ConfigError, match="must be an AnnotationSet"):
        SlideCorrection(Path("case.tif"), "truth.xml")  # type: ignore[arg-type]


def test_retrain_settings_check_values_and_apply_to_training() -> None:
    settings = RetrainSettings(epochs=2, lr=0.001)
    assert settings.job_options() == {
        "fraction": 0.5, "tumour_weight": 1.0, "epochs": 2, "steps_per_epoch": None, "lr": 0.001, "tta": False
    }  # fmt: skip
    tuned = settings.train_config(TrainConfig(epochs=7, steps_per_epoch=5, hard_negatives=True), "start.safetensors")
    assert (tuned.epochs, tuned.steps_per_epoch, tuned.lr) == (2, 5, 0.001)
    assert tuned.init_checkpoint == "start.safetensors" and tuned.hard_negatives is False
    for bad, message in (
        ({"fraction": 0}, "retrain.fraction must be a finite number > 0"),
        ({"fraction": 1.5}, r"retrain.fraction must be in \(0, 1\]"),
        ({"epochs": 0}, "retrain.epochs must be an integer >= 1"),
        ({"tta": "yes"}, "retrain.tta must be true or false"),
    ):
        with pytest.raises(ConfigError, match=message):
            RetrainSettings(**bad)


def test_corrected_regions_become_balanced_focus_cells(wsi_cohort) -> None:
    sources = [SlideSource.prepare(s.path, s.annotation_path) for s in wsi_cohort.slides[:2]]
    grid = sources[0].tissue.grid
    cell = grid.spacing[0]
    tissue = sources[0].tissue.mask
    r0, c0 = next(  # a 3 x 3 block of tissue cells
        (r, c) for r, c in zip(*np.nonzero(tissue), strict=True) if tissue[r : r + 3, c : c + 3].sum() == 9
    )
    tiny = disc((r0 + 0.3) * cell, (c0 + 0.6) * cell, 0.2 * cell)  # holds no cell centre: its centre's cell counts
    big = square(r0 * cell, c0 * cell, 3 * cell, "tumor")  # covers the centres of 3 x 3 cells
    mask = region_cells([tiny], grid)
    assert mask.sum() == 1 and mask[r0, c0]
    want = [[r, c] for r in range(r0, r0 + 3) for c in range(c0, c0 + 3)]
    np.testing.assert_array_equal(np.argwhere(region_cells([big], grid)), want)
    assert not region_cells([disc(-500, -500, 1)], Grid((4, 4), (10.0, 10.0))).any()  # off the grid: nothing

    # one share for the normal cells of all slides, tumour_weight shares for the tumour cells, whatever the areas
    r1, c1 = next(zip(*np.nonzero(sources[1].tissue.mask), strict=True))
    other = disc((r1 + 0.5) * cell, (c1 + 0.5) * cell, 0.4 * cell)
    regions = correction_focus_regions(
        [(sources[0], AnnotationSet([tiny, big])), (sources[1], AnnotationSet([other]))], tumour_weight=2.0
    )
    assert [(r.slide, r.reason, int(r.mask.sum())) for r in regions] == [
        (sources[0].path, "corrected: normal", 1),
        (sources[0].path, "corrected: tumour", 9),
        (sources[1].path, "corrected: normal", 1),
    ]
    assert [r.weight * r.mask.sum() for r in regions] == pytest.approx([0.5, 2.0, 0.5])
    assert regions[0].grid == grid
    only_normal = correction_focus_regions([(sources[0], AnnotationSet([tiny, big]))], tumour_weight=0.0)
    assert [r.reason for r in only_normal] == ["corrected: normal"]


# ---------------------------------------------------------------------------------------------------------------
# one round on tiny slides
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Four 1536 px slides (three with tumour) and a pipeline run of them whose sample and train stages are done."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("corrections")
    slides = root / "slides"
    make_wsi_cohort(slides, n_tumor=3, n_normal=1, seed=1, height=1536, width=1536, mpp=1.0)
    config = slide_config(slides, root / "run", sample=FIRST_MODEL["sample"])
    config["train"]["epochs"] = FIRST_MODEL["epochs"]
    run(config, stages=("sample", "train"))
    return slides, root / "run"


def rejected_false_positives(slides: Path, checkpoint: Path, name: str, out: Path, k: int = 2) -> AnnotationSet:
    """The slide's ground truth plus a normal disc (radius 2 heatmap cells) around each of the ``k`` most probable
    false-positive lesion points of ``checkpoint`` (no TTA, NMS threshold 0.5): what a user rejecting them saves."""
    heat = run_job(slide_heatmap_job(slides / f"{name}.tif", [checkpoint], out, tta=False))
    truth = read_annotations(slides / f"{name}.xml")
    ev = evaluate_slide_inputs([SlideInput(name, heat.heatmap, heat.grid, truth, (1536, 1536))], n_boot=0)
    points, outcomes = ev.points[name], ev.outcomes[name]
    fps = [i for i in range(len(points)) if outcomes.outcome[i] == "false_positive"][:k]
    assert len(fps) == k, "the first model must have false positives to reject"
    radius = 2 * heat.grid.spacing[0]
    return AnnotationSet([*truth.regions, *(disc(points.y[i], points.x[i], radius) for i in fps)])


def round_inputs(slides: Path, run_dir: Path) -> dict:
    """What a caller passes besides the corrections: the run's validation patches and its training slide."""
    return {
        "val": run_dir / "sample" / "patches.csv",
        "train_slides": [(slides / "tumor_000.tif", slides / "tumor_000.xml")],
    }


def test_rejected_false_positives_lose_probability_and_hits_stay(first_run, tmp_path: Path) -> None:
    slides, run_dir = first_run
    start = run_dir / "train" / "best.safetensors"
    corrected = rejected_false_positives(slides, start, "tumor_002", tmp_path / "heat")
    before = read_annotations(slides / "tumor_002.xml")
    change = SlideCorrection(slides / "tumor_002.tif", corrected, before)
    rounds = tmp_path / "retrain"
    reports = []
    job = corrections_round_job(None, [change], start, rounds, **round_inputs(slides, run_dir), epochs=1)
    result = run_job(job, reports.append)

    paths = round_paths(rounds, 1)
    assert (result.number, result.status, result.folder) == (1, "complete", paths["folder"])
    assert result.checkpoint == paths["train"] / "best.safetensors" and result.checkpoint.is_file()
    assert (
        result.start_checkpoint == start
        and latest_round(rounds) == 1
        and round_checkpoint(rounds, 1) == result.checkpoint
    )
    written = read_annotations(paths["corrections"] / "tumor_002.xml")
    assert [r.label for r in written].count("normal") == 2 and len(written) == len(corrected)
    assert reports[0].message.startswith("round 1: writing the corrected ground truth")

    row = result.slides["tumor_002"]
    assert row["corrections"]["normal"] == 2 and row["corrections"]["tumour"] == 0
    assert row["corrections"]["normal_area_mm2"] == pytest.approx(row["corrections"]["normal_area_px"] / 1e6)
    # the rejected regions' heatmap values drop, measured here from the two heatmaps, region by region
    heat_before, grid, _ = read_heatmap(paths["heatmaps_before"] / "tumor_002.heatmap.ome.tif")
    heat_after, grid_after, _ = read_heatmap(paths["heatmaps_after"] / "tumor_002.heatmap.ome.tif")
    assert grid == grid_after
    for region in corrected.normals:
        inside = region_cells([region], grid)
        assert np.nanmean(heat_after[inside]) < np.nanmean(heat_before[inside]) - 0.05
    assert row["after"]["normal_mean"] < row["before"]["normal_mean"]
    assert row["after"]["false_positives"] < row["before"]["false_positives"]
    # the hits stay hits (lesion points above the NMS threshold inside every lesion found before)
    assert row["after"]["lesions_detected"] == row["before"]["lesions_detected"] > 0
    assert row["after"]["score"] > 0.5
    assert result.metrics["after"]["fp_per_slide"] < result.metrics["before"]["fp_per_slide"]
    assert result.metrics["before"]["froc"] is not None and result.metrics["after"]["slide_auc"] is None

    # the difference map: after - before, opened by the reader as a heatmap aligned to its slide
    diff_paths = difference_paths(paths["difference"], "tumor_002")
    diff, diff_grid, sidecar = read_heatmap(diff_paths["final"])
    np.testing.assert_allclose(diff, heat_after - heat_before, atol=1e-6)
    assert diff_grid == grid and sidecar["kind"] == "difference" and detect_kind(diff_paths["final"]) == "heatmap"

    record = json.loads(paths["record"].read_text())
    assert record["kind"] == "napari-patchdx corrections round" and record["round"] == 1
    assert record["settings"]["epochs"] == 1 and record["train_config"]["init_checkpoint"] == str(start)
    assert record["versions"]["napari-patchdx"] and record["slides"]["tumor_002"]["after"] == row["after"]
    again = CorrectionRound.read(rounds, 1)
    assert again is not None and again.slides == result.slides and again.checkpoint == result.checkpoint

    # the next round starts from this one's checkpoint; an unchanged truth is refused
    with pytest.raises(ConfigError, match="no slide's ground truth changed"):
        run_job(corrections_round_job(None, [SlideCorrection(change.slide, before, before)], start, rounds, val=[]))
    with pytest.raises(ConfigError, match="holds no finished corrections round"):
        round_checkpoint(rounds, 2)


def test_a_stopped_round_resumes(first_run, tmp_path: Path) -> None:
    slides, run_dir = first_run
    start = run_dir / "train" / "best.safetensors"
    truth = read_annotations(slides / "normal_000.xml") if (slides / "normal_000.xml").is_file() else None
    corrected = AnnotationSet([disc(700, 700, 96), disc(300, 1100, 64)])
    change = SlideCorrection(slides / "normal_000.tif", corrected, truth)
    rounds = tmp_path / "retrain"
    options = {**round_inputs(slides, run_dir), "epochs": 2, "steps_per_epoch": 4}

    stopped = run_job(corrections_round_job(None, [change], start, rounds, stop=lambda: True, **options))
    assert stopped.status == "cancelled" and stopped.cancelled and stopped.number == 1
    paths = round_paths(rounds, 1)
    assert (paths["corrections"] / "normal_000.xml").is_file()  # written before training started
    assert json.loads(paths["record"].read_text())["status"] == "cancelled"
    assert latest_round(rounds) == 0 and not paths["heatmaps_after"].exists()

    done = run_job(corrections_round_job(None, [change], start, rounds, **options))
    assert (done.number, done.status) == (1, "complete") and round_numbers(rounds) == [1]
    sessions = json.loads((paths["train"] / "train_manifest.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["resumed_from_step"] > 0
    assert done.slides["normal_000"]["after"]["lesions"] == 0  # a normal slide: every point is a false positive

    # other settings (or resume=False) never touch round 1: they start round 2
    other = run_job(corrections_round_job(None, [change], start, rounds, **{**options, "fraction": 0.25}))
    assert other.number == 2 and round_numbers(rounds) == [1, 2]
