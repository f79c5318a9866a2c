"""The trainer: stages, curriculum and baseline budget, checkpoints, resume after kill -9 / cancel, errors, DDP."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_patchdx.devices import available_devices, resolve_device
from napari_patchdx.errors import ConfigError, InputFileError, PatchdxError
from napari_patchdx.models.checkpoint import load_checkpoint, read_checkpoint_meta
from napari_patchdx.progress import Progress
from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.datasets import BalancedPatchStream, PatchStream
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.synth.cxr.cohort import make_cxr_cohort
from napari_patchdx.synth.cxr.data_model import CXR_CLASSES
from napari_patchdx.synth.wsi.cohort import make_wsi_cohort
from napari_patchdx.training.config import TrainConfig
from napari_patchdx.training.ddp import state_digest
from napari_patchdx.training.inputs import TrainData
from napari_patchdx.training.job import train, train_job
from napari_patchdx.training.loop import TrainingError
from napari_patchdx.training.resume import POINTER_NAME
from napari_patchdx.training.schedule import ExampleHalvingLR, plan_stages

SLIDE = {
    "track": "slide",
    "arch": "small",
    "batch_size": 4,
    "steps_per_epoch": 3,
    "patch_size": 48,
    "center_size": 16,
    "val_patches": 16,
    "num_workers": 0,
    "deterministic": True,
    "progress_every": 1,
}
CXR = {
    "track": "cxr",
    "arch": "small",
    "batch_size": 4,
    "patch_size": 48,
    "working_size": 128,
    "val_patches": 16,
    "num_workers": 0,
    "deterministic": True,
    "progress_every": 1,
}


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path | None, str]]:
    """Two tumour slides and one normal slide, 2048 px at 1.0 um/px: (slide, annotations, split)."""
    cohort = make_wsi_cohort(
        tmp_path_factory.mktemp("wsi"), n_tumor=2, n_normal=1, seed=3, height=2048, width=2048, mpp=1.0
    )
    splits = {"tumor_000": "train", "tumor_001": "val", "normal_000": "train"}
    return [(s.path, s.annotation_path, splits[s.path.stem]) for s in cohort.slides]


@pytest.fixture(scope="module")
def slide_sampler(slides: list[tuple[Path, Path | None, str]]) -> BalancedSampler:
    sources = [SlideSource.prepare(p, a, split=sp) for p, a, sp in slides]
    return BalancedSampler(sources, PatchGeometry(48, 16), seed=5)


@pytest.fixture(scope="module")
def slide_table(slide_sampler: BalancedSampler) -> pd.DataFrame:
    """A patch table: 24 training patches from the training slides, 16 validation patches from the other."""
    train_src = [s for s in slide_sampler.sources if s.split == "train"]
    val_src = [s for s in slide_sampler.sources if s.split == "val"]
    train_part = BalancedSampler(train_src, slide_sampler.geometry, seed=1).table(24)
    val_part = BalancedSampler(val_src, slide_sampler.geometry, seed=2).table(16)
    return pd.concat([train_part, val_part], ignore_index=True)


@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve synthetic chest X-rays at 128 px (half with lesions)."""
    return make_cxr_cohort(tmp_path_factory.mktemp("cxr"), n=12, seed=0, size=128, dicom=False).root


@pytest.fixture(scope="module")
def cxr_splits(cxr_root: Path) -> dict[str, str]:
    """8 training and 4 validation images (2 with lesions, 2 without)."""
    labels = pd.read_csv(cxr_root / "labels.csv")
    sick = labels[list(CXR_CLASSES)].to_numpy().any(axis=1)
    ids = labels["image"].tolist()
    with_lesions = [i for i, s in zip(ids, sick, strict=True) if s]
    without = [i for i, s in zip(ids, sick, strict=True) if not s]
    val = with_lesions[:2] + without[:2]
    return {i: ("val" if i in val else "train") for i in ids}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return model.state_dict()


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _quiet_train(config: TrainConfig, data: TrainData, out: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return train(config, data, out, **kwargs)


# --------------------------------------------------------------------------------------------------- settings


def test_config_round_trip_and_validation() -> None:
    config = TrainConfig(**SLIDE, class_weights=[2.0])
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig(track="cxr").arch == "resnet50" and TrainConfig().arch == "inception_v3"
    with pytest.raises(ConfigError, match=r"unknown training setting 'batchsize'; did you mean 'batch_size'"):
        TrainConfig.from_dict({"batchsize": 8})
    with pytest.raises(ConfigError, match=r"optimizer .* \(did you mean 'rmsprop'\?\)"):
        TrainConfig(optimizer="rmsprob")
    with pytest.raises(ConfigError, match="slide track trains on patches only"):
        TrainConfig(track="slide", stage="curriculum")
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError, match="unknown data key 'cxr_dir'; did you mean 'cxr_root'"):
        TrainData.from_dict({"cxr_dir": "x"})


def test_learning_rate_rule_and_example_schedule() -> None:
    # Liu et al.: RMSProp 0.05 for batches of 32; scaled linearly with the global batch (batch_size x ranks)
    assert TrainConfig(batch_size=32).effective_lr() == pytest.approx(0.05)
    assert TrainConfig(batch_size=64).effective_lr() == pytest.approx(0.1)
    assert TrainConfig(batch_size=16).effective_lr(world_size=4) == pytest.approx(0.1)
    assert TrainConfig(optimizer="adam", batch_size=64).effective_lr() == pytest.approx(1e-3)
    assert TrainConfig(lr=0.3).effective_lr(world_size=8) == 0.3
    opt = torch.optim.RMSprop([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    schedule = ExampleHalvingLR(opt, every=2_000_000)
    schedule.step(1_999_999)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    schedule.step(4_000_000)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    other = ExampleHalvingLR(opt, every=1)
    other.load_state_dict(schedule.state_dict())
    assert other.examples == 4_000_000 and opt.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_devices(tmp_path: Path) -> None:
    assert available_devices()[0] == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    with pytest.raises(ConfigError, match=r"'cuda:3' is not available.*available devices: cpu"):
        resolve_device("cuda:3")
    job = train_job(TrainConfig(**{**SLIDE, "device": "cuda:3"}), TrainData(), tmp_path / "run")
    with pytest.raises(ConfigError, match="available devices"):
        next(job)


def test_stream_is_the_balanced_patch_stream_on_one_rank(slide_sampler: BalancedSampler) -> None:
    train_sampler = BalancedSampler(
        [s for s in slide_sampler.sources if s.split == "train"], slide_sampler.geometry, seed=4
    )
    ours = list(itertools.islice(PatchStream(train_sampler, None, patch_size=48, start=3, batch_size=2), 10))
    reference = list(itertools.islice(BalancedPatchStream(train_sampler, start=3, batch_size=2), 10))
    assert len(ours) == len(reference) == 10  # five batches of two
    for (x, y), (rx, ry) in zip(ours, reference, strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    # draws 3 .. 12 of the sampler, in order, each a different patch
    assert [y.item() for _, y in ours] == [float(train_sampler.draw(i)["label"]) for i in range(3, 13)]
    assert len({float(x.double().sum()) for x, _ in ours}) == 10
    # rank 1 of 2 reads global blocks 1, 3, ...: draws start + 2..3, then start + 6..7
    rank1 = iter(PatchStream(train_sampler, None, patch_size=48, start=3, batch_size=2, rank=1, world=2))
    labels = [next(rank1)[1].item() for _ in range(4)]
    assert labels == [float(train_sampler.draw(i)["label"]) for i in (5, 6, 9, 10)]


# --------------------------------------------------------------------------------------------------- stages


def test_slide_patch_stage(tmp_path: Path, slides: list) -> None:
    config = TrainConfig(**SLIDE, epochs=3, class_weights="balanced")
    reports: list[Progress] = []
    result = _quiet_train(config, TrainData(slides=slides), tmp_path / "run", on_progress=reports.append)
    assert reports[0].message.startswith("preparing") and reports[-1].total == 9  # 3 epochs x 3 steps
    steps = [r.done for r in reports if r.total == 9]
    assert steps == sorted(steps) and steps[-1] == 9 and len(steps) > 9
    epoch_reports = [r.partial for r in reports if isinstance(r.partial, dict) and r.partial.get("event") == "epoch"]
    assert len(epoch_reports) == 3
    assert [h["epoch"] for h in result.history] == [1, 2, 3] and not result.cancelled
    for entry in result.history:
        assert entry["stage"] == "patches"
        for key in ("train_loss", "val_loss", "val_accuracy", "seconds", "lr"):
            assert np.isfinite(entry[key]), key
        assert set(entry["val_auroc"]) == {"tumor", "mean"} and np.isfinite(entry["val_auroc"]["mean"])
    assert [h["examples_seen"] for h in result.history] == [12, 24, 36]
    model, meta = load_checkpoint(result.last)
    assert meta["arch"] == "small" and meta["classes"] == ["tumor"] and meta["in_channels"] == 3
    assert meta["input_size"] == 48 and meta["center_size"] == 16
    assert len(meta["metrics"]) == 3 and meta["config"]["epochs"] == 3
    assert state_digest(model) == result.weights_sha256 == result.history[-1]["weights_sha256"]
    best = read_checkpoint_meta(result.best)
    scores = [h["val_auroc"]["mean"] for h in result.history]
    assert best["epoch"] == int(np.argmax(scores)) + 1  # first epoch with the best score
    manifest = json.loads((tmp_path / "run" / "train_manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and len(manifest["sessions"]) == 1
    assert any(entry.get("sha256") for entry in manifest["inputs"])
    assert manifest["sessions"][0]["result"]["weights_sha256"] == result.weights_sha256
    with pytest.raises(ConfigError, match="already holds a training run"):
        next(train_job(config, TrainData(slides=slides), tmp_path / "run", resume=False))
    again = _quiet_train(config, TrainData(slides=slides), tmp_path / "run")  # finished: nothing more to do
    assert again.weights_sha256 == result.weights_sha256 and again.global_step == 9
    longer = _quiet_train(dataclasses.replace(config, epochs=4), TrainData(slides=slides), tmp_path / "run")
    assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4] and longer.global_step == 12


@pytest.fixture(scope="module")
def cxr_curriculum(tmp_path_factory: pytest.TempPathFactory, cxr_root: Path, cxr_splits: dict) -> dict:
    """A curriculum run (1 patch epoch, then 1 whole-image epoch) with what it reported on the way."""
    out = tmp_path_factory.mktemp("curriculum") / "run"
    config = TrainConfig(**CXR, stage="curriculum", epochs=1)
    seen: dict = {"starts": [], "patch_end_digest": None}
    job = train_job(config, TrainData(cxr_root=cxr_root, splits=cxr_splits), out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        while True:
            try:
                report = next(job)
            except StopIteration as stop:
                result = stop.value
                break
            partial = report.partial
            if isinstance(partial, dict) and partial.get("event") == "stage_start":
                seen["starts"].append(partial)
            if isinstance(partial, dict) and partial.get("event") == "epoch" and partial["stage"] == "patches":
                seen["patch_end_digest"] = state_digest(_weights(out / "last"))  # the checkpoint on disk now
    seen.update(result=result, config=config, warnings=[str(w.message) for w in caught])
    return seen


def test_curriculum_carries_weights_into_the_whole_stage(cxr_curriculum: dict) -> None:
    result = cxr_curriculum["result"]
    assert [h["stage"] for h in result.history] == ["patches", "whole"]
    starts = cxr_curriculum["starts"]
    assert [s["stage"] for s in starts] == ["patches", "whole"]
    patch_end = cxr_curriculum["patch_end_digest"]
    # the whole stage starts from exactly the patch stage's last weights (the checkpoint it wrote)
    assert starts[1]["weights_sha256"] == patch_end == result.history[0]["weights_sha256"]
    assert starts[0]["weights_sha256"] != patch_end and result.weights_sha256 != patch_end
    meta = read_checkpoint_meta(result.last)
    assert meta["classes"] == list(CXR_CLASSES) and meta["in_channels"] == 1
    assert meta["input_size"] == 128 and meta["stage"] == "whole" and meta["normalization"]["mode"] == "standardize"
    assert [m["stage"] for m in meta["metrics"]] == ["patches", "whole"]
    # a class with one label in the validation set: NaN and a warning, training went on
    undefined = [c for c in CXR_CLASSES if np.isnan(result.history[-1]["val_auroc"][c])]
    assert undefined and any("AUROC is undefined" in w for w in cxr_curriculum["warnings"])
    assert np.isfinite(result.history[-1]["val_loss"])


def test_baseline_gets_the_curriculum_budget(tmp_path: Path, cxr_root: Path, cxr_splits: dict, cxr_curriculum) -> None:
    # Budget rule: the baseline trains on whole images for as many optimizer steps as the curriculum plans.
    data = TrainData(cxr_root=cxr_root, splits=cxr_splits)
    curriculum = plan_stages(TrainConfig(**CXR, stage="curriculum", epochs=1), data)
    baseline = plan_stages(TrainConfig(**CXR, stage="baseline", epochs=1), data)
    assert [p.name for p in baseline] == ["whole"]
    assert sum(p.total_steps for p in baseline) == sum(p.total_steps for p in curriculum) == 4  # 2 + 2 batches
    odd = {**CXR, "steps_per_epoch": 5}
    budget = sum(p.total_steps for p in plan_stages(TrainConfig(**odd, stage="curriculum", epochs=1), data))
    cut = plan_stages(TrainConfig(**odd, stage="baseline", epochs=1), data)[0]
    assert cut.total_steps == budget == 7 and (cut.epochs, cut.steps_per_epoch, cut.last_epoch_steps) == (4, 2, 1)

    result = _quiet_train(TrainConfig(**CXR, stage="baseline", epochs=1), data, tmp_path / "baseline")
    assert [h["stage"] for h in result.history] == ["whole", "whole"]
    assert result.global_step == cxr_curriculum["result"].global_step == 4
    assert result.examples_seen == cxr_curriculum["result"].examples_seen


# --------------------------------------------------------------------------------------------------- resume

_KILL_SCRIPT = """
import json, sys, time
from pathlib import Path
from napari_patchdx.training import TrainConfig
from napari_patchdx.training import TrainData
from napari_patchdx.training import train_job

spec = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
epochs_done = 0
for report in train_job(TrainConfig.from_dict(spec["config"]), TrainData.from_dict(spec["data"]), out):
    if isinstance(report.partial, dict) and report.partial.get("event") == "epoch":
        epochs_done += 1
    elif epochs_done == 1 and " step " in report.message:
        (out.parent / "in_epoch_2").write_text(report.message)  # one step into epoch 2: wait to be killed
        time.sleep(600)
"""


def test_resume_after_sigkill_gives_identical_weights(tmp_path: Path, slides: list) -> None:
    config = TrainConfig(**SLIDE, epochs=2)
    data = TrainData(slides=[(str(p), str(a) if a else None, s) for p, a, s in slides])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": config.to_dict(), "data": data.to_dict()}))
    script = tmp_path / "run_and_wait.py"
    script.write_text(_KILL_SCRIPT)
    killed = tmp_path / "killed" / "run"
    killed.parent.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, str(script), str(spec), str(killed)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (killed.parent / "in_epoch_2").exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "training process died"
            assert time.monotonic() < deadline, "the first epoch did not finish in time"
            time.sleep(0.05)
        assert json.loads((killed / POINTER_NAME).read_text())["epoch"] == 1
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    pointer = json.loads((killed / POINTER_NAME).read_text())
    assert (pointer["epoch"], pointer["step"], pointer["global_step"], pointer["finished"]) == (1, 0, 3, False)

    # results do not depend on DataLoader workers: resume with two (the stream shards its blocks over them)
    resumed = _quiet_train(dataclasses.replace(config, num_workers=2), data, killed)
    straight = _quiet_train(config, data, tmp_path / "straight")
    _assert_same_weights(resumed.last, straight.last)
    assert resumed.weights_sha256 == straight.weights_sha256
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    manifest = json.loads((killed / "train_manifest.json").read_text())
    assert [s["resumed_from_step"] for s in manifest["sessions"]] == [None, 3]


def test_cancel_mid_epoch_then_resume_gives_identical_weights(tmp_path: Path, slide_table: pd.DataFrame) -> None:
    config = TrainConfig(**{**SLIDE, "steps_per_epoch": None}, epochs=2)  # one pass over 24 patches: 6 steps
    data = TrainData(patch_table=slide_table)
    out = tmp_path / "run"
    job = train_job(config, data, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for report in job:
            if report.message.startswith("patches epoch 2/2 step 2/6"):
                break
        job.close()  # what a napari worker's quit() does: GeneratorExit at the yield
    pointer = json.loads((out / POINTER_NAME).read_text())
    assert (pointer["epoch"], pointer["step"], pointer["global_step"]) == (1, 2, 8)
    assert read_checkpoint_meta(out / "last")["global_step"] == 8  # a resumable last checkpoint

    calls = {"n": 0}

    def stop_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    cancelled = _quiet_train(config, data, out, stop=stop_after_two)
    assert cancelled.cancelled and cancelled.global_step == 10
    resumed = _quiet_train(dataclasses.replace(config, num_workers=2), data, out)  # workers change nothing
    straight = _quiet_train(config, data, tmp_path / "straight")
    assert resumed.global_step == straight.global_step == 12 and not resumed.cancelled
    _assert_same_weights(resumed.last, straight.last)
    assert [h["weights_sha256"] for h in resumed.history] == [h["weights_sha256"] for h in straight.history]


def test_early_stopping_watches_auroc_then_loss(
    tmp_path: Path, slide_table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_patchdx.training.trainer import Trainer

    script: list[tuple[float, float]] = []

    def fake_metrics(self, stage, outcome):
        auroc, loss = script.pop(0)
        return {"val_loss": loss, "val_auroc": {"tumor": auroc, "mean": auroc}, "val_accuracy": 0.5}, [0.5]

    monkeypatch.setattr(Trainer, "metrics", fake_metrics)
    config = TrainConfig(**{**SLIDE, "steps_per_epoch": 1, "val_patches": 4}, epochs=10, early_stopping_patience=2)
    script[:] = [(0.7, 0.5), (0.6, 0.4), (0.65, 0.3)]  # AUROC best at epoch 1, then 2 epochs without improvement
    result = _quiet_train(config, TrainData(patch_table=slide_table), tmp_path / "auroc")
    assert result.stopped_early and len(result.history) == 3 and not script
    assert read_checkpoint_meta(result.best)["epoch"] == 1 and read_checkpoint_meta(result.last)["epoch"] == 3
    script[:] = [(np.nan, 0.3), (np.nan, 0.2), (np.nan, 0.25), (np.nan, 0.2)]  # AUROC undefined: the loss decides
    result = _quiet_train(config, TrainData(patch_table=slide_table), tmp_path / "loss")
    assert [h["monitor"] for h in result.history] == ["val_loss"] * 4 and result.stopped_early and not script
    assert read_checkpoint_meta(result.best)["epoch"] == 2


# --------------------------------------------------------------------------------------------------- errors


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(
    tmp_path: Path, slide_table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_patchdx.training.loop as loop_module

    real = loop_module._compute_loss
    calls = {"n": 0}

    def poisoned(criterion, logits, targets):
        calls["n"] += 1
        loss = real(criterion, logits, targets)
        return loss * float("nan") if calls["n"] == 8 else loss  # epoch 2 (6 steps each), step 2

    monkeypatch.setattr(loop_module, "_compute_loss", poisoned)
    out = tmp_path / "run"
    config = TrainConfig(**{**SLIDE, "steps_per_epoch": None}, epochs=3)
    job = train_job(config, TrainData(patch_table=slide_table), out)
    before = None
    with warnings.catch_warnings(), pytest.raises(TrainingError, match=r"nan at stage 'patches', epoch 2, step 2 of 6"):
        warnings.simplefilter("ignore", UserWarning)
        for report in job:
            if isinstance(report.partial, dict) and report.partial.get("event") == "epoch":
                before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert before is not None and "last.safetensors" in before
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "train_manifest.json"}
    assert after == {k: v for k, v in before.items() if k != "train_manifest.json"}
    assert isinstance(TrainingError("x"), PatchdxError)


def test_empty_and_missing_data(tmp_path: Path, slide_table: pd.DataFrame, cxr_root: Path) -> None:
    only_val = slide_table.assign(split="val")
    with pytest.raises(ConfigError, match="empty training set"):
        list(train_job(TrainConfig(**SLIDE), TrainData(patch_table=only_val), tmp_path / "a"))
    with pytest.raises(ConfigError, match="no training data"):
        list(train_job(TrainConfig(**SLIDE), TrainData(), tmp_path / "b"))
    all_train = dict.fromkeys(pd.read_csv(cxr_root / "labels.csv")["image"], "train")
    with pytest.raises(ConfigError, match="no validation data"):
        list(train_job(TrainConfig(**CXR, stage="whole"), TrainData(cxr_root=cxr_root, splits=all_train), tmp_path))


def test_one_class_training_set_warns_and_trains(tmp_path: Path, slide_table: pd.DataFrame) -> None:
    table = slide_table[(slide_table["split"] == "val") | (slide_table["label"] == 0)]
    config = TrainConfig(**{**SLIDE, "steps_per_epoch": None}, epochs=1)
    with pytest.warns(UserWarning, match=r"one class only for tumor \(no positives\)"):
        result = train(config, TrainData(patch_table=table), tmp_path / "run")
    assert len(result.history) == 1 and result.last is not None


def test_checkpoints_of_another_architecture_or_class_set_are_refused(
    tmp_path: Path, slide_table: pd.DataFrame, cxr_root: Path, cxr_splits: dict
) -> None:
    config = TrainConfig(**{**SLIDE, "steps_per_epoch": 1}, epochs=1)
    run = tmp_path / "slide"
    first = _quiet_train(config, TrainData(patch_table=slide_table), run)
    other_arch = TrainConfig(**{**SLIDE, "arch": "resnet50", "steps_per_epoch": 1}, epochs=2)
    with pytest.raises(PatchdxError, match="is a small checkpoint but resnet50 is needed"):
        list(train_job(other_arch, TrainData(patch_table=slide_table), run))
    fine_tune = TrainConfig(**CXR, stage="whole", epochs=1, init_checkpoint=str(first.last))
    with pytest.raises(InputFileError, match="was trained for classes \\['tumor'\\]"):
        list(train_job(fine_tune, TrainData(cxr_root=cxr_root, splits=cxr_splits), tmp_path / "cxr"))
    changed = TrainConfig(**{**SLIDE, "steps_per_epoch": 1, "batch_size": 8}, epochs=2)
    with pytest.raises(ConfigError, match=r"other settings \(batch_size: 4 -> 8\)"):
        list(train_job(changed, TrainData(patch_table=slide_table), run))


# --------------------------------------------------------------------------------------------------- DDP


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path: Path, cxr_root: Path) -> None:
    config = TrainConfig(**{**CXR, "batch_size": 2}, stage="curriculum", epochs=1)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": config.to_dict(), "data": {"cxr_root": str(cxr_root)}}))
    out, digests = tmp_path / "run", tmp_path / "digests"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "napari_patchdx.training", str(spec), str(out), "--rank-digests", str(digests)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [(digests / f"rank{r}.sha256").read_text().strip() for r in (0, 1)]
    assert ranks[0] == ranks[1] == state_digest(_weights(out / "last"))
    meta = read_checkpoint_meta(out / "last")
    assert [m["stage"] for m in meta["metrics"]] == ["patches", "whole"]
    steps = meta["metrics"][-1]["steps"]
    assert meta["metrics"][-1]["examples_seen"] <= steps * 2 * 2  # two ranks of batch 2 per step
    manifest = json.loads((out / "train_manifest.json").read_text())
    assert manifest["sessions"][0]["world_size"] == 2 and len(manifest["sessions"]) == 1
    assert done.stdout.count("done:") == 1  # only rank 0 logs


# --------------------------------------------------------------------------------- ground truth as objects


def test_ground_truth_given_as_annotation_objects(tmp_path: Path, slides: list) -> None:
    """Annotations drawn in a viewer reach the trainer as AnnotationSet objects: they train exactly like the same
    annotations read from their files, and the run records them saved as files (a manifest needs paths)."""
    from napari_patchdx.io.annotations.model import NORMAL, AnnotationSet, Region
    from napari_patchdx.io.annotations.read import read_annotations
    from napari_patchdx.progress import run_job
    from napari_patchdx.training.inputs import resolve_inputs

    files = [(p, a, sp) for p, a, sp in slides if a is not None]  # tumor_000 (train), tumor_001 (val)
    drawn = [(p, read_annotations(a), sp) for p, a, sp in files]
    assert [sp for _, _, sp in drawn] == ["train", "val"]
    data = TrainData(slides=drawn)
    with pytest.raises(ConfigError, match=r"tumor_000\.tif, tumor_001\.tif are objects.*save the annotations to a fi"):
        data.to_dict()
    config = TrainConfig(**SLIDE, epochs=1)
    inputs = run_job(resolve_inputs(config, data, samplers=False))
    assert inputs.files == [Path(p) for p, _, _ in drawn]  # annotation objects are no input files

    from_objects = _quiet_train(config, data, tmp_path / "objects")
    from_files = _quiet_train(config, TrainData(slides=files), tmp_path / "files")
    assert from_objects.global_step == 3 and from_objects.weights_sha256 == from_files.weights_sha256
    manifest = json.loads((tmp_path / "objects" / "train_manifest.json").read_text())
    for (path, truth, split), entry in zip(drawn, manifest["data"]["slides"], strict=True):
        assert (entry["slide"], entry["split"]) == (str(path), split)
        saved = Path(entry["annotations"])
        assert saved.name == f"{path.stem}.xml" and saved.parent.parent == tmp_path / "objects"
        back = read_annotations(saved)
        assert [r.label for r in back.regions] == [r.label for r in truth.regions]
        for a, b in zip(back.regions, truth.regions, strict=True):
            np.testing.assert_array_equal(a.exterior, b.exterior)

    # with_annotation_files: the rule the run uses; a description without objects is returned as it is
    named = data.with_annotation_files(tmp_path / "gt", write=False)
    assert [a for _, a, _ in named.slides] == [tmp_path / "gt" / "tumor_000.xml", tmp_path / "gt" / "tumor_001.xml"]
    assert not (tmp_path / "gt").exists()
    saved = data.with_annotation_files(tmp_path / "gt")
    assert saved.to_dict()["slides"][1]["annotations"] == str(tmp_path / "gt" / "tumor_001.xml")
    assert len(read_annotations(tmp_path / "gt" / "tumor_000.xml").regions) == len(drawn[0][1].regions)
    plain = TrainData(slides=files)
    assert plain.with_annotation_files(tmp_path / "unused") is plain and not (tmp_path / "unused").exists()

    # the same outlines labelled normal tissue are no tumour: nothing to sample tumour patches from
    as_normal = [
        (p, AnnotationSet([Region(r.exterior, r.holes, NORMAL) for r in truth.regions]), sp) for p, truth, sp in drawn
    ]
    with pytest.raises(ConfigError, match="at least one slide with tumour annotations"):
        run_job(resolve_inputs(config, TrainData(slides=as_normal), samplers=False))
