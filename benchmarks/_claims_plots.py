"""Plots of benchmarks/claims.py: forest plots and the X-ray learning curve from its JSON result (issue 13).

:func:`plot_claims` writes three PNG figures (about 700 px wide) from the JSON object that ``claims.py`` prints last:

* ``claims_slides.png``: one forest-plot panel per slide comparison (TTA vs none; cross-centre FROC per colour
  treatment; false positives per slide before / after hard negatives; slide AUC classifier vs heatmap maximum;
  ensembles of 1 / 2 / 3 models), each point with its 95 % bootstrap interval over the test slides;
* ``claims_curriculum.png``: mean test AUROC against the training-set size for curriculum and baseline, their
  difference with a zero line, and whole-image epochs to the validation target per arm;
* ``claims_xray_classes.png``: per-class test AUROC with intervals and the 0.5 chance line.

A value that is null (or absent, e.g. an arm left out with ``--skip``) is not drawn; its place says
"not measured: <reason>" with the reason from ``null_reasons`` (the value's own, else its nearest parent's).

Command line: ``python benchmarks/_claims_plots.py RESULT OUT_DIR``; RESULT holds the JSON object, or is a log of
``claims.py`` whose last line is it. Prints the written paths.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.patches import Patch

from napari_patchdx.errors import InputFileError
from napari_patchdx.evaluation.figures import new_figure, save_figure
from napari_patchdx.evaluation.files import read_text

SLIDES_PNG = "claims_slides.png"
CURRICULUM_PNG = "claims_curriculum.png"
XRAY_CLASSES_PNG = "claims_xray_classes.png"
DPI = 110
WIDTH_IN = 6.4
"""Figure width in inches: 6.4 in at 110 dpi is 704 px."""

FROC_AXIS = "FROC score (mean lesion sensitivity at 1/4-8 FPs per slide)"
AUC_AXIS = "slide-level ROC AUC (tumour vs normal slides)"
CLAIM_KEYS = (
    "froc_tta",
    "froc_no_tta",
    "cross_centre_froc",
    "hard_negative_fp_per_slide",
    "slide_auc_classifier",
    "slide_auc_max",
    "ensemble_froc",
    "curriculum_vs_baseline",
    "xray_class_auroc",
)
"""The claims these plots draw; a result with none of them is not a claims result."""
ARM_OF = {"curriculum_vs_baseline": "xray", "xray_class_auroc": "xray", "xray_min_class_auroc": "xray"}
"""Top-level key -> the claims.py arm that makes it (every other plotted key: ``slides``), for ``--skip`` reasons."""
COLOURS = {"curriculum": "tab:blue", "baseline": "tab:orange", "difference": "tab:green"}
POINT = "tab:blue"
NULL_TEXT = "dimgray"


@dataclass(frozen=True)
class Cell:
    """One ``[value, lo, hi]`` claim; ``lo`` / ``hi`` are None when the claim has no interval."""

    value: float
    lo: float | None
    hi: float | None

    def label(self) -> str:
        """The value and its interval as text, e.g. ``0.367 [0.250, 0.500]``."""
        if self.lo is None or self.hi is None:
            return f"{self.value:.3f} (no interval)"
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


@dataclass(frozen=True)
class Row:
    """One forest-plot row: its label and either a cell or the reason it is not measured."""

    label: str
    cell: Cell | None
    reason: str


def _lookup(result: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` (keys may not contain dots), or None when any part is absent or null."""
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _reason(result: Mapping[str, Any], path: str) -> str:
    """Why ``path`` has no value: its own reason in ``null_reasons``, else its nearest parent's, else its arm's."""
    reasons = result.get("null_reasons") or {}
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in reasons:
            return str(reasons[key])
    arm = ARM_OF.get(parts[0], "slides")
    if arm in reasons:
        return f"{arm} arm {reasons[arm]}"
    return "no value in the result"


def _number(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: expected a number or null, got {value!r}")
    return float(value) if math.isfinite(value) else None


def _cell(result: Mapping[str, Any], path: str) -> Cell | None:
    """The ``[value, lo, hi]`` at ``path`` as a :class:`Cell`, or None when it is null or absent.

    Raises:
        ValueError: the value at ``path`` is not a list of three numbers / nulls.
    """
    value = _lookup(result, path)
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"{path}: expected [value, lo, hi], got {value!r}")
    mean, lo, hi = (_number(v, path) for v in value)
    if mean is None:
        return None
    if lo is None or hi is None:
        return Cell(mean, None, None)
    return Cell(mean, lo, hi)


def _row(result: Mapping[str, Any], label: str, path: str) -> Row:
    cell = _cell(result, path)
    return Row(label, cell, "" if cell is not None else _reason(result, path))


def _wrap(text: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _suptitle(result: Mapping[str, Any]) -> str:
    """The run the figures come from, e.g. ``claims.py (full, 3 seeds, device cpu)``."""
    parts = [str(result[k]) for k in ("variant",) if k in result]
    if "seeds" in result:
        parts.append(f"{result['seeds']} seed(s)")
    if "device" in result:
        parts.append(f"device {result['device']}")
    return "claims.py" + (f" ({', '.join(parts)})" if parts else "")


def _difference_text(result: Mapping[str, Any], path: str, what: str) -> str:
    """``what: +0.167 [0.000, 0.251]`` of the difference at ``path``, or ``what: not measured``."""
    cell = _cell(result, path)
    if cell is None:
        return f"{what}: not measured"
    if cell.lo is None or cell.hi is None:
        return f"{what}: {cell.value:+.3f} (no interval)"
    return f"{what}: {cell.value:+.3f} [{cell.lo:+.3f}, {cell.hi:+.3f}]"


def _not_measured(ax: Any, reason: str) -> None:
    """An empty panel that says why it has nothing to show."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(
        0.5,
        0.5,
        _wrap(f"not measured: {reason}", 60),
        transform=ax.transAxes,
        ha="center",
        va="center",
        color=NULL_TEXT,
        fontsize=9,
    )


def _forest(
    ax: Any,
    rows: Sequence[Row],
    *,
    title: str,
    xlabel: str,
    xlim: tuple[float, float] | None,
    reference: float | None = None,
) -> None:
    """Draw ``rows`` top to bottom: a point and its interval bar, the value as text, or "not measured: ...".

    ``xlim`` None: from 0 to a little past the largest upper bound (rates such as FPs per slide).
    ``reference``: a dashed vertical line (chance AUC 0.5).
    """
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    measured = [r.cell for r in rows if r.cell is not None]
    if xlim is None:
        top = max([c.hi if c.hi is not None else c.value for c in measured], default=1.0)
        xlim = (0.0, max(top * 1.1, 1e-3))
    pad = 0.03 * (xlim[1] - xlim[0])
    xlim = (xlim[0] - pad, xlim[1] + pad)
    ax.set_xlim(*xlim)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    if reference is not None:
        ax.axvline(reference, color="gray", linestyle="--", linewidth=1)
    for y, row in enumerate(rows):
        cell = row.cell
        if cell is None:
            ax.text(
                0.02,
                y,
                _wrap(f"not measured: {row.reason}", 65),
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=8,
                color=NULL_TEXT,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
            )
            continue
        if cell.lo is not None and cell.hi is not None:
            ax.errorbar(
                cell.value,
                y,
                xerr=[[cell.value - cell.lo], [cell.hi - cell.value]],
                fmt="o",
                color=POINT,
                capsize=4,
                markersize=6,
            )
        else:
            ax.plot(cell.value, y, "o", color=POINT, markersize=6)
        where = (cell.value - xlim[0]) / (xlim[1] - xlim[0])
        ha = "left" if where < 0.2 else "right" if where > 0.8 else "center"
        ax.annotate(
            cell.label(), (cell.value, y), xytext=(0, -5), textcoords="offset points", ha=ha, va="top", fontsize=7
        )


def slides_figure(result: Mapping[str, Any]) -> Any:
    """The forest plots of the slide comparisons (one panel each) as a matplotlib Figure."""
    hn = _lookup(result, "hard_negative_fp_per_slide") or {}
    sensitivity = hn.get("sensitivity", "the target") if isinstance(hn, Mapping) else "the target"
    panels = [
        (
            "8-fold test-time augmentation (Liu et al.)\n"
            + _difference_text(result, "froc_tta_difference", "TTA - none"),
            [_row(result, "TTA", "froc_tta"), _row(result, "no TTA", "froc_no_tta")],
            FROC_AXIS,
            (0.0, 1.0),
            None,
        ),
        (
            "colour treatment, trained on centre A, tested on centre B\n"
            + _wrap(
                "; ".join(
                    _difference_text(result, f"cross_centre_difference_vs_none.{a}", f"{a} - none")
                    for a in ("liu", "hed", "macenko")
                ),
                80,
            ),
            [_row(result, a, f"cross_centre_froc.{a}") for a in ("liu", "none", "hed", "macenko")],
            FROC_AXIS,
            (0.0, 1.0),
            None,
        ),
        (
            "hard-negative round (Wang et al.)\n"
            + _difference_text(result, "hard_negative_fp_per_slide.difference", "after - before"),
            [
                _row(result, "before", "hard_negative_fp_per_slide.before"),
                _row(result, "after", "hard_negative_fp_per_slide.after"),
            ],
            f"false positives per test slide at lesion sensitivity {sensitivity}",
            None,
            None,
        ),
        (
            "slide classification (CAMELYON16 task 2)\n"
            + _difference_text(result, "slide_auc_difference", "classifier - maximum"),
            [
                _row(result, "classifier", "slide_auc_classifier"),
                _row(result, "heatmap max", "slide_auc_max"),
            ],
            AUC_AXIS,
            (0.0, 1.0),
            0.5,
        ),
        (
            "ensembles of the first k seeds' models (Liu et al.)",
            [_row(result, f"{k} model{'s' if k > 1 else ''}", f"ensemble_froc.{k}") for k in (1, 2, 3)],
            FROC_AXIS,
            (0.0, 1.0),
            None,
        ),
    ]
    heights = [len(rows) + 1.4 + 0.5 * title.count("\n") for title, rows, *_ in panels]
    fig = new_figure((WIDTH_IN, 0.48 * sum(heights) + 0.8), dpi=DPI)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights})
    for ax, (title, rows, xlabel, xlim, reference) in zip(axes, panels, strict=True):
        _forest(ax, rows, title=title, xlabel=xlabel, xlim=xlim, reference=reference)
    fig.suptitle(f"Slide claims - {_suptitle(result)}\n95 % bootstrap intervals over the test slides", fontsize=10)
    return fig


def _sizes(curve: Mapping[str, Any]) -> list[str]:
    """The training-set sizes of the learning curve, smallest first (keys are decimal strings)."""
    try:
        return sorted(curve, key=int)
    except ValueError:
        raise ValueError(f"curriculum_vs_baseline: training-set sizes must be integers, got {list(curve)}") from None


def _curve_points(ax: Any, result: Mapping[str, Any], sizes: Sequence[str], arm: str, shift: float) -> list[str]:
    """Plot one arm's cells against the sizes (x shifted by the factor ``shift``); returns the unmeasured sizes."""
    xs, ys, lo, hi, missing = [], [], [], [], []
    for n in sizes:
        cell = _cell(result, f"curriculum_vs_baseline.{n}.{arm}")
        if cell is None:
            missing.append(n)
            continue
        xs.append(int(n) * shift)
        ys.append(cell.value)
        lo.append(cell.value - cell.lo if cell.lo is not None else 0.0)
        hi.append(cell.hi - cell.value if cell.hi is not None else 0.0)
    if xs:
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=COLOURS[arm], capsize=4, label=arm)
    return missing


def _missing_note(ax: Any, result: Mapping[str, Any], arm: str, missing: Sequence[str], y: float) -> None:
    if missing:
        reason = _reason(result, f"curriculum_vs_baseline.{missing[0]}.{arm}")
        text = f"{arm} not measured at {', '.join(missing)} images: {reason}"
        ax.text(
            0.01,
            y,
            _wrap(text, 90),
            transform=ax.transAxes,
            fontsize=7,
            color=NULL_TEXT,
            va="top",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )


def curriculum_figure(result: Mapping[str, Any]) -> Any:
    """The X-ray learning curve (curriculum vs baseline), its difference and epochs to target, as a Figure."""
    fig = new_figure((WIDTH_IN, 8.4), dpi=DPI)
    fig.set_layout_engine("constrained")
    ax_auc, ax_diff, ax_ep = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3, 2, 2]})
    fig.suptitle(f"X-ray curriculum vs equal-budget baseline (Park et al.)\n{_suptitle(result)}", fontsize=10)
    curve = _lookup(result, "curriculum_vs_baseline")
    if not isinstance(curve, Mapping) or not curve:
        reason = _reason(result, "curriculum_vs_baseline")
        for ax in (ax_auc, ax_diff, ax_ep):
            _not_measured(ax, reason)
        return fig
    sizes = _sizes(curve)
    ticks = [int(n) for n in sizes]
    for ax in (ax_auc, ax_diff, ax_ep):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(min(ticks) / 1.4, max(ticks) * 1.4)
        ax.set_xlabel("training images (log scale)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)

    ax_auc.set_title("mean test AUROC over classes, 95 % bootstrap interval over test images", fontsize=10, loc="left")
    ax_auc.set_ylabel("mean AUROC", fontsize=9)
    ax_auc.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    for k, (arm, shift) in enumerate((("curriculum", 0.97), ("baseline", 1.03))):
        missing = _curve_points(ax_auc, result, sizes, arm, shift)
        _missing_note(ax_auc, result, arm, missing, 0.98 - 0.08 * k)
    ax_auc.set_ylim(0.0, 1.0)
    ax_auc.legend(fontsize=8, loc="best")

    ax_diff.set_title("difference, curriculum - baseline (paired)", fontsize=10, loc="left")
    ax_diff.set_ylabel("AUROC difference", fontsize=9)
    ax_diff.axhline(0.0, color="black", linewidth=1)
    missing = _curve_points(ax_diff, result, sizes, "difference", 1.0)
    ax_diff.margins(y=0.25)
    _missing_note(ax_diff, result, "difference", missing, 0.98)

    _epochs_panel(ax_ep, result, sizes)
    return fig


def _epochs_panel(ax: Any, result: Mapping[str, Any], sizes: Sequence[str]) -> None:
    """Bars of the mean whole-image epochs to the validation target per arm; "not reached" where no seed did."""
    ax.set_title("whole-image epochs to the validation AUROC target (seeds that reached it)", fontsize=10, loc="left")
    ax.set_ylabel("epochs", fontsize=9)
    top = 0.0
    for arm, shift in (("curriculum", 0.9), ("baseline", 1.1)):
        for n in sizes:
            ep = _lookup(result, f"curriculum_vs_baseline.{n}.epochs_to_target")
            ep = ep if isinstance(ep, Mapping) else {}
            value = _number(ep.get(arm), f"curriculum_vs_baseline.{n}.epochs_to_target.{arm}")
            reached = ep.get(f"{arm}_reached", "")
            x = int(n) * shift
            if value is None:
                ax.plot(x, 0.0, "x", color=COLOURS[arm])
                ax.annotate(
                    "not\nreached", (x, 0.0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7
                )
                continue
            top = max(top, value)
            ax.bar(x, value, width=int(n) * 0.16, color=COLOURS[arm], alpha=0.8)
            ax.annotate(str(reached), (x, value), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    ax.set_ylim(0.0, max(top * 1.6, 1.0))  # the top third is left for the legend
    handles = [Patch(color=COLOURS[a], label=a) for a in ("curriculum", "baseline")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", ncol=2)


def xray_classes_figure(result: Mapping[str, Any]) -> Any:
    """Per-class test AUROC with intervals and the chance line, as a Figure."""
    per_class = _lookup(result, "xray_class_auroc")
    names = list(per_class) if isinstance(per_class, Mapping) else []
    fig = new_figure((WIDTH_IN, 0.45 * max(len(names), 2) + 1.6), dpi=DPI)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    worst = _lookup(result, "xray_min_class_auroc")
    which = ""
    if isinstance(worst, Mapping):
        which = f" ({worst.get('arm', '?')}, {worst.get('n_train', '?')} training images)"
    fig.suptitle(f"X-ray per-class test AUROC{which}\n{_suptitle(result)}", fontsize=10)
    if not names:
        _not_measured(ax, _reason(result, "xray_class_auroc"))
        return fig
    rows = [_row(result, name.replace("_", " "), f"xray_class_auroc.{name}") for name in names]
    _forest(
        ax,
        rows,
        title="95 % bootstrap interval over test images; dashed: chance (0.5)",
        xlabel="test ROC AUC of the class",
        xlim=(0.0, 1.0),
        reference=0.5,
    )
    return fig


def plot_claims(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write the three claims figures as PNG into ``out_dir`` (created if needed); returns their paths.

    Args:
        result: the JSON object ``benchmarks/claims.py`` prints last (claims as ``[value, lo, hi]``, nulls explained
            in ``null_reasons``). Absent or null claims are drawn as "not measured: <reason>".
        out_dir: the folder; ``claims_slides.png``, ``claims_curriculum.png`` and ``claims_xray_classes.png`` are
            written there atomically (replacing earlier ones).

    Raises:
        ValueError: a claim has the wrong shape (not ``[value, lo, hi]`` of numbers / nulls), naming its key.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        (SLIDES_PNG, slides_figure),
        (CURRICULUM_PNG, curriculum_figure),
        (XRAY_CLASSES_PNG, xray_classes_figure),
    ):
        written.append(save_figure(draw(result), out_dir / name))
    return written


def read_result(path: Path) -> dict[str, Any]:
    """The claims JSON object in ``path``: a JSON file, or a log of ``claims.py`` whose last line is the object.

    Raises:
        InputFileError: the file is unreadable, holds no JSON object, or the object has none of the claims.
    """
    text = read_text(path, "the JSON result of benchmarks/claims.py or its log")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputFileError(path, "empty; expected the JSON result of benchmarks/claims.py or its log")
    candidates = (lines[-1], text)
    value: Any = None
    for candidate in candidates:
        try:
            value = json.loads(candidate)
            break
        except json.JSONDecodeError:
            continue
    if not isinstance(value, dict):
        raise InputFileError(
            path, "neither the whole file nor its last line is a JSON object (the last line of claims.py's output)"
        )
    if not any(key in value for key in CLAIM_KEYS):
        raise InputFileError(path, f"the JSON object has none of the claims ({', '.join(CLAIM_KEYS[:3])}, ...)")
    return value


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Command line: read RESULT, write the figures into OUT_DIR, print their paths."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="the JSON object of claims.py, or its log (last line = JSON)")
    parser.add_argument("out_dir", type=Path, help="folder for the PNG figures")
    args = parser.parse_args(argv)
    result = read_result(args.result)
    try:
        paths = plot_claims(result, args.out_dir)
    except ValueError as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(args.result, str(exc)) from exc
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    try:
        main()
    except InputFileError as exc:
        sys.exit(f"error: {exc}")
