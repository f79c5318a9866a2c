"""Hard-negative mining through run(): a first round, its heatmaps of the training slides, the false-positive
regions recorded, and a second round fine-tuned from the first round's best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_patchdx.errors import ConfigError
from napari_patchdx.models.checkpoint import read_checkpoint_meta
from napari_patchdx.pipeline.runner import run
from napari_patchdx.pipeline.stages import STAGES

from .test_pipeline import slide_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def slides_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("hard_negatives")
    make_wsi_cohort(root, n_tumor=3, n_normal=1, seed=1, height=1536, width=1536, mpp=1.0)
    return root


def test_two_rounds_with_mined_false_positives(slides_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = slide_config(slides_dir, run_dir)
    config["train"].update(hard_negatives=True, hard_negative_threshold=0.05, hard_negative_fraction=0.5)
    result = run(config)
    assert result.stages == dict.fromkeys(STAGES, "ran")
    train = run_dir / "train"
    first = train / "round1" / "best.safetensors"
    assert first.is_file() and (train / "best.safetensors").is_file()
    assert sorted(p.name for p in (train / "round1" / "heatmaps").glob("*.heatmap.ome.tif")) == [
        "tumor_000.heatmap.ome.tif"  # the training split's one slide
    ]
    record = json.loads((train / "hard_negatives.json").read_text())
    assert record["threshold"] == 0.05 and record["fraction"] == 0.5
    assert record["slides"]["tumor_000"]["false_positive_cells"] > 0 and record["slides"]["tumor_000"]["area_mm2"] > 0
    meta = read_checkpoint_meta(train / "best.safetensors")
    assert meta["config"]["init_checkpoint"] == str(first) and meta["config"]["hard_negatives"] is False
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["train"]["hard_negatives"] is True
    assert result.metrics["froc"]["score"] is not None


def test_nothing_to_mine_is_a_clear_error(slides_dir: Path, tmp_path: Path) -> None:
    config = slide_config(slides_dir, tmp_path / "run")
    config["train"].update(hard_negatives=True, hard_negative_threshold=1.0)
    with pytest.raises(ConfigError, match="no normal training cell at or above 1: there is no hard negative"):
        run(config)
    with pytest.raises(ConfigError, match="slide track only"):
        from napari_patchdx.training.config import TrainConfig

        TrainConfig(track="cxr", stage="whole", hard_negatives=True)
