"""The command line of the trainer (the torchrun entry point): ``python -m napari_patchdx.training CONFIG.json
OUT_DIR``, on every rank under ``torchrun``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from .._fsutil import atomic_write_text
from ..errors import ConfigError, PatchdxError
from ..progress import Progress, run_job
from .config import TrainConfig
from .inputs import TrainData
from .job import train_job


def _printer() -> Callable[[Progress], None]:
    last = [0.0]

    def show(report: Progress) -> None:
        now = time.monotonic()
        if report.partial is not None or now - last[0] >= 5.0:
            last[0] = now
            share = f"{100 * report.fraction:5.1f}% " if report.total else ""
            print(f"{share}{report.message}", flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m napari_patchdx.training CONFIG.json OUT_DIR``: train (under torchrun: on every rank).

    ``CONFIG.json`` holds ``{"config": {TrainConfig fields}, "data": {TrainData fields}}`` (a run's
    ``train_manifest.json`` has that shape too). Returns the exit status: 0 done, 1 cancelled, 2 error.
    """
    parser = argparse.ArgumentParser(prog="python -m napari_patchdx.training", description=main.__doc__)
    parser.add_argument("config", help="JSON file with 'config' and 'data' objects")
    parser.add_argument("out_dir", help="run folder (resumed when it holds a run)")
    parser.add_argument("--no-resume", action="store_true", help="refuse a folder that already holds a run")
    parser.add_argument("--rank-digests", help=argparse.SUPPRESS)  # tests: each rank writes its weights' sha256
    args = parser.parse_args(argv)
    try:
        spec = json.loads(Path(args.config).read_text(encoding="utf-8"))
        if not isinstance(spec, Mapping) or "config" not in spec or "data" not in spec:
            raise ConfigError("the file must hold a JSON object with 'config' and 'data'")
        config = TrainConfig.from_dict(spec["config"])
        data = TrainData.from_dict(spec["data"])
    except (OSError, ValueError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    started_group = False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and config.device not in ("cpu", "mps")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        started_group = True
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    try:
        result = run_job(
            train_job(config, data, args.out_dir, resume=not args.no_resume), _printer() if rank == 0 else None
        )
        if args.rank_digests:
            folder = Path(args.rank_digests)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / f"rank{rank}.sha256", result.weights_sha256 + "\n")
        if rank == 0:
            print(f"done: {result.global_step} steps; last checkpoint {result.last}; best {result.best}", flush=True)
        return 1 if result.cancelled else 0
    except PatchdxError as exc:
        print(f"error (rank {rank}): {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run resumes from its last save", file=sys.stderr, flush=True)
        return 1
    finally:
        if started_group:
            dist.destroy_process_group()
