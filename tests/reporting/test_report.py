"""The HTML report: sections, images beside the page, metrics JSON, several runs side by side, escaping."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.evaluation.slide_files import evaluate_slides
from napari_patchdx.evaluation.xrays import evaluate_cxr
from napari_patchdx.reporting.build import build_report

from ..evaluation.test_evaluate import CXR_SCORES, build_cxr_case, build_slide_case


class _Page(HTMLParser):
    """Collects tags, image sources, links and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "a":
            self.links.append(values.get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _history(stages: list[str], aucs: list[float | None]) -> list[dict]:
    return [
        {
            "stage": stage,
            "epoch": i + 1,
            "train_loss": 0.7 - 0.05 * i,
            "val_loss": None if auc is None else 0.6 - 0.05 * i,  # null as train.py writes NaN
            "val_auroc": {"nodule": auc, "mean": auc},
        }
        for i, (stage, auc) in enumerate(zip(stages, aucs, strict=True))
    ]


def _write_train(run: Path, task: str, history: list[dict]) -> None:
    (run / "train").mkdir(parents=True, exist_ok=True)
    (run / "train" / "last.json").write_text(json.dumps({"task": task, "metrics": history}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A slide run (with a training history) and two X-ray runs, curriculum and baseline, already evaluated."""
    root = tmp_path_factory.mktemp("report")
    case = build_slide_case(root / "slide_data")
    slide_run = root / "slides_run"
    evaluate_slides(case["slides"], case["heatmaps"], slide_run / "evaluate", n_boot=50)
    _write_train(slide_run, "slide", _history(["patches"] * 3, [0.6, None, 0.8]))
    baseline_scores = CXR_SCORES.copy()
    baseline_scores[:, 0] = [0.5, 0.2, 0.6, 0.4, 0.3, 0.45]  # nodule AUROC 3/9, mean (1/3 + 1) / 2
    out = {"slides": slide_run}
    for name, scores, history in (
        ("curriculum", CXR_SCORES, _history(["patches", "patches", "whole", "whole"], [0.7, 0.75, 0.8, 0.9])),
        ("baseline", baseline_scores, _history(["whole"] * 4, [0.6, 0.62, 0.66, 0.7])),
    ):
        cohort, infer = build_cxr_case(root / "cxr_data", name=f"infer_{name}", scores=scores)
        run = root / name
        evaluate_cxr(infer, cohort, run / "evaluate", n_boot=50)
        _write_train(run, "cxr", history)
        out[name] = run
    return out


def test_report_of_one_slide_run(runs: dict[str, Path]) -> None:
    run = runs["slides"]
    stale = run / "report_files" / "old.png"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"stale")
    page = build_report(run)
    assert page == run / "report.html"
    html = page.read_text(encoding="utf-8")
    for section in ("<h3>Metrics</h3>", "<h3>Curves</h3>", "<h3>Training</h3>", "<h3>Per-slide table</h3>"):
        assert section in html, section
    assert "<h3>Suspected label errors</h3>" in html and "<h3>Thumbnails</h3>" in html
    assert "FROC score" in html and "0.8333" in html and "slide-level ROC AUC" in html
    parsed = _parse(page)
    # every image is a file in the folder beside the page, linked relatively
    assert parsed.images and all(not Path(src).is_absolute() for src in parsed.images)
    for src in parsed.images:
        assert (page.parent / src).is_file(), src
        assert Path(src).parts[0] == "report_files"
    names = {Path(src).name for src in parsed.images}
    assert {"froc.png", "roc.png", "training.png", "tumor_a.png", "normal_a.png", "normal_b.png"} <= names
    # the suspect (normal_b scored 0.95) is listed with its thumbnail and its row is flagged in the table
    suspects_part = html.split("<h3>Suspected label errors</h3>")[1].split("<h3>")[0]
    assert "normal_b" in suspects_part and "thumbs/normal_b.png" in suspects_part
    assert '<tr class="suspect"><td>normal_b</td>' in html
    assert not stale.exists()  # an earlier report's unused file is gone
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["froc"]["score"] == pytest.approx(5 / 6) and metrics["track"] == "slides"
    assert metrics["training"] == {"epochs": 3, "stages": ["patches"], "best_val_auroc_mean": 0.8}
    assert not [p for p in run.rglob(".*") if p.is_file()]  # no temporary files left


def test_report_of_several_runs_compares_xray_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    page = build_report([runs["slides"], runs["curriculum"], runs["baseline"]], tmp_path / "out", title="demo")
    assert page == tmp_path / "out" / "report.html"
    html = page.read_text(encoding="utf-8")
    assert "<h2>Chest X-ray runs side by side</h2>" in html
    table = html.split("<h2>Chest X-ray runs side by side</h2>")[1].split("</table>")[0]
    assert "<th>curriculum</th><th>baseline</th>" in table
    assert "0.833 [" in table and "0.667 [" in table  # mean AUROC 5/6 and 2/3
    assert "pointing game nodule" in table and "best validation mean AUROC" in table
    assert "<td class='num'>0.900</td><td class='num'>0.700</td>" in table
    assert html.count("<h3>Per-image table</h3>") == 2 and html.count("<h3>Per-slide table</h3>") == 1
    for src in _parse(page).images:
        assert (page.parent / src).is_file(), src
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"slides_run", "curriculum", "baseline"}
    assert metrics["curriculum"]["mean_auroc"]["auc"] == pytest.approx(5 / 6)
    assert metrics["baseline"]["mean_auroc"]["auc"] == pytest.approx(2 / 3)
    assert metrics["baseline"]["training"]["best_val_auroc_mean"] == pytest.approx(0.7)


def test_report_escapes_every_piece_of_user_text(runs: dict[str, Path], tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)">'
    run = tmp_path / 'run<b id="x">&co'
    shutil.copytree(runs["slides"] / "evaluate", run / "evaluate")
    csv_path = run / "evaluate" / "slides.csv"
    csv_path.write_text(csv_path.read_text().replace("normal_a,", f'"{evil}",'))
    suspects = json.loads((run / "evaluate" / "suspects.json").read_text())
    suspects["suspects"][0]["reason"] = f"{evil} reason"
    (run / "evaluate" / "suspects.json").write_text(json.dumps(suspects))
    page = build_report(run, title="<script>alert('t')</script>")
    html = page.read_text(encoding="utf-8")
    parsed = _parse(page)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert not any(src == "x" for src in parsed.images)
    assert evil not in html and '<b id="x">' not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "run&lt;b id=&quot;x&quot;&gt;&amp;co" in html
    text = "".join(parsed.text)
    assert "<script>alert('t')</script>" in text and evil in text  # shown as text, not as markup


def test_report_notes_missing_parts_and_rejects_bad_runs(tmp_path: Path) -> None:
    not_evaluated = "not evaluated yet: evaluate/metrics.json is missing, so there are no metrics or curves"
    no_history = "no training history (train/last.json with a metrics history): training curves skipped"
    empty = tmp_path / "fresh"
    empty.mkdir()
    page = build_report(empty)
    html = page.read_text(encoding="utf-8")
    assert f'<p class="note">{not_evaluated}</p>' in html and f'<p class="note">{no_history}</p>' in html
    assert '<p class="note">no evaluate/suspects.json: suspected label errors not listed.</p>' in html
    assert "(unknown track)" in html and "<td>unknown</td><td>n/a</td>" in html  # summary row: no headline
    for skipped in ("<h3>Metrics</h3>", "<h3>Curves</h3>", "<h3>Training</h3>", "<h3>Thumbnails</h3>", "table</h3>"):
        assert skipped not in html, skipped
    assert not _parse(page).images and not (empty / "report_files").exists()
    metrics_path = empty / "metrics.json"
    assert json.loads(metrics_path.read_text()) == {"track": None, "report_notes": [not_evaluated, no_history]}
    # evaluated, but without a per-case table or curves: each missing part is named
    evaluated = tmp_path / "evaluated"
    (evaluated / "evaluate").mkdir(parents=True)
    (evaluated / "evaluate" / "metrics.json").write_text(json.dumps({"track": "cxr", "classes": ["nodule"]}))
    html = build_report(evaluated).read_text(encoding="utf-8")
    assert '<p class="note">no per-case table (evaluate/slides.csv or evaluate/images.csv)</p>' in html
    assert '<p class="note">ROC curve missing: evaluate/roc.png not found.</p>' in html
    assert "<h3>Metrics</h3>" in html and "not evaluated yet" not in html and "(chest X-rays)" in html
    with pytest.raises(InputFileError, match="the run folder does not exist"):
        build_report(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ConfigError, match="no run directories"):
        build_report([])
    before = page.read_text(encoding="utf-8"), metrics_path.read_text()
    (empty / "evaluate").mkdir()
    (empty / "evaluate" / "metrics.json").write_text("{not json")
    with pytest.raises(InputFileError, match=r"metrics\.json: is not readable JSON"):
        build_report(empty)
    # a bad run is refused before anything is written: the earlier report stays as it was
    assert (page.read_text(encoding="utf-8"), metrics_path.read_text()) == before
    assert sorted(p.name for p in empty.iterdir()) == ["evaluate", "metrics.json", "report.html"]
