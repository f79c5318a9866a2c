"""Model factory and safe checkpoints: Inception-v3, ResNet-50 and a ~300K-parameter "small" network.

Every model is a :class:`PatchdxNet`: a convolutional trunk ``features`` and one linear ``classifier`` applied
after global average pooling (GAP), so that for an input ``x`` of shape (N, in_channels, H, W)::

    f = model.features(x)                    # (N, C, h, w), the last convolutional block
    logits = model.classifier(f.mean((2, 3)))  # (N, num_classes) == model(x) in eval mode

and the class activation map of class k is ``CAM_k = sum_c W[k, c] * f[c] + b[k]`` (:meth:`PatchdxNet.cam`),
whose spatial mean is exactly logit k. The model returns logits, one per class: the slide task has one class
(tumour vs normal), the chest X-ray task five independent ones; train with ``BCEWithLogitsLoss`` and read
probabilities with a sigmoid. No normalisation happens inside the model: the data pipeline applies the
``normalization`` its checkpoint sidecar records.

Architectures (:data:`ARCHITECTURES`)
-------------------------------------
``inception_v3``
    torchvision's Inception-v3 (Liu et al. 2017) without the auxiliary head, trunk up to ``Mixed_7c``
    (C = 2048; 8 x 8 cells at 299 px; inputs >= 75 px). Dropout 0.5 before the classifier while training,
    as in torchvision.
``resnet50``
    torchvision's ResNet-50 (Park et al. 2019), trunk up to ``layer4`` (C = 2048; stride 32).
``small``
    :class:`SmallNet`, a compact Inception-like network in the spirit of Liu's "small" variant: about 300K
    parameters (299,793 with one class, 300,565 with five), C = 192, stride 16 (19 x 19 cells at 299 px), any
    input >= 32 px.

State-dict keys (stable; checkpoints depend on them)
----------------------------------------------------
``features.<name>.*`` for the trunk and ``classifier.weight`` (num_classes, C) / ``classifier.bias``
(num_classes,). For the torchvision architectures ``<name>`` is torchvision's own module name, so torchvision
key ``k`` maps to ``features.k`` and ``fc.*`` maps to ``classifier.*`` (``AuxLogits.*`` is dropped):
``features.conv1.weight``, ``features.layer4.2.bn3.running_var``, ``features.Conv2d_1a_3x3.conv.weight``,
``features.Mixed_7c.branch_pool.bn.bias``... For ``small``: ``features.stem_1`` ... ``features.mixed_c2``
(see :class:`SmallNet`).

Offline and safe
----------------
Nothing is ever downloaded: torchvision models are built with ``weights=None``. Pretrained weights come only
from a local file the user names (:func:`load_pretrained`): a torchvision-style state dict read with
``torch.load(weights_only=True)`` (which refuses pickles that would run code) or a napari-patchdx checkpoint.
A checkpoint is ``<name>.safetensors`` (weights only) plus a ``<name>.json`` sidecar (architecture, classes,
input size, normalisation, training config, metrics, thresholds, sha256 of the weights); it is read without
any pickle (:func:`load_checkpoint`).

Modules, from the bottom up: :mod:`.load_report` (what a weights load reports, mismatch wording),
:mod:`.nets` (the networks and architectures), :mod:`.checkpoint` (safetensors + JSON checkpoints),
:mod:`.pretrained` (starting from local pretrained weights) and :mod:`.factory` (:func:`build_model`).
"""

from __future__ import annotations

from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    check_compatible,
    checkpoint_paths,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from .factory import build_model
from .load_report import PretrainedReport
from .nets import ARCHITECTURES, DEFAULT_INPUT_SIZE, MIN_INPUT_SIZE, PatchdxNet, SmallNet, count_parameters
from .pretrained import load_pretrained

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "DEFAULT_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "PatchdxNet",
    "PretrainedReport",
    "SmallNet",
    "build_model",
    "check_compatible",
    "checkpoint_paths",
    "count_parameters",
    "load_checkpoint",
    "load_pretrained",
    "read_checkpoint_meta",
    "save_checkpoint",
]
