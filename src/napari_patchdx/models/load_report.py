"""What loading weights reports: :class:`PretrainedReport` and the wording of state-dict mismatches.

The helpers here phrase key lists and error causes the same way for :func:`~napari_patchdx.models.load_pretrained`
and :func:`~napari_patchdx.models.load_checkpoint`; this module imports nothing else of the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: the weights file.
        source: "torch state dict", "safetensors state dict" or "napari-patchdx checkpoint".
        loaded: model keys taken from the file.
        reinitialized: model keys kept at their fresh initialisation because the file's tensor has another
            shape or is absent (the classifier head when the class count differs).
        adapted: keys loaded after adapting the input channels (RGB kernels summed into one grey channel, or
            a grey kernel repeated over the channels and divided by their number).
        ignored: keys in the file the model has no use for (e.g. Inception's ``AuxLogits.*``).
    """

    path: Path
    source: str
    loaded: tuple[str, ...]
    reinitialized: tuple[str, ...]
    adapted: tuple[str, ...]
    ignored: tuple[str, ...]

    def summary(self) -> str:
        """One line for logs and manifests."""
        parts = [f"{len(self.loaded)} tensors loaded from {self.path} ({self.source})"]
        if self.reinitialized:
            parts.append(f"re-initialised: {', '.join(self.reinitialized)}")
        if self.adapted:
            parts.append(f"input channels adapted: {', '.join(self.adapted)}")
        if self.ignored:
            parts.append(f"{len(self.ignored)} unused tensors ignored ({list_examples(self.ignored)})")
        return "; ".join(parts)


def list_examples(keys: Sequence[str], n: int = 4) -> str:
    """The first ``n`` keys, comma-separated, with the total count when there are more."""
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def describe_key_mismatch(missing: Sequence[str], unexpected: Sequence[str], wrong_shape: Sequence[str]) -> str:
    """'N missing (a, b, ...); M unexpected (...); K of another shape (...)' for a state-dict mismatch."""
    details = []
    if missing:
        details.append(f"{len(missing)} missing ({list_examples(missing)})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected ({list_examples(unexpected)})")
    if wrong_shape:
        details.append(f"{len(wrong_shape)} of another shape ({list_examples(wrong_shape, 3)})")
    return "; ".join(details)


def short_error(exc: BaseException, limit: int = 300) -> str:
    """``exc``'s message on one line, cut to ``limit`` characters (its type name when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
