"""run(): configuration checks, both tracks end to end on tiny cohorts, skipping, re-running, stop / resume, repeat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import distributed as pd_distributed
from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.inference.heatmap_files import read_heatmap
from napari_patchdx.pipeline import stages as pipeline_stages
from napari_patchdx.pipeline.config import RunConfig, config_reference
from napari_patchdx.pipeline.runner import run, run_job
from napari_patchdx.pipeline.stages import STAGES
from napari_patchdx.progress import run_job as drive
from napari_patchdx.sampling.tables import read_patch_table

# tiny models: one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# tiny but real: the small network on 32 px patches, one epoch of a few steps, no loader processes
SLIDE_TRAIN = {
    "arch": "small",
    "patch_size": 32,
    "center_size": 16,
    "mpp": 4.0,
    "epochs": 1,
    "batch_size": 16,
    "val_patches": 32,
    "optimizer": "adam",
    "num_workers": 0,
    "deterministic": True,
}
CXR_TRAIN = {
    "arch": "small",
    "working_size": 64,
    "patch_size": 32,
    "epochs": 1,
    "batch_size": 8,
    "val_patches": 16,
    "optimizer": "adam",
    "num_workers": 0,
    "deterministic": True,
}


@pytest.fixture(scope="module")
def slides_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tumour slides (ASAP XML beside them) and one normal slide, 1536 x 1536 px at 1 um/px."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("pipeline_wsi")
    make_wsi_cohort(root, n_tumor=3, n_normal=1, seed=1, height=1536, width=1536, mpp=1.0)
    return root


@pytest.fixture(scope="module")
def cxr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 64 x 64 synthetic chest X-rays with lesion masks (PNG only)."""
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    root = tmp_path_factory.mktemp("pipeline_cxr")
    make_cxr_cohort(root, n=12, seed=4, size=64, dicom=False)
    return root


def slide_config(slides_dir: Path, run_dir: Path, **extra: object) -> dict:
    return {
        "track": "slides",
        "input": str(slides_dir),
        "run_dir": str(run_dir),
        "splits": {"tumor_000": "train", "tumor_001": "val", "tumor_002": "test", "normal_000": "test"},
        "sample": {"n": 48},
        "train": dict(SLIDE_TRAIN),
        "evaluate": {"n_boot": 20},
        **extra,
    }


def cxr_config(cxr_dir: Path, run_dir: Path, **extra: object) -> dict:
    return {
        "track": "cxr",
        "input": str(cxr_dir),
        "run_dir": str(run_dir),
        "splits": [0.5, 0.25, 0.25],
        "sample": {"n": 16},
        "train": dict(CXR_TRAIN),
        "evaluate": {"n_boot": 20},
        **extra,
    }


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"epoch": 2}}, "unknown key 'train.epoch'; did you mean 'train.epochs'?"),
        ({"infer": {"tta_": True}}, "unknown key 'infer.tta_'; did you mean 'infer.tta'?"),
        ({"distributed": {"worker": 2}}, "did you mean 'distributed.workers'?"),
        ({"sampel": {}}, "unknown key 'sampel'; did you mean 'sample'?"),
        ({"train": {"epochs": "two"}}, "train.epochs must be an integer >= 1, got 'two'"),
        ({"infer": {"batch_size": 0}}, "infer.batch_size must be an integer >= 1"),
        ({"evaluate": {"score": "mean"}}, "evaluate.score must be 'max' or 'top<k>'"),
        ({"train": {"seed": 3}}, "train.seed: set 'seed' at the top level"),
        ({"splits": [0.5, 0.5, 0.5]}, "must sum to 1"),
        ({"track": "slide"}, "did you mean 'slides'?"),
        ({"report": {"enabled": "yes"}}, "report.enabled must be true or false"),
    ],
)
def test_config_errors_name_the_key(values: dict, message: str) -> None:
    base = {"track": "cxr", "input": "cohort"}
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({**base, **values})
    assert message in str(info.value)


def test_yaml_config_relative_paths_and_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("track: cxr\ninput: data/cxr\nrun_dir: runs/a\ntrain:\n  arch: small\n  epochs: 2\n")
    config = RunConfig.load(path)
    assert Path(config.input) == tmp_path / "data" / "cxr" and Path(config.run_dir) == tmp_path / "runs" / "a"
    assert config.training.stage == "curriculum" and config.training.epochs == 2 and config.training.track == "cxr"
    assert RunConfig.from_dict(config.to_dict()) == config  # the resolved config round-trips
    fractions = RunConfig.from_dict({"track": "cxr", "input": "x", "splits": {"train": 0.7, "val": 0.3}})
    assert fractions.splits == [0.7, 0.3, 0.0]
    path.write_text("track: cxr\ninput: x\ntrain:\n  epcohs: 2\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'train\.epcohs'; did you mean 'train\.epochs'"):
        RunConfig.load(path)
    with pytest.raises(InputFileError, match="no such configuration file"):
        RunConfig.load(tmp_path / "absent.yaml")


def test_missing_input_files_are_listed_together(cxr_dir: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(cxr_dir, cohort)
    (cohort / "images" / "cxr_0003.png").unlink()
    (cohort / "images" / "cxr_0007.png").unlink()
    config = cxr_config(cohort, tmp_path / "run")
    config["train"]["pretrained"] = str(tmp_path / "weights.safetensors")
    with pytest.raises(ConfigError) as info:
        run(config)
    text = str(info.value)
    assert "missing inputs (3):" in text
    assert "cxr_0003.png" in text and "cxr_0007.png" in text and "weights.safetensors" in text
    assert not (tmp_path / "run").exists()  # nothing was started


def test_unusable_splits_and_foreign_run_dir(slides_dir: Path, tmp_path: Path) -> None:
    bad = slide_config(slides_dir, tmp_path / "run")
    bad["splits"] = {"tumor_000": "train", "tumor_001": "test", "tumor_002": "test", "normal_000": "val"}
    with pytest.raises(ConfigError, match=r"no tumour slide .* has split 'val'"):
        run(bad)
    partial = slide_config(slides_dir, tmp_path / "run")
    partial["splits"] = {"tumor_000": "train"}
    with pytest.raises(ConfigError, match="no split for"):
        run(partial)
    # a split file: checked eagerly, when the job is made, before any work
    split_csv = tmp_path / "splits.csv"
    split_csv.write_text("name,split\ntumor_000,train\ntumor_001,val\ntumor_002,test\nnormal_000,tset\n")
    with pytest.raises(InputFileError, match=r"splits\.csv: line 5: split must be one of"):
        run_job({**slide_config(slides_dir, tmp_path / "run"), "splits": str(split_csv)})
    split_csv.write_text("name,split\ntumor_000,train\ntumor_001,val\ntumor_002,test\nnormal_000,train\n")
    run_job({**slide_config(slides_dir, tmp_path / "run"), "splits": str(split_csv)}).close()
    assert not (tmp_path / "run").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a napari-patchdx run"):
        run(slide_config(slides_dir, foreign))
    assert (foreign / "notes.txt").read_text() == "mine"


def test_config_reference_covers_every_key() -> None:
    rows = config_reference()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    for key in ("track", "input", "splits", "sample.n", "train.epochs", "train.patch_size", "infer.tta"):
        assert key in keys
    assert "distributed.scheduler" in keys and "evaluate.nms_radius_um" in keys and "report.title" in keys
    assert "train.seed" not in keys  # one seed for the whole run
    assert all(r["help"] and r["type"] and r["default"] for r in rows)
    assert next(r for r in rows if r["key"] == "train.epochs")["default"] == "10"


# ---------------------------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------------------------


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(pipeline_stages, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline_stages, name, wrapper)
    return calls


def test_slides_end_to_end_skip_rerun_infer_and_repeat(
    slides_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    trained = _counting(monkeypatch, "train_job")
    sampled = _counting(monkeypatch, "sample_slides_job")
    result = run(slide_config(slides_dir, run_dir))

    assert result.stages == dict.fromkeys(STAGES, "ran") and not result.cancelled
    for rel in ("config.yaml", "manifest.json", "sample/splits.csv", "sample/patches.csv", "train/best.safetensors"):
        assert (run_dir / rel).is_file(), rel
    for stem in ("tumor_002", "normal_000"):  # the test split only
        assert (run_dir / "infer" / f"{stem}.heatmap.ome.tif").is_file()
        assert (run_dir / "evaluate" / "points" / f"{stem}.csv").is_file()
    assert not (run_dir / "infer" / "tumor_000.heatmap.ome.tif").exists()
    assert (run_dir / "evaluate" / "metrics.json").is_file() and result.report == run_dir / "report.html"
    assert result.report.is_file()
    assert result.metrics["track"] == "slides" and "froc" in result.metrics and "slide_auc" in result.metrics
    assert set(result.artifacts) == set(STAGES)
    assert all(p.exists() for paths in result.artifacts.values() for p in paths)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["config"]["train"]["epochs"] == 1
    assert {"torch", "numpy", "napari-patchdx"} <= set(manifest["versions"])
    assert manifest["device"]["resolved"] == "cpu"
    assert len(manifest["inputs"]) == 7  # 4 slides + 3 XML
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in manifest["inputs"])
    assert all(manifest["stages"][s]["status"] == "complete" for s in STAGES)
    assert all(manifest["stages"][s]["seconds"] >= 0 for s in STAGES)
    assert len({manifest["stages"][s]["fingerprint"] for s in STAGES}) == len(STAGES)
    fingerprints = {s: manifest["stages"][s]["fingerprint"] for s in STAGES}
    assert len(trained) == 1 and len(sampled) == 2  # training patches and validation patches

    # the same configuration again: every stage is skipped, nothing is called
    again = run(slide_config(slides_dir, run_dir))
    assert again.stages == dict.fromkeys(STAGES, "skipped")
    assert len(trained) == 1 and len(sampled) == 2
    assert again.metrics == result.metrics

    # an inference option changed: infer, evaluate and report run again, training does not
    changed = run(slide_config(slides_dir, run_dir, infer={"tta": False}))
    assert changed.stages == {
        "sample": "skipped",
        "train": "skipped",
        "infer": "ran",
        "evaluate": "ran",
        "report": "ran",
    }
    assert len(trained) == 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["fingerprint"] == fingerprints["train"]
    assert manifest["stages"]["infer"]["fingerprint"] != fingerprints["infer"]
    assert [s["stages"]["infer"] for s in manifest["sessions"]] == ["ran", "skipped", "ran"]

    # the manifest alone repeats the run: into its own folder everything is current ...
    assert run(run_dir / "manifest.json").stages == dict.fromkeys(STAGES, "skipped")
    # ... into a new folder it recomputes the same results (deterministic training)
    repeat = run(run_dir / "manifest.json", run_dir=tmp_path / "repeat")
    assert repeat.stages == dict.fromkeys(STAGES, "ran")
    for stem in ("tumor_002", "normal_000"):
        a = read_heatmap(run_dir / "infer" / f"{stem}.heatmap.ome.tif")[0]
        b = read_heatmap(tmp_path / "repeat" / "infer" / f"{stem}.heatmap.ome.tif")[0]
        assert np.isfinite(a).any()
        np.testing.assert_array_equal(a, b)

    # where slide inference runs does not change its results: the distributed section is not in the fingerprints,
    # and the infer stage forced onto a local dask cluster of one worker process writes the same heatmaps
    before = {s: read_heatmap(run_dir / "infer" / f"{s}.heatmap.ome.tif")[0] for s in ("tumor_002", "normal_000")}
    spread = slide_config(slides_dir, run_dir, infer={"tta": False}, distributed={"workers": 1, "retries": 0})
    assert run(spread).stages == dict.fromkeys(STAGES, "skipped")
    clusters: list[tuple] = []
    start = pd_distributed._start
    monkeypatch.setattr(pd_distributed, "_start", lambda *a: clusters.append(a) or start(*a))
    assert run(spread, stages=["infer"], force=True).stages["infer"] == "ran"
    assert clusters == [(1, None, 1)]  # one worker process, no scheduler given, one thread
    for stem, heat in before.items():  # equal to float32 rounding (the worker's kernels may sum in another order)
        np.testing.assert_allclose(read_heatmap(run_dir / "infer" / f"{stem}.heatmap.ome.tif")[0], heat, atol=1e-6)
    assert json.loads((run_dir / "manifest.json").read_text())["config"]["distributed"]["workers"] == 1
    assert run(slide_config(slides_dir, run_dir, infer={"tta": False})).stages["infer"] == "skipped"
    monkeypatch.setattr(pd_distributed, "_start", start)

    layers = result.layers()
    kinds = [kwargs["metadata"]["patchdx"]["kind"] for _, kwargs, _ in layers]
    assert kinds.count("slide") == 2 and kinds.count("heatmap") == 2 and kinds.count("points") == 2
    truths = [data for data, kwargs, _ in layers if kwargs["metadata"]["patchdx"]["kind"] == "annotations"]
    assert sorted(len(d) > 0 for d in truths) == [False, True]  # the tumour slide's, the normal slide's empty one
    assert layers[0][1].get("visible", True) and layers[-1][1]["visible"] is False  # the first slide's layers show


def test_cxr_end_to_end_stop_resume_and_layers(cxr_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = cxr_config(cxr_dir, run_dir)
    stages_seen: list[str] = []

    def stop() -> bool:  # stop as soon as inference has started
        return "infer" in stages_seen

    def record(report) -> None:
        if isinstance(report.partial, dict) and report.partial.get("stage"):
            stages_seen.append(report.partial["stage"])

    job = run_job(config, stop=stop)
    result = None
    while True:
        try:
            record(next(job))
        except StopIteration as done:
            result = done.value
            break
    assert result.cancelled and result.stages["infer"] == "cancelled"
    assert result.stages["evaluate"] == "not run" and not (run_dir / "evaluate").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "complete"
    assert manifest["stages"]["infer"]["status"] == "cancelled"

    finished = drive(run_job(config))
    assert finished.stages == {
        "sample": "skipped",
        "train": "skipped",
        "infer": "resumed",
        "evaluate": "ran",
        "report": "ran",
    }
    metrics = finished.metrics
    assert metrics["track"] == "cxr" and "mean_auroc" in metrics and "pointing_game" in metrics
    splits = json.loads((run_dir / "manifest.json").read_text())["splits"]
    test_ids = sorted(k for k, v in splits.items() if v == "test")
    assert sorted(p.name.split(".")[0] for p in (run_dir / "infer").glob("*.cam.ome.tif")) == test_ids
    assert len(test_ids) == 2 and list(splits.values()).count("train") == 6  # 0.5 / 0.25 / 0.25 per stratum
    assert (run_dir / "sample" / "patches.csv").is_file()
    train_meta = json.loads((run_dir / "train" / "best.json").read_text())
    assert train_meta["stage"] == "whole"  # curriculum: patches first, then whole images

    layers = finished.layers()
    kinds = [kwargs["metadata"]["patchdx"]["kind"] for _, kwargs, _ in layers]
    assert kinds.count("cxr") == 2 and kinds.count("cam") == 2 * 5
    first_cam = next(kwargs for _, kwargs, _ in layers if kwargs["metadata"]["patchdx"]["kind"] == "cam")
    cxr_kwargs = layers[0][1]
    assert tuple(first_cam.get("scale", (1, 1))) == tuple(cxr_kwargs.get("scale", (1, 1)))  # aligned to the X-ray


def test_stage_needs_the_previous_one_and_interrupt_leaves_nothing_half_done(
    cxr_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"the sample stage .* is not done"):
        drive(run_job(cxr_config(cxr_dir, run_dir), stages=["train"]))

    class Interrupt:
        """A lesion sampler whose second table raises KeyboardInterrupt (Ctrl-C in the middle of the stage)."""

        def __init__(self, *args, **kwargs) -> None:
            pass

        def table(self, n: int, start: int = 0):
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_stages, "CxrLesionSampler", Interrupt)
    with pytest.raises(KeyboardInterrupt):
        drive(run_job(cxr_config(cxr_dir, run_dir, sample={"n": 100})))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["sample"]["status"] == "cancelled"
    assert not (run_dir / "sample").exists()  # the half-done stage folder is gone
    monkeypatch.undo()
    only = drive(run_job(cxr_config(cxr_dir, run_dir, sample={"n": 100}), stages=["sample"]))
    assert only.stages["sample"] == "ran" and only.stages["train"] == "not run"
    assert len(read_patch_table(run_dir / "sample" / "patches.csv")) == 100


def test_ome_tiff_slides_go_sample_train_infer_evaluate(slides_dir: Path, tmp_path: Path) -> None:
    """``<name>.ome.tiff`` slides (OME-XML pyramid, physical size in the OME metadata) with ``<name>.xml`` beside
    them: every stage finds them and their outputs by the name without the double suffix."""
    import tifffile

    from napari_patchdx import open_slide

    ome = tmp_path / "ome"
    ome.mkdir()
    for path in sorted(slides_dir.glob("*.tif")):
        with open_slide(path) as slide:
            image = slide.read_region(0, 0, *slide.shape)
            mpp = slide.mpp
        stem = path.stem
        with tifffile.TiffWriter(ome / f"{stem}.ome.tiff", ome=True) as tw:
            meta = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": mpp}
            tw.write(image, subifds=1, tile=(256, 256), compression="zlib", photometric="rgb", metadata=meta)
            tw.write(image[::2, ::2], tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1)
        if path.with_suffix(".xml").is_file():
            shutil.copy(path.with_suffix(".xml"), ome / f"{stem}.xml")
    run_dir = tmp_path / "run"
    result = run(slide_config(ome, run_dir))
    assert result.stages == dict.fromkeys(STAGES, "ran")
    splits = (run_dir / "sample" / "splits.csv").read_text()
    assert "tumor_000,train" in splits and "normal_000,test" in splits  # named without .ome
    for stem in ("tumor_002", "normal_000"):
        assert (run_dir / "infer" / f"{stem}.heatmap.ome.tif").is_file()
        assert (run_dir / "evaluate" / "points" / f"{stem}.csv").is_file()
    metrics = result.metrics
    assert (metrics["n_tumor"], metrics["n_normal"]) == (1, 1)  # tumor_002's ground truth was found beside it
    assert metrics["froc"]["n_lesions"] > 0 and metrics["froc"]["mpp"] == pytest.approx(1.0)
    assert metrics["slide_auc"]["n_tumor"] == 1 and "skipped" not in metrics["slide_auc"]
