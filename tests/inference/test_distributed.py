"""Batch heatmaps on dask: equal to the serial run, worker deaths retried without a false "complete", bad files.

One LocalCluster of 2 worker processes (started by the same code a job uses) is shared by the module; the tests
that check a job's own cluster (start, close, cancel) use standard-library functions, so their workers start fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import operator
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed import KilledWorker, WorkerPlugin

from napari_patchdx import distributed as pd_distributed
from napari_patchdx.distributed import map_job, worker_device
from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.inference import distributed_heatmaps
from napari_patchdx.inference.distributed_heatmaps import heatmaps_job
from napari_patchdx.inference.heatmap_files import read_heatmap
from napari_patchdx.io.names import heatmap_paths
from napari_patchdx.models.checkpoint import save_checkpoint
from napari_patchdx.models.factory import build_model
from napari_patchdx.progress import SCALE, ItemReport, Job, Progress, run_job
from napari_patchdx.synth.wsi.slide import make_slide

# cells of 128 px (4 patches of 32 px apart), 8 x 8 cells per 1024 px slide, bands of 2 cell rows: 4 bands a slide
SETTINGS = {"tta": False, "stride": 128, "band_rows": 2, "batch_size": 16}
WAIT_S = 180.0  # the longest any test waits for something that happens in a worker (a worker imports torch first)


def _wait_until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
    """``(client, scheduler address)`` of a LocalCluster of 2 worker processes, 1 thread each."""
    environ = dict(os.environ)
    client, local = pd_distributed._start(2, None, 1)
    assert dict(os.environ) == environ  # the nannies' thread settings must not leak into this process
    try:
        yield client, local.scheduler_address
    finally:
        client.close()
        local.close()
        pd_distributed._restore_environ(environ)  # a worker restarted by a test set them again


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    """Four 1024 px synthetic slides, a small-network checkpoint, and their heatmaps computed serially."""
    root = tmp_path_factory.mktemp("dist")
    slides = [make_slide(root / f"s{i}.tif", height=1024, width=1024, mpp=1.0, seed=i).path for i in range(4)]
    torch.manual_seed(0)
    model = build_model("small", 1).eval()
    weights, _ = save_checkpoint(
        root / "ckpt", model, {"classes": ["tumor"], "input_size": 32, "center_size": 32, "mpp": None}
    )
    reports: list[Progress] = []
    with one_torch_thread():
        serial = run_job(heatmaps_job(slides, [weights], root / "serial", **SETTINGS), reports.append)
    return {"slides": slides, "models": [weights], "serial": serial, "reports": reports}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread here, as in the workers (dask starts them with OMP_NUM_THREADS=1 and a job's own
    LocalCluster on this 2-core machine gives each of 2 workers 1 thread): float sums depend on the thread count,
    and the cluster's heatmaps are compared bit for bit with serial ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _assert_equal_heatmaps(got, expected) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.slide == b.slide
        assert a.grid == b.grid
        assert np.isfinite(b.heatmap).sum() > 10 and np.isnan(b.heatmap).sum() > 0  # tissue cells and background
        assert np.array_equal(a.heatmap, b.heatmap, equal_nan=True), a.slide
        on_disk, grid, _ = read_heatmap(a.path)
        assert grid == b.grid and np.array_equal(on_disk, b.heatmap, equal_nan=True)


def _finished(reports: list[Progress]) -> list[Progress]:
    return [r for r in reports if isinstance(r.partial, ItemReport) and r.partial.kind in ("done", "failed")]


def test_serial_run_forwards_each_slides_progress(cohort):
    reports, slides = cohort["reports"], cohort["slides"]
    finished = _finished(reports)
    assert [r.fraction for r in finished] == [0.25, 0.5, 0.75, 1.0] and {r.total for r in reports} == {SCALE}
    assert [r.partial.index for r in finished] == [0, 1, 2, 3]
    assert [r.partial.value for r in finished] == cohort["serial"]
    for i, slide in enumerate(slides):  # the slide's own reports (tissue, bands), before it is counted as done
        forwarded = [r for r in reports if r.message.startswith(f"[{i + 1}/4] {slide.name}: ")]
        assert len(forwarded) >= 4 and all(i / 4 <= r.fraction <= (i + 1) / 4 for r in forwarded)
        rows = [r.partial for r in forwarded if isinstance(r.partial, ItemReport)]
        # the slide's heatmap rows are passed on (for a live layer), tagged with the slide's index
        assert rows and all(p.kind == "partial" and p.index == i for p in rows)
        assert np.isfinite(np.concatenate([p.value.block for p in rows])).any()


def test_four_slides_on_two_worker_processes_equal_the_serial_run(cohort, cluster, tmp_path):
    client, address = cluster
    reports: list[Progress] = []
    results = run_job(
        heatmaps_job(cohort["slides"], cohort["models"], tmp_path, scheduler=address, **SETTINGS), reports.append
    )
    _assert_equal_heatmaps(results, cohort["serial"])
    assert [r.path for r in results] == [heatmap_paths(tmp_path, s.stem)["final"] for s in cohort["slides"]]
    finished = _finished(reports)
    assert [r.done for r in finished] == [1, 2, 3, 4]
    assert sorted(r.partial.index for r in finished) == [0, 1, 2, 3]
    for r in finished:
        assert cohort["slides"][r.partial.index].name in r.message
    # both worker processes ran slides, each loading the checkpoint once into its cache
    cached = client.run(lambda: len(distributed_heatmaps._MODEL_CACHE))
    assert sorted(cached.values()) == [1, 1]
    assert not list(tmp_path.glob("*.partial.*"))


def _dying_job(real, victim: str, marker_dir: str, slide_path, models, out_dir, **kwargs) -> Job:
    """slide_heatmap_job, except that the first attempt on ``victim`` kills its worker process after one band.

    Just before the kill it records which of the slide's files exist (``died.json``); a later attempt records the
    first row count it reports (``retry.json``: where it resumed).
    """
    inner = real(slide_path, models, out_dir, **kwargs)
    if Path(slide_path).name != victim:
        return (yield from inner)
    died = Path(marker_dir) / "died.json"
    first_attempt = not died.exists()
    paths = heatmap_paths(out_dir, Path(slide_path).stem)
    logged = False
    try:
        while True:
            try:
                report = next(inner)
            except StopIteration as stop:
                return stop.value
            if report.total and not first_attempt and not logged:
                (Path(marker_dir) / "retry.json").write_text(json.dumps({"first_done": report.done}))
                logged = True
            if report.total and report.done and first_attempt:
                # a band is done; its rows reach the partial store in the background: die once they are there
                deadline = time.monotonic() + 60
                while (rows_done := json.loads(paths["record"].read_text())["rows_done"]) == 0:
                    assert time.monotonic() < deadline, "the first band never reached the partial store"
                    time.sleep(0.01)
                state = {k: paths[k].exists() for k in ("final", "sidecar", "partial", "record")}
                state.update(rows_done=rows_done, total=report.total)
                died.write_text(json.dumps(state))
                os.kill(os.getpid(), signal.SIGKILL)
            yield report
    finally:
        inner.close()


class KillOnce(WorkerPlugin):
    """Installs :func:`_dying_job` as ``napari_patchdx.inference.heatmaps.slide_heatmap_job`` in every worker, also
    in one the nanny restarts after the kill."""

    def __init__(self, victim: str, marker_dir: str) -> None:
        self.victim = victim
        self.marker_dir = marker_dir

    def setup(self, worker) -> None:
        import napari_patchdx.inference.heatmaps as infer

        self.real = infer.slide_heatmap_job
        infer.slide_heatmap_job = functools.partial(_dying_job, self.real, self.victim, self.marker_dir)

    def teardown(self, worker) -> None:
        import napari_patchdx.inference.heatmaps as infer

        infer.slide_heatmap_job = self.real


def test_killed_worker_is_retried_and_never_leaves_a_heatmap_marked_complete(cohort, cluster, tmp_path):
    client, address = cluster
    slides = cohort["slides"]
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    client.register_plugin(KillOnce(slides[1].name, str(markers)), name="patchdx-kill-once")
    reports: list[Progress] = []
    try:
        results = run_job(
            heatmaps_job(slides, cohort["models"], out, scheduler=address, retries=2, **SETTINGS), reports.append
        )
    finally:
        client.unregister_worker_plugin("patchdx-kill-once")
    died = json.loads((markers / "died.json").read_text())
    # at the moment of death: a partial store with some rows, no final heatmap nor sidecar
    assert died["final"] is False and died["sidecar"] is False
    assert died["partial"] is True and died["record"] is True
    assert 0 < died["rows_done"] < died["total"]
    # the retry resumed from that partial store, and everything equals the serial run
    assert json.loads((markers / "retry.json").read_text())["first_done"] == died["rows_done"]
    assert sum("worker died" in r.message for r in reports) == 1
    _assert_equal_heatmaps(results, cohort["serial"])
    assert not list(out.glob("*.partial.*"))


@pytest.mark.parametrize("where", ["serial", "cluster"])
def test_bad_slide_is_reported_after_the_others_finish(cohort, cluster, tmp_path, where):
    good = cohort["slides"][0], cohort["slides"][2]
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00 this is not a slide " * 40)
    kwargs = {"scheduler": cluster[1]} if where == "cluster" else {}
    out = tmp_path / "out"
    reports: list[Progress] = []
    with pytest.raises(InputFileError, match=r"bad\.tif") as info, one_torch_thread():
        run_job(heatmaps_job([good[0], bad, good[1]], cohort["models"], out, **kwargs, **SETTINGS), reports.append)
    assert info.value.path == bad
    assert any("failed" in r.message and "bad.tif" in r.message for r in reports)
    # the other slides finished and their heatmaps are kept
    expected = {r.slide: r for r in cohort["serial"]}
    for slide in good:
        heatmap, _, _ = read_heatmap(heatmap_paths(out, slide.stem)["final"])
        assert np.array_equal(heatmap, expected[slide].heatmap, equal_nan=True)
    assert not heatmap_paths(out, "bad")["final"].exists()


def _endless(marker: str) -> Job[None]:
    """A job that never ends on its own: touches ``marker.started``, and ``marker.stopped`` when it is closed."""
    Path(f"{marker}.started").touch()
    try:
        while True:
            time.sleep(0.05)
            yield Progress(0, 0, "spinning")
    finally:
        Path(f"{marker}.stopped").touch()


def test_cancel_stops_running_jobs_and_keeps_an_existing_cluster(cluster, tmp_path):
    client, address = cluster
    # serially: closing the batch closes the item's job
    job = map_job(_endless, [str(tmp_path / "here")])
    for _ in range(3):
        next(job)
    job.close()
    assert (tmp_path / "here.stopped").exists()

    # on a cluster: closing the batch cancels the tasks; the running jobs see the stop event and are closed
    names = [str(tmp_path / "a"), str(tmp_path / "b")]
    job = map_job(_endless, names, scheduler=address, heartbeat=0.2)
    for report in job:
        assert report.done == 0
        if all(Path(f"{n}.started").exists() for n in names):
            break
    job.close()
    _wait_until(lambda: all(Path(f"{n}.stopped").exists() for n in names), "the cancelled jobs to close")
    # the cluster is still there and free for new work
    assert run_job(map_job(operator.neg, [1, 2], scheduler=address)) == [-1, -2]
    assert client.submit(operator.neg, 5).result() == -5


def test_unexpected_errors_are_raised_not_collected(cluster):
    with pytest.raises(ValueError, match="math domain error"):
        run_job(map_job(_sqrt, [4.0, -1.0, 9.0]))
    with pytest.raises(ValueError, match="math domain error"):
        run_job(map_job(_sqrt, [4.0, -1.0, 9.0], scheduler=cluster[1]))


def _sqrt(x: float) -> float:
    import math

    return math.sqrt(x)


def test_own_local_cluster_is_closed_after_the_results_and_after_a_cancel():
    before = set(multiprocessing.active_children())
    environ = dict(os.environ)
    assert run_job(map_job(operator.neg, [1, 2, 3], workers=2)) == [-1, -2, -3]
    assert set(multiprocessing.active_children()) <= before
    assert dict(os.environ) == environ  # no OMP_NUM_THREADS=1 etc. left for later subprocesses

    # closing the job while tasks run shuts its cluster down
    job = map_job(time.sleep, [600, 600, 600], workers=2)
    for report in job:
        if "submitted" in report.message:
            break
    job.close()
    assert set(multiprocessing.active_children()) <= before


def test_settings_are_checked_before_any_work(cohort, tmp_path):
    slides, models = cohort["slides"], cohort["models"]
    with pytest.raises(ConfigError, match="workers must be"):
        heatmaps_job(slides, models, tmp_path, workers=-1)
    with pytest.raises(ConfigError, match="not both"):
        heatmaps_job(slides, models, tmp_path, workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="retries"):
        map_job(str, [1], retries=-1)
    with pytest.raises(ConfigError, match="device"):
        heatmaps_job(slides, models, tmp_path, device="gpu")
    with pytest.raises(ConfigError, match=r"unknown heatmap setting.*strides"):
        heatmaps_job(slides, models, tmp_path, strides=3)
    twin = tmp_path / "twin" / slides[0].name
    with pytest.raises(ConfigError, match=r"s0\.heatmap\.ome\.tif"):
        heatmaps_job([slides[0], twin], models, tmp_path)
    with pytest.raises(InputFileError, match="nowhere"):
        heatmaps_job(slides, [tmp_path / "nowhere.safetensors"], tmp_path)
    with pytest.raises(ConfigError, match="no slide"):
        heatmaps_job([], models, tmp_path)
    with pytest.raises(ConfigError, match=re.escape("cannot connect to the dask scheduler at 'tcp://127.0.0.1:1'")):
        import dask

        with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
            run_job(map_job(str, [1], scheduler="tcp://127.0.0.1:1"))


def test_each_worker_takes_its_own_gpu(monkeypatch):
    import napari_patchdx.devices as devices

    assert worker_device("cpu") == "cpu"
    assert worker_device("auto") == str(devices.resolve_device("auto"))  # outside a worker: CUDA, MPS, then CPU
    with pytest.raises(ConfigError, match="device"):
        worker_device("tpu")
    # four GPUs seen by worker processes named 0..5: worker i -> cuda:(i mod 4); an explicit index is kept
    monkeypatch.setattr(devices, "resolve_device", lambda device, **_: torch.device(device))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    got = {}
    for name in (0, 1, 5, "tcp://10.0.0.2:4000-3"):
        monkeypatch.setattr(pd_distributed, "_worker_name", lambda name=name: name)
        got[name] = worker_device("cuda")
    assert got == {0: "cuda:0", 1: "cuda:1", 5: "cuda:1", "tcp://10.0.0.2:4000-3": "cuda:3"}
    assert worker_device("cuda:2") == "cuda:2"
    monkeypatch.setattr(pd_distributed, "_worker_name", lambda: None)  # not in a worker: torch's current GPU
    assert worker_device("cuda") == "cuda"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_heatmaps_on_gpu_workers(cohort, cluster, tmp_path):
    client, address = cluster
    devices = client.run(worker_device, "cuda")
    count = torch.cuda.device_count()
    expected = {f"cuda:{i % count}" for i in range(2)} if count > 1 else {"cuda"}
    assert set(devices.values()) == expected
    results = run_job(
        heatmaps_job(cohort["slides"], cohort["models"], tmp_path, scheduler=address, device="cuda", **SETTINGS)
    )
    for got, ref in zip(results, cohort["serial"], strict=True):
        assert np.array_equal(np.isnan(got.heatmap), np.isnan(ref.heatmap))
        np.testing.assert_allclose(got.heatmap, ref.heatmap, atol=1e-4, equal_nan=True)


def test_a_task_that_always_kills_its_worker_fails_after_its_retries(cluster):
    """Last in the module: both workers of the shared cluster die (the nanny restarts them)."""
    reports: list[Progress] = []
    with pytest.raises(KilledWorker) as info:
        run_job(map_job(os._exit, [3], scheduler=cluster[1], retries=1), reports.append)
    assert [r.message for r in reports if "worker died" in r.message] == [
        "3: its worker died; trying again (retry 1 of 1)"
    ]
    assert any("died on each of 2 tries (retries=1)" in note for note in info.value.__notes__)


def test_infer_command_runs_on_a_scheduler_or_on_its_own_workers(cohort, cluster, tmp_path, monkeypatch):
    """``napari-patchdx infer --scheduler ADDRESS`` sends the slides to that cluster, ``--workers N`` starts a local
    cluster of N worker processes; both write the serial run's heatmaps."""
    from napari_patchdx.cli import main

    client, address = cluster
    options = ["--checkpoint", str(cohort["models"][0]), "--no-tta", "--stride", "128", "--batch-size", "16"]
    transitions = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
    slides = [str(p) for p in cohort["slides"][:2]]
    assert main(["infer", *options, "--scheduler", address, "--out", str(tmp_path / "a"), *slides]) == 0
    assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter) > transitions
    started: list[tuple] = []
    start = pd_distributed._start
    monkeypatch.setattr(pd_distributed, "_start", lambda *a: started.append(a) or start(*a))
    assert main(["infer", *options, "--workers", "1", "--out", str(tmp_path / "b"), slides[0]]) == 0
    assert started == [(1, None, 1)]
    for folder, n in (("a", 2), ("b", 1)):
        for expected in cohort["serial"][:n]:
            got, grid, _ = read_heatmap(heatmap_paths(tmp_path / folder, Path(expected.slide).stem)["final"])
            assert grid == expected.grid
            # the command's bands hold more rows than the serial run's, so batches group other patches: equal to
            # float32 rounding
            np.testing.assert_allclose(got, expected.heatmap, atol=1e-6, err_msg=f"{folder}: {expected.slide}")
            assert np.isfinite(got).sum() > 10
