"""Model factory and checkpoints: shapes, CAM decomposition, offline builds, safe and atomic checkpoints."""

from __future__ import annotations

import json
import pickle
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.models import checkpoint as checkpoint_module
from napari_patchdx.models.checkpoint import (
    CHECKPOINT_FORMAT,
    check_compatible,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from napari_patchdx.models.factory import build_model
from napari_patchdx.models.nets import ARCHITECTURES, PatchdxNet, count_parameters

# tiny models: one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIDE = {"inception_v3": 80, "resnet50": 64, "small": 64}  # smallest cheap inputs per architecture (px)
CXR_CLASSES = ["nodule", "consolidation", "interstitial_opacity", "pleural_effusion", "pneumothorax"]


class _Payload:
    """Unpickling this object runs code: it writes ``marker`` (the attack a weights file must not carry)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every float tensor (parameters and BN statistics) seeded random values, so equality means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.1 + 0.01)
    return model


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def resnet_tv_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision ResNet-50 state dict with a 10-class head, saved with torch.save (torchvision key names)."""
    tv = torchvision.models.resnet50(weights=None, num_classes=10)
    state = tv.state_dict()
    path = tmp_path_factory.mktemp("pretrained") / "resnet50_tv.pth"
    torch.save(state, path)
    return path, state


# ------------------------------------------------------------------------------------------------ architectures


@pytest.mark.parametrize("in_channels", [3, 1])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shapes_and_cam_decomposition(arch: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 5, in_channels=in_channels).eval()
    assert isinstance(model, PatchdxNet)
    assert (model.arch, model.in_channels, model.num_classes) == (arch, in_channels, 5)
    assert isinstance(model.classifier, torch.nn.Linear)
    assert model.classifier.weight.shape == (5, model.num_features)
    x = torch.randn(1, in_channels, SIDE[arch], SIDE[arch] + 8)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        again = model.classifier(feats.mean(dim=(2, 3)))
        cam = model.cam(features=feats)
    assert logits.shape == (1, 5)
    assert feats.ndim == 4 and feats.shape[:2] == (1, model.num_features)
    assert torch.equal(logits, again)  # forward is exactly GAP then the linear classifier
    assert cam.shape == (1, 5, *feats.shape[2:])
    scale = logits.abs().max().item() + 1.0
    assert torch.allclose(cam.mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-4 * scale)
    assert all(k.startswith(("features.", "classifier.")) for k in model.state_dict())


def test_one_class_head_and_batch() -> None:
    model = build_model("small", 1).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 64))
    assert out.shape == (3, 1)


def test_small_parameter_count_and_input_sizes() -> None:
    one, five = build_model("small", 1), build_model("small", 5)
    n1, n5 = count_parameters(one), count_parameters(five)
    print(f"SmallNet parameters: {n1:,} (1 class), {n5:,} (5 classes)")
    assert 250_000 <= n1 <= 350_000 and 250_000 <= n5 <= 350_000
    assert (n1, n5) == (299_793, 300_565)  # the documented layout; a change here breaks saved checkpoints
    assert count_parameters(one, trainable_only=True) == n1
    one.eval()
    for h, w in [(32, 32), (64, 64), (67, 100), (128, 96)]:
        with torch.no_grad():
            f = one.features(torch.rand(1, 3, h, w))
        assert f.shape == (1, 192, -(-h // 16), -(-w // 16))


def test_torchvision_key_names_are_kept() -> None:
    resnet = build_model("resnet50", 2).state_dict()
    inception = build_model("inception_v3", 2).state_dict()
    tv_resnet = torchvision.models.resnet50(weights=None).state_dict()
    assert {k for k in resnet if k.startswith("features.")} == {"features." + k for k in tv_resnet if k[:3] != "fc."}
    assert "features.Conv2d_1a_3x3.conv.weight" in inception and "features.Mixed_7c.branch_pool.bn.bias" in inception
    assert not any("AuxLogits" in k for k in inception)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'vgg16'"):
        build_model("vgg16", 1)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("small", 0)
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("small", 1, in_channels=0)


def test_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for arch in ARCHITECTURES:
        for channels in (3, 1):
            assert build_model(arch, 5, in_channels=channels).pretrained_report is None
    path = tmp_path / "small.pth"
    torch.save(build_model("small", 2).state_dict(), path)
    assert build_model("small", 2, pretrained=path).pretrained_report is not None


# -------------------------------------------------------------------------------------------------- checkpoints


def _meta(classes: list[str], **extra) -> dict:
    return {"classes": classes, "input_size": 128, **extra}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_checkpoint_round_trip_is_exact(arch: str, tmp_path: Path) -> None:
    model = _perturb(build_model(arch, 2, in_channels=1), seed=1)
    weights, sidecar = save_checkpoint(tmp_path / "run" / "best", model, _meta(["a", "b"]))
    assert (weights.name, sidecar.name) == ("best.safetensors", "best.json")
    loaded, meta = load_checkpoint(sidecar)
    assert type(loaded) is PatchdxNet and not loaded.training
    assert (loaded.arch, loaded.num_classes, loaded.in_channels) == (arch, 2, 1)
    assert _states_equal(loaded.state_dict(), model.state_dict())
    assert meta["arch"] == arch and meta["normalization"] == {"mode": "standardize"}


def test_checkpoint_sidecar_fields_and_path_forms(tmp_path: Path) -> None:
    model = _perturb(build_model("small", 5), seed=2)
    config = {"lr": np.float32(0.05), "out": tmp_path / "x", "sizes": (299, 128), "tags": {"b", "a"}}
    metrics = [{"epoch": 0, "loss": 0.7, "auc": float("nan")}, {"epoch": np.int64(1), "loss": 0.4, "auc": 0.9}]
    meta_in = {
        "classes": CXR_CLASSES,
        "input_size": 299,
        "center_size": 128,
        "mpp": 0.5,
        "config": config,
        "metrics": metrics,
        "thresholds": {"nodule": 0.3, "pneumothorax": 0.6},
        "task": "cxr",
    }
    weights, sidecar = save_checkpoint(tmp_path, model, meta_in)
    assert (weights, sidecar) == (tmp_path / "model.safetensors", tmp_path / "model.json")
    raw = json.loads(sidecar.read_text())
    assert raw["format"] == CHECKPOINT_FORMAT and raw["version"] == 1
    assert (raw["arch"], raw["num_classes"], raw["in_channels"]) == ("small", 5, 3)
    assert raw["classes"] == CXR_CLASSES
    assert (raw["input_size"], raw["center_size"], raw["mpp"]) == (299, 128, 0.5)
    assert raw["normalization"] == {"mode": "unit"}
    assert raw["config"] == {
        "lr": pytest.approx(0.05),
        "out": str(tmp_path / "x"),
        "sizes": [299, 128],
        "tags": ["a", "b"],
    }
    assert raw["metrics"][0]["auc"] is None and raw["metrics"][1] == {"epoch": 1, "loss": 0.4, "auc": 0.9}
    assert raw["thresholds"] == [0.3, None, None, None, 0.6]
    assert raw["task"] == "cxr" and raw["torch"] == torch.__version__ and raw["created"][:2] == "20"
    assert raw["num_parameters"] == count_parameters(model) and raw["weights"] == "model.safetensors"
    assert len(raw["weights_sha256"]) == 64
    tensors = load_file(weights)
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in tensors.values())
    for form in (sidecar, weights, tmp_path / "model", tmp_path, str(sidecar)):
        assert read_checkpoint_meta(form) == raw
        loaded, meta = load_checkpoint(form, arch="small", classes=CXR_CLASSES, in_channels=3)
        assert meta == raw and _states_equal(loaded.state_dict(), model.state_dict())
    _, wrapped = save_checkpoint(tmp_path / "dp", torch.nn.DataParallel(model), meta_in)  # DDP-style wrapper
    assert _states_equal(load_checkpoint(wrapped)[0].state_dict(), model.state_dict())


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _perturb(build_model("small", 1), seed=3)
    weights, sidecar = save_checkpoint(tmp_path / "ckpt", first, _meta(["tumor"]))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_write(path: Path, text: str) -> None:
        path.write_text(text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write_sidecar_text", failing_write)
    second = _perturb(build_model("small", 1), seed=4)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "ckpt", second, _meta(["tumor"]))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary files, nothing changed
    loaded, _ = load_checkpoint(sidecar)
    assert _states_equal(loaded.state_dict(), first.state_dict())
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "fresh", second, _meta(["tumor"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]  # no sidecar left
    monkeypatch.undo()
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path / "ckpt", second, _meta(["tumor"]), overwrite=False)
    save_checkpoint(tmp_path / "ckpt", second, _meta(["tumor"]))
    assert _states_equal(load_checkpoint(weights)[0].state_dict(), second.state_dict())


def test_bad_meta_writes_nothing(tmp_path: Path) -> None:
    model = build_model("small", 2)
    for meta, match in [
        ({"input_size": 64}, "classes"),
        (_meta(["a"]), "classes"),
        (_meta(["a", "a"]), "unique"),
        ({"classes": ["a", "b"]}, "input_size"),
        (_meta(["a", "b"], arch="resnet50"), "arch"),
        (_meta(["a", "b"], thresholds=[0.5, 2.0]), "threshold"),
        (_meta(["a", "b"], config={"fn": print}), "cannot be stored"),
    ]:
        with pytest.raises(ConfigError, match=match):
            save_checkpoint(tmp_path / "m", model, meta)
    with pytest.raises(ConfigError, match="build_model"):
        save_checkpoint(tmp_path / "m", torch.nn.Linear(2, 2), _meta(["a", "b"]))
    with pytest.raises(ConfigError, match="stem"):
        save_checkpoint(tmp_path / "m.pt", model, _meta(["a", "b"]))
    assert list(tmp_path.iterdir()) == []


def test_sha_mismatch_and_missing_files_refused(tmp_path: Path) -> None:
    model = build_model("small", 1)
    weights, sidecar = save_checkpoint(tmp_path / "m", model, _meta(["tumor"]))
    tensors = load_file(weights)
    tensors["classifier.bias"] = tensors["classifier.bias"] + 1.0
    save_file(tensors, weights)
    with pytest.raises(InputFileError, match=r"weights do not match their sidecar m\.json") as info:
        load_checkpoint(sidecar)
    assert info.value.path == weights
    weights.unlink()
    with pytest.raises(InputFileError, match="not found"):
        load_checkpoint(sidecar)
    sidecar.unlink()
    with pytest.raises(InputFileError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "m")
    save_file(tensors, weights)
    with pytest.raises(InputFileError, match="sidecar not found"):
        load_checkpoint(weights)


def test_bad_sidecars_refused(tmp_path: Path) -> None:
    _, sidecar = save_checkpoint(tmp_path / "m", build_model("small", 1), _meta(["tumor"]))
    good = json.loads(sidecar.read_text())
    for change, match in [
        ({"version": 2}, "newer napari-patchdx"),
        ({"format": "something-else"}, "not a napari-patchdx checkpoint"),
        ({"arch": "vgg16"}, "unknown architecture"),
        ({"classes": ["a", "b"]}, "do not match num_classes"),
        ({"arch": "resnet50"}, "tensors do not fit the resnet50.*they look like small"),
        ({"num_classes": 2, "classes": ["a", "b"]}, "of another shape"),
    ]:
        sidecar.write_text(json.dumps({**good, **change}))
        with pytest.raises(InputFileError, match=match):
            load_checkpoint(sidecar)
    sidecar.write_text("{not json")
    with pytest.raises(InputFileError, match="not a readable JSON"):
        read_checkpoint_meta(sidecar)


def test_wrong_arch_or_classes_refused(tmp_path: Path) -> None:
    _, sidecar = save_checkpoint(tmp_path / "m", build_model("small", 5), _meta(CXR_CLASSES))
    with pytest.raises(InputFileError, match="is a small checkpoint but resnet50 is needed") as info:
        load_checkpoint(sidecar, arch="resnet50")
    assert info.value.path == sidecar
    with pytest.raises(InputFileError, match="trained for classes"):
        load_checkpoint(sidecar, classes=list(reversed(CXR_CLASSES)))
    with pytest.raises(InputFileError, match="1 channels are needed"):
        load_checkpoint(sidecar, in_channels=1)
    meta = read_checkpoint_meta(sidecar)
    check_compatible(meta, arch="small", classes=CXR_CLASSES, in_channels=3)
    with pytest.raises(ConfigError, match="tumor"):
        check_compatible(meta, classes=["tumor"])
    with pytest.raises(ConfigError, match="unknown architecture"):
        check_compatible(meta, arch="vgg16")


def test_pickles_are_never_executed(tmp_path: Path) -> None:
    proof = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.read_text() == "pwned"  # the payload really runs code when unpickled

    marker = tmp_path / "marker.txt"
    zipped = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "evil": _Payload(marker)}, zipped)
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps({"conv1.weight": _Payload(marker)}, protocol=2))
    for path in (zipped, legacy):
        with pytest.raises(InputFileError, match=r"torch\.load\(weights_only=True\)") as info:
            build_model("resnet50", 1, pretrained=path)
        assert info.value.path == path
        with pytest.raises(InputFileError, match="checkpoints must be safetensors") as info:
            load_checkpoint(path)
        assert info.value.path == path
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(legacy.read_bytes())
    with pytest.raises(InputFileError, match="not a readable safetensors file"):
        build_model("small", 1, pretrained=garbage)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(zipped.read_bytes())
    with pytest.raises(InputFileError, match="checkpoints must be safetensors"):
        read_checkpoint_meta(ckpt)
    assert not marker.exists()


def test_pretrained_torchvision_state_dict_new_head(resnet_tv_file) -> None:
    path, tv_state = resnet_tv_file
    model = build_model("resnet50", 5, pretrained=path)
    report = model.pretrained_report
    assert report is not None and report.path == path and report.source == "torch state dict"
    assert report.reinitialized == ("classifier.weight", "classifier.bias")
    assert report.adapted == () and report.ignored == ()
    state = model.state_dict()
    for key, value in tv_state.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(state["features." + key], value), key
    assert state["classifier.weight"].shape == (5, 2048)
    assert "re-initialised: classifier.weight, classifier.bias" in report.summary()

    grey = build_model("resnet50", 5, in_channels=1, pretrained=path)
    assert grey.pretrained_report.adapted == ("features.conv1.weight",)
    assert torch.equal(grey.state_dict()["features.conv1.weight"], tv_state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(grey.state_dict()["features.layer4.2.conv3.weight"], tv_state["layer4.2.conv3.weight"])


def test_pretrained_inception_with_aux_head_and_ddp_prefix(tmp_path: Path) -> None:
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True, num_classes=5)
    path = tmp_path / "inception.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in tv.state_dict().items()}}, path)
    model = build_model("inception_v3", 5, pretrained=path)
    report = model.pretrained_report
    assert report.reinitialized == () and report.ignored and all("AuxLogits." in k for k in report.ignored)
    assert torch.equal(model.classifier.weight, tv.fc.weight)  # same head shape: loaded too
    assert torch.equal(
        model.state_dict()["features.Mixed_7c.branch_pool.conv.weight"], tv.Mixed_7c.branch_pool.conv.weight
    )


def test_pretrained_of_another_arch_refused(resnet_tv_file) -> None:
    path, _ = resnet_tv_file
    with pytest.raises(InputFileError, match=r"has \d+ tensors of resnet50 but this is inception_v3") as info:
        build_model("inception_v3", 1, pretrained=path)
    assert info.value.path == path
    assert "features.Conv2d_1a_3x3.conv.weight" in str(info.value)  # missing keys are listed
    assert "features.conv1.weight" in str(info.value)  # and unexpected ones


def test_pretrained_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "imagenet_resnet50.pth"
    with pytest.raises(InputFileError, match="not found") as info:
        build_model("resnet50", 5, pretrained=missing)
    assert info.value.path == missing and "imagenet_resnet50.pth" in str(info.value)


def test_pretrained_from_own_checkpoint(tmp_path: Path) -> None:
    patch_model = _perturb(build_model("small", 5, in_channels=1), seed=5)
    _, sidecar = save_checkpoint(tmp_path / "patch_stage", patch_model, _meta(CXR_CLASSES))
    whole = build_model("small", 5, in_channels=1, pretrained=sidecar)  # curriculum step 2: everything loads
    assert whole.pretrained_report.source == "napari-patchdx checkpoint"
    assert _states_equal(whole.state_dict(), patch_model.state_dict())
    other = build_model("small", 1, pretrained=tmp_path / "patch_stage.safetensors")
    assert other.pretrained_report.reinitialized == ("classifier.weight", "classifier.bias")
    assert other.pretrained_report.adapted == ("features.stem_1.conv.weight",)
    with pytest.raises(InputFileError, match=r"tensors of small .*but this is resnet50"):
        build_model("resnet50", 5, pretrained=sidecar)
